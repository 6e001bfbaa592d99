"""Micro-benchmarks with a baseline measured in the same run.

``sgd_throughput`` times local training (our vectorised mini-batch SGD) against
scikit-learn's ``SGDClassifier.partial_fit`` on the same standardised data, and
reports samples per second for each and their ratio. Figures, not assertions:
the ratio depends on the machine, so it is printed for people to judge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fl_runtime.core.model import init_weights, sgd
from fl_runtime.core.scaling import FeatureStats, Scaler
from fl_runtime.edge.machines import node_dataset


def _best_of(repeats: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def sgd_throughput(
    samples: int = 200_000,
    batch_size: int = 32,
    learning_rate: float = 0.05,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    x, y = node_dataset("1", samples, seed)
    xs = Scaler.from_stats(FeatureStats.of(x)).transform(x)
    ours = _best_of(
        repeats,
        lambda: sgd(
            init_weights(xs.shape[1]),
            xs,
            y,
            learning_rate=learning_rate,
            batch_size=batch_size,
            epochs=1,
            l2=1e-4,
        ),
    )
    result: dict[str, Any] = {
        "samples": samples,
        "batch_size": batch_size,
        "repeats": repeats,
        "fl_runtime_samples_per_s": samples / ours,
    }
    try:
        from sklearn.linear_model import SGDClassifier
    except ImportError:
        result["sklearn_samples_per_s"] = None
        result["ratio_vs_sklearn"] = None
        return result

    def sklearn_epoch() -> None:
        clf = SGDClassifier(
            loss="log_loss", learning_rate="constant", eta0=learning_rate, alpha=1e-4, shuffle=False
        )
        for start in range(0, samples, 10_000):  # partial_fit in chunks, as a stream would
            clf.partial_fit(xs[start : start + 10_000], y[start : start + 10_000], classes=[0, 1])

    theirs = _best_of(repeats, sklearn_epoch)
    result["sklearn_samples_per_s"] = samples / theirs
    result["ratio_vs_sklearn"] = theirs / ours
    return result
