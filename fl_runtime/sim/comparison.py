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


@dataclass(frozen=True)
class Baselines:
    """What federated learning is measured against; it depends on the data split,
    the training parameters and the seed, not on the strategy."""

    centralized: dict[str, float]
    local_only: dict[str, dict[str, float]]


def baselines(
    partitions: Sequence[Partition],
    rounds: int,
    *,
    params: TrainingParams | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> Baselines:
    """The centralized model on the pooled training data and each node's local-only
    model, with the same passes as the federation, on the pooled held-out data.
    With class weighting, central training uses the pooled label counts (the same as
    the federation's) and a local-only model its node's own."""
    params = params or TrainingParams()
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
    return Baselines(central.evaluate(hx, hy), local)


def compare(
    partitions: Sequence[Partition],
    rounds: int,
    *,
    params: TrainingParams | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    against: Baselines | None = None,
    **federated_kw: Any,
) -> Comparison:
    """Run :func:`run_federated` and both baselines on the same split (``against``:
    baselines already computed for this split, parameters and seed)."""
    params = params or TrainingParams()
    fed = run_federated(
        partitions,
        rounds,
        params=params,
        holdout_fraction=holdout_fraction,
        seed=seed,
        **federated_kw,
    )
    base = against or baselines(
        partitions, rounds, params=params, holdout_fraction=holdout_fraction, seed=seed
    )
    _, hold = split_holdout(partitions, holdout_fraction, seed)
    hx = np.vstack([x for x, _ in hold])
    hy = np.concatenate([y for _, y in hold])
    return Comparison(
        fed.model.evaluate(hx, hy), base.centralized, base.local_only, fed.history, fed.model
    )


def _fit(
    x: np.ndarray, y: np.ndarray, params: TrainingParams, epochs: int, rng: np.random.Generator
) -> LogisticRegressionModel:
    scaler = Scaler.from_stats(FeatureStats.of(x))
    w = params.train(
        init_weights(x.shape[1]),
        scaler.transform(x),
        y,
        rng,
        epochs=epochs,
        class_weight=params.class_weight_for([y]),
    )
    return LogisticRegressionModel(w, scaler)
