"""Per-node tallies, participation and fault summaries over aggregation-log records."""

from __future__ import annotations

from pathlib import Path

from fl_runtime.cloud.agglog import Discarded, Participant, RoundRecord, read_log
from fl_runtime.report.stats import (
    ABSENT,
    ACCEPTED,
    DISCARDED,
    fault_summary,
    participation_matrix,
    sorted_nodes,
    tally_nodes,
)
from fl_runtime.report.synthetic import write_synthetic_log


def _round(
    r: int,
    accepted: dict[str, int],
    rejected: dict[str, str] | None = None,
    loss: float | None = 0.5,
) -> RoundRecord:
    return RoundRecord(
        round=r,
        global_version=r,
        mode="batch",
        strategy="fedavg",
        started_at=100.0 * r,
        finished_at=100.0 * r + 1.5,
        participants=[
            Participant(
                n, k, staleness_s=2.0, staleness_versions=0, base_version=r - 1, local_loss=0.4
            )
            for n, k in accepted.items()
        ],
        discarded=[Discarded(n, why, "detail") for n, why in (rejected or {}).items()],
        global_loss=loss,
        global_f1=None if loss is None else 0.8,
    )


def test_tally_counts_accepted_rejected_and_samples() -> None:
    records = [
        _round(1, {"a": 10, "b": 5}),
        _round(2, {"a": 7}, {"b": "stale"}),
        _round(3, {"b": 4}, {"a": "norm"}),
    ]

    tallies = tally_nodes(records)

    a, b = tallies["a"], tallies["b"]
    assert (a.accepted, a.rejected, a.total_samples) == (2, 1, 17)
    assert dict(a.rejected_by_reason) == {"norm": 1}
    assert (a.last_round, a.last_outcome, a.last_seen) == (3, "norm", 301.5)
    assert a.last_n_samples == 0 and a.last_local_loss == 0.4
    assert (b.accepted, b.rejected, b.total_samples, b.last_outcome) == (2, 1, 9, "accepted")
    assert b.first_round == 1 and b.mean_staleness_s == 2.0


def test_participation_matrix_marks_each_cell() -> None:
    records = [_round(1, {"a": 1}), _round(2, {}, {"a": "stale"}), _round(3, {"b": 1})]

    matrix = participation_matrix(records, ["a", "b"])

    assert matrix == [[ACCEPTED, DISCARDED, ABSENT], [ABSENT, ABSENT, ACCEPTED]]


def test_participation_matrix_leaves_missing_rounds_absent() -> None:
    records = [_round(1, {"a": 1}), _round(4, {"a": 1})]

    matrix = participation_matrix(records, ["a"], columns=[0, 3], width=4)

    assert matrix == [[ACCEPTED, ABSENT, ABSENT, ACCEPTED]]


def test_fault_summary_finds_gaps_restarts_dropouts_and_reasons() -> None:
    records = [
        _round(1, {"a": 1, "gone": 1}),
        _round(2, {"a": 1}, {"b": "stale"}),
        _round(5, {"a": 1}, loss=None),
        *[_round(r, {"a": 1}) for r in range(6, 12)],
        _round(1, {"a": 1}, {"b": "stale", "c": "norm"}),
    ]

    summary = fault_summary(records, dropout_rounds=5)

    assert summary.missing_rounds == [3, 4]
    assert summary.restarts == 1
    assert summary.rounds_without_metrics == [5]
    assert summary.rejections_by_reason == [("stale", 2), ("norm", 1)]
    assert summary.rejections_by_node == [("b", 2), ("c", 1)]
    assert summary.dropped_nodes == [("gone", 1)]
    assert summary.min_participants == 1


def test_nodes_sort_naturally() -> None:
    assert sorted_nodes(["10", "2", "node-11", "node-3", "1"]) == [
        "1",
        "2",
        "10",
        "node-3",
        "node-11",
    ]


def test_synthetic_log_is_a_real_aggregation_log(tmp_path: Path) -> None:
    path = tmp_path / "agg.jsonl"

    written = write_synthetic_log(path, rounds=40, nodes=10, seed=5, end=1_000_000.0)

    assert read_log(path) == written
    assert [r.round for r in written] == list(range(1, 41))
    assert written[-1].started_at == 1_000_000.0 - 10.0 < written[-1].finished_at < 1_000_000.0
    assert any(r.discarded for r in written)
    assert {p.node_id for r in written for p in r.participants} == {str(i) for i in range(1, 11)}
