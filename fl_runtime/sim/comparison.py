"""Federated against its baselines, on the same pooled held-out data.

:func:`compare` runs :func:`~fl_runtime.sim.federation.run_federated` and adds the
two baselines a researcher needs: a centrally trained model on the pooled data (same
model, same hyper-parameters, same number of passes) and each node's local-only model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fl_runtime.core.model import LogisticRegressionModel, init_weights
from fl_runtime.core.scaling import FeatureStats, Scaler
from fl_runtime.sim.federation import RoundStats, TrainingParams, run_federated, split_holdout
from fl_runtime.sim.partition import Partition


@dataclass
class Comparison:
    """Federated vs centralized vs local-only, all on the same pooled held-out data."""

    federated: dict[str, float]
    centralized: dict[str, float]
    local_only: dict[str, dict[str, float]]
    history: list[RoundStats]
    model: LogisticRegressionModel

    @property
    def best_local_f1(self) -> float:
        return max(m["f1"] for m in self.local_only.values())

    def to_dict(self) -> dict[str, Any]:
        local_f1 = [m["f1"] for m in self.local_only.values()]
        return {
            "rounds": [asdict(r) for r in self.history],
            "final": {
                "federated": self.federated,
                "centralized": self.centralized,
                "local_only": {
                    "per_node": self.local_only,
                    "best_f1": max(local_f1),
                    "mean_f1": float(np.mean(local_f1)),
                },
                "federated_to_centralized_f1": _ratio(self.federated["f1"], self.centralized["f1"]),
            },
        }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def compare(
    partitions: Sequence[Partition],
    rounds: int,
    *,
    params: TrainingParams | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    **federated_kw: Any,
) -> Comparison:
    """Run :func:`run_federated` and both baselines on the same split."""
    params = params or TrainingParams()
    fed = run_federated(
        partitions,
        rounds,
        params=params,
        holdout_fraction=holdout_fraction,
        seed=seed,
        **federated_kw,
    )
    train, hold = split_holdout(partitions, holdout_fraction, seed)
    hx = np.vstack([x for x, _ in hold])
    hy = np.concatenate([y for _, y in hold])
    epochs = rounds * params.local_epochs
    rng = np.random.default_rng([seed, 13])
    px = np.vstack([x for x, _ in train])
    py = np.concatenate([y for _, y in train])
    central = _fit(px, py, params, epochs, rng)
    local = {
        str(i + 1): _fit(x, y, params, epochs, rng).evaluate(hx, hy)
        for i, (x, y) in enumerate(train)
    }
    return Comparison(
        fed.model.evaluate(hx, hy), central.evaluate(hx, hy), local, fed.history, fed.model
    )


def _fit(
    x: np.ndarray, y: np.ndarray, params: TrainingParams, epochs: int, rng: np.random.Generator
) -> LogisticRegressionModel:
    scaler = Scaler.from_stats(FeatureStats.of(x))
    w = params.train(init_weights(x.shape[1]), scaler.transform(x), y, rng, epochs=epochs)
    return LogisticRegressionModel(w, scaler)
