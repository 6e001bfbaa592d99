"""Aggregation strategies: pure functions first, small stateful classes after.

Pure functions over ``(weights, n_samples)`` pairs (no I/O, no state)::

    fedavg(updates)                 sum(n_k / n * w_k), in float64
    coordinate_median(updates)      per-coordinate median (robust to a minority)
    trimmed_mean(updates, ratio)    per-coordinate mean without the extremes
    validate_weights(w, ...)        None, or the reason an update is unusable
    staleness_weight(s)             FedBuff's down-weighting of stale updates
    scaffold_control(...)           a SCAFFOLD node's new control variate

Server optimizers (FedOpt, Reddi et al. 2021), small classes with in-memory state:
:class:`FedAvgM` and :class:`FedAdam` treat the averaged update as a pseudo-gradient.

Strategies by name (:data:`STRATEGIES`) and where their work happens:

==============  ======================================  =================  ==========
name            server                                  node               modes
==============  ======================================  =================  ==========
fedavg          sample-weighted mean                    plain SGD          batch
median          coordinate median                       plain SGD          batch
trimmed-mean    trimmed mean                            plain SGD          batch
fedprox         sample-weighted mean (= fedavg)         + mu/2 ||w-w_g||²  batch, async
fedavgm         mean, then heavy-ball momentum step     plain SGD          batch, async
fedadam         mean, then an Adam step                 plain SGD          batch, async
scaffold        mean, and the server control variate    + (c - c_i)        batch
==============  ======================================  =================  ==========

Async (FedBuff) mode is its own server rule; fedprox needs nothing from it, and
fedavgm/fedadam take its buffered, staleness-weighted delta as their pseudo-gradient.

Stateful aggregators over :class:`ClientUpdate`:

* :class:`BatchAggregator`: a round every interval over the latest fresh update
  of each node, with partial participation (``min_nodes``), a staleness limit
  (``max_age_s``) and late arrivals kept for the next round.
* :class:`FedBuffAggregator`: asynchronous buffered aggregation; every ``k``
  updates the buffered deltas are averaged, each down-weighted by how many
  global versions behind it was computed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fl_runtime.core.scaling import Scaler, from_raw, to_raw
from fl_runtime.errors import ValidationError

log = logging.getLogger(__name__)

Update = tuple[np.ndarray, int]
STRATEGIES = ("fedavg", "median", "trimmed-mean", "fedprox", "fedavgm", "fedadam", "scaffold")
SERVER_OPTIMIZERS = ("fedavgm", "fedadam")
ASYNC_STRATEGIES = ("fedavg", "fedprox", *SERVER_OPTIMIZERS)  # what FedBuff can run


def _stack(updates: Sequence[Update]) -> tuple[np.ndarray, np.ndarray]:
    if not updates:
        raise ValueError("no updates to aggregate")
    weights = np.stack([np.asarray(w, dtype=np.float64) for w, _ in updates])
    counts = np.asarray([n for _, n in updates], dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError("every update must be a 1-D weight vector")
    if (counts <= 0).any():
        raise ValueError("every update needs n_samples > 0")
    return weights, counts


def fedavg(updates: Sequence[Update]) -> np.ndarray:
    """FedAvg: the average of the weights, each weighted by its share of samples."""
    weights, counts = _stack(updates)
    result: np.ndarray = (counts / counts.sum()) @ weights
    return result


def coordinate_median(updates: Sequence[Update]) -> np.ndarray:
    """Per-coordinate median of the weights (sample counts are ignored on purpose:
    a poisoned node could otherwise claim a huge n_k)."""
    weights, _ = _stack(updates)
    result: np.ndarray = np.median(weights, axis=0)
    return result


def trimmed_mean(updates: Sequence[Update], trim_ratio: float = 0.2) -> np.ndarray:
    """Per-coordinate mean after dropping the ``trim_ratio`` lowest and highest values."""
    if not 0.0 <= trim_ratio < 0.5:
        raise ValueError("trim_ratio must be in [0, 0.5)")
    weights, _ = _stack(updates)
    k = math.floor(trim_ratio * weights.shape[0])
    ordered = np.sort(weights, axis=0)
    result: np.ndarray = ordered[k : weights.shape[0] - k].mean(axis=0)
    return result


def aggregate(name: str, updates: Sequence[Update], *, trim_ratio: float = 0.2) -> np.ndarray:
    """Dispatch by strategy name (one of :data:`STRATEGIES`): how the updates are
    combined. fedprox, fedavgm, fedadam and scaffold combine by FedAvg; what they add
    happens on the node or in the server optimizer."""
    if name in ("fedavg", "fedprox", "fedavgm", "fedadam", "scaffold"):
        return fedavg(updates)
    if name == "median":
        return coordinate_median(updates)
    if name == "trimmed-mean":
        return trimmed_mean(updates, trim_ratio)
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def validate_weights(weights: np.ndarray, *, dim: int, max_norm: float) -> ValidationError | None:
    """The reason ``weights`` cannot be aggregated, or None when they can."""
    w = np.asarray(weights)
    if w.ndim != 1 or w.shape[0] != dim:
        return ValidationError(
            "wrong-dimension", f"weights have shape {w.shape}, expected ({dim},)"
        )
    if not np.isfinite(w).all():
        bad = "NaN" if np.isnan(w).any() else "inf"
        return ValidationError("not-finite", f"weights contain {bad}")
    norm = float(np.linalg.norm(w))
    if norm > max_norm:
        return ValidationError("absurd-norm", f"weight norm {norm:.3g} exceeds {max_norm:.3g}")
    return None


def staleness_weight(versions_behind: int, exponent: float = 0.5) -> float:
    """FedBuff's polynomial discount: ``(1 + s) ** -exponent``; 1.0 for a fresh update."""
    if versions_behind < 0:
        raise ValueError("versions_behind must be >= 0")
    return float((1.0 + versions_behind) ** -exponent)


