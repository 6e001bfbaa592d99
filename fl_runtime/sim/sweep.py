"""Many runs, one table: strategies against each other over seeds and skews.

:func:`sweep` runs :func:`~fl_runtime.sim.comparison.compare` for every
``(alpha, seed, strategy)`` (the baselines once per ``(alpha, seed)``, since they do
not depend on the strategy) and :func:`summarise` turns the runs into one row per
``(alpha, strategy)``: mean, min and max of the federated F1 and of its ratio to the
centralized F1, and on how many seeds federated beat the best local-only model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl_runtime.sim.comparison import baselines, compare
from fl_runtime.sim.federation import TrainingParams
from fl_runtime.sim.partition import Partition

# (alpha or None for the simulator's own split, seed) -> the nodes' data
Splitter = Callable[[float | None, int], list[Partition]]


@dataclass(frozen=True)
class Run:
    """One federation beside its baselines."""

    strategy: str
    alpha: float | None
    seed: int
    f1: float
    pr_auc: float
    roc_auc: float
    central_f1: float
    best_local_f1: float

    @property
    def ratio(self) -> float:
        return self.f1 / self.central_f1 if self.central_f1 else float("nan")

    @property
    def beats_local(self) -> bool:
        return self.f1 > self.best_local_f1


@dataclass(frozen=True)
class Summary:
    """One strategy at one skew, over its seeds."""

    strategy: str
    alpha: float | None
    seeds: int
    f1_mean: float
    f1_min: float
    f1_max: float
    ratio_mean: float
    ratio_min: float
    ratio_max: float
    pr_auc_mean: float
    beats_local: int  # seeds on which federated F1 > the best local-only F1
    central_f1_mean: float
    best_local_f1_mean: float


def sweep(
    split: Splitter,
    strategies: Sequence[str],
    seeds: Sequence[int],
    alphas: Sequence[float | None],
    rounds: int,
    *,
    params: TrainingParams | None = None,
    on_run: Callable[[Run], None] | None = None,
    **federated_kw: Any,
) -> list[Run]:
    """Every strategy on every seed at every alpha, on the same splits."""
    if not strategies or not seeds or not alphas:
        raise ValueError("need at least one strategy, seed and alpha")
    params = params or TrainingParams()
    runs = []
    for alpha in alphas:
        for seed in seeds:
            parts = split(alpha, seed)
            base = baselines(parts, rounds, params=params, seed=seed)
            best_local = max(m["f1"] for m in base.local_only.values())
            for strategy in strategies:
                result = compare(
                    parts,
                    rounds,
                    params=params,
                    seed=seed,
                    against=base,
                    strategy=strategy,
                    **federated_kw,
                )
                fed = result.federated
                run = Run(
                    strategy,
                    alpha,
                    seed,
                    fed["f1"],
                    fed["pr_auc"],
                    fed["roc_auc"],
                    base.centralized["f1"],
                    best_local,
                )
                runs.append(run)
                if on_run:
                    on_run(run)
    return runs


def summarise(runs: Sequence[Run]) -> list[Summary]:
    """One row per (alpha, strategy), in the order they first appear."""
    groups: dict[tuple[float | None, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.alpha, run.strategy), []).append(run)
    rows = []
    for (alpha, strategy), group in groups.items():
        f1 = np.array([r.f1 for r in group])
        ratio = np.array([r.ratio for r in group])
        rows.append(
            Summary(
                strategy,
                alpha,
                len(group),
                float(f1.mean()),
                float(f1.min()),
                float(f1.max()),
                float(ratio.mean()),
                float(ratio.min()),
                float(ratio.max()),
                float(np.nanmean([r.pr_auc for r in group])),
                sum(r.beats_local for r in group),
                float(np.mean([r.central_f1 for r in group])),
                float(np.mean([r.best_local_f1 for r in group])),
            )
        )
    return rows
