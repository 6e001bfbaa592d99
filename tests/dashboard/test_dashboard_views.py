"""Node status, bridge health and the health summary from the log and a Kafka snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_runtime.cloud.agglog import Participant, RoundRecord
from fl_runtime.dashboard.kafka_source import DISABLED, KafkaSnapshot
from fl_runtime.dashboard.state import DashboardSettings, DashboardState
from fl_runtime.dashboard.views import health_out, node_status, nodes_out, rounds_out

NOW = 10_000.0


def _state(tmp_path: Path, finished_at: dict[str, float]) -> DashboardState:
    state = DashboardState(
        DashboardSettings(
            log_path=tmp_path / "agg.jsonl", max_weight_age_s=100.0, bridge_idle_s=60.0
        )
    )
    for i, (node, at) in enumerate(sorted(finished_at.items(), key=lambda kv: kv[1])):
        state.ingest(
            [
                RoundRecord(
                    round=i + 1,
                    global_version=i + 1,
                    mode="batch",
                    strategy="fedavg",
                    started_at=at - 1,
                    finished_at=at,
                    participants=[Participant(node, 50, 1.0, 0, i)],
                )
            ]
        )
    return state


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (0.0, "active"),
        (100.0, "active"),
        (100.1, "late"),
        (300.0, "late"),
        (300.1, "silent"),
        (None, "silent"),
    ],
)
def test_node_status_follows_max_weight_age(age: float | None, status: str) -> None:
    assert node_status(age, 100.0) == status


def test_nodes_merge_log_and_kafka(tmp_path: Path) -> None:
    state = _state(tmp_path, {"1": NOW - 10, "2": NOW - 5})
    kafka = KafkaSnapshot(
        status="ok",
        topics=frozenset({"sensor-data-node-9"}),
        dead_letters={"2": {"schema": 3}, "": {"garbage": 2}},
    )

    out = nodes_out(state, kafka, NOW)

    by_id = {n.node_id: n for n in out.nodes}
    assert list(by_id) == ["1", "2", "9"]  # node 9 only has a sensor topic so far
    assert by_id["2"].samples_this_round == 50 and by_id["1"].samples_this_round == 0
    assert by_id["2"].dead_letters == 3 and by_id["2"].dead_letter_reasons == {"schema": 3}
    assert by_id["1"].dead_letters == 0 and by_id["9"].status == "silent"
    assert out.dead_letters_unattributed == 2 and out.latest_round == 2


def test_dead_letters_are_unknown_while_kafka_is_not_readable(tmp_path: Path) -> None:
    out = nodes_out(_state(tmp_path, {"1": NOW}), DISABLED, NOW)

    assert out.nodes[0].dead_letters is None and out.dead_letters_unattributed is None


def test_health_reports_bridges_from_topic_growth(tmp_path: Path) -> None:
    state = _state(tmp_path, {"1": NOW - 1, "2": NOW - 1, "3": NOW - 1, "4": NOW - 1})
    topics = {f"sensor-data-node-{i}" for i in (1, 2, 3)}
    kafka = KafkaSnapshot(
        status="ok",
        topics=frozenset(topics),
        end_offsets=dict.fromkeys(topics, 10),
        first_seen={
            "sensor-data-node-1": NOW - 500,
            "sensor-data-node-2": NOW - 500,
            "sensor-data-node-3": NOW - 5,
        },
        last_growth={"sensor-data-node-1": NOW - 2, "sensor-data-node-2": NOW - 400},
    )

    health = health_out(state, kafka, NOW, log_exists=True)

    assert {b.node_id: b.status for b in health.bridges} == {
        "1": "forwarding",
        "2": "idle",
        "3": "unknown",
        "4": "missing",
    }
    assert health.status == "degraded"
    assert health.problems == ["bridge of node 2 idle", "bridge of node 4 missing"]


def test_health_says_kafka_unreachable_and_log_stalled(tmp_path: Path) -> None:
    state = _state(tmp_path, {"1": NOW - 1000})
    kafka = KafkaSnapshot(status="unreachable", detail="Broker transport failure")

    health = health_out(state, kafka, NOW, log_exists=True)

    assert health.kafka.status == "unreachable" and health.log.status == "stalled"
    assert health.problems[0] == "Kafka unreachable: Broker transport failure"
    assert [b.status for b in health.bridges] == ["unknown"]
    assert health.fog_nodes.silent == 1


def test_health_of_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    state = DashboardState(DashboardSettings(log_path=tmp_path / "none.jsonl"))

    health = health_out(state, DISABLED, NOW, log_exists=False)

    assert (health.log.exists, health.log.status, health.log.rounds) == (False, "waiting", 0)


def test_rounds_out_carries_seq_and_duration(tmp_path: Path) -> None:
    state = _state(tmp_path, {"1": NOW - 10, "2": NOW})

    out = rounds_out(state, state.newest(5))

    assert [(r.seq, r.round) for r in out.rounds] == [(0, 1), (1, 2)]
    assert out.rounds[0].duration_s == 1.0 and (out.oldest_seq, out.latest_seq) == (0, 1)
