"""The ``fedge_host_problems`` filter: can a host run its fedge tiers?

    {{ ansible_facts | fedge_host_problems(group_names, root_free_bytes) }}

It runs on the controller, where fl-runtime is installed (the controller builds
the artifact cache with it), and returns the list of problems that
:func:`fl_runtime.ops.hostcheck.host_problems` finds: the requirements live
there, tested, and ``playbooks/validate_hosts.yml`` only collects and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fl_runtime.ops.hostcheck import host_problems


def fedge_host_problems(
    facts: Mapping[str, Any], groups: Iterable[str], root_free_bytes: int | str
) -> list[str]:
    """Every reason this host cannot run the tiers of its groups (empty: fit)."""
    return host_problems(facts, list(groups), int(root_free_bytes))


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"fedge_host_problems": fedge_host_problems}
