"""Jinja tests for fedge's playbooks and roles: ``fog_node_id is fedge_node_id``.

The node-id pattern has one owner, ``fl_runtime.config.NODE_ID_PATTERN``; the
tests run on the controller, which has fl_runtime installed (the project's venv).
"""

from __future__ import annotations

from typing import Any

from fl_runtime.config import NODE_ID_PATTERN


def fedge_node_id(value: Any) -> bool:
    """True when ``value`` (a string or a number, as inventories write ids) is a valid node id."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return False
    return NODE_ID_PATTERN.fullmatch(str(value)) is not None


class TestModule:
    """The fedge Jinja tests."""

    def tests(self) -> dict[str, Any]:
        return {"fedge_node_id": fedge_node_id}
