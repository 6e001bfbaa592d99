import json
from pathlib import Path

from fl_runtime.cloud.agglog import (
    AggregationLog,
    Discarded,
    Participant,
    RoundRecord,
    iter_log,
    read_log,
)


def record(r: int) -> RoundRecord:
    return RoundRecord(
        round=r,
        global_version=r,
        mode="batch",
        strategy="fedavg",
        started_at=1.8e9 + r,
        finished_at=1.8e9 + r + 0.01,
        participants=[
            Participant("1", 100, 1.5, 0, r - 1, 0.3, "u1"),
            Participant("2", 300, 2.0, 1, r - 2, None, "u2"),
        ],
        discarded=[Discarded("3", "stale", "age 200 s > MAX_WEIGHT_AGE 120 s", "u3")],
        global_loss=0.25,
        global_f1=float("nan"),
        eval_n=40,
        eval_version=r - 1,
        timings={"aggregate_ms": 0.4},
    )


def test_one_json_object_per_round(tmp_path: Path) -> None:
    log = AggregationLog(tmp_path / "sub" / "agg.jsonl")
    log.append(record(1))
    log.append(record(2))
    lines = (tmp_path / "sub" / "agg.jsonl").read_text().splitlines()
    assert len(lines) == 2
    doc = json.loads(lines[0])
    assert doc["schema"] == "fl-agglog/1"
    assert doc["n_total"] == 400
    assert doc["global_f1"] is None  # NaN is stored as null
    assert doc["participants"][1]["staleness_versions"] == 1
    assert doc["discarded"][0]["reason"] == "stale"
    back = read_log(log.path)
    assert [r.round for r in back] == [1, 2]
    assert back[0].participants == record(1).participants
    assert log.last() is not None and log.last().round == 2  # type: ignore[union-attr]


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "agg.jsonl"
    path.write_text(
        record(1).to_json()
        + "\n"
        + '{"schema": "fl-agglog/9"}\n'
        + "garbage\n"
        + record(2).to_json()[:30]
    )
    assert [r.round for r in read_log(path)] == [1]


def test_following_by_offset(tmp_path: Path) -> None:
    path = tmp_path / "agg.jsonl"
    assert read_log(path) == []
    log = AggregationLog(path)
    log.append(record(1))
    offset, first = next(iter_log(path))
    log.append(record(2))
    assert [r.round for _, r in iter_log(path, offset=offset)] == [2]
    assert first.round == 1
