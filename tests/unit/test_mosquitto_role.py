"""The mosquitto role's settings: one owner (its defaults), shared by the test harness.

The integration tests run Mosquitto through :meth:`MosquittoBroker.from_role`; this
test fails if the role's template and the harness ever write those settings apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

from fl_runtime.bench.stack.mosquitto import ROLE_OPTIONS, MosquittoBroker
from fl_runtime.core.messages import MAX_READING_BYTES

ROLE = Path(__file__).resolve().parents[2] / "roles" / "mosquitto"
PERSISTENCE_AND_LIMITS = (
    "autosave_interval",
    "autosave_on_changes",
    "message_size_limit",
    "max_inflight_messages",
    "max_queued_messages",
)


def defaults() -> dict[str, Any]:
    return dict(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8")))


def settings(conf: str) -> dict[str, str]:
    pairs = (line.split(" ", 1) for line in conf.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs if key in PERSISTENCE_AND_LIMITS}


def test_the_harness_writes_the_role_settings_as_the_role_template_does(tmp_path: Path) -> None:
    # Prepare
    role = defaults()
    template = jinja2.Template((ROLE / "templates" / "mosquitto.conf.j2").read_text())

    # Execute
    rendered = template.render(ansible_managed="test", **role)
    harness = MosquittoBroker.from_role(tmp_path, role)._conf()

    # Assert
    assert set(settings(rendered)) == set(PERSISTENCE_AND_LIMITS)
    assert settings(harness) == settings(rendered)
    assert set(ROLE_OPTIONS) <= set(role)


def test_the_role_saves_on_every_change_and_refuses_giant_payloads() -> None:
    role = defaults()

    assert role["mosquitto_autosave_on_changes"] is True
    assert role["mosquitto_autosave_interval"] == 1  # a save after every change
    assert MAX_READING_BYTES < 64 * MAX_READING_BYTES == role["mosquitto_message_size_limit"]


def test_every_default_is_in_the_argument_specs() -> None:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))

    assert set(defaults()) <= set(specs["argument_specs"]["main"]["options"])