def scaffold_control(
    control: np.ndarray,
    server_control: np.ndarray,
    start: np.ndarray,
    trained: np.ndarray,
    *,
    steps: int,
    learning_rate: float,
) -> np.ndarray:
    """A SCAFFOLD node's new control variate (Karimireddy et al. 2020, option II):
    ``c_i - c + (x - y_i) / (K * lr)``, the mean corrected gradient over its ``K`` local
    steps from ``start`` (the global weights ``x``) to ``trained`` (``y_i``)."""
    if steps < 1 or learning_rate <= 0:
        raise ValueError("need steps >= 1 and learning_rate > 0")
    result: np.ndarray = control - server_control + (start - trained) / (steps * learning_rate)
    return result


@dataclass(frozen=True)
class ServerOptimizerSettings:
    """The server optimizer's hyper-parameters (SERVER_LEARNING_RATE, SERVER_MOMENTUM,
    ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON)."""

    learning_rate: float = 1.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.99
    epsilon: float = 1e-3


class FedAvgM:
    """FedAvgM (Hsu et al. 2019): heavy-ball momentum on the server.

    With ``d`` the pseudo-gradient (averaged weights minus current weights):
    ``v = momentum * v + d``, ``w += learning_rate * v``. Momentum carries the
    direction most nodes agree on across rounds and damps the round-to-round swing
    that skewed nodes cause. State: the velocity, in memory only; a restarted
    aggregator starts it again at zero from the latest global model.
    """

    def __init__(self, *, learning_rate: float = 1.0, momentum: float = 0.9) -> None:
        if learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError("momentum must be in [0, 1)")
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocity: np.ndarray | None = None

    def step(self, weights: np.ndarray, pseudo_gradient: np.ndarray) -> np.ndarray:
        d = np.asarray(pseudo_gradient, dtype=np.float64)
        self.velocity = d if self.velocity is None else self.momentum * self.velocity + d
        result: np.ndarray = weights + self.learning_rate * self.velocity
        return result


