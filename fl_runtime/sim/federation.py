"""In-process federated learning: the real strategy and model code, no brokers.

``run_federated`` federates a list of ``(X, y)`` partitions (one per node) and
returns the final model and the per-round history; :mod:`fl_runtime.sim.comparison`
sets it beside its baselines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fl_runtime.cloud.agglog import AggregationLog, round_record
from fl_runtime.core.evaluation import global_metrics
from fl_runtime.core.model import Confusion, LogisticRegressionModel, init_weights, log_loss, sgd
from fl_runtime.core.scaling import FeatureStats, Scaler, merge_all
from fl_runtime.core.strategy import (
    STRATEGIES,
    BatchAggregator,
    ClientUpdate,
    FedBuffAggregator,
    RoundOutcome,
)
from fl_runtime.sim.partition import Partition

SIM_STRATEGIES = (*STRATEGIES, "fedbuff")


@dataclass(frozen=True)
class TrainingParams:
    learning_rate: float = 0.05
    batch_size: int = 32
    local_epochs: int = 1
    l2: float = 1e-4

    def train(
        self,
        w: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        rng: np.random.Generator,
        epochs: int | None = None,
    ) -> np.ndarray:
        return sgd(
            w,
            x,
            y,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            epochs=self.local_epochs if epochs is None else epochs,
            l2=self.l2,
            rng=rng,
        )


@dataclass(frozen=True)
class RoundStats:
    round: int
    version: int
    participants: list[str]
    n_total: int
    loss: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    accuracy: float | None
    discarded: int = 0


@dataclass
class FederatedResult:
    model: LogisticRegressionModel
    history: list[RoundStats] = field(default_factory=list)


@dataclass(frozen=True)
class _Node:
    node_id: str
    x: np.ndarray  # standardised training features
    y: np.ndarray
    hx: np.ndarray  # standardised held-out features
    hy: np.ndarray


def split_holdout(
    partitions: Sequence[Partition], fraction: float, seed: int
) -> tuple[list[Partition], list[Partition]]:
    """Per-node train/held-out split, deterministic in ``seed``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError("holdout fraction must be in [0, 1)")
    rng = np.random.default_rng([seed, 7])
    train, hold = [], []
    for x, y in partitions:
        order = rng.permutation(len(y))
        cut = len(y) - round(fraction * len(y))
        train.append((x[order[:cut]], y[order[:cut]]))
        hold.append((x[order[cut:]], y[order[cut:]]))
    return train, hold


def run_federated(
    partitions: Sequence[Partition],
    rounds: int,
    *,
    strategy: str = "fedavg",
    participation: float = 1.0,
    params: TrainingParams | None = None,
    holdout_fraction: float = 0.2,
    min_nodes: int = 1,
    trim_ratio: float = 0.2,
    fedbuff_k: int | None = None,
    seed: int = 0,
    log_path: str | Path | None = None,
    on_round: Callable[[RoundStats], None] | None = None,
) -> FederatedResult:
    """Federate ``partitions`` for ``rounds`` global versions; see the module doc."""
    if not partitions:
        raise ValueError("need at least one partition")
    if strategy not in SIM_STRATEGIES:
        raise ValueError(
            f"unknown strategy {strategy!r}; choose one of {', '.join(SIM_STRATEGIES)}"
        )
    if not 0.0 < participation <= 1.0:
        raise ValueError("participation must be in (0, 1]")
    train, hold = split_holdout(partitions, holdout_fraction, seed)
    return _federate(
        train,
        hold,
        rounds,
        strategy=strategy,
        participation=participation,
        params=params or TrainingParams(),
        min_nodes=min_nodes,
        trim_ratio=trim_ratio,
        fedbuff_k=fedbuff_k,
        seed=seed,
        log=AggregationLog(log_path) if log_path else None,
        on_round=on_round,
    )


