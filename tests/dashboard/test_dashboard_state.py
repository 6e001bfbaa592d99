"""Following the aggregation log: absent file, appends, torn lines, replacement."""

from __future__ import annotations

import os
from pathlib import Path

from fl_runtime.cloud.agglog import AggregationLog, RoundRecord
from fl_runtime.dashboard.state import DashboardSettings, DashboardState, LogFollower
from fl_runtime.report.synthetic import synthetic_records


def _records(n: int, first: int = 1) -> list[RoundRecord]:
    return list(
        synthetic_records(rounds=n, nodes=4, seed=first, first_round=first, end=1_000_000.0)
    )


def test_follower_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "later" / "agg.jsonl"
    follower = LogFollower(path)

    assert follower.poll().records == []

    AggregationLog(path).append(_records(1)[0])
    assert [r.round for r in follower.poll().records] == [1]


def test_follower_reads_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "agg.jsonl"
    log, records = AggregationLog(path), _records(5)
    for r in records[:3]:
        log.append(r)
    follower = LogFollower(path)

    first = follower.poll()
    idle = follower.poll()
    for r in records[3:]:
        log.append(r)
    second = follower.poll()

    assert [r.round for r in first.records] == [1, 2, 3]
    assert idle.records == [] and not idle.reset
    assert [r.round for r in second.records] == [4, 5] and not second.reset


def test_follower_waits_for_a_line_still_being_written(tmp_path: Path) -> None:
    path = tmp_path / "agg.jsonl"
    line = _records(1)[0].to_json()
    path.write_text(line[:40])
    follower = LogFollower(path)

    assert follower.poll().records == []
    with path.open("a") as fh:
        fh.write(line[40:] + "\n")
    assert [r.round for r in follower.poll().records] == [1]


def test_follower_starts_over_when_the_log_is_truncated_or_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agg.jsonl"
    log = AggregationLog(path)
    for r in _records(3):
        log.append(r)
    follower = LogFollower(path)
    follower.poll()

    path.write_text("")
    log.append(_records(1, first=1)[0])
    truncated = follower.poll()
    fresh = tmp_path / "new.jsonl"
    for r in _records(2, first=7):
        AggregationLog(fresh).append(r)
    os.replace(fresh, path)
    replaced = follower.poll()

    assert truncated.reset and [r.round for r in truncated.records] == [1]
    assert replaced.reset and [r.round for r in replaced.records] == [7, 8]


def test_state_keeps_bounded_history_but_tallies_everything(tmp_path: Path) -> None:
    state = DashboardState(DashboardSettings(log_path=tmp_path / "x", history=10))

    state.ingest(_records(25))

    assert state.total == 25 and len(state.records) == 10
    assert [seq for seq, _ in state.newest(3)] == [22, 23, 24]
    assert [seq for seq, _ in state.after(20, 2)] == [21, 22]
    assert [seq for seq, _ in state.after(3, 2)] == [15, 16]  # older ones were dropped
    assert state.after(24, 5) == []
    assert sum(t.accepted + t.rejected for t in state.tallies.values()) == sum(
        len(r.participants) + len(r.discarded) for r in _records(25)
    )


def test_state_reset_bumps_the_epoch(tmp_path: Path) -> None:
    state = DashboardState(DashboardSettings(log_path=tmp_path / "x"))
    state.ingest(_records(3))

    state.reset()

    assert (state.epoch, state.total, state.latest, state.tallies) == (1, 0, None, {})
