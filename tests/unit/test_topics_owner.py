"""One owner for the topics and the node-id pattern (STYLE item 11).

The runtime's ``desired_topics`` defines the topics; ``fl topics plan`` prints
it, playbooks/kafka.yml feeds that to the generic kafka role, and the node-id
pattern of ``fl_runtime.core.ids`` is the only one, used by the roles through
the ``fedge_node_id`` Jinja test.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from fl_runtime.cli import main
from fl_runtime.cli import topics as topics_cli
from fl_runtime.config import NODE_ID_PATTERN, load_config
from fl_runtime.core.ids import NODE_ID
from fl_runtime.service.topics import TopicSpec, desired_topics, plan

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"kafka": {"replication_factor": 2, "partitions": 4, "sensor_retention_hours": 12}}


def _ensure_specs(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> list[TopicSpec]:
    """The specs `fl topics ensure` hands to reconcile_topics, without a cluster."""
    seen: list[TopicSpec] = []

    def fake_reconcile(admin: Any, specs: list[TopicSpec], timeout: float) -> list[Any]:
        seen.extend(specs)
        return []

    monkeypatch.setattr(topics_cli, "admin_client", lambda cfg: object())
    monkeypatch.setattr(topics_cli, "reconcile_topics", fake_reconcile)
    out = CliRunner().invoke(main, ["topics", "ensure", *args], env={})
    assert out.exit_code == 0, out.output
    return seen


def test_plan_is_what_ensure_creates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Prepare: the same settings as a file (for ensure) and as JSON (for plan).
    cfg_file = tmp_path / "fl.toml"
    cfg_file.write_text(
        "[kafka]\nreplication_factor = 2\npartitions = 4\nsensor_retention_hours = 12\n"
    )
    # Execute
    planned = CliRunner().invoke(
        main,
        ["topics", "plan", "--json", "--nodes", "1,b-2", "--settings", json.dumps(SETTINGS)],
        env={"FL_TOPIC_PARTITIONS": "9"},  # the controller's environment is not read
    )
    ensured = _ensure_specs(
        monkeypatch, ["--config", str(cfg_file), "--node-id", "1", "--node-id", "b-2"]
    )
    # Assert
    assert planned.exit_code == 0, planned.output
    doc = json.loads(planned.output)
    assert doc == plan(ensured)
    assert doc == plan(desired_topics(load_config(cfg_file, env={}), ["1", "b-2"]))
    assert [t["name"] for t in doc][:2] == ["sensor-data-node-1", "sensor-data-node-b-2"]
    assert {t["replication_factor"] for t in doc} == {2}
    assert doc[0]["partitions"] == 4 and doc[0]["config"]["retention.ms"] == str(12 * 3_600_000)
    assert set(doc[0]) == {"name", "partitions", "replication_factor", "config"}


def test_plan_with_no_nodes_has_only_the_shared_topics() -> None:
    # Execute
    out = CliRunner().invoke(main, ["topics", "plan", "--json", "--nodes", "", "--settings", "{}"])
    # Assert
    assert out.exit_code == 0, out.output
    assert [t["name"] for t in json.loads(out.output)] == [
        "model-weights",
        "global-model",
        "fl-dead-letter",
        "anomalies",
    ]


@pytest.mark.parametrize("bad", ["[]", '{"kafka": 1}', '{"kafka": {"nope": 1}}', "{"])
def test_plan_rejects_bad_settings(bad: str) -> None:
    out = CliRunner().invoke(main, ["topics", "plan", "--settings", bad])
    assert out.exit_code == 1
    assert "Error:" in out.output


def test_kafka_role_knows_no_fedge_topic_or_group() -> None:
    # Prepare: fedge's topic names, from the runtime's defaults.
    kafka = load_config(Path("/dev/null"), env={}).kafka
    names = [
        kafka.sensor_topic_prefix,
        kafka.weights_topic,
        kafka.global_model_topic,
        kafka.dead_letter_topic,
    ]
    # Execute
    role = {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8").lower()
        for p in (ROOT / "roles" / "kafka").rglob("*")
        if p.is_file()
    }
    # Assert
    for path, text in role.items():
        for word in [*names, "fog", "sensor"]:
            assert word not in text, f"{path} mentions {word!r}"
    defaults = yaml.safe_load((ROOT / "roles/kafka/defaults/main.yml").read_text())
    assert defaults["kafka_topics"] == []
    spec = yaml.safe_load((ROOT / "roles/kafka/meta/argument_specs.yml").read_text())
    topics = spec["argument_specs"]["main"]["options"]["kafka_topics"]
    assert topics["elements"] == "dict"
    assert set(topics["options"]) == {"name", "partitions", "replication_factor", "config"}


def _plan_block() -> dict[str, Any]:
    (block,) = yaml.safe_load((ROOT / "playbooks/tasks/kafka_topics_plan.yml").read_text())
    return block


def test_kafka_playbook_feeds_the_role_from_fl_topics_plan() -> None:
    # Prepare
    plays = yaml.safe_load((ROOT / "playbooks/kafka.yml").read_text())
    block = _plan_block()
    # Execute
    commands = [t for t in block["block"] if "ansible.builtin.command" in t]
    facts = [t for t in block["block"] if "ansible.builtin.set_fact" in t]
    role_plays = [p for p in plays if any(r.get("role") == "kafka" for r in p.get("roles", []))]
    # Assert: a read-only command on the controller that also runs in check mode and
    # under --limit, kept as a fact...
    assert block["delegate_to"] == "localhost" and block["run_once"] is True
    assert block["become"] is False
    assert len(commands) == 1
    command = commands[0]
    assert "'topics', 'plan', '--json'" in command["ansible.builtin.command"]["argv"]
    assert command["check_mode"] is False and command["changed_when"] is False
    register = command["register"]
    fact = facts[0]["ansible.builtin.set_fact"]
    assert fact == {"fedge_kafka_topics": "{{ " + register + ".stdout | from_json }}"}
    # ...and every play applying the role plans first and passes exactly that.
    assert len(role_plays) == 2
    for play in role_plays:
        imports = [t.get("ansible.builtin.import_tasks") for t in play["pre_tasks"]]
        assert imports == ["tasks/kafka_topics_plan.yml"]
        (role,) = [r for r in play["roles"] if r.get("role") == "kafka"]
        assert role["vars"] == {"kafka_topics": "{{ fedge_kafka_topics }}"}


def _load_test_plugin() -> Any:
    path = ROOT / "plugins/test/fedge.py"
    spec = importlib.util.spec_from_file_location("fedge_test_plugin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        (1, True),
        ("pi-fog_2", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("-1", False),
        ("_a", False),
        ("a b", False),
        ("a.b", False),
        ("", False),
        ("1\n", False),
        (None, False),
        (True, False),
        (1.5, False),
    ],
)
def test_fedge_node_id_test_matches_the_pattern(value: Any, expected: bool) -> None:
    # Prepare
    plugin = _load_test_plugin()
    # Execute
    accepted = plugin.TestModule().tests()["fedge_node_id"](value)
    # Assert
    assert accepted is expected
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        assert accepted is (NODE_ID_PATTERN.fullmatch(str(value)) is not None)


def test_the_node_id_pattern_has_one_home() -> None:
    # Prepare
    sources = [
        p
        for top in ("fl_runtime", "roles", "playbooks", "plugins", "molecule", "inventories")
        for p in (ROOT / top).rglob("*")
        if p.is_file() and p.suffix in {".py", ".yml", ".yaml", ".j2", ".toml"}
    ]
    # Execute
    copies = [
        p.relative_to(ROOT).as_posix()
        for p in sources
        if NODE_ID.strip("^$") in p.read_text(encoding="utf-8")
    ]
    # Assert
    assert copies == ["fl_runtime/core/ids.py"]
    for role in ("mqtt_bridge", "fog_node", "sensor_simulator"):
        assert "is fedge_node_id" in (ROOT / "roles" / role / "tasks/main.yml").read_text()
    assert "test_plugins = ./plugins/test" in (ROOT / "ansible.cfg").read_text()
    for scenario in ("default", "scale_out"):
        molecule = yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text())
        defaults = molecule["provisioner"]["config_options"]["defaults"]
        assert defaults["test_plugins"] == "${MOLECULE_PROJECT_DIRECTORY}/plugins/test"


def test_the_plan_and_the_hosts_config_take_one_replication_factor() -> None:
    # Prepare
    planner = _plan_block()
    defaults = yaml.safe_load((ROOT / "roles/fl_runtime/defaults/main.yml").read_text())
    base = yaml.safe_load((ROOT / "roles/fl_runtime/vars/main.yml").read_text())
    # Execute
    in_playbook = " ".join(planner["vars"]["kafka_plan_replication_factor"].split())
    in_role = " ".join(defaults["fl_runtime_kafka_replication_factor"].split()).replace(
        "groups[fl_runtime_kafka_broker_group]",
        f"groups['{defaults['fl_runtime_kafka_broker_group']}']",
    )
    # Assert: the same rule, and both feed kafka.replication_factor.
    assert in_playbook == in_role
    assert (
        "'replication_factor': kafka_plan_replication_factor"
        in planner["vars"]["kafka_plan_settings"]
    )
    assert (
        "fl_runtime_kafka_replication_factor"
        in base["__fl_runtime_base_config"]["kafka"]["replication_factor"]
    )
