"""Per-device score summaries: what the dashboard's sparklines and the report's
detection quality read, with no raw reading in them."""

from __future__ import annotations

from dataclasses import dataclass

from fl_runtime.core.detections import ScoreSummary


@dataclass
class SummaryAccumulator:
    """Scores of one device since the last summary."""

    device_id: str
    node_id: str
    window_start: float
    n: int = 0
    total: float = 0.0
    max_score: float = 0.0
    over: int = 0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, score: float, over: bool, label: int | None) -> None:
        self.n += 1
        self.total += score
        self.max_score = max(self.max_score, score)
        self.over += over
        if label is None:
            return
        if label:
            self.tp += over
            self.fn += not over
        else:
            self.fp += over
            self.tn += not over

    def flush(
        self, now: float, *, threshold: float, model_version: int, alert_active: bool
    ) -> ScoreSummary | None:
        """The summary of the interval ending ``now`` (None if nothing was scored),
        and a fresh interval from ``now``."""
        summary = None
        if self.n:
            summary = ScoreSummary(
                device_id=self.device_id,
                node_id=self.node_id,
                window_start=self.window_start,
                window_end=max(now, self.window_start),
                n=self.n,
                mean_score=min(self.total / self.n, 1.0),
                max_score=self.max_score,
                over=self.over,
                threshold=threshold,
                model_version=model_version,
                alert_active=alert_active,
                tp=self.tp,
                fp=self.fp,
                tn=self.tn,
                fn=self.fn,
            )
        fresh = SummaryAccumulator(self.device_id, self.node_id, now)
        self.__dict__.update(fresh.__dict__)
        return summary