class FedAdam:
    """FedAdam (Reddi et al. 2021): an Adam step on the server, bias-corrected.

    ``m = b1 m + (1 - b1) d``, ``v = b2 v + (1 - b2) d²`` and
    ``w += lr_t * m / (sqrt(v) + epsilon)`` with ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``
    (Kingma and Ba's correction, as Flower does). Per-coordinate step sizes help
    when features move at very different rates. ``epsilon`` (Reddi's tau) bounds
    the step where updates are tiny. State: the moments and step count, in memory
    only; a restarted aggregator resets them and resumes the weights from the latest
    global model, so the first steps after a restart are again bias-corrected ones.
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.99,
        epsilon: float = 1e-3,
    ) -> None:
        if learning_rate <= 0 or epsilon <= 0:
            raise ValueError("learning_rate and epsilon must be > 0")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError("beta1 and beta2 must be in [0, 1)")
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.t = 0

    def step(self, weights: np.ndarray, pseudo_gradient: np.ndarray) -> np.ndarray:
        d = np.asarray(pseudo_gradient, dtype=np.float64)
        m = np.zeros_like(d) if self.m is None else self.m
        v = np.zeros_like(d) if self.v is None else self.v
        self.t += 1
        self.m = self.beta1 * m + (1 - self.beta1) * d
        self.v = self.beta2 * v + (1 - self.beta2) * d * d
        rate = self.learning_rate * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        result: np.ndarray = weights + rate * self.m / (np.sqrt(self.v) + self.epsilon)
        return result


ServerOptimizer = FedAvgM | FedAdam
# The federated scaler now, or None: lets the fleet's aggregator, which holds
# raw-feature weights, run its optimizer on standardised ones.
ScalerSource = Callable[[], Scaler | None]


def server_step(
    optimizer: ServerOptimizer,
    weights: np.ndarray,
    target: np.ndarray,
    scaler: Scaler | None = None,
) -> np.ndarray:
    """The optimizer's step from ``weights`` with pseudo-gradient ``target - weights``.

    With ``scaler`` the weights are raw-feature weights and the step is taken on their
    standardised form (:func:`~fl_runtime.core.scaling.from_raw` is linear). FedAvgM is
    the same either way; FedAdam is not: its per-coordinate steps of about
    ``learning_rate`` are sensible for standardised weights and far too large for the
    coefficient of, say, a temperature in degrees (measured: F1 0.19 instead of 0.86)."""
    if scaler is None:
        return optimizer.step(weights, target - weights)
    w = from_raw(weights, scaler)
    return to_raw(optimizer.step(w, from_raw(target, scaler) - w), scaler)


def server_optimizer(
    strategy: str, settings: ServerOptimizerSettings | None = None
) -> ServerOptimizer | None:
    """The server optimizer a strategy runs (fedavgm, fedadam), or None."""
    s = settings or ServerOptimizerSettings()
    if strategy == "fedavgm":
        return FedAvgM(learning_rate=s.learning_rate, momentum=s.momentum)
    if strategy == "fedadam":
        return FedAdam(
            learning_rate=s.learning_rate, beta1=s.beta1, beta2=s.beta2, epsilon=s.epsilon
        )
    return None


@dataclass(frozen=True)
class ClientUpdate:
    """One node's update as the aggregator sees it (decoded, not yet trusted)."""

    node_id: str
    weights: np.ndarray
    n_samples: int
    base_version: int
    timestamp: float
    update_id: str = ""
    local_loss: float | None = None
    evaluation: object | None = None  # fl_runtime.core.model.Confusion-like counts, opaque here
    feature_stats: object | None = None  # fl_runtime.core.scaling.FeatureStats, opaque here
    control_delta: np.ndarray | None = None  # SCAFFOLD: the node's c_i(new) - c_i(old)


@dataclass(frozen=True)
class Rejection:
    node_id: str
    reason: str
    detail: str
    update_id: str = ""


@dataclass(frozen=True)
class Participation:
    update: ClientUpdate
    staleness_s: float
    staleness_versions: int


@dataclass(frozen=True)
class RoundOutcome:
    """What a round produced: the new weights and who did (not) take part."""

    weights: np.ndarray
    version: int
    participants: list[Participation]
    discarded: list[Rejection] = field(default_factory=list)

    @property
    def n_total(self) -> int:
        return sum(p.update.n_samples for p in self.participants)


class _Base:
    def __init__(
        self, *, dim: int, max_norm: float, initial: np.ndarray | None, version: int
    ) -> None:
        self.dim = dim
        self.max_norm = max_norm
        self.version = version
        self.weights = np.zeros(dim) if initial is None else np.asarray(initial, dtype=np.float64)
        self._rejected: list[Rejection] = []

    def _reject(self, update: ClientUpdate, reason: str, detail: str) -> Rejection:
        rejection = Rejection(update.node_id, reason, detail, update.update_id)
        log.warning(
            "discarding update %s from node %s: %s: %s",
            update.update_id,
            update.node_id,
            reason,
            detail,
        )
        self._rejected.append(rejection)
        return rejection

    def _admit(self, update: ClientUpdate) -> Rejection | None:
        problem = validate_weights(update.weights, dim=self.dim, max_norm=self.max_norm)
        if problem is None and update.control_delta is not None:
            problem = validate_weights(update.control_delta, dim=self.dim, max_norm=self.max_norm)
        if problem is not None:
            return self._reject(update, problem.reason, problem.detail)
        if update.n_samples <= 0:
            return self._reject(update, "out-of-range", "n_samples must be > 0")
        if update.base_version > self.version:
            return self._reject(
                update,
                "future-version",
                f"base_version {update.base_version} > current {self.version}",
            )
        return None

    def _take_rejections(self) -> list[Rejection]:
        taken, self._rejected = self._rejected, []
        return taken


