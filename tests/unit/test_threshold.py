"""The learned alert threshold: histograms, confusion at a threshold, the choice, PR-AUC."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_runtime.core.messages import SCORE_BINS
from fl_runtime.core.model import Confusion
from fl_runtime.core.threshold import (
    EDGES,
    add_histograms,
    bin_of,
    choose_threshold,
    confusion_at,
    pr_auc,
    score_histogram,
)

scores_st = st.lists(
    st.tuples(st.floats(0.0, 1.0, allow_nan=False), st.integers(0, 1)), min_size=1, max_size=300
)


def _split(pairs: list[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([s for s, _ in pairs], dtype=np.float64), np.array([y for _, y in pairs])


def _best_f1_on_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Brute force on raw scores: the lowest edge with the highest F1, and that F1."""
    best = (-1.0, 0.0)
    for edge in EDGES[:-1]:
        pred = scores >= edge
        truth = labels.astype(bool)
        c = Confusion(
            int((pred & truth).sum()),
            int((pred & ~truth).sum()),
            int((~pred & ~truth).sum()),
            int((~pred & truth).sum()),
            0.0,
            len(labels),
        )
        if c.f1 > best[0] + 1e-12:
            best = (c.f1, float(edge))
    return best[1], best[0]


def test_bins_follow_the_contract() -> None:
    scores = np.array([0.0, 0.004, 0.01, 0.29, 0.995, 1.0])
    assert bin_of(scores).tolist() == [0, 0, 1, 29, 99, 99]  # an edge opens its bin
    pos, neg = score_histogram(scores, np.array([1, 0, 1, 0, 1, 1]))
    assert len(pos) == len(neg) == SCORE_BINS
    assert pos[99] == 2 and pos[0] == 1 and pos[1] == 1 and neg[0] == 1 and neg[29] == 1


def test_confusion_at_an_edge_is_exact() -> None:
    scores = np.array([0.1, 0.4, 0.5, 0.6, 0.9])
    labels = np.array([0, 0, 1, 0, 1])
    pos, neg = score_histogram(scores, labels)
    c = confusion_at(pos, neg, 0.5)
    assert (c.tp, c.fp, c.tn, c.fn, c.n) == (2, 1, 2, 0, 5)
    assert confusion_at(pos, neg, 0.0).tp == 2 and confusion_at(pos, neg, 1.0).tp == 0


def test_choice_maximises_f1_on_a_clear_case() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.0, 0.3, 900), rng.uniform(0.6, 1.0, 100)])
    labels = np.concatenate([np.zeros(900), np.ones(100)])
    choice = choose_threshold(*score_histogram(scores, labels))
    assert choice is not None
    assert 0.3 <= choice.threshold <= 0.6 and choice.f1 == 1.0
    assert (choice.n_pos, choice.n_neg, choice.target_met) == (100, 900, True)
    assert pr_auc(*score_histogram(scores, labels)) == pytest.approx(1.0)


def test_target_precision_picks_the_lowest_edge_meeting_it() -> None:
    scores = np.array([0.2, 0.3, 0.35, 0.5, 0.55, 0.7, 0.8, 0.9])
    labels = np.array([1, 0, 0, 1, 0, 1, 1, 1])
    pos, neg = score_histogram(scores, labels)
    choice = choose_threshold(pos, neg, target_precision=0.9)
    assert choice is not None and choice.target_met
    assert choice.threshold == 0.56 and choice.precision == 1.0 and choice.recall == 0.6
    assert choose_threshold(pos, neg, 0.8) == choose_threshold(pos, neg)  # max F1 is at 0.36
    loose = choose_threshold(pos, neg, target_precision=0.65)
    assert loose is not None and loose.threshold == 0.31 and loose.recall == 0.8


def test_unreachable_target_falls_back_to_max_f1_and_says_so() -> None:
    pos, neg = score_histogram(np.array([0.5, 0.5]), np.array([1, 0]))  # one bin, 50/50
    choice = choose_threshold(pos, neg, target_precision=0.9)
    best_f1 = choose_threshold(pos, neg)
    assert choice is not None and best_f1 is not None
    assert not choice.target_met and choice.threshold == best_f1.threshold == 0.0


def test_no_choice_without_both_classes() -> None:
    pos, neg = score_histogram(np.array([0.2, 0.9]), np.array([0, 0]))
    assert choose_threshold(pos, neg) is None and pr_auc(pos, neg) is None
    assert choose_threshold([0] * SCORE_BINS, [0] * SCORE_BINS) is None


def test_pooled_histograms_give_the_threshold_of_the_pooled_scores() -> None:
    rng = np.random.default_rng(7)
    nodes = []
    for k in range(4):  # non-IID: each node's scores sit differently
        n = 500 + 200 * k
        labels = (rng.random(n) < 0.1 + 0.03 * k).astype(np.int8)
        scores = np.clip(rng.normal(0.25 + 0.05 * k + 0.4 * labels, 0.15), 0, 1).round(2)
        nodes.append((scores, labels))
    hists = [score_histogram(s, y) for s, y in nodes]
    pooled_pos = add_histograms(h[0] for h in hists)
    pooled_neg = add_histograms(h[1] for h in hists)
    assert pooled_pos is not None and pooled_neg is not None
    all_scores = np.concatenate([s for s, _ in nodes])
    all_labels = np.concatenate([y for _, y in nodes])
    assert (pooled_pos, pooled_neg) == score_histogram(all_scores, all_labels)
    choice = choose_threshold(pooled_pos, pooled_neg)
    assert choice is not None
    threshold, f1 = _best_f1_on_scores(all_scores, all_labels)  # scores on edges included
    assert choice.threshold == threshold and choice.f1 == pytest.approx(f1, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(scores_st)
def test_histogram_choice_equals_brute_force_on_scores(pairs: list[tuple[float, int]]) -> None:
    scores, labels = _split(pairs)
    pos, neg = score_histogram(scores, labels)
    choice = choose_threshold(pos, neg)
    if labels.all() or not labels.any():
        assert choice is None
        return
    assert choice is not None
    threshold, f1 = _best_f1_on_scores(scores, labels)
    assert choice.f1 == pytest.approx(f1, abs=1e-12) and choice.threshold == threshold
    c = confusion_at(pos, neg, choice.threshold)
    assert c.precision == pytest.approx(choice.precision) and c.recall == choice.recall


@settings(max_examples=60, deadline=None)
@given(scores_st, st.floats(0.01, 1.0))
def test_target_choice_meets_the_target_or_says_so(
    pairs: list[tuple[float, int]], target: float
) -> None:
    scores, labels = _split(pairs)
    choice = choose_threshold(*score_histogram(scores, labels), target_precision=target)
    if choice is None:
        return
    assert 0.0 <= choice.threshold < 1.0
    if choice.target_met:
        assert choice.precision >= target and choice.recall > 0
    auc = pr_auc(*score_histogram(scores, labels))
    assert auc is not None and 0.0 <= auc <= 1.0 + 1e-12
