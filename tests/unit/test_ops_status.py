"""fl status and the host check: the logic playbooks/status.yml, validate_hosts.yml
and the Molecule verify steps only collect and print."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from fl_runtime.cli import main
from fl_runtime.cloud.agglog import Participant, RoundRecord
from fl_runtime.ops.hostcheck import REQUIREMENTS, host_problems, needs
from fl_runtime.ops.status import problems, render_table, round_summary, rounds_with_nodes

ROOT = Path(__file__).resolve().parents[2]


def _round(number: int, nodes: list[str], finished_at: float = 100.0) -> RoundRecord:
    return RoundRecord(
        round=number,
        global_version=number,
        mode="batch",
        strategy="fedavg",
        started_at=finished_at - 1,
        finished_at=finished_at,
        participants=[Participant(n, 10, 0.0, 0, number - 1) for n in nodes],
        global_loss=0.3,
        global_f1=0.9,
    )


def _unit(name: str, active: str = "active", enabled: str = "enabled") -> dict[str, Any]:
    return {"name": name, "active": active, "enabled": enabled, "restarts": 0}


def _statuses(nodes_in_round: list[str], topics: list[str]) -> dict[str, Any]:
    return {
        "cloud": {
            "units": [_unit("kafka.service"), _unit("fl-aggregator.service")],
            "topics": [{"name": t, "partitions": 3, "replication": 1} for t in topics],
            "sensor_topic_prefix": "sensor-data-node-",
            "last_round": round_summary(_round(7, nodes_in_round)),
        },
        "fog-1": {"units": [_unit("fl-fog.service")]},
        "fog-2": {"units": [_unit("fl-fog.service")]},
    }


FOG = {"fog-1": "1", "fog-2": "2"}


def test_a_healthy_deployment_has_no_problems() -> None:
    # Prepare
    statuses = _statuses(["1", "2"], ["sensor-data-node-1", "sensor-data-node-2"])
    # Execute
    found = problems(statuses, FOG)
    # Assert
    assert found == []


def test_problems_name_the_unit_the_topic_and_the_missing_node() -> None:
    # Prepare
    statuses = _statuses(["1"], ["sensor-data-node-1"])
    statuses["fog-2"]["units"] = [_unit("fl-fog.service", "failed", "disabled")]
    # Execute
    found = problems(statuses, FOG)
    # Assert
    assert found == [
        "fog-2 fl-fog.service is failed",
        "fog-2 fl-fog.service is not enabled at boot (disabled)",
        "fog node 2 (fog-2) has no topic sensor-data-node-2",
        "fog node 2 (fog-2) is not in the last round",
    ]


def test_checks_pick_what_strict_requires() -> None:
    # Prepare: node 2 has its topic but is not in the last round
    statuses = _statuses(["1"], ["sensor-data-node-1", "sensor-data-node-2"])
    # Execute
    units_and_topics = problems(statuses, FOG, ["units", "topics"])
    everything = problems(statuses, FOG)
    # Assert
    assert units_and_topics == []
    assert everything == ["fog node 2 (fog-2) is not in the last round"]


def test_the_topic_prefix_comes_from_the_reporting_host() -> None:
    # Prepare: a deployment that renamed its sensor topics
    statuses = _statuses(["1", "2"], ["plant-a-1", "plant-a-2"])
    statuses["cloud"]["sensor_topic_prefix"] = "plant-a-"
    # Execute
    found = problems(statuses, FOG)
    table = render_table(statuses, FOG)
    # Assert
    assert found == []
    assert "plant-a-2" in table and "MISSING" not in table


def test_no_cluster_report_is_a_problem() -> None:
    statuses = {"fog-1": {"units": [_unit("fl-fog.service")]}}
    assert problems(statuses, {"fog-1": "1"}) == [
        "no host reported the topics (fl status host --topics)"
    ]


def test_rounds_with_nodes_counts_only_later_rounds_with_every_node() -> None:
    # Prepare
    records = [
        _round(1, ["1", "2"], 10.0),
        _round(2, ["1"], 20.0),
        _round(3, ["1", "2", "3"], 30.0),
        _round(4, ["2", "1"], 40.0),
    ]
    # Execute / Assert
    assert rounds_with_nodes(records, ["1", "2"], after=0) == 3
    assert rounds_with_nodes(records, ["1", "2"], after=15) == 2
    assert rounds_with_nodes(records, ["3"], after=0) == 1


def test_fl_status_table_exits_1_in_strict_mode_with_problems(tmp_path: Path) -> None:
    # Prepare
    report = tmp_path / "status.json"
    report.write_text(json.dumps(_statuses(["1"], ["sensor-data-node-1"])), encoding="utf-8")
    args = ["status", "table", str(report), "--fog-node", "fog-1=1", "--fog-node", "fog-2=2"]
    # Execute
    relaxed = CliRunner().invoke(main, args)
    strict = CliRunner().invoke(main, [*args, "--strict"])
    topics_only = CliRunner().invoke(main, [*args, "--strict", "--check", "units"])
    # Assert
    assert relaxed.exit_code == 0, relaxed.output
    assert "sensor-data-node-2 (MISSING)" in relaxed.output
    assert strict.exit_code == 1
    assert "Problems: fog node 2 (fog-2) has no topic" in strict.output
    assert topics_only.exit_code == 0


def test_fl_status_rounds_reads_the_configured_log(tmp_path: Path) -> None:
    # Prepare
    log = tmp_path / "aggregation.jsonl"
    log.write_text(
        "".join(_round(n, ["1", "2"], 10.0 * n).to_json() + "\n" for n in (1, 2, 3)),
        encoding="utf-8",
    )
    config = tmp_path / "fl.toml"
    config.write_text(f'[aggregation]\nlog_path = "{log}"\n', encoding="utf-8")
    env = {"FL_CONFIG": str(config)}
    # Execute
    enough = CliRunner().invoke(main, ["status", "rounds", "--nodes", "1,2", "--min", "3"], env=env)
    later = CliRunner().invoke(
        main, ["status", "rounds", "--nodes", "1,2", "--after", "15", "--min", "3"], env=env
    )
    # Assert
    assert enough.exit_code == 0, enough.output
    assert json.loads(enough.output)["rounds_with_nodes"] == 3
    assert later.exit_code == 1
    assert json.loads(later.output)["rounds_with_nodes"] == 2


FIT = {
    "distribution": "Debian",
    "distribution_major_version": "12",
    "distribution_version": "12.8",
    "architecture": "aarch64",
    "memtotal_mb": 3800,
    "service_mgr": "systemd",
}


def test_a_pi_class_fog_host_is_fit() -> None:
    assert host_problems(FIT, ["fog", "mqtt_broker", "spark_worker"], 20 * 2**30) == []


def test_a_host_gets_every_problem_at_once() -> None:
    # Prepare
    facts = {**FIT, "distribution_major_version": "11", "distribution_version": "11.9"}
    facts |= {"architecture": "armv7l", "memtotal_mb": 900, "service_mgr": "sysvinit"}
    # Execute
    found = host_problems(facts, ["fog"], 1 * 2**30)
    # Assert
    assert found == [
        "Debian 11.9 is too old (need 12+)",
        "CPU architecture armv7l is not supported (need 64-bit: x86_64 or aarch64; "
        "32-bit Raspberry Pi OS will not do)",
        "memory 900 MiB is below the 1800 MiB its groups (fog) need",
        "free disk on / is 1.0 GiB, below the 6 GiB needed",
        "service manager is sysvinit, fedge needs systemd",
    ]


def test_a_host_needs_the_most_demanding_of_its_groups() -> None:
    assert needs(["devices"]) == REQUIREMENTS["devices"]
    assert needs(["devices", "cloud"]) == REQUIREMENTS["cloud"]
    assert needs([]) == REQUIREMENTS["all"]


def test_the_ansible_filter_is_the_same_check() -> None:
    # Prepare
    path = ROOT / "plugins" / "filter" / "fedge_hosts.py"
    spec = importlib.util.spec_from_file_location("fedge_hosts_filter", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Execute
    check = module.FilterModule().filters()["fedge_host_problems"]
    # Assert: Ansible hands the free bytes over as a string
    assert check(FIT, ["cloud"], str(5 * 2**30)) == host_problems(FIT, ["cloud"], 5 * 2**30)


def test_a_host_that_cannot_report_is_a_problem_whatever_the_checks() -> None:
    # Prepare
    statuses = _statuses(["1", "2"], ["sensor-data-node-1", "sensor-data-node-2"])
    statuses["fog-2"] = {"error": "fl: command not found"}
    # Execute
    found = problems(statuses, FOG, ["topics"])
    # Assert
    assert found == ["fog-2 could not report: fl: command not found"]