class BatchAggregator(_Base):
    """Synchronous rounds with partial participation, staleness and late arrivals.

    ``submit`` keeps only the newest update per node (a later one replaces an
    older one). ``aggregate(now)`` discards updates older than ``max_age_s``,
    runs when at least ``min_nodes`` fresh updates remain, and consumes them. An
    update that arrives after its round closed is simply in the buffer for the
    next round ("late arrival"), where it counts with its version staleness.

    Runs every strategy of :data:`STRATEGIES`. fedavgm and fedadam step their
    ``optimizer`` (built from defaults when none is given) with the combined weights
    minus the current ones; a late arrival's weights simply count in that mean.
    scaffold also keeps the server control variate ``control`` (``c``), moved by
    ``|S| / N`` times the participants' mean ``control_delta`` (``N``: nodes seen).
    Every admitted update's delta counts, also one whose weights a newer update from
    the same node replaces before the round (the node adopts the variate of the last
    update it published, used or not). A node that publishes several updates from one
    base sends each relative to the variate it had at that base, so a second one from
    the same ``base_version`` moves ``c`` only by what it adds to the delta already
    counted. Optimizer moments live in memory: a new aggregator starts them
    at zero from the ``initial`` weights. ``control`` and the nodes ``seen`` can be
    given (the fleet's aggregator restores them from the latest global model: its
    variate and its participants); the deltas already applied per base are not kept.
    ``scaler`` (see :func:`server_step`) is for weights on raw features, as the
    fleet's are.
    """

    def __init__(
        self,
        *,
        dim: int,
        min_nodes: int = 1,
        max_age_s: float = 120.0,
        strategy: str = "fedavg",
        trim_ratio: float = 0.2,
        max_norm: float = 1e4,
        initial: np.ndarray | None = None,
        version: int = 0,
        optimizer: ServerOptimizer | None = None,
        scaler: ScalerSource | None = None,
        control: np.ndarray | None = None,
        seen: Sequence[str] = (),
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        if min_nodes < 1:
            raise ValueError("min_nodes must be >= 1")
        super().__init__(dim=dim, max_norm=max_norm, initial=initial, version=version)
        self.min_nodes = min_nodes
        self.max_age_s = max_age_s
        self.strategy = strategy
        self.trim_ratio = trim_ratio
        self.optimizer = optimizer or server_optimizer(strategy)
        self.scaler = scaler
        # SCAFFOLD's server control variate c
        self.control = np.zeros(dim) if control is None else np.asarray(control, dtype=np.float64)
        self.seen: set[str] = set(seen)
        self.applied: dict[str, tuple[int, np.ndarray]] = {}  # node: (base, delta in c)
        self.control_moves: list[np.ndarray] = []  # deltas admitted since the last round
        self.pending: dict[str, ClientUpdate] = {}

    def submit(self, update: ClientUpdate) -> Rejection | None:
        rejection = self._admit(update)
        if rejection is not None:
            return rejection
        current = self.pending.get(update.node_id)
        if current is not None and current.timestamp > update.timestamp:
            return self._reject(
                update, "superseded", f"node already has a newer update {current.update_id}"
            )
        self.pending[update.node_id] = update
        self.seen.add(update.node_id)
        if self.strategy == "scaffold" and update.control_delta is not None:
            self._count_control(update)
        return None

    def _count_control(self, u: ClientUpdate) -> None:
        delta = np.asarray(u.control_delta, dtype=np.float64)
        base, counted = self.applied.get(u.node_id, (-1, np.zeros(self.dim)))
        self.control_moves.append(delta - counted if base == u.base_version else delta)
        self.applied[u.node_id] = (u.base_version, delta)

    def _move_control(self) -> None:
        if self.control_moves:
            moved = np.sum(self.control_moves, axis=0) / max(len(self.seen), 1)
            self.control = self.control + moved
            self.control_moves = []

    def _expire(self, now: float) -> None:
        for node_id, update in list(self.pending.items()):
            age = now - update.timestamp
            if age > self.max_age_s:
                del self.pending[node_id]
                self._reject(
                    update, "stale", f"age {age:.1f} s > MAX_WEIGHT_AGE {self.max_age_s:g} s"
                )

    def fresh_count(self, now: float) -> int:
        return sum(1 for u in self.pending.values() if now - u.timestamp <= self.max_age_s)

    def ready(self, now: float) -> bool:
        return self.fresh_count(now) >= self.min_nodes

    def aggregate(self, now: float) -> RoundOutcome | None:
        """Run a round if enough fresh updates are waiting, else None."""
        self._expire(now)
        if len(self.pending) < self.min_nodes:
            return None
        used = sorted(self.pending.values(), key=lambda u: u.node_id)
        self.pending.clear()
        combined = aggregate(
            self.strategy, [(u.weights, u.n_samples) for u in used], trim_ratio=self.trim_ratio
        )
        if self.optimizer is not None:
            scaler = self.scaler() if self.scaler else None
            combined = server_step(self.optimizer, self.weights, combined, scaler)
        if self.strategy == "scaffold":
            self._move_control()
        self.weights = combined
        self.version += 1
        participants = [
            Participation(u, max(now - u.timestamp, 0.0), self.version - 1 - u.base_version)
            for u in used
        ]
        return RoundOutcome(
            self.weights.copy(), self.version, participants, self._take_rejections()
        )


class FedBuffAggregator(_Base):
    """Asynchronous buffered aggregation (FedBuff, Nguyen et al. 2022).

    Each update is turned into a delta against the global model it started from
    (kept in a short history). Every ``k`` buffered deltas the server applies
    ``w += server_lr * sum(a_i * n_i * d_i) / sum(a_i * n_i)``, where
    ``a_i = staleness_weight(versions behind)``. Updates more than
    ``max_staleness`` versions behind, or older than ``max_age_s``, are discarded.

    Strategies (:data:`ASYNC_STRATEGIES`): fedavg and fedprox use the rule above
    (fedprox differs only on the node). fedavgm and fedadam hand that buffered mean
    delta to their ``optimizer`` as its pseudo-gradient, which then replaces
    ``server_lr``. scaffold is batch-only: its control variates assume every
    participant started from the current global model. Optimizer state is in memory
    and starts again at zero when a new aggregator resumes from a global model.
    ``scaler``: as for :class:`BatchAggregator`.
    """

    def __init__(
        self,
        *,
        dim: int,
        k: int = 2,
        server_lr: float = 1.0,
        max_staleness: int = 20,
        max_age_s: float = math.inf,
        staleness_exponent: float = 0.5,
        max_norm: float = 1e4,
        initial: np.ndarray | None = None,
        version: int = 0,
        strategy: str = "fedavg",
        optimizer: ServerOptimizer | None = None,
        scaler: ScalerSource | None = None,
    ) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        if strategy not in ASYNC_STRATEGIES:
            raise ValueError(
                f"strategy {strategy!r} cannot run in async mode; "
                f"choose one of {', '.join(ASYNC_STRATEGIES)}"
            )
        super().__init__(dim=dim, max_norm=max_norm, initial=initial, version=version)
        self.k = k
        self.strategy = strategy
        self.optimizer = optimizer or server_optimizer(strategy)
        self.scaler = scaler
        self.server_lr = server_lr
        self.max_staleness = max_staleness
        self.max_age_s = max_age_s
        self.exponent = staleness_exponent
        self.history: dict[int, np.ndarray] = {version: self.weights.copy()}
        self.buffer: list[tuple[ClientUpdate, np.ndarray, float]] = []

    def submit(self, update: ClientUpdate, now: float) -> RoundOutcome | None:
        """Buffer one update; returns the new global model when the buffer is full."""
        if self._admit(update) is not None:
            return None
        behind = self.version - update.base_version
        age = now - update.timestamp
        if behind > self.max_staleness or update.base_version not in self.history:
            self._reject(update, "stale", f"{behind} versions behind (limit {self.max_staleness})")
            return None
        if age > self.max_age_s:
            self._reject(update, "stale", f"age {age:.1f} s > MAX_WEIGHT_AGE {self.max_age_s:g} s")
            return None
        delta = update.weights - self.history[update.base_version]
        self.buffer.append((update, delta, age))
        if len(self.buffer) < self.k:
            return None
        return self._flush()

    def _flush(self) -> RoundOutcome:
        scale = np.array(
            [
                staleness_weight(self.version - u.base_version, self.exponent) * u.n_samples
                for u, _, _ in self.buffer
            ]
        )
        deltas = np.stack([d for _, d, _ in self.buffer])
        mean_delta = (scale / scale.sum()) @ deltas
        if self.optimizer is not None:
            scaler = self.scaler() if self.scaler else None
            self.weights = server_step(
                self.optimizer, self.weights, self.weights + mean_delta, scaler
            )
        else:
            self.weights = self.weights + self.server_lr * mean_delta
        participants = [
            Participation(u, max(age, 0.0), self.version - u.base_version)
            for u, _, age in self.buffer
        ]
        self.buffer = []
        self.version += 1
        self.history[self.version] = self.weights.copy()
        for old in [v for v in self.history if v < self.version - self.max_staleness]:
            del self.history[old]
        return RoundOutcome(
            self.weights.copy(), self.version, participants, self._take_rejections()
        )
