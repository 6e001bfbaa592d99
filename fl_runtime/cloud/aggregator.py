"""The cloud aggregator service: weight updates in, global models out.

Batch mode runs a round every ``AGGREGATION_INTERVAL_SECONDS`` over the latest
valid, fresh update of each node (``BatchAggregator``); async mode runs FedBuff
(``FedBuffAggregator``). Each global model goes to the compacted ``global-model``
topic and each round to the aggregation log. On start the service reads the
latest global model back, so a restarted aggregator continues from that version.
A node joins by simply publishing updates: nothing here lists the nodes.

Each global model also carries the alert threshold: the participants' score
histograms for the newest evaluated version are summed and the threshold chosen
from them (``DETECTION_TARGET_PRECISION``; :mod:`fl_runtime.core.threshold`). A
round without histograms carries the last learned threshold forward, also across
a restart. A fixed ``DETECTION_THRESHOLD`` is applied by the scorers, not here.

Each global model also carries what the nodes' local training needs from the
strategy, so ``AGGREGATION_STRATEGY`` on this host alone decides for the fleet: its
name (``fedbuff`` in async mode), ``fedprox_mu`` (this host's ``FEDPROX_MU``, under
fedprox in either mode), SCAFFOLD's server variate ``control`` (batch mode) and the
label counts pooled from every node's latest held-out evaluation (``tp + fn``
positives of ``n``; CLASS_WEIGHT = balanced uses them).

Restart: the weights, version, round and threshold resume from the latest global
model, and so does SCAFFOLD's server variate (with the nodes seen rebuilt from that
model's participants, until others publish again). fedavgm's velocity and fedadam's
moments are not on the wire: they start again at zero (fedadam's first steps are
bias-corrected ones again). Feature statistics, evaluations and label counts are
rebuilt from the next updates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from fl_runtime.cloud.agglog import AggregationLog, round_record
from fl_runtime.config import Config
from fl_runtime.core.evaluation import GlobalMetrics, global_metrics
from fl_runtime.core.features import WEIGHT_DIM
from fl_runtime.core.messages import (
    GlobalModel,
    WeightUpdate,
    decode_global,
    decode_update,
    encode_global,
)
from fl_runtime.core.model import Confusion
from fl_runtime.core.scaling import FeatureStats, Scaler, merge_all
from fl_runtime.core.strategy import BatchAggregator, ClientUpdate, FedBuffAggregator, RoundOutcome
from fl_runtime.core.threshold import Histogram, LearnedThreshold, learn_threshold
from fl_runtime.errors import ValidationError
from fl_runtime.service import deadletter
from fl_runtime.service.common import (
    Shutdown,
    event,
    kafka_consumer_conf,
    kafka_producer_conf,
    watermarks,
)

log = logging.getLogger("fl_runtime.aggregator")
GLOBAL_KEY = b"global"

UPDATES = Counter("fl_aggregator_updates_total", "Weight updates received", ["node", "result"])
ROUNDS = Counter("fl_aggregator_rounds_total", "Aggregation rounds completed")
DEAD = Counter("fl_aggregator_dead_letter_total", "Rejected update payloads", ["reason"])
VERSION = Gauge("fl_aggregator_global_version", "Version of the latest global model")
PARTICIPANTS = Gauge("fl_aggregator_round_participants", "Nodes in the latest round")
THRESHOLD = Gauge("fl_aggregator_threshold", "Alert threshold published with the latest model")


def load_latest_global(cfg: Config, timeout_s: float = 10.0) -> GlobalModel | None:
    """Read the compacted global-model topic to its end; return the newest model."""
    consumer = Consumer(kafka_consumer_conf(cfg, f"fl-global-reader-{time.time_ns()}"))
    try:
        topic = cfg.kafka.global_model_topic
        meta = consumer.list_topics(topic, timeout=timeout_s)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            return None
        parts = list(meta.topics[topic].partitions)
        latest: GlobalModel | None = None
        for p in parts:
            low, high = watermarks(consumer, topic, p, timeout_s)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            deadline = time.monotonic() + timeout_s
            position = low
            while position < high and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                position = (msg.offset() or 0) + 1
                try:
                    model = decode_global(msg.value() or b"")
                except ValidationError as exc:
                    log.warning(
                        "ignoring an invalid global model at offset %s: %s", msg.offset(), exc
                    )
                    continue
                if latest is None or model.version > latest.version:
                    latest = model
        return latest
    finally:
        consumer.close()


@dataclass
class AggregatorState:
    """Everything the service keeps between rounds besides the strategy object."""

    round: int = 0
    stats: dict[str, FeatureStats] = field(default_factory=dict)
    evals: dict[str, Confusion] = field(default_factory=dict)
    eval_versions: dict[str, int] = field(default_factory=dict)
    hists: dict[str, tuple[Histogram, Histogram]] = field(default_factory=dict)
    local_loss: dict[str, float | None] = field(default_factory=dict)
    threshold: float | None = None  # the last one published


class AggregatorService:
    def __init__(
        self, cfg: Config, *, mode: str | None = None, shutdown: Shutdown | None = None
    ) -> None:
        self.cfg = cfg
        self.mode = mode or cfg.aggregation.mode
        self.shutdown = shutdown or Shutdown()
        self.log = AggregationLog(cfg.aggregation.log_path)
        self.state = AggregatorState()
        self.producer = Producer(kafka_producer_conf(cfg, "fl-aggregator", **{"linger.ms": 0}))
        self.consumer = Consumer(kafka_consumer_conf(cfg, "fl-aggregator"))
        self.strategy_name = "fedbuff" if self.mode == "async" else cfg.aggregation.strategy
        self.batch: BatchAggregator | None = None
        self.fedbuff: FedBuffAggregator | None = None

    # ------------------------------------------------------------------ start-up
    def _resume(self) -> None:
        latest = load_latest_global(self.cfg)
        last = self.log.last()
        initial = latest.weights_array() if latest else None
        version = latest.version if latest else 0
        self.state.round = max(last.round if last else 0, latest.round if latest else 0)
        self.state.threshold = latest.threshold if latest else None
        if latest:
            event(
                log,
                "resuming from the latest global model",
                version=version,
                round=self.state.round,
                threshold=self.state.threshold,
            )
        from fl_runtime.core.strategy import (
            ASYNC_STRATEGIES,
            ServerOptimizerSettings,
            server_optimizer,
        )

        # Server optimizer state (fedavgm's velocity, fedadam's moments) lives in
        # memory: after a restart it starts again at zero, and the weights resume from
        # the latest global model above. SCAFFOLD's server variate comes back with it.
        agg = self.cfg.aggregation
        if self.mode == "async" and agg.strategy not in ASYNC_STRATEGIES:
            event(
                log,
                "strategy not available in async mode, FedBuff runs fedavg",
                logging.WARNING,
                strategy=agg.strategy,
            )
        optimizer = server_optimizer(
            agg.strategy,
            ServerOptimizerSettings(
                agg.server_learning_rate,
                agg.server_momentum,
                agg.adam_beta1,
                agg.adam_beta2,
                agg.adam_epsilon,
            ),
        )
        if self.mode == "async":
            self.fedbuff = FedBuffAggregator(
                dim=WEIGHT_DIM,
                strategy=agg.strategy if agg.strategy in ASYNC_STRATEGIES else "fedavg",
                optimizer=optimizer,
                scaler=self._scaler,  # the optimizer steps on standardised weights
                k=self.cfg.aggregation.fedbuff_k,
                server_lr=self.cfg.aggregation.fedbuff_server_lr,
                max_staleness=self.cfg.aggregation.max_staleness_versions,
                max_age_s=self.cfg.aggregation.max_weight_age_seconds,
                max_norm=self.cfg.aggregation.max_update_norm,
                initial=initial,
                version=version,
            )
        else:
            self.batch = BatchAggregator(
                dim=WEIGHT_DIM,
                optimizer=optimizer,
                scaler=self._scaler,  # the optimizer steps on standardised weights
                min_nodes=self.cfg.aggregation.min_nodes,
                max_age_s=self.cfg.aggregation.max_weight_age_seconds,
                strategy=self.cfg.aggregation.strategy,
                trim_ratio=self.cfg.aggregation.trim_ratio,
                max_norm=self.cfg.aggregation.max_update_norm,
                initial=initial,
                version=version,
                control=np.array(latest.control) if latest and latest.control else None,
                seen=latest.participants if latest else (),
            )
        VERSION.set(version)

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        self._resume()
        self.consumer.subscribe([self.cfg.kafka.weights_topic])
        next_round = time.monotonic() + self.cfg.aggregation.interval_seconds
        event(
            log,
            "aggregator started",
            mode=self.mode,
            strategy=self.strategy_name,
            min_nodes=self.cfg.aggregation.min_nodes,
            max_weight_age=self.cfg.aggregation.max_weight_age_seconds,
            target_precision=self.cfg.detection.target_precision,
            fixed_threshold=self._fixed_threshold(),
        )
        try:
            while not self.shutdown.requested:
                msg = self.consumer.poll(0.5)
                if msg is not None:
                    self._handle(msg)
                if self.batch is not None and time.monotonic() >= next_round:
                    next_round = time.monotonic() + self.cfg.aggregation.interval_seconds
                    self._batch_round()
                self.producer.poll(0)
        finally:
            self.producer.flush(10)
            self.consumer.close()
            event(log, "aggregator stopped", round=self.state.round)

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        payload = msg.value() or b""
        try:
            update = decode_update(payload)
        except ValidationError as exc:
            self._dead_letter(payload, exc, msg.key())
            return
        self._remember(update)
        client = ClientUpdate(
            update.node_id,
            update.weights_array(),
            update.n_samples,
            update.base_version,
            update.timestamp,
            update.update_id,
            update.local_loss,
            control_delta=None
            if update.control_delta is None
            else np.asarray(update.control_delta, dtype=np.float64),
        )
        if self.fedbuff is not None:
            outcome = self.fedbuff.submit(client, now=time.time())
            UPDATES.labels(update.node_id, "accepted").inc()
            if outcome is not None:
                self._finish_round(outcome, started=time.time())
        else:
            assert self.batch is not None
            rejection = self.batch.submit(client)
            UPDATES.labels(update.node_id, rejection.reason if rejection else "accepted").inc()
        self.consumer.commit(message=msg, asynchronous=True)

    def _dead_letter(self, payload: bytes, exc: ValidationError, key: bytes | None) -> None:
        DEAD.labels(exc.reason).inc()
        event(
            log,
            "update rejected to dead letter",
            logging.WARNING,
            reason=exc.reason,
            detail=exc.detail,
        )
        deadletter.publish(
            self.producer,
            self.cfg.kafka.dead_letter_topic,
            payload,
            reason=exc.reason,
            detail=exc.detail,
            source=f"aggregator:{self.cfg.kafka.weights_topic}",
            node_id=(key or b"").decode("utf-8", "replace") or None,
            key=key,
        )

    def _remember(self, update: WeightUpdate) -> None:
        node = update.node_id
        if update.feature_stats is not None:
            fs = update.feature_stats
            self.state.stats[node] = FeatureStats(fs.n, np.array(fs.mean), np.array(fs.m2))
        if update.evaluation is not None:
            ev = update.evaluation
            self.state.evals[node] = Confusion(ev.tp, ev.fp, ev.tn, ev.fn, ev.loss_sum, ev.n)
            self.state.eval_versions[node] = ev.version
            if ev.score_hist_pos is not None and ev.score_hist_neg is not None:
                self.state.hists[node] = (ev.score_hist_pos, ev.score_hist_neg)
            else:
                self.state.hists.pop(node, None)
        self.state.local_loss[node] = update.local_loss

    # ------------------------------------------------------------------ rounds
    def _batch_round(self) -> None:
        assert self.batch is not None
        started = time.time()
        outcome = self.batch.aggregate(now=started)
        if outcome is None:
            waiting = self.batch.fresh_count(started)
            event(
                log,
                "round skipped: not enough fresh updates",
                logging.DEBUG,
                waiting=waiting,
                min_nodes=self.batch.min_nodes,
            )
            return
        self._finish_round(outcome, started)

    def _finish_round(self, outcome: RoundOutcome, started: float) -> None:
        t0 = time.perf_counter()
        scaler = self._scaler()
        metrics, eval_version = self._metrics(outcome)
        threshold = self._threshold(outcome, eval_version)
        self.state.round += 1
        model = GlobalModel(
            version=outcome.version,
            round=self.state.round,
            weights=outcome.weights.tolist(),
            timestamp=time.time(),
            strategy=self.strategy_name,
            participants=[p.update.node_id for p in outcome.participants],
            n_total=outcome.n_total,
            scaler_mean=scaler.mean.tolist() if scaler else None,
            scaler_std=scaler.std.tolist() if scaler else None,
            threshold=threshold.threshold,
            **self._for_nodes(),
        )
        aggregate_ms = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        self.producer.produce(
            self.cfg.kafka.global_model_topic, key=GLOBAL_KEY, value=encode_global(model)
        )
        remaining = self.producer.flush(30)
        if remaining:
            raise KafkaException(f"global model {model.version} not delivered within 30 s")
        publish_ms = (time.perf_counter() - t1) * 1000
        self.state.threshold = threshold.threshold
        timings = {
            "aggregate_ms": round(aggregate_ms, 3),
            "publish_ms": round(publish_ms, 3),
            "round_wall_s": round(time.time() - started, 3),
        }
        self.log.append(
            round_record(
                outcome,
                metrics,
                round_no=self.state.round,
                mode=self.mode,
                strategy=self.strategy_name,
                started_at=started,
                eval_version=eval_version,
                timings=timings,
                threshold=threshold,
                fixed_threshold=self._fixed_threshold(),
            )
        )
        ROUNDS.inc()
        VERSION.set(outcome.version)
        PARTICIPANTS.set(len(outcome.participants))
        if threshold.threshold is not None:
            THRESHOLD.set(threshold.threshold)
        event(
            log,
            "round complete",
            round=self.state.round,
            version=outcome.version,
            nodes=",".join(model.participants),
            n=outcome.n_total,
            loss=None if metrics.loss is None else round(metrics.loss, 4),
            f1=None if metrics.f1 is None else round(metrics.f1, 4),
            threshold=threshold.threshold,
            threshold_source=threshold.source,
            discarded=len(outcome.discarded),
        )

    def _for_nodes(self) -> dict[str, Any]:
        """The global model's fields for the nodes' local training (see the module)."""
        agg = self.cfg.aggregation
        scaffold = self.batch is not None and self.batch.strategy == "scaffold"
        evals = self.state.evals.values()
        n = sum(c.n for c in evals)
        return {
            "fedprox_mu": self.cfg.training.fedprox_mu if agg.strategy == "fedprox" else None,
            "control": self.batch.control.tolist() if scaffold and self.batch else None,
            "label_counts": [n, sum(c.tp + c.fn for c in evals)] if n else None,
        }

    def _scaler(self) -> Scaler | None:
        merged = merge_all(self.state.stats.values())
        return Scaler.from_stats(merged) if merged.n > 1 else None

    def _metrics(self, outcome: RoundOutcome) -> tuple[GlobalMetrics, int | None]:
        """Federated evaluation of the newest global version that participants evaluated."""
        nodes = [p.update.node_id for p in outcome.participants]
        versions = [self.state.eval_versions[n] for n in nodes if n in self.state.eval_versions]
        if not versions:
            return global_metrics([]), None
        newest = max(versions)
        counts = [self.state.evals[n] for n in nodes if self.state.eval_versions.get(n) == newest]
        return global_metrics(counts), newest

    def _threshold(self, outcome: RoundOutcome, eval_version: int | None) -> LearnedThreshold:
        """The threshold from the participants' histograms of ``eval_version`` (the
        version ``_metrics`` evaluated), or the last one carried forward."""
        nodes = [p.update.node_id for p in outcome.participants]
        hists = [
            self.state.hists[n]
            for n in nodes
            if n in self.state.hists and self.state.eval_versions.get(n) == eval_version
        ]
        return learn_threshold(
            hists if eval_version is not None else [],
            target_precision=self.cfg.detection.target_precision,
            previous=self.state.threshold,
        )

    def _fixed_threshold(self) -> float | None:
        """``DETECTION_THRESHOLD`` when set (the scorers apply it), else None."""
        fixed = self.cfg.detection.threshold
        return fixed if fixed >= 0 else None
