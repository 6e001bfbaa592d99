"""Issue #16's bar, measured: the new strategies on skewed data, FedAvg beside them.

Each dataset is split over 4+ nodes (the simulator by machine, the bundled
scikit-learn sets by Dirichlet alpha 0.5), 30 rounds, seeds 1 to 5, with the
configuration defaults. Run with ``-s`` to see the table. The bar: the best new
strategy reaches a mean federated F1 of at least 0.97 of central, never below 0.95,
and beats the best local-only model on every seed.

Measured (see the README): the F1 targets hold on all three. "Beats the best
local-only model on every seed" holds on the simulator only: on the small real sets
the centralized model itself ties or loses to the best local-only model on some
seeds (a held-out set of 114 rows, or 360 with 35 positives, makes one row worth
0.01 to 0.03 of F1), so it is marked as an expected failure there, strictly, so a
change that reaches it shows up.
"""

from functools import cache

import numpy as np
import pytest

from fl_runtime.config import load_config
from fl_runtime.core.strategy import ServerOptimizerSettings
from fl_runtime.sim.federation import TrainingParams
from fl_runtime.sim.partition import Partition, dirichlet, load_dataset, simulator_partitions
from fl_runtime.sim.sweep import Summary, summarise, sweep

pytestmark = pytest.mark.slow
NEW = ("fedprox", "fedavgm", "fedadam", "scaffold")
SEEDS = (1, 2, 3, 4, 5)
DATASETS = ("simulator", "breast-cancer", "digits")
BC_GAP = (
    "3/5 seeds: on seed 1 central (0.941) loses to the best local-only (0.958), "
    "on seed 3 all three tie at 0.989"
)
DIGITS_GAP = "4/5 seeds: on seed 2 fedadam 0.794 < best local-only 0.800 < central 0.814"


@cache
def table(dataset: str) -> tuple[Summary, ...]:
    """fedavg and every new strategy on one dataset, printed as a table."""
    cfg = load_config("/dev/null")
    t, a = cfg.training, cfg.aggregation
    params = TrainingParams(
        t.learning_rate, t.batch_size, t.local_epochs, t.l2, t.fedprox_mu, t.class_weight
    )
    server = ServerOptimizerSettings(
        a.server_learning_rate, a.server_momentum, a.adam_beta1, a.adam_beta2, a.adam_epsilon
    )

    def split(alpha: float | None, seed: int) -> list[Partition]:
        if dataset == "simulator":
            return simulator_partitions(5, 2500, seed)
        x, y = load_dataset(dataset)
        return dirichlet(x, y, 4, np.random.default_rng(seed), 0.5)

    alpha = None if dataset == "simulator" else 0.5
    runs = sweep(split, ("fedavg", *NEW), SEEDS, [alpha], 30, params=params, server=server)
    rows = tuple(summarise(runs))
    print(
        f"\n{dataset}: central F1 {rows[0].central_f1_mean:.3f}, "
        f"best local-only {rows[0].best_local_f1_mean:.3f}"
    )
    for r in rows:
        print(
            f"  {r.strategy:<9} F1 {r.f1_mean:.3f} [{r.f1_min:.3f}, {r.f1_max:.3f}]  "
            f"F1/central {r.ratio_mean:.3f} [{r.ratio_min:.3f}, {r.ratio_max:.3f}]  "
            f"PR-AUC {r.pr_auc_mean:.3f}  beats local {r.beats_local}/{r.seeds}"
        )
    return rows


def best_new(dataset: str) -> Summary:
    return max((r for r in table(dataset) if r.strategy in NEW), key=lambda r: r.ratio_mean)


@pytest.mark.parametrize("dataset", DATASETS)
def test_best_new_strategy_reaches_central_f1(dataset: str) -> None:
    pytest.importorskip("sklearn")
    best = best_new(dataset)
    assert best.ratio_mean >= 0.97, best
    assert best.ratio_min >= 0.95, best


@pytest.mark.parametrize(
    "dataset",
    [
        "simulator",
        pytest.param("breast-cancer", marks=pytest.mark.xfail(strict=True, reason=BC_GAP)),
        pytest.param("digits", marks=pytest.mark.xfail(strict=True, reason=DIGITS_GAP)),
    ],
)
def test_best_new_strategy_beats_best_local_only_on_every_seed(dataset: str) -> None:
    pytest.importorskip("sklearn")
    best = max(
        (r for r in table(dataset) if r.strategy in NEW),
        key=lambda r: (r.beats_local, r.ratio_mean),
    )
    assert best.beats_local == len(SEEDS), best
