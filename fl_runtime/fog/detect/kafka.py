"""The scorer's Kafka side: ship the spool to the anomalies topic, follow global models.

Both survive a Kafka that is down at start or goes away later: the shipper hands
records to an idempotent ``acks=all`` producer that never gives up on a message and
deletes them from the spool only on a successful delivery report; the follower keeps
retrying until the global-model topic answers, then reads it from the beginning.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fl_runtime.config import Config
from fl_runtime.core.messages import GlobalModel, decode_global
from fl_runtime.errors import ValidationError
from fl_runtime.fog.detect.metrics import DetectMetrics
from fl_runtime.fog.detect.spool import Spool
from fl_runtime.service.common import event, kafka_consumer_conf, kafka_producer_conf

_MAX_IN_FLIGHT = 5000  # records handed to the producer and not yet confirmed
_TAKE = 500
_RETRY_SECONDS = 2.0
_CLIENT_LOG_INTERVAL = 30.0  # librdkafka repeats each connection failure; one per kind is enough
# A cut link is retried calmly: at most every 10 s, not every 100 ms.
_BACKOFF = {"reconnect.backoff.ms": 500, "reconnect.backoff.max.ms": 10_000}


class _OncePerInterval(logging.Filter):
    """Lets through one client log line per kind (its first words) per interval."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.getMessage().split(":", 1)[0][:60]
        now = time.monotonic()
        if now - self._last.get(kind, -self._interval) < self._interval:
            return False
        self._last[kind] = now
        return True


def client_logger() -> logging.Logger:
    """The logger handed to librdkafka, rate-limited."""
    log = logging.getLogger("fl_runtime.detect.kafka")
    if not log.filters:
        log.addFilter(_OncePerInterval(_CLIENT_LOG_INTERVAL))
    return log


class Shipper:
    """Spool -> anomalies topic, keyed by device id, at least once. Runs on the caller's
    thread: :meth:`pump` hands new records over and serves delivery reports."""

    def __init__(
        self,
        cfg: Config,
        client_id: str,
        spool: Spool,
        metrics: DetectMetrics,
        log: logging.Logger,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self._conf = kafka_producer_conf(
            cfg,
            client_id,
            **{
                "queue.buffering.max.messages": 2 * _MAX_IN_FLIGHT,
                "error_cb": functools.partial(_kafka_error, log),
                "logger": client_logger(),
                **_BACKOFF,
            },
        )
        self._factory = producer_factory or _confluent_producer
        self._topic = cfg.kafka.anomalies_topic
        self._spool = spool
        self._metrics = metrics
        self._log = log
        self._producer = self._factory(self._conf)
        self._handed = 0  # highest spool id handed to the producer
        self._in_flight: set[int] = set()
        self._confirmed: list[int] = []
        self._broken = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def pump(self, timeout: float) -> None:
        """Hand new spooled records over, wait up to ``timeout`` for delivery reports,
        and delete what Kafka confirmed."""
        self._delete_confirmed()
        if self._broken:
            self._rebuild()
        room = _MAX_IN_FLIGHT - len(self._in_flight)
        if room > 0:
            for rec in self._spool.take(self._handed, min(room, _TAKE)):
                self._producer.produce(
                    self._topic,
                    value=rec.value,
                    key=rec.key.encode(),
                    on_delivery=functools.partial(self._delivered, rec.id),
                )
                self._in_flight.add(rec.id)
                self._handed = rec.id
        self._producer.poll(timeout)
        self._delete_confirmed()

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` for what is in flight; returns how many are left."""
        left = int(self._producer.flush(timeout))
        self._delete_confirmed()
        return left

    def _delete_confirmed(self) -> None:
        confirmed, self._confirmed = self._confirmed, []
        self._spool.delete(confirmed)

    def _delivered(self, spool_id: int, err: Any, _msg: Any) -> None:
        self._in_flight.discard(spool_id)
        if err is None:
            self._confirmed.append(spool_id)
            self._metrics.kafka_delivered.inc()
            return
        # With message.timeout.ms=0 only a fatal producer error ends up here: start a
        # new producer and send again everything still in the spool.
        self._metrics.kafka_delivery_errors.inc()
        self._broken = True
        event(self._log, "kafka delivery failed", logging.ERROR, error=str(err))

    def _rebuild(self) -> None:
        event(self._log, "restarting the kafka producer; the spool is sent again", logging.WARNING)
        self._producer.flush(0)
        self._producer = self._factory(self._conf)
        self._in_flight.clear()
        self._handed = 0
        self._broken = False


class ModelFollower(threading.Thread):
    """Follows the compacted global-model topic from its beginning, forever retrying
    while Kafka is unreachable; each model goes to ``on_model``."""

    def __init__(
        self,
        cfg: Config,
        group_id: str,
        on_model: Callable[[GlobalModel], None],
        stop: threading.Event,
        log: logging.Logger,
    ) -> None:
        super().__init__(name="global-model-follower", daemon=True)
        self._cfg = cfg
        self._group_id = group_id
        self._on_model = on_model
        self._halt = stop
        self._log = log

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        topic = self._cfg.kafka.global_model_topic
        consumer = Consumer(
            kafka_consumer_conf(
                self._cfg,
                self._group_id,
                **{"logger": client_logger(), **_BACKOFF},
            )
        )
        try:
            parts = self._partitions(consumer, topic)
            if parts is None:
                return
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            event(self._log, "following global models", topic=topic, partitions=parts)
            while not self._halt.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                try:
                    self._on_model(decode_global(msg.value() or b""))
                except ValidationError as exc:
                    event(
                        self._log,
                        "ignoring an invalid global model",
                        logging.WARNING,
                        reason=exc.reason,
                    )
        finally:
            consumer.close()

    def _partitions(self, consumer: Any, topic: str) -> list[int] | None:
        """The topic's partitions, once Kafka answers and the topic exists; None on stop."""
        warned = False
        while not self._halt.is_set():
            try:
                meta = consumer.list_topics(topic, timeout=5)
                found = meta.topics.get(topic)
                if found is not None and found.error is None and found.partitions:
                    return sorted(found.partitions)
                why = "the topic does not exist yet"
            except Exception as exc:  # KafkaException: brokers down or unreachable
                why = str(exc)[:200]
            if not warned:
                event(
                    self._log,
                    "global-model topic unreachable, retrying",
                    logging.WARNING,
                    topic=topic,
                    error=why,
                )
                warned = True
            self._halt.wait(_RETRY_SECONDS)
        return None


def _confluent_producer(conf: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer(conf)


def _kafka_error(log: logging.Logger, err: Any) -> None:
    from confluent_kafka import KafkaError

    if err.fatal() or err.code() == KafkaError._ALL_BROKERS_DOWN:
        level = logging.ERROR if err.fatal() else logging.WARNING
        event(log, "kafka client error", level, error=str(err), fatal=err.fatal())
