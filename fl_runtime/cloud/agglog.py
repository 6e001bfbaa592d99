"""The aggregation log: one JSON object per line per round.

The aggregator appends a :class:`RoundRecord` after every round; the dashboard,
``fl monitor`` and ``fl report`` read them back. Lines are self-describing
(``schema``) so readers can skip records from a newer writer with a warning
instead of crashing, and a torn last line (a crash mid-write) is ignored.

Record fields (schema ``fl-agglog/1``)::

    schema            "fl-agglog/1"
    round             int, 1-based round counter
    global_version    int, version of the global model this round produced
    mode              "batch" | "async" | "simulation"
    strategy          batch mode: AGGREGATION_STRATEGY ("fedavg" | "median" |
                      "trimmed-mean" | "fedprox" | "fedavgm" | "fedadam" |
                      "scaffold"); async mode: "fedbuff" (whatever strategy it runs)
    started_at        float, unix seconds
    finished_at       float, unix seconds
    participants      [{node_id, n_samples, staleness_s, staleness_versions,
                        base_version, local_loss, update_id}]
    discarded         [{node_id, reason, detail, update_id}]
    n_total           int, sum of participants' n_samples
    global_loss       float | null, federated-evaluation log-loss
    global_f1         float | null
    global_precision, global_recall, global_accuracy: float | null
    eval_n            int, held-out samples behind the metrics
    eval_version      int | null, the global version those samples evaluated
    timings           {aggregate_ms, publish_ms, round_wall_s}

Detection fields (issue #11; absent from older lines, read as null)::

    threshold             float | null, the alert threshold published with this
                          round's global model (scores >= it are anomalies)
    threshold_source      "learned" (from this round's pooled score histograms of
                          eval_version) | "carried" (none this round: the last
                          learned one) | null (none learned yet)
    threshold_precision, threshold_recall, threshold_f1: float | null, of the
                          pooled held-out data at the threshold (learned rounds only)
    threshold_target_met  bool | null, false when no threshold met
                          DETECTION_TARGET_PRECISION and max F1 was used instead
    pr_auc                float | null, average precision from the same histograms
    fixed_threshold       float | null, DETECTION_THRESHOLD when set: the scorers
                          apply it instead of the learned one

Readers ignore fields they do not know, so a newer writer's additions never make
an older reader skip a line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fl_runtime.core.evaluation import GlobalMetrics
    from fl_runtime.core.strategy import RoundOutcome
    from fl_runtime.core.threshold import LearnedThreshold

SCHEMA = "fl-agglog/1"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Participant:
    node_id: str
    n_samples: int
    staleness_s: float
    staleness_versions: int
    base_version: int
    local_loss: float | None = None
    update_id: str = ""


@dataclass(frozen=True)
class Discarded:
    node_id: str
    reason: str
    detail: str
    update_id: str = ""


@dataclass(frozen=True)
class RoundRecord:
    round: int
    global_version: int
    mode: str
    strategy: str
    started_at: float
    finished_at: float
    participants: list[Participant]
    discarded: list[Discarded] = field(default_factory=list)
    global_loss: float | None = None
    global_f1: float | None = None
    global_precision: float | None = None
    global_recall: float | None = None
    global_accuracy: float | None = None
    eval_n: int = 0
    eval_version: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    threshold_source: str | None = None
    threshold_precision: float | None = None
    threshold_recall: float | None = None
    threshold_f1: float | None = None
    threshold_target_met: bool | None = None
    pr_auc: float | None = None
    fixed_threshold: float | None = None

    @property
    def n_total(self) -> int:
        return sum(p.n_samples for p in self.participants)

    @property
    def node_ids(self) -> list[str]:
        return [p.node_id for p in self.participants]

    def to_json(self) -> str:
        doc: dict[str, Any] = {"schema": SCHEMA, **asdict(self), "n_total": self.n_total}
        return json.dumps(_finite(doc), separators=(",", ":"), sort_keys=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RoundRecord:
        known = {f.name for f in fields(cls)}
        body = {k: v for k, v in doc.items() if k in known}
        body["participants"] = [Participant(**p) for p in body.get("participants", [])]
        body["discarded"] = [Discarded(**d) for d in body.get("discarded", [])]
        return cls(**body)


def _finite(value: Any) -> Any:
    """JSON has no NaN: store non-finite floats as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class AggregationLog:
    """Append-only writer. Each record is one ``write`` + ``fsync`` so a reader never
    sees half a round, and a crash loses at most the round being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: RoundRecord) -> None:
        line = (record.to_json() + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def last(self) -> RoundRecord | None:
        records = read_log(self.path)
        return records[-1] if records else None


def iter_log(path: str | Path, *, offset: int = 0) -> Iterator[tuple[int, RoundRecord]]:
    """Yield ``(end_offset, record)`` from ``offset`` on; readers that follow the file
    (the dashboard) keep the offset. A torn or foreign line is skipped with a warning."""
    p = Path(path)
    if not p.exists():
        return
    with p.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            if not raw.endswith(b"\n"):
                return  # a line still being written
            offset += len(raw)
            record = _parse_line(raw, p)
            if record is not None:
                yield offset, record


def _parse_line(raw: bytes, path: Path) -> RoundRecord | None:
    try:
        doc = json.loads(raw)
        if doc.get("schema") != SCHEMA:
            log.warning("skipping a record of schema %r in %s", doc.get("schema"), path)
            return None
        return RoundRecord.from_dict(doc)
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("skipping an unreadable line in %s: %s", path, exc)
        return None


def read_log(path: str | Path) -> list[RoundRecord]:
    """Every readable record of the log, oldest first."""
    return [record for _, record in iter_log(path)]


def round_record(
    outcome: RoundOutcome,
    metrics: GlobalMetrics,
    *,
    round_no: int,
    mode: str,
    strategy: str,
    started_at: float,
    eval_version: int | None,
    timings: dict[str, float] | None = None,
    threshold: LearnedThreshold | None = None,
    fixed_threshold: float | None = None,
) -> RoundRecord:
    """The log record of one aggregation outcome, its federated metrics and the
    alert threshold published with it."""
    choice = threshold.choice if threshold is not None else None
    return RoundRecord(
        round=round_no,
        global_version=outcome.version,
        mode=mode,
        strategy=strategy,
        started_at=started_at,
        finished_at=time.time(),
        participants=[
            Participant(
                p.update.node_id,
                p.update.n_samples,
                round(p.staleness_s, 3),
                p.staleness_versions,
                p.update.base_version,
                p.update.local_loss,
                p.update.update_id,
            )
            for p in outcome.participants
        ],
        discarded=[
            Discarded(d.node_id, d.reason, d.detail, d.update_id) for d in outcome.discarded
        ],
        global_loss=metrics.loss,
        global_f1=metrics.f1,
        global_precision=metrics.precision,
        global_recall=metrics.recall,
        global_accuracy=metrics.accuracy,
        eval_n=metrics.n,
        eval_version=eval_version,
        timings=timings or {},
        threshold=threshold.threshold if threshold is not None else None,
        threshold_source=threshold.source if threshold is not None else None,
        threshold_precision=choice.precision if choice else None,
        threshold_recall=choice.recall if choice else None,
        threshold_f1=choice.f1 if choice else None,
        threshold_target_met=choice.target_met if choice else None,
        pr_auc=threshold.pr_auc if threshold is not None else None,
        fixed_threshold=fixed_threshold,
    )
