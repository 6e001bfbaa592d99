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
from fl_runtime.core.model import (
    Confusion,
    LogisticRegressionModel,
    balanced_class_weight,
    init_weights,
    local_steps,
    log_loss,
    sgd,
)
from fl_runtime.core.scaling import FeatureStats, Scaler, merge_all
from fl_runtime.core.strategy import (
    STRATEGIES,
    BatchAggregator,
    ClientUpdate,
    FedBuffAggregator,
    RoundOutcome,
    ServerOptimizerSettings,
    scaffold_control,
    server_optimizer,
)
from fl_runtime.sim.partition import Partition

SIM_STRATEGIES = (*STRATEGIES, "fedbuff")


@dataclass(frozen=True)
class TrainingParams:
    """Local training: the ``[training]`` settings a node uses."""

    learning_rate: float = 0.05
    batch_size: int = 32
    local_epochs: int = 1
    l2: float = 1e-4
    fedprox_mu: float = 0.1
    class_weight: str = "none"  # or "balanced", from federated label counts

    def train(
        self,
        w: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        rng: np.random.Generator,
        epochs: int | None = None,
        *,
        anchor: np.ndarray | None = None,
        correction: np.ndarray | None = None,
        class_weight: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Local SGD; with ``anchor`` (FedProx) the proximal term ``fedprox_mu``
        pulls toward it, ``correction`` is SCAFFOLD's ``c - c_i``."""
        return sgd(
            w,
            x,
            y,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            epochs=self.local_epochs if epochs is None else epochs,
            l2=self.l2,
            rng=rng,
            class_weight=class_weight,
            prox_mu=self.fedprox_mu if anchor is not None else 0.0,
            anchor=anchor,
            correction=correction,
        )

    def class_weight_for(self, ys: Sequence[np.ndarray]) -> tuple[float, float] | None:
        """Balanced class weights from label counts summed over ``ys`` (for the
        federation: every node's counts, as the server would sum them), or None."""
        if self.class_weight == "none":
            return None
        n = sum(len(y) for y in ys)
        return balanced_class_weight(n, int(sum(int(np.sum(y)) for y in ys)))


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
    server: ServerOptimizerSettings | None = None,
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
        server=server or ServerOptimizerSettings(),
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
    server: ServerOptimizerSettings,
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
        server,
        params.class_weight_for([y for _, y in train]),
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
    server: ServerOptimizerSettings
    class_weight: tuple[float, float] | None


def _batch_rounds(nodes: list[_Node], plan: _Plan) -> Iterator[RoundOutcome]:
    agg = BatchAggregator(
        dim=plan.dim,
        min_nodes=plan.min_nodes,
        max_age_s=math.inf,
        strategy=plan.strategy,
        trim_ratio=plan.trim_ratio,
        optimizer=server_optimizer(plan.strategy, plan.server),
    )
    controls = {n.node_id: np.zeros(plan.dim) for n in nodes}  # SCAFFOLD: state each node keeps
    for r in range(plan.rounds):
        for idx in sorted(plan.rng.choice(len(nodes), plan.per_round, replace=False)):
            node = nodes[idx]
            update = _local_update(node, agg, controls, plan, float(r))
            agg.submit(update)
        outcome = agg.aggregate(now=float(r))
        if outcome is not None:
            yield outcome


def _local_update(
    node: _Node,
    agg: BatchAggregator,
    controls: dict[str, np.ndarray],
    plan: _Plan,
    now: float,
) -> ClientUpdate:
    """One node's round: local SGD from the global model, with the proximal term
    (fedprox) or the drift correction and a new control variate (scaffold)."""
    start = agg.weights
    scaffold = plan.strategy == "scaffold"
    w = plan.params.train(
        start,
        node.x,
        node.y,
        plan.rng,
        anchor=start if plan.strategy == "fedprox" else None,
        correction=agg.control - controls[node.node_id] if scaffold else None,
        class_weight=plan.class_weight,
    )
    delta = None
    if scaffold:
        new = scaffold_control(
            controls[node.node_id],
            agg.control,
            start,
            w,
            steps=local_steps(len(node.y), plan.params.batch_size, plan.params.local_epochs),
            learning_rate=plan.params.learning_rate,
        )
        delta, controls[node.node_id] = new - controls[node.node_id], new
    loss = log_loss(w, node.x, node.y)
    return ClientUpdate(
        node.node_id, w, len(node.y), agg.version, now, local_loss=loss, control_delta=delta
    )


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
            w = plan.params.train(start, node.x, node.y, plan.rng, class_weight=plan.class_weight)
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
