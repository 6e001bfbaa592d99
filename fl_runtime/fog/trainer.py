"""The fog node: local training on this node's readings, weights out, globals in.

:class:`FogTrainer` holds the learning state and does the work of one micro-batch
(parse and validate, standardise, local SGD, keep a held-out slice, publish an
update when ``WEIGHT_PUBLISH_INTERVAL_SECONDS`` have passed). Only labelled readings
are trained on or held out; unlabelled ones (most of them in production) are
counted and left to the scorer. It has no Spark in
it, so it is unit-tested directly; :func:`run` drives it from a Spark Structured
Streaming query on ``sensor-data-node-<id>`` through ``foreachBatch``.

Raw readings never leave this process: what goes out is a weight vector, the
sample count, feature summaries ``(n, mean, M2)`` and evaluation counts with
per-class histograms of the global model's scores, from which the aggregator
learns the alert threshold.

Weights on the wire are for *raw* features (see :func:`fl_runtime.core.scaling.to_raw`);
training runs on features standardised with the federated scaler carried by the
global model (local statistics until the first global model arrives).

Strategies: the node does what the global model it trains from asks, whatever its
own ``AGGREGATION_STRATEGY`` (set on the aggregator's host only), so one inventory
setting on the aggregator runs the whole fleet. A model carrying ``fedprox_mu`` adds
FedProx's proximal term with that mu (a model from an aggregator that predates the
field, with strategy ``fedprox``, gets this node's own ``FEDPROX_MU``). A model with
strategy ``scaffold`` adds SCAFFOLD's correction ``c - c_i``: ``c`` comes with the
model (``control``), ``c_i`` is this node's variate. At each publish the node sends
``c_i(new) - c_i`` with ``c_i(new)`` from :func:`~fl_runtime.core.strategy.scaffold_control`
over the local steps since the base; ``c_i(new)`` becomes the node's variate when the
next global model arrives, and only if an update was actually published. Every update
from one base is relative to the same ``c_i``, so the aggregator counts only what a
later one adds (see :class:`~fl_runtime.core.strategy.BatchAggregator`). A model
of another strategy resets ``c_i`` to zero, as the server's ``c`` starts from zero
when SCAFFOLD is switched on. The variates are not re-expressed when the federated
scaler moves between versions (it moves little once the fleet has seen a few
thousand readings). Before the first global model the node follows its own setting.
``CLASS_WEIGHT = balanced`` weights by the label counts the global model pools over
the fleet (``label_counts``), and by this node's own counts until a model carries them.

Restart safety: Spark's checkpoint holds the Kafka offsets, and the trainer's own
state (weights, base version, feature stats, held-out slice, last batch id, and what
the strategy needs: the global model's strategy, mu, control variate and label
counts, this node's variate, the staged new one and the local steps since the base)
is saved atomically after every batch into ``CHECKPOINT_DIR/node-<id>/state.npz``.
A state file from before the strategies loads with their neutral values (no variate,
no pooled counts; the next global model brings the rest).
A replayed batch (same batch id after a crash) is skipped, so a restart neither
re-trains on old data nor skips new data. On start the node also reads the
latest global model from Kafka, so a recovering node rejoins at once.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from fl_runtime.config import Config
from fl_runtime.core.features import N_FEATURES, WEIGHT_DIM
from fl_runtime.core.messages import (
    READING_SCHEMAS,
    EvalCounts,
    FeatureStatsMsg,
    GlobalModel,
    WeightUpdate,
    validate_reading_dict,
)
from fl_runtime.core.model import (
    Confusion,
    balanced_class_weight,
    init_weights,
    local_steps,
    log_loss,
    predict_proba,
    sgd,
)
from fl_runtime.core.scaling import FeatureStats, Scaler, from_raw, to_raw
from fl_runtime.core.strategy import scaffold_control
from fl_runtime.core.threshold import score_histogram
from fl_runtime.errors import ValidationError

log = logging.getLogger("fl_runtime.fog")

ROWS = Counter("fl_fog_rows_total", "Rows seen by the fog node", ["result"])
UPDATES = Counter("fl_fog_updates_published_total", "Weight updates published")
BASE_VERSION = Gauge("fl_fog_base_version", "Global version local training started from")
HOLDOUT_MAX = 5000
UNLABELLED = -1  # the label parse_rows gives a reading without one


_COUNTS = ("valid", "invalid", "trained", "held_out", "unlabelled")


@dataclass(frozen=True)
class Rejected:
    payload: bytes
    reason: str
    detail: str


def parse_rows(
    values: Iterable[bytes | str | None], node_id: str
) -> tuple[np.ndarray, np.ndarray, list[str], list[Rejected]]:
    """Validate raw Kafka values: features, labels (:data:`UNLABELLED` for a reading
    without one), message ids, and rejects with reasons."""
    feats: list[list[float]] = []
    labels: list[int] = []
    ids: list[str] = []
    rejected: list[Rejected] = []
    for raw in values:
        payload = raw.encode() if isinstance(raw, str) else (raw or b"")
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict):
                raise ValidationError("not-object", "reading must be a JSON object")
            if doc.get("schema") not in READING_SCHEMAS:
                raise ValidationError("schema", f"schema is {str(doc.get('schema'))[:60]!r}")
            reading = validate_reading_dict(doc)
            if reading.node_id != node_id:
                raise ValidationError(
                    "wrong-node", f"reading for node {reading.node_id} on node {node_id}"
                )
        except ValidationError as exc:
            rejected.append(Rejected(payload, exc.reason, exc.detail))
            continue
        except (ValueError, RecursionError) as exc:
            rejected.append(Rejected(payload, "not-json", str(exc)[:200]))
            continue
        feats.append(reading.features())
        labels.append(UNLABELLED if reading.anomaly is None else reading.anomaly)
        ids.append(reading.message_id)
    x = np.asarray(feats, dtype=np.float64).reshape(-1, N_FEATURES)
    return x, np.asarray(labels, dtype=np.int8), ids, rejected


def is_holdout(message_id: str, fraction: float) -> bool:
    """Deterministic per-reading split: the same reading is always on the same side."""
    return (zlib.crc32(message_id.encode()) % 10_000) < fraction * 10_000


class FogTrainer:
    """The learning state of one fog node and the work of one micro-batch."""

    def __init__(
        self,
        cfg: Config,
        node_id: str,
        publish: Callable[[WeightUpdate], None],
        state_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.publish = publish
        self.state_path = (state_dir / "state.npz") if state_dir else None
        self.lock = threading.Lock()  # guards pending_global (listener thread)
        self.work = threading.RLock()  # one of process_batch / maybe_publish at a time
        self.rng = np.random.default_rng()
        self.global_raw = init_weights(N_FEATURES)
        self.global_scaler: Scaler | None = None
        self.base_version = 0
        self.weights_std = init_weights(N_FEATURES)  # local weights, standardised space
        self.scaler = Scaler.identity()
        self.stats = FeatureStats.empty()
        self.n_since_base = 0
        self.loss_since_base: list[float] = []
        self.hold_x: deque[np.ndarray] = deque(maxlen=HOLDOUT_MAX)
        self.hold_y: deque[int] = deque(maxlen=HOLDOUT_MAX)
        self.last_batch_id = -1
        self.last_publish = time.monotonic()
        self.pending_global: GlobalModel | None = None
        # what the global model asks of local training (None: no global model yet)
        self.global_strategy: str | None = None
        self.global_mu: float | None = None
        self.label_counts: tuple[int, int] | None = None  # pooled [n, positives]
        # SCAFFOLD, in the standardised space of the global scaler
        self.server_control = np.zeros(WEIGHT_DIM)  # c, from the global model
        self.control = np.zeros(WEIGHT_DIM)  # c_i, this node's variate since the base
        self.control_next: np.ndarray | None = None  # c_i(new) of the last published update
        self.steps_since_base = 0
        self._load_state()

    # ----------------------------------------------------------------- global models
    def offer_global(self, model: GlobalModel) -> None:
        """Called from the listener thread; applied at the start of the next batch."""
        with self.lock:
            if model.version > self.base_version and (
                self.pending_global is None or model.version > self.pending_global.version
            ):
                self.pending_global = model

    def _apply_pending_global(self) -> None:
        with self.lock:
            model, self.pending_global = self.pending_global, None
        if model is None or model.version <= self.base_version:
            return
        self.global_raw = model.weights_array()
        if model.scaler_mean is not None and model.scaler_std is not None:
            self.global_scaler = Scaler(np.array(model.scaler_mean), np.array(model.scaler_std))
        self._follow(model)
        self.base_version = model.version
        self._restart_from_global()
        BASE_VERSION.set(model.version)
        log.info("restarting local training from global version %d", model.version)

    def _follow(self, model: GlobalModel) -> None:
        """Take what local training needs from a new global model; adopt the variate
        of the last update published from the previous base."""
        if model.strategy != self.global_strategy:
            log.info("following strategy %s from global version %d", model.strategy, model.version)
        self.global_strategy = model.strategy
        self.global_mu = model.fedprox_mu
        if model.label_counts is not None:  # else keep the last pooled counts
            self.label_counts = (model.label_counts[0], model.label_counts[1])
        self.server_control = (
            np.array(model.control) if model.control is not None else np.zeros(WEIGHT_DIM)
        )
        if model.strategy != "scaffold":  # the server's c restarts at zero with scaffold
            self.control, self.control_next = np.zeros(WEIGHT_DIM), None
        elif self.control_next is not None:
            self.control, self.control_next = self.control_next, None

    def strategy(self) -> str:
        """The strategy local training follows: the global model's, else this node's."""
        return self.global_strategy or self.cfg.aggregation.strategy

    def prox_mu(self) -> float:
        """FedProx's mu: the global model's, else this node's FEDPROX_MU under fedprox."""
        if self.global_mu is not None:
            return self.global_mu
        return self.cfg.training.fedprox_mu if self.strategy() == "fedprox" else 0.0

    def _restart_from_global(self) -> None:
        self.scaler = self.global_scaler or self._local_scaler()
        self.weights_std = from_raw(self.global_raw, self.scaler)
        self.n_since_base = 0
        self.loss_since_base = []
        self.steps_since_base = 0

    def _local_scaler(self) -> Scaler:
        return Scaler.from_stats(self.stats) if self.stats.n > 1 else Scaler.identity()

    # ----------------------------------------------------------------- micro-batches
    def process_batch(
        self,
        values: Iterable[bytes | str | None],
        batch_id: int,
        dead_letter: Callable[[Rejected], None] | None = None,
    ) -> dict[str, int]:
        """Train on one micro-batch. Returns counts: valid, invalid, then how the valid
        ones were used (trained + held_out + unlabelled == valid), and skipped."""
        with self.work:
            return self._process_batch(values, batch_id, dead_letter)

    def _process_batch(
        self,
        values: Iterable[bytes | str | None],
        batch_id: int,
        dead_letter: Callable[[Rejected], None] | None,
    ) -> dict[str, int]:
        if batch_id <= self.last_batch_id:
            log.info("skipping replayed batch %d (already trained)", batch_id)
            return {**dict.fromkeys(_COUNTS, 0), "skipped": 1}
        self._apply_pending_global()
        x, y, ids, rejected = parse_rows(values, self.node_id)
        for r in rejected:
            ROWS.labels(f"invalid:{r.reason}").inc()
            if dead_letter is not None:
                dead_letter(r)
        labelled = y != UNLABELLED
        hold = labelled & np.array(
            [is_holdout(i, self.cfg.training.holdout_fraction) for i in ids], dtype=bool
        )
        for row, label in zip(x[hold], y[hold], strict=True):
            self.hold_x.append(row)
            self.hold_y.append(int(label))
        train = labelled & ~hold
        tx, ty = x[train], y[train]
        if len(ty):
            self._train(tx, ty)
        counts = {
            "valid": len(ids),
            "invalid": len(rejected),
            "trained": len(ty),
            "held_out": int(hold.sum()),
            "unlabelled": int((~labelled).sum()),
        }
        for result in ("trained", "held_out", "unlabelled"):
            ROWS.labels(result).inc(counts[result])
        self.last_batch_id = batch_id
        self._save_state()
        self.maybe_publish()
        return {**counts, "skipped": 0}

    def _train(self, x: np.ndarray, y: np.ndarray) -> None:
        self.stats = self.stats.merge(FeatureStats.of(x))
        if self.global_scaler is None and self.base_version == 0:
            # No federated scaler yet: condition on local statistics, keeping the model.
            raw = to_raw(self.weights_std, self.scaler) if self.n_since_base else self.global_raw
            self.scaler = self._local_scaler()
            self.weights_std = from_raw(raw, self.scaler)
        xs = self.scaler.transform(x)
        mu = self.prox_mu()
        scaffold = self.strategy() == "scaffold"
        training = self.cfg.training
        self.weights_std = sgd(
            self.weights_std,
            xs,
            y,
            learning_rate=self.cfg.training.learning_rate,
            batch_size=self.cfg.training.batch_size,
            epochs=self.cfg.training.local_epochs,
            l2=self.cfg.training.l2,
            rng=self.rng,
            class_weight=self._class_weight(y),
            # FedProx: pull toward the global model this node started from
            prox_mu=mu,
            anchor=from_raw(self.global_raw, self.scaler) if mu > 0 else None,
            # SCAFFOLD: the drift correction c - c_i
            correction=self.server_control - self.control if scaffold else None,
        )
        self.loss_since_base.append(log_loss(self.weights_std, xs, y))
        self.n_since_base += len(y)
        self.steps_since_base += local_steps(len(y), training.batch_size, training.local_epochs)

    def _class_weight(self, y: np.ndarray) -> tuple[float, float] | None:
        """CLASS_WEIGHT = balanced: weights from the label counts the global model pools
        over the fleet's held-out slices; until a model carries them, from this node's
        own (its held-out slice, a fixed random share of its readings, and this batch)."""
        if self.cfg.training.class_weight == "none":
            return None
        if self.label_counts is not None and self.label_counts[0] > 0:
            return balanced_class_weight(*self.label_counts)
        n = len(self.hold_y) + len(y)
        return balanced_class_weight(n, sum(self.hold_y) + int(y.sum()))

    # ----------------------------------------------------------------- publishing
    def maybe_publish(self, force: bool = False) -> WeightUpdate | None:
        """Publish an update when one is due. A newer global model that arrived in
        the meantime is applied first: progress on an outdated base is dropped
        rather than sent (a restarted node never publishes from its old base)."""
        with self.work:
            self._apply_pending_global()
            due = (
                time.monotonic() - self.last_publish >= self.cfg.fog.weight_publish_interval_seconds
            )
            if not (due or force) or self.n_since_base == 0:
                return None
            update = self.make_update()
            self.publish(update)
            if update.control_delta is not None:  # published: stage c_i(new)
                self.control_next = self.control + np.array(update.control_delta)
            self.last_publish = time.monotonic()
            UPDATES.inc()
            return update

    def make_update(self) -> WeightUpdate:
        return WeightUpdate(
            update_id=f"{self.node_id}-{uuid.uuid4().hex[:12]}",
            node_id=self.node_id,
            base_version=self.base_version,
            weights=to_raw(self.weights_std, self.scaler).tolist(),
            n_samples=self.n_since_base,
            timestamp=time.time(),
            local_loss=float(np.mean(self.loss_since_base)) if self.loss_since_base else None,
            evaluation=self._evaluate_base(),
            feature_stats=FeatureStatsMsg(
                self.stats.n, self.stats.mean.tolist(), np.maximum(self.stats.m2, 0.0).tolist()
            )
            if self.stats.n
            else None,
            control_delta=self._control_delta(),
        )

    def _control_delta(self) -> list[float] | None:
        """SCAFFOLD: ``c_i(new) - c_i`` over the local steps since the base, or None."""
        if self.strategy() != "scaffold" or self.steps_since_base == 0:
            return None
        new = scaffold_control(
            self.control,
            self.server_control,
            from_raw(self.global_raw, self.scaler),
            self.weights_std,
            steps=self.steps_since_base,
            learning_rate=self.cfg.training.learning_rate,
        )
        delta: list[float] = (new - self.control).tolist()
        return delta

    def _evaluate_base(self) -> EvalCounts | None:
        """Counts of the global model this node started from, on its held-out slice,
        with per-class histograms of its scores (the threshold is learned from them)."""
        if self.base_version == 0 or not self.hold_y:
            return None
        hx = np.vstack(list(self.hold_x))
        hy = np.asarray(self.hold_y, dtype=np.int8)
        # the raw-space model evaluates raw features directly
        c = Confusion.of(self.global_raw, hx, hy)
        pos, neg = score_histogram(predict_proba(self.global_raw, hx), hy)
        return EvalCounts(self.base_version, c.tp, c.fp, c.tn, c.fn, c.loss_sum, c.n, pos, neg)

    # ----------------------------------------------------------------- persistence
    def _save_state(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        hold_x = np.vstack(list(self.hold_x)) if self.hold_x else np.zeros((0, N_FEATURES))
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                weights_std=self.weights_std,
                scaler_mean=self.scaler.mean,
                scaler_std=self.scaler.std,
                global_raw=self.global_raw,
                base_version=self.base_version,
                stats_n=self.stats.n,
                stats_mean=self.stats.mean,
                stats_m2=self.stats.m2,
                n_since_base=self.n_since_base,
                last_batch_id=self.last_batch_id,
                hold_x=hold_x,
                hold_y=np.asarray(self.hold_y, dtype=np.int8),
                has_global_scaler=self.global_scaler is not None,
                **self._strategy_state(),
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def _load_state(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        with np.load(self.state_path) as s:
            self.weights_std = s["weights_std"]
            self.scaler = Scaler(s["scaler_mean"], s["scaler_std"])
            if bool(s["has_global_scaler"]):
                self.global_scaler = self.scaler
            self.global_raw = s["global_raw"]
            self.base_version = int(s["base_version"])
            self.stats = FeatureStats(int(s["stats_n"]), s["stats_mean"], s["stats_m2"])
            self.n_since_base = int(s["n_since_base"])
            self.last_batch_id = int(s["last_batch_id"])
            for row, label in zip(s["hold_x"], s["hold_y"], strict=True):
                self.hold_x.append(row)
                self.hold_y.append(int(label))
            if "control" in s.files:  # saved since the strategies came to the fleet
                self._load_strategy_state(s)
        log.info(
            "restored state: base version %d, last batch %d, %d samples seen",
            self.base_version,
            self.last_batch_id,
            self.stats.n,
        )

    def _strategy_state(self) -> dict[str, Any]:
        """What the strategies keep across a restart, as arrays (None: NaN or -1)."""
        return {
            "global_strategy": np.array(self.global_strategy or ""),
            "global_mu": np.array(np.nan if self.global_mu is None else self.global_mu),
            "label_counts": np.array(self.label_counts or (-1, -1)),
            "server_control": self.server_control,
            "control": self.control,
            "control_next": np.full(WEIGHT_DIM, np.nan)
            if self.control_next is None
            else self.control_next,
            "steps_since_base": np.array(self.steps_since_base),
        }

    def _load_strategy_state(self, s: np.lib.npyio.NpzFile) -> None:
        self.global_strategy = str(s["global_strategy"]) or None
        mu = float(s["global_mu"])
        self.global_mu = None if np.isnan(mu) else mu
        n, positives = (int(v) for v in s["label_counts"])
        self.label_counts = None if n < 0 else (n, positives)
        self.server_control = s["server_control"]
        self.control = s["control"]
        staged = s["control_next"]
        self.control_next = None if np.isnan(staged).any() else staged
        self.steps_since_base = int(s["steps_since_base"])