def _federate(
    train: list[Partition],
    hold: list[Partition],
    rounds: int,
    *,
    strategy: str,
    participation: float,
    params: TrainingParams,
    min_nodes: int,
    trim_ratio: float,
    fedbuff_k: int | None,
    seed: int,
    log: AggregationLog | None,
    on_round: Callable[[RoundStats], None] | None,
) -> FederatedResult:
    # Federated standardisation: only (n, mean, M2) per node leaves a node.
    scaler = Scaler.from_stats(merge_all(FeatureStats.of(x) for x, _ in train))
    nodes = [
        _Node(str(i + 1), scaler.transform(x), y, scaler.transform(hx), hy)
        for i, ((x, y), (hx, hy)) in enumerate(zip(train, hold, strict=True))
    ]
    dim = nodes[0].x.shape[1] + 1
    rng = np.random.default_rng([seed, 11])
    per_round = min(len(nodes), max(min_nodes, math.ceil(participation * len(nodes))))
    plan = _Plan(
        rounds,
        dim,
        per_round,
        params,
        rng,
        strategy,
        min(min_nodes, per_round),
        trim_ratio,
        fedbuff_k,
    )
    run = _fedbuff_rounds if strategy == "fedbuff" else _batch_rounds
    result = FederatedResult(LogisticRegressionModel(init_weights(dim - 1), scaler))
    for outcome in run(nodes, plan):
        result.model = LogisticRegressionModel(outcome.weights, scaler)
        stats = _record(outcome, nodes, strategy, log)
        result.history.append(stats)
        if on_round:
            on_round(stats)
    return result


@dataclass(frozen=True)
class _Plan:
    """What both round loops need to know."""

    rounds: int
    dim: int
    per_round: int
    params: TrainingParams
    rng: np.random.Generator
    strategy: str
    min_nodes: int
    trim_ratio: float
    fedbuff_k: int | None


def _batch_rounds(nodes: list[_Node], plan: _Plan) -> Iterator[RoundOutcome]:
    agg = BatchAggregator(
        dim=plan.dim,
        min_nodes=plan.min_nodes,
        max_age_s=math.inf,
        strategy=plan.strategy,
        trim_ratio=plan.trim_ratio,
    )
    for r in range(plan.rounds):
        for idx in sorted(plan.rng.choice(len(nodes), plan.per_round, replace=False)):
            node = nodes[idx]
            w = plan.params.train(agg.weights, node.x, node.y, plan.rng)
            loss = log_loss(w, node.x, node.y)
            agg.submit(
                ClientUpdate(node.node_id, w, len(node.y), agg.version, float(r), local_loss=loss)
            )
        outcome = agg.aggregate(now=float(r))
        if outcome is not None:
            yield outcome


def _fedbuff_rounds(nodes: list[_Node], plan: _Plan) -> Iterator[RoundOutcome]:
    """Asynchrony by simulation: each node trains from the version it last saw,
    so updates arrive with real version staleness."""
    agg = FedBuffAggregator(dim=plan.dim, k=plan.fedbuff_k or max(1, plan.per_round // 2))
    base = {n.node_id: 0 for n in nodes}
    produced, tick = 0, 0
    while produced < plan.rounds and tick < plan.rounds * 100:
        tick += 1
        for idx in plan.rng.choice(len(nodes), plan.per_round, replace=False):
            node = nodes[idx]
            start = agg.history.get(base[node.node_id], agg.weights)
            w = plan.params.train(start, node.x, node.y, plan.rng)
            update = ClientUpdate(
                node.node_id,
                w,
                len(node.y),
                base[node.node_id],
                float(tick),
                local_loss=log_loss(w, node.x, node.y),
            )
            base[node.node_id] = agg.version
            outcome = agg.submit(update, now=float(tick))
            if outcome is not None:
                produced += 1
                yield outcome
                if produced >= plan.rounds:
                    return


def _record(
    outcome: RoundOutcome, nodes: list[_Node], strategy: str, log: AggregationLog | None
) -> RoundStats:
    started = time.time()
    metrics = global_metrics(Confusion.of(outcome.weights, n.hx, n.hy) for n in nodes)
    participants = [p.update.node_id for p in outcome.participants]
    stats = RoundStats(
        outcome.version,
        outcome.version,
        participants,
        outcome.n_total,
        metrics.loss,
        metrics.f1,
        metrics.precision,
        metrics.recall,
        metrics.accuracy,
        len(outcome.discarded),
    )
    if log is not None:
        log.append(
            round_record(
                outcome,
                metrics,
                round_no=outcome.version,
                mode="simulation",
                strategy=strategy,
                started_at=started,
                eval_version=outcome.version,
            )
        )
    return stats
