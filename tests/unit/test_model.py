import numpy as np
import pytest

from fl_runtime.core.model import (
    Confusion,
    balanced_class_weight,
    init_weights,
    local_steps,
    log_loss,
    pr_auc,
    predict_proba,
    roc_auc,
    sgd,
    sigmoid,
)
from fl_runtime.core.scaling import FeatureStats, Scaler, merge_all


def reference_sgd(
    w: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float, batch: int, epochs: int, l2: float
) -> np.ndarray:
    """The textbook loop the vectorised version must match."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = w.copy()
    for _ in range(epochs):
        for s in range(0, len(y), batch):
            xs, ys = xb[s : s + batch], y[s : s + batch]
            grad = xs.T @ (sigmoid(xs @ w) - ys) / len(ys)
            reg = l2 * w
            reg[-1] = 0.0
            w = w - lr * (grad + reg)
    return w


@pytest.mark.parametrize(("n", "batch", "l2"), [(1003, 32, 1e-3), (64, 64, 0.0), (10, 32, 0.1)])
def test_sgd_matches_the_textbook_loop(n: int, batch: int, l2: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5))
    y = (rng.random(n) < 0.3).astype(np.int8)
    ours = sgd(np.zeros(6), x, y, learning_rate=0.1, batch_size=batch, epochs=3, l2=l2)
    assert np.allclose(ours, reference_sgd(np.zeros(6), x, y, 0.1, batch, 3, l2), atol=1e-12)


def test_sgd_reduces_loss_and_learns_the_signal() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 5))
    y = (x[:, 0] + 0.5 * x[:, 3] + rng.normal(scale=0.5, size=4000) > 1.5).astype(np.int8)
    w0 = init_weights(5)
    w = sgd(w0, x, y, learning_rate=0.1, batch_size=32, epochs=5, rng=rng)
    assert log_loss(w, x, y) < 0.5 * log_loss(w0, x, y)
    assert w[0] > w[3] > abs(w[1])
    assert w.dtype == np.float64


def test_confusion_metrics_on_a_hand_case() -> None:
    w = np.array([1.0, 0.0])  # predict positive when x > 0
    x = np.array([[1.0], [2.0], [-1.0], [-2.0], [3.0]])
    y = np.array([1, 0, 0, 1, 1])
    c = Confusion.of(w, x, y)
    assert (c.tp, c.fp, c.tn, c.fn, c.n) == (2, 1, 1, 1, 5)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)
    assert c.accuracy == pytest.approx(3 / 5)
    expected = -np.mean(y * np.log(predict_proba(w, x)) + (1 - y) * np.log(1 - predict_proba(w, x)))
    assert c.loss == pytest.approx(expected)


def test_roc_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    scores = np.round(rng.random(500), 2)  # many ties
    y = (rng.random(500) < 0.2).astype(int)
    assert roc_auc(scores, y) == pytest.approx(roc_auc_score(y, scores))
    assert np.isnan(roc_auc(scores, np.zeros(500)))


def test_federated_standardisation_equals_pooled() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.normal(loc=k, scale=k + 1, size=(100 * (k + 1), 5)) for k in range(4)]
    merged = merge_all(FeatureStats.of(p) for p in parts)
    pooled = np.vstack(parts)
    assert merged.n == len(pooled)
    assert np.allclose(merged.mean, pooled.mean(axis=0))
    assert np.allclose(merged.variance, pooled.var(axis=0))
    scaler = Scaler.from_stats(merged)
    z = scaler.transform(pooled)
    assert np.allclose(z.mean(axis=0), 0, atol=1e-9) and np.allclose(z.std(axis=0), 1)


def reference_federated_sgd(
    w: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    lr: float,
    batch: int,
    cw: tuple[float, float],
    mu: float,
    anchor: np.ndarray,
    correction: np.ndarray,
) -> np.ndarray:
    """The textbook loop with class weights, a proximal term and a constant correction."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = w.copy()
    for s in range(0, len(y), batch):
        xs, ys = xb[s : s + batch], y[s : s + batch]
        rows = np.where(ys == 1, cw[1], cw[0])
        grad = xs.T @ (rows * (sigmoid(xs @ w) - ys)) / len(ys)
        w = w - lr * (grad + mu * (w - anchor) + correction)
    return w


@pytest.mark.parametrize("n", [100, 70])
def test_sgd_federated_terms_match_the_textbook_loop(n: int) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4))
    y = (rng.random(n) < 0.2).astype(np.int8)
    anchor, correction = rng.normal(size=5), 0.1 * rng.normal(size=5)
    # Execute
    ours = sgd(
        np.zeros(5),
        x,
        y,
        learning_rate=0.1,
        batch_size=16,
        epochs=1,
        class_weight=(0.6, 2.5),
        prox_mu=0.3,
        anchor=anchor,
        correction=correction,
    )
    # Assert
    ref = reference_federated_sgd(
        np.zeros(5),
        x,
        y,
        lr=0.1,
        batch=16,
        cw=(0.6, 2.5),
        mu=0.3,
        anchor=anchor,
        correction=correction,
    )
    assert np.allclose(ours, ref, atol=1e-12)


def test_proximal_term_keeps_weights_near_the_anchor() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 3))
    y = (x[:, 0] > 0).astype(np.int8)
    anchor = np.zeros(4)
    free = sgd(anchor, x, y, learning_rate=0.1, batch_size=16, epochs=5)
    held = sgd(anchor, x, y, learning_rate=0.1, batch_size=16, epochs=5, prox_mu=1.0, anchor=anchor)
    assert np.linalg.norm(held) < 0.5 * np.linalg.norm(free)
    with pytest.raises(ValueError):
        sgd(anchor, x, y, learning_rate=0.1, batch_size=16, epochs=1, prox_mu=1.0)


def test_balanced_class_weight() -> None:
    assert balanced_class_weight(100, 10) == pytest.approx((100 / 180, 100 / 20))
    assert balanced_class_weight(50, 0) == (1.0, 1.0)
    assert balanced_class_weight(50, 50) == (1.0, 1.0)
    with pytest.raises(ValueError):
        balanced_class_weight(5, 6)
    assert local_steps(100, 32, 2) == 8 and local_steps(0, 32, 1) == 0


def test_pr_auc_matches_scikit_learn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    y = (rng.random(400) < 0.1).astype(np.int8)
    scores = np.round(rng.random(400) * 0.6 + 0.4 * y, 2)  # rounded: many ties
    assert pr_auc(scores, y) == pytest.approx(metrics.average_precision_score(y, scores))
    assert pr_auc(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == pytest.approx(1.0)
    assert np.isnan(pr_auc(np.array([0.2, 0.3]), np.array([0, 0])))
