"""Federated evaluation: nodes report counts, the aggregator adds them up.

A node evaluates the current global model on its local held-out slice and sends
only ``(tp, fp, tn, fn, loss_sum, n)``. Summing counts gives exactly the metrics
the pooled held-out data would give, and no raw reading leaves its node.
The same holds for the per-class score histograms it adds, from which the alert
threshold is learned (:mod:`fl_runtime.core.threshold`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fl_runtime.core.model import Confusion


@dataclass(frozen=True)
class GlobalMetrics:
    loss: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    accuracy: float | None
    n: int


EMPTY = GlobalMetrics(None, None, None, None, None, 0)


def combine(counts: Iterable[Confusion]) -> Confusion:
    total = Confusion(0, 0, 0, 0, 0.0, 0)
    for c in counts:
        total = total + c
    return total


def global_metrics(counts: Iterable[Confusion]) -> GlobalMetrics:
    """Pooled metrics from per-node counts; :data:`EMPTY` when nobody evaluated."""
    total = combine(counts)
    if total.n == 0:
        return EMPTY
    return GlobalMetrics(
        total.loss, total.f1, total.precision, total.recall, total.accuracy, total.n
    )
