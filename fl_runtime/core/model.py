"""Logistic regression trained by vectorised mini-batch SGD, and its metrics.

Weights are a flat float64 vector: one weight per standardised feature, then the
bias. Everything here is a pure function of arrays, so the same code trains on a
fog node's micro-batch, inside ``fl simulate`` and in the benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fl_runtime.core.scaling import Scaler

EPS = 1e-12


def init_weights(n_features: int) -> np.ndarray:
    return np.zeros(n_features + 1, dtype=np.float64)


def add_bias(x: np.ndarray) -> np.ndarray:
    """``x`` with a trailing column of ones, as float64 and C-contiguous."""
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float64)
    out[:, :-1] = x
    out[:, -1] = 1.0
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    # Clipping keeps exp() finite; beyond +-35 the probability is 0 or 1 in float64.
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))
    return result


def predict_proba(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(anomaly) for standardised features ``x`` (without the bias column)."""
    return sigmoid(x @ weights[:-1] + weights[-1])


def log_loss_sum(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(predict_proba(weights, x), EPS, 1 - EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())


def log_loss(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return log_loss_sum(weights, x, y) / max(len(y), 1)


def sgd(
    weights: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    learning_rate: float,
    batch_size: int,
    epochs: int,
    l2: float = 0.0,
    rng: np.random.Generator | None = None,
    class_weight: tuple[float, float] | None = None,
    prox_mu: float = 0.0,
    anchor: np.ndarray | None = None,
    correction: np.ndarray | None = None,
) -> np.ndarray:
    """Mini-batch SGD on the log-loss from ``weights``; returns new weights.

    Each epoch visits the rows in a fresh random order (``rng``) or in order.
    The gradient of a batch is ``X_b^T (s_b * (sigmoid(X_b w) - y_b)) / |b| + l2 * w``
    (the bias is not regularised), where ``s`` is 1, or ``class_weight[y]`` per row.
    Two optional terms for federated training, added to every step's gradient:

    * ``prox_mu * (w - anchor)``: FedProx's proximal term, the gradient of
      ``prox_mu / 2 * ||w - anchor||^2`` (``anchor``: the global weights, bias included);
    * ``correction``: SCAFFOLD's constant drift correction ``c - c_i``.
    """
    if prox_mu < 0:
        raise ValueError("prox_mu must be >= 0")
    if prox_mu > 0 and anchor is None:
        raise ValueError("the proximal term needs an anchor (the global weights)")
    if x.shape[0] == 0 or epochs == 0:
        return weights.astype(np.float64, copy=True)
    w = weights.astype(np.float64, copy=True)
    # sigmoid(z) - y == (tanh(z / 2) + 1 - 2y) / 2, so with xh = x / 2 the batch gradient
    # X^T (sigmoid(X w) - y) is xh^T (tanh(xh w) + 1 - 2y): two BLAS calls and one ufunc.
    xh = add_bias(x)
    xh *= 0.5
    sign = 1.0 - 2.0 * y.astype(np.float64)
    scale = None if class_weight is None else np.where(y.astype(bool), *class_weight[::-1])
    step = _Step.of(w, learning_rate, l2, prox_mu, anchor, correction)
    n = xh.shape[0]
    for _ in range(epochs):
        order = rng.permutation(n) if rng is not None else None
        if order is None:
            _epoch(w, xh, sign, scale, batch_size, step)
        else:
            _epoch(
                w, xh[order], sign[order], None if scale is None else scale[order], batch_size, step
            )
    return w


@dataclass(frozen=True)
class _Step:
    """What every step applies besides the loss gradient: ``w = w * decay + offset - g``."""

    lr: float
    decay: np.ndarray | None
    offset: np.ndarray | None

    @classmethod
    def of(
        cls,
        w: np.ndarray,
        lr: float,
        l2: float,
        mu: float,
        anchor: np.ndarray | None,
        correction: np.ndarray | None,
    ) -> _Step:
        decay = np.ones_like(w)
        decay[:-1] -= lr * l2
        decay -= lr * mu
        offset = np.zeros_like(w)
        if mu > 0 and anchor is not None:
            offset += lr * mu * np.asarray(anchor, dtype=np.float64)
        if correction is not None:
            offset -= lr * np.asarray(correction, dtype=np.float64)
        return cls(
            lr,
            decay if (l2 > 0 or mu > 0) else None,
            offset if offset.any() else None,
        )


def _epoch(
    w: np.ndarray,
    xh: np.ndarray,
    sign: np.ndarray,
    scale: np.ndarray | None,
    batch: int,
    step: _Step,
) -> None:
    """One pass in place. The hot loop runs five numpy calls per batch on
    preallocated buffers: at small batch sizes the call overhead is the cost."""
    n, dim = xh.shape
    full = n // batch
    lr, decay, offset = step.lr, step.decay, step.offset
    xs_all = xh[: full * batch].reshape(full, batch, dim)
    sg_all = sign[: full * batch].reshape(full, batch)
    # the gradient's step (and the per-row class weights) folded into a second view
    if scale is None:
        xg_all = xs_all * (lr / batch)
    else:
        xg_all = xs_all * (scale[: full * batch].reshape(full, batch, 1) * (lr / batch))
    t = np.empty(batch)
    g = np.empty(dim)
    dot, tanh, add, mul, sub = np.dot, np.tanh, np.add, np.multiply, np.subtract
    for xs, sg, xg in zip(xs_all, sg_all, xg_all, strict=True):
        dot(xs, w, out=t)
        tanh(t, out=t)
        add(t, sg, out=t)
        dot(t, xg, out=g)
        if decay is not None:
            mul(w, decay, out=w)
        if offset is not None:
            add(w, offset, out=w)
        sub(w, g, out=w)
    if full * batch < n:  # the last, short batch
        xs = xh[full * batch :]
        tail = np.tanh(xs @ w) + sign[full * batch :]
        if scale is not None:
            tail *= scale[full * batch :]
        if decay is not None:
            w *= decay
        if offset is not None:
            w += offset
        w -= (lr / xs.shape[0]) * (tail @ xs)


def local_steps(n: int, batch_size: int, epochs: int) -> int:
    """How many SGD steps :func:`sgd` takes over ``n`` rows (SCAFFOLD needs it)."""
    return math.ceil(n / batch_size) * epochs if n else 0


def balanced_class_weight(n: int, positives: int) -> tuple[float, float]:
    """``(weight of 0, weight of 1)`` as ``n / (2 * n_class)``, scikit-learn's "balanced";
    ``(1, 1)`` when a class is missing, so no class is ever weighted by infinity."""
    if n < 0 or not 0 <= positives <= n:
        raise ValueError("need 0 <= positives <= n")
    negatives = n - positives
    if positives == 0 or negatives == 0:
        return (1.0, 1.0)
    return (n / (2.0 * negatives), n / (2.0 * positives))


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int
    loss_sum: float
    n: int

    @classmethod
    def of(
        cls, weights: np.ndarray, x: np.ndarray, y: np.ndarray, threshold: float = 0.5
    ) -> Confusion:
        pred = predict_proba(weights, x) >= threshold
        truth = y.astype(bool)
        return cls(
            tp=int((pred & truth).sum()),
            fp=int((pred & ~truth).sum()),
            tn=int((~pred & ~truth).sum()),
            fn=int((~pred & truth).sum()),
            loss_sum=log_loss_sum(weights, x, y) if len(y) else 0.0,
            n=len(y),
        )

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp,
            self.fp + other.fp,
            self.tn + other.tn,
            self.fn + other.fn,
            self.loss_sum + other.loss_sum,
            self.n + other.n,
        )

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.n if self.n else float("nan")


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    truth = y.astype(bool)
    n_pos = int(truth.sum())
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision,
    ``sum_k (R_k - R_{k-1}) * P_k`` over the distinct score thresholds, ties grouped
    (scikit-learn's ``average_precision_score``). Rare anomalies make it the honest
    summary: unlike ROC-AUC, it falls when false alarms swamp the few true ones."""
    truth = np.asarray(y).astype(bool)
    n_pos = int(truth.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    ordered = np.asarray(scores, dtype=np.float64)[order]
    hits = truth[order]
    last = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1]  # end of each tie group
    tp = np.cumsum(hits)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass
class LogisticRegressionModel:
    """A trained model with its scaler: what ``run_federated`` returns."""

    weights: np.ndarray
    scaler: Scaler

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return predict_proba(self.weights, self.scaler.transform(np.asarray(x, dtype=np.float64)))

    def predict(self, x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return (self.predict_proba(x) >= threshold).astype(np.int8)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        xs = self.scaler.transform(np.asarray(x, dtype=np.float64))
        c = Confusion.of(self.weights, xs, y)
        return {
            "loss": c.loss,
            "f1": c.f1,
            "precision": c.precision,
            "recall": c.recall,
            "accuracy": c.accuracy,
            "roc_auc": roc_auc(predict_proba(self.weights, xs), y),
            "pr_auc": pr_auc(predict_proba(self.weights, xs), y),
            "n": float(c.n),
        }
