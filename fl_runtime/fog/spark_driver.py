"""Spark Structured Streaming driver for the fog node (``fl fog``).

The query reads ``sensor-data-node-<id>`` through Spark's Kafka connector and
hands each micro-batch to :class:`fl_runtime.fog.FogTrainer` via ``foreachBatch``.
A listener thread follows the ``global-model`` topic; at start-up the node waits
until it has read that topic to its end, so a recovering node trains from the
latest global model before it publishes anything.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from fl_runtime.config import Config
from fl_runtime.core.messages import WeightUpdate, decode_global, encode_update
from fl_runtime.errors import ServiceError, ValidationError
from fl_runtime.fog.trainer import FogTrainer, Rejected
from fl_runtime.service import deadletter
from fl_runtime.service.common import (
    Shutdown,
    event,
    kafka_consumer_conf,
    kafka_producer_conf,
    watermarks,
)

log = logging.getLogger("fl_runtime.fog")


_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 30.0


class GlobalModelListener(threading.Thread):
    """Follows the compacted global-model topic from its beginning.

    ``caught_up`` is set once the topic was read to the end it had when the listener
    first reached it (or on stop). If Kafka cannot be reached, at start or later, the
    listener retries with exponential backoff (``_RETRY_FIRST_S`` doubling up to
    ``_RETRY_MAX_S``) until stopped, logging each kind of failure once, not each attempt.
    """

    def __init__(
        self, cfg: Config, node_id: str, trainer: FogTrainer, stop: threading.Event
    ) -> None:
        super().__init__(name="global-model-listener", daemon=True)
        self.cfg = cfg
        self.trainer = trainer
        self.stop = stop
        self.caught_up = threading.Event()
        self.consumer = Consumer(kafka_consumer_conf(cfg, f"fl-fog-{node_id}-global"))
        self.failures: dict[str, int] = {}

    def run(self) -> None:
        delay = _RETRY_FIRST_S
        try:
            while not self.stop.is_set():
                try:
                    self._follow()
                except Exception as exc:  # Kafka down, a topic missing: retry, never die
                    if not self.failures:  # a new outage starts with the short delay
                        delay = _RETRY_FIRST_S
                    self._note_failure(exc, delay)
                    self.stop.wait(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
        finally:
            self.caught_up.set()
            self.consumer.close()

    def _follow(self) -> None:
        """Assign every partition from the beginning, then hand each model to the trainer."""
        topic = self.cfg.kafka.global_model_topic
        meta = self.consumer.list_topics(topic, timeout=15)
        parts = list(meta.topics[topic].partitions) if topic in meta.topics else []
        if not parts:
            self.caught_up.set()  # nothing to catch up on, but keep trying to follow
            raise ServiceError(f"topic {topic} has no partitions (topic-missing)")
        ends = {p: watermarks(self.consumer, topic, p)[1] for p in parts}
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._recovered()
        positions = dict.fromkeys(parts, 0)
        if all(end == 0 for end in ends.values()):
            self.caught_up.set()
        while not self.stop.is_set():
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error():
                continue  # librdkafka reconnects by itself once assigned
            positions[msg.partition() or 0] = (msg.offset() or 0) + 1
            try:
                self.trainer.offer_global(decode_global(msg.value() or b""))
            except ValidationError as exc:
                log.warning("ignoring an invalid global model: %s", exc)
            if not self.caught_up.is_set() and all(positions[p] >= ends[p] for p in parts):
                self.caught_up.set()

    def _note_failure(self, exc: Exception, retry_in: float) -> None:
        kind = _failure_kind(exc)
        seen = self.failures.get(kind, 0) + 1
        self.failures[kind] = seen
        event(
            log,
            "global-model topic unreachable, retrying",
            logging.WARNING if seen == 1 else logging.DEBUG,
            kind=kind,
            error=str(exc)[:300],
            attempts=seen,
            retry_in=retry_in,
        )

    def _recovered(self) -> None:
        if self.failures:
            event(log, "global-model topic reachable again", failures=dict(self.failures))
            self.failures.clear()


def _failure_kind(exc: Exception) -> str:
    """``KafkaException: _TRANSPORT``-style: the class and, for Kafka, the error code."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return f"KafkaException: {exc.args[0].name()}"
    return type(exc).__name__


