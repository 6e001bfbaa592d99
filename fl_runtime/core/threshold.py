"""The alert threshold, learned from federated score histograms.

Each node scores its held-out slice with the global model and reports two
histograms of ``P(anomaly)`` over :data:`SCORE_BINS` equal bins on ``[0, 1]``: one
for labelled anomalies, one for labelled normal readings. Histograms add up, so the
aggregator sums them and chooses the threshold here, from counts alone; no score or
reading leaves its node.

Candidate thresholds are the bin edges ``i / SCORE_BINS``: a reading is flagged when
its score is ``>= threshold``, so at edge ``i`` every score in bins ``i..`` is flagged.
Because bins are defined by the same edges, the threshold chosen from pooled
histograms flags exactly what it would flag on the pooled scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fl_runtime.core.messages import SCORE_BINS
from fl_runtime.core.model import Confusion

Histogram = Sequence[int]


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and the quality of the pooled held-out data at it."""

    threshold: float
    precision: float
    recall: float
    f1: float
    n_pos: int
    n_neg: int
    target_met: bool = True  # False: no edge met the target precision; this is max F1


# The bin edges 0, 1/SCORE_BINS, ..., 1 as float64, computed as i / SCORE_BINS: the
# same numbers a scorer compares with (``score >= threshold``).
EDGES = np.arange(SCORE_BINS + 1) / SCORE_BINS


def bin_of(scores: np.ndarray) -> np.ndarray:
    """The bin index of each score: the number of inner edges at or below it, so a
    score exactly on an edge opens the next bin (the last bin includes 1.0)."""
    return np.searchsorted(EDGES[1:-1], np.asarray(scores, dtype=np.float64), side="right")


def score_histogram(scores: np.ndarray, labels: np.ndarray) -> tuple[list[int], list[int]]:
    """Per-class histograms ``(pos, neg)`` of ``scores`` for 0/1 ``labels``."""
    bins = bin_of(scores)
    truth = np.asarray(labels).astype(bool)
    pos = np.bincount(bins[truth], minlength=SCORE_BINS)
    neg = np.bincount(bins[~truth], minlength=SCORE_BINS)
    return pos.tolist(), neg.tolist()


def add_histograms(hists: Iterable[Histogram]) -> list[int] | None:
    """The bin-wise sum; None when there are none."""
    total: np.ndarray | None = None
    for h in hists:
        counts = np.asarray(h, dtype=np.int64)
        total = counts if total is None else total + counts
    return None if total is None else total.tolist()


def _flagged(hist: Histogram) -> np.ndarray:
    """``out[i]``: readings flagged at edge ``i / SCORE_BINS``, for i in 0..SCORE_BINS.
    Edge SCORE_BINS (1.0) is taken to flag nothing (the last bin is closed at 1.0,
    but a threshold of 1.0 is never a useful alert threshold)."""
    counts = np.asarray(hist, dtype=np.int64)
    tail = np.cumsum(counts[::-1])[::-1]
    return np.append(tail, 0)


def confusion_at(pos: Histogram, neg: Histogram, threshold: float) -> Confusion:
    """Counts when flagging scores ``>= threshold``, with ``threshold`` moved up to the
    first bin edge at or above it (exact for edges; ``loss_sum`` is 0: unknown)."""
    edge = int(np.searchsorted(EDGES, threshold, side="left"))
    edge = min(edge, SCORE_BINS)
    tp = int(_flagged(pos)[edge])
    fp = int(_flagged(neg)[edge])
    n_pos, n_neg = int(sum(pos)), int(sum(neg))
    return Confusion(tp, fp, n_neg - fp, n_pos - tp, 0.0, n_pos + n_neg)


def _curves(pos: Histogram, neg: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 at every edge 0..SCORE_BINS."""
    tp = _flagged(pos).astype(np.float64)
    fp = _flagged(neg).astype(np.float64)
    n_pos = tp[0]
    flagged = tp + fp
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    recall = tp / n_pos if n_pos else np.zeros_like(tp)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def choose_threshold(
    pos: Histogram, neg: Histogram, target_precision: float = 0.0
) -> ThresholdChoice | None:
    """The edge maximising F1 (ties: the lowest), or with ``target_precision`` > 0 the
    lowest edge whose precision meets it; when none does, the max-F1 edge with
    ``target_met=False``. None when either class has no readings."""
    n_pos, n_neg = int(sum(pos)), int(sum(neg))
    if n_pos == 0 or n_neg == 0:
        return None
    precision, recall, f1 = _curves(pos, neg)
    best, met = _pick_edge(precision, recall, f1, target_precision)
    return ThresholdChoice(
        threshold=float(EDGES[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
        f1=float(f1[best]),
        n_pos=n_pos,
        n_neg=n_neg,
        target_met=met,
    )


_TIE = 1e-12


def _pick_edge(
    precision: np.ndarray, recall: np.ndarray, f1: np.ndarray, target_precision: float
) -> tuple[int, bool]:
    """``(edge, target_met)``; the top edge (1.0) flags nothing and is never picked.
    F1 values within :data:`_TIE` of the best count as ties (the lowest edge wins),
    so rounding in how F1 is computed never decides between equal edges."""
    candidates = f1[:-1]
    best_f1 = int(np.flatnonzero(candidates >= candidates.max() - _TIE)[0])
    if target_precision <= 0:
        return best_f1, True
    meeting = np.flatnonzero((precision[:-1] >= target_precision) & (recall[:-1] > 0))
    if meeting.size == 0:
        return best_f1, False
    return int(meeting[0]), True


def pr_auc(pos: Histogram, neg: Histogram) -> float | None:
    """Average precision over the bin edges: ``sum (R_i - R_{i+1}) * P_i`` from the
    highest edge down. None when either class has no readings."""
    if int(sum(pos)) == 0 or int(sum(neg)) == 0:
        return None
    precision, recall, _ = _curves(pos, neg)
    gained = recall[:-1] - recall[1:]  # recall added by lowering the edge from i+1 to i
    return float(np.sum(gained * precision[:-1]))


@dataclass(frozen=True)
class LearnedThreshold:
    """What a round publishes: the threshold, where it came from, and its quality.

    ``source`` is ``"learned"`` (chosen from this round's histograms), ``"carried"``
    (no histograms this round: the last learned one) or None (none learned yet).
    ``choice`` and ``pr_auc`` describe this round's pooled histograms, when any.
    """

    threshold: float | None
    source: str | None
    choice: ThresholdChoice | None = None
    pr_auc: float | None = None


def learn_threshold(
    hists: Iterable[tuple[Histogram, Histogram]],
    *,
    target_precision: float = 0.0,
    previous: float | None = None,
) -> LearnedThreshold:
    """Pool the nodes' ``(pos, neg)`` histograms and choose; carry ``previous`` forward
    when there is nothing to choose from (no histograms, or a class is missing)."""
    carried = LearnedThreshold(previous, None if previous is None else "carried")
    pairs = list(hists)
    pos = add_histograms(p for p, _ in pairs)
    neg = add_histograms(n for _, n in pairs)
    if pos is None or neg is None:
        return carried
    choice = choose_threshold(pos, neg, target_precision)
    if choice is None:
        return carried
    return LearnedThreshold(choice.threshold, "learned", choice, pr_auc(pos, neg))
