import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fl_runtime.cloud.agglog import (
    AggregationLog,
    Discarded,
    Participant,
    RoundRecord,
    iter_log,
    read_log,
    round_record,
)
from fl_runtime.core.evaluation import global_metrics
from fl_runtime.core.strategy import RoundOutcome
from fl_runtime.core.threshold import learn_threshold


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


def test_threshold_fields_round_trip_and_old_lines_still_read(tmp_path: Path) -> None:
    path = tmp_path / "agg.jsonl"
    old = json.loads(record(1).to_json())
    for name in [k for k in old if k.startswith("threshold") or k in ("pr_auc", "fixed_threshold")]:
        del old[name]  # a line written before #11
    newer = {**json.loads(record(3).to_json()), "some_future_field": [1, 2]}
    learned = replace(record(2), global_f1=0.8, threshold=0.37, threshold_source="learned")
    learned = replace(learned, threshold_f1=0.9, threshold_target_met=True, pr_auc=0.95)
    learned = replace(learned, fixed_threshold=0.5)
    path.write_text(json.dumps(old) + "\n" + learned.to_json() + "\n" + json.dumps(newer) + "\n")
    back = read_log(path)
    assert [r.round for r in back] == [1, 2, 3]
    assert back[0].threshold is None and back[0].threshold_source is None
    assert back[1] == learned


def test_round_record_carries_the_learned_threshold() -> None:
    pos, neg = [0] * 100, [0] * 100
    pos[80], neg[10], neg[60] = 10, 80, 2
    learned = learn_threshold([(pos, neg)], previous=0.5)
    rec = round_record(
        _outcome(),
        global_metrics([]),
        round_no=4,
        mode="batch",
        strategy="fedavg",
        started_at=1.8e9,
        eval_version=3,
        threshold=learned,
        fixed_threshold=None,
    )
    assert rec.threshold == 0.61 and rec.threshold_source == "learned"
    assert rec.threshold_precision == 1.0 and rec.threshold_recall == 1.0
    assert rec.threshold_f1 == 1.0 and rec.threshold_target_met and rec.pr_auc == 1.0
    carried = learn_threshold([], previous=0.61)
    assert (carried.threshold, carried.source, carried.choice) == (0.61, "carried", None)
    assert learn_threshold([]).source is None


def _outcome() -> RoundOutcome:
    return RoundOutcome(weights=np.zeros(6), version=4, participants=[])
