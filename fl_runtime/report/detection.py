"""Detection quality from anomaly records (``fl anomalies export``), for ``fl report``.

Pure functions: no matplotlib, no clock. Precision and recall come from the score
summaries' confusion counts of *labelled* readings at the threshold then in force,
summed per time bin, pooled over devices and per fog node. A bin without a labelled
positive (or a positive call) has no recall (or precision), rather than a made-up 0.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fl_runtime.core.detections import (
    RAISED,
    AlertChange,
    AnomalyRecord,
    Detection,
    ScoreSummary,
    decode_anomaly_record,
)
from fl_runtime.errors import ValidationError
from fl_runtime.report.stats import natural_key

MAX_BINS = 60


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, s: ScoreSummary) -> None:
        self.tp, self.fp, self.tn, self.fn = (
            self.tp + s.tp,
            self.fp + s.fp,
            self.tn + s.tn,
            self.fn + s.fn,
        )

    @property
    def labelled(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass(frozen=True)
class AlertRow:
    """One alert: its raise and, when it was seen, its clear."""

    alert_id: str
    device_id: str
    node_id: str
    raised_at: float | None
    raised_score: float | None
    cleared_at: float | None
    cleared_score: float | None
    model_version: int

    @property
    def duration_s(self) -> float | None:
        if self.raised_at is None or self.cleared_at is None:
            return None
        return self.cleared_at - self.raised_at


@dataclass(frozen=True)
class DetectionSummary:
    """What the report's "Detection quality" section shows. ``bins`` are the bin end
    times; ``pooled`` and each of ``per_node`` hold one :class:`Confusion` per bin."""

    start: float
    bin_s: float
    bins: list[float]
    pooled: list[Confusion]
    per_node: dict[str, list[Confusion]]
    total: Confusion
    alerts: list[AlertRow]  # newest raise first
    alerts_by_device: list[tuple[str, str, int]]  # (device, node, raised), most first
    devices: int
    readings: int
    detections: int
    summaries: int
    invalid: dict[str, int] = field(default_factory=dict)


def read_anomalies(path: str | Path) -> tuple[list[AnomalyRecord], Counter[str]]:
    """The valid records of a JSON-lines file, and the invalid lines counted by reason."""
    records: list[AnomalyRecord] = []
    invalid: Counter[str] = Counter()
    with open(path, "rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                records.append(decode_anomaly_record(line.strip()))
            except ValidationError as exc:
                invalid[exc.reason] += 1
    return records, invalid


def summarise_detection(
    records: Sequence[AnomalyRecord],
    *,
    invalid: dict[str, int] | None = None,
    max_bins: int = MAX_BINS,
) -> DetectionSummary | None:
    """The section's figures; None when there is no record to summarise."""
    summaries = [r for r in records if isinstance(r, ScoreSummary)]
    times = [_time(r) for r in records]
    if not times:
        return None
    start = min([r.window_start for r in summaries] + times)
    end = max(times)
    interval = _median([s.window_end - s.window_start for s in summaries]) or 1.0
    bin_s = max(interval, (end - start) / max_bins, 1e-6)
    n_bins = max(1, math.ceil((end - start) / bin_s))
    pooled = [Confusion() for _ in range(n_bins)]
    per_node: defaultdict[str, list[Confusion]] = defaultdict(
        lambda: [Confusion() for _ in range(n_bins)]
    )
    total = Confusion()
    for s in summaries:
        k = min(n_bins - 1, int((s.window_end - start) / bin_s - 1e-9))
        pooled[k].add(s)
        per_node[s.node_id][k].add(s)
        total.add(s)
    alerts = alert_rows(r for r in records if isinstance(r, AlertChange))
    return DetectionSummary(
        start=start,
        bin_s=bin_s,
        bins=[start + (k + 1) * bin_s for k in range(n_bins)],
        pooled=pooled,
        per_node=dict(sorted(per_node.items(), key=lambda kv: natural_key(kv[0]))),
        total=total,
        alerts=alerts,
        alerts_by_device=_by_device(records, alerts),
        devices=len({r.device_id for r in records}),
        readings=sum(s.n for s in summaries),
        detections=sum(isinstance(r, Detection) for r in records),
        summaries=len(summaries),
        invalid=dict(invalid or {}),
    )


def alert_rows(changes: Iterable[AlertChange]) -> list[AlertRow]:
    """Pair each alert's raise with its clear by ``alert_id``; newest raise first."""
    rows: dict[str, AlertRow] = {}
    for c in changes:
        row = rows.get(c.alert_id) or AlertRow(
            c.alert_id, c.device_id, c.node_id, None, None, None, None, c.model_version
        )
        if c.state == RAISED:
            row = AlertRow(
                c.alert_id,
                c.device_id,
                c.node_id,
                c.detection_time,
                c.score,
                row.cleared_at,
                row.cleared_score,
                c.model_version,
            )
        else:
            row = AlertRow(
                row.alert_id,
                row.device_id,
                row.node_id,
                row.raised_at,
                row.raised_score,
                c.detection_time,
                c.score,
                row.model_version,
            )
        rows[c.alert_id] = row
    return sorted(rows.values(), key=lambda r: -(r.raised_at or r.cleared_at or 0.0))


def _by_device(
    records: Sequence[AnomalyRecord], alerts: Sequence[AlertRow]
) -> list[tuple[str, str, int]]:
    nodes = {r.device_id: r.node_id for r in records}
    raised = Counter(a.device_id for a in alerts if a.raised_at is not None)
    return sorted(
        ((d, nodes[d], n) for d, n in raised.items()),
        key=lambda row: (-row[2], natural_key(row[0])),
    )


def _time(r: AnomalyRecord) -> float:
    return r.window_end if isinstance(r, ScoreSummary) else r.detection_time


def _median(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