def publish_dead_letter(
    producer: Any, cfg: Config, node_id: str, rejected: Rejected, wait_s: float = 30.0
) -> None:
    """A rejected reading to the dead-letter topic (bounded, see ``service.deadletter``).

    While the producer's queue is full it waits, up to ``wait_s``; a record the producer
    refuses outright is logged and skipped, so one bad reading cannot stop the node.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            deadletter.publish(
                producer,
                cfg.kafka.dead_letter_topic,
                rejected.payload,
                reason=rejected.reason,
                detail=rejected.detail,
                source=f"fog:{cfg.kafka.sensor_topic(node_id)}",
                node_id=node_id,
            )
            return
        except BufferError:
            if time.monotonic() >= deadline:
                raise ServiceError(f"dead-letter queue still full after {wait_s:.0f} s") from None
            producer.poll(0.1)
        except KafkaException as exc:
            if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].fatal():
                raise
            event(
                log,
                "dead letter refused by Kafka, skipped",
                logging.ERROR,
                reason=rejected.reason,
                error=str(exc)[:300],
                bytes=len(rejected.payload or b""),
            )
            return


def spark_jars(cfg: Config) -> list[str]:
    """The Kafka connector jars: SPARK_JARS, else the artifact cache, else none
    (hosts provisioned by Ansible have them in pyspark/jars)."""
    if cfg.fog.spark_jars:
        return [j for j in cfg.fog.spark_jars.split(",") if j]
    try:
        from fl_runtime.artifacts import spark_kafka_jars

        cache = Path(os.environ.get("FL_ARTIFACTS_DIR", ".artifacts"))
        return [str(p) for p in spark_kafka_jars(cache)]
    except Exception:  # no cache here: rely on pyspark/jars
        return []


def build_session(cfg: Config, node_id: str) -> Any:
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(cfg.fog.spark_master)
        .appName(f"fl-fog-{node_id}")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", os.environ.get("FL_SPARK_DRIVER_MEMORY", "512m"))
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
    )
    if cfg.fog.spark_master.startswith("local"):
        # Everything runs in this process: keep Spark's driver on loopback.
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
            "spark.driver.host", "127.0.0.1"
        )
    jars = spark_jars(cfg)
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def run(cfg: Config, node_id: str, shutdown: Shutdown | None = None) -> None:
    shutdown = shutdown or Shutdown()
    state_dir = Path(cfg.fog.checkpoint_dir) / f"node-{node_id}"
    producer = Producer(kafka_producer_conf(cfg, f"fl-fog-{node_id}", **{"linger.ms": 0}))

    def publish(update: WeightUpdate) -> None:
        producer.produce(cfg.kafka.weights_topic, key=node_id.encode(), value=encode_update(update))
        if producer.flush(30):
            raise ServiceError("weight update not delivered within 30 s")
        event(
            log,
            "weight update published",
            base_version=update.base_version,
            n_samples=update.n_samples,
            loss=update.local_loss,
        )

    def dead_letter(rejected: Rejected) -> None:
        publish_dead_letter(producer, cfg, node_id, rejected)

    trainer = FogTrainer(cfg, node_id, publish, state_dir)
    stop = threading.Event()
    listener = GlobalModelListener(cfg, node_id, trainer, stop)
    listener.start()
    if not listener.caught_up.wait(30):
        log.warning("global-model topic not read to its end within 30 s; starting anyway")
    spark = build_session(cfg, node_id)

    def on_batch(batch_df: Any, batch_id: int) -> None:
        rows = batch_df.select("value").collect()
        counts = trainer.process_batch((r["value"] for r in rows), int(batch_id), dead_letter)
        producer.flush(30)
        if counts["valid"] or counts["invalid"]:
            event(log, "micro-batch", logging.DEBUG, batch=batch_id, **counts)

    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
        .option("kafka.security.protocol", cfg.kafka.security_protocol)
        .option("subscribe", cfg.kafka.sensor_topic(node_id))
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", "20000")
        .load()
    )
    query = (
        stream.writeStream.foreachBatch(on_batch)
        .option("checkpointLocation", str(state_dir / "spark"))
        .trigger(processingTime=f"{cfg.fog.trigger_seconds} seconds")
        .start()
    )
    event(
        log,
        "fog node started",
        node=node_id,
        topic=cfg.kafka.sensor_topic(node_id),
        master=cfg.fog.spark_master,
        base_version=trainer.base_version,
    )
    try:
        while not shutdown.requested and query.isActive:
            shutdown.wait(1.0)
            trainer.maybe_publish()  # publish on time even when no new batch arrives
        exc = query.exception()
        if exc is not None:
            raise ServiceError(f"streaming query failed: {exc}")
    finally:
        stop.set()
        if query.isActive:
            query.stop()
        producer.flush(10)
        spark.stop()
        event(log, "fog node stopped", node=node_id, last_batch=trainer.last_batch_id)
        time.sleep(0)
