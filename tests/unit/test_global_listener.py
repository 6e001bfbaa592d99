"""The fog node's Kafka edges with fakes: the global-model listener and dead letters.

Issue #12, item 4: a listener started while Kafka is down must keep trying, and
follow the topic once Kafka is back, instead of dying with ``caught_up`` set.
Item 5: a rejected reading's dead letter must not stop the node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from fl_runtime.config import Config, load_config
from fl_runtime.core.messages import GlobalModel, encode_global
from fl_runtime.errors import ServiceError
from fl_runtime.fog import spark_driver
from fl_runtime.fog.spark_driver import GlobalModelListener
from fl_runtime.fog.trainer import Rejected


class _Meta:
    def __init__(self, topic: str, partitions: int) -> None:
        self.topics = {topic: type("T", (), {"partitions": dict.fromkeys(range(partitions))})()}


class _Msg:
    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    """Kafka is down for the first ``down_for`` metadata requests, then holds ``values``."""

    def __init__(self, topic: str, values: list[bytes], down_for: int) -> None:
        self.topic = topic
        self.down_for = down_for
        self.attempts = 0
        self.closed = False
        self._queue = [_Msg(v, i) for i, v in enumerate(values)]
        self._end = len(values)

    def list_topics(self, topic: str, timeout: float = 0.0) -> _Meta:
        self.attempts += 1
        if self.attempts <= self.down_for:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return _Meta(self.topic, 1)

    def get_watermark_offsets(self, _tp: Any, timeout: float = 0.0) -> tuple[int, int]:
        return 0, self._end

    def assign(self, _parts: Any) -> None:
        pass

    def poll(self, timeout: float = 0.0) -> _Msg | None:
        if self._queue:
            return self._queue.pop(0)
        time.sleep(min(timeout, 0.01))
        return None

    def publish(self, value: bytes) -> None:
        """A new global model arrives (Kafka is up again and the aggregator publishes)."""
        self._queue.append(_Msg(value, self._end))
        self._end += 1

    def close(self) -> None:
        self.closed = True


class FakeTrainer:
    def __init__(self) -> None:
        self.versions: list[int] = []

    def offer_global(self, model: GlobalModel) -> None:
        self.versions.append(model.version)


def model(version: int) -> bytes:
    return encode_global(GlobalModel(version, version, [0.0] * 6, time.time()))


@pytest.fixture
def cfg() -> Config:
    return load_config(env={"FL_CONFIG": "/dev/null"})


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def start(
    cfg: Config, consumer: FakeConsumer, monkeypatch: pytest.MonkeyPatch
) -> tuple[GlobalModelListener, FakeTrainer, threading.Event]:
    monkeypatch.setattr(spark_driver, "Consumer", lambda _conf: consumer)
    monkeypatch.setattr(spark_driver, "_RETRY_FIRST_S", 0.01, raising=False)
    monkeypatch.setattr(spark_driver, "_RETRY_MAX_S", 0.05, raising=False)
    trainer, stop = FakeTrainer(), threading.Event()
    listener = GlobalModelListener(cfg, "1", trainer, stop)  # type: ignore[arg-type]  # a fake trainer
    listener.start()
    return listener, trainer, stop


def test_listener_started_while_kafka_is_down_retries_and_follows(
    cfg: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: Kafka answers only from the 6th attempt; it holds global model 4
    consumer = FakeConsumer(cfg.kafka.global_model_topic, [model(4)], down_for=5)
    caplog.set_level(logging.DEBUG, logger="fl_runtime.fog")

    # Execute
    listener, trainer, stop = start(cfg, consumer, monkeypatch)
    try:
        # Assert: it kept trying, read the topic to its end, and follows new models
        assert wait_for(lambda: trainer.versions == [4]), f"attempts: {consumer.attempts}"
        assert consumer.attempts == 6
        assert listener.caught_up.is_set() and listener.is_alive()
        consumer.publish(model(5))
        assert wait_for(lambda: trainer.versions == [4, 5])
    finally:
        stop.set()
        listener.join(5)
    assert not listener.is_alive() and consumer.closed
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per kind of failure
    assert "_TRANSPORT" in warnings[0].getMessage()


def test_listener_does_not_claim_caught_up_while_kafka_is_down(
    cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = FakeConsumer(cfg.kafka.global_model_topic, [model(2)], down_for=10**9)

    listener, trainer, stop = start(cfg, consumer, monkeypatch)
    try:
        assert wait_for(lambda: consumer.attempts >= 3)
        assert not listener.caught_up.is_set() and listener.is_alive()
        assert trainer.versions == []
    finally:
        stop.set()
        listener.join(5)
    assert not listener.is_alive() and consumer.closed


# --------------------------------------------------------------------------- dead letters
class QueueFullProducer:
    """Full for the first ``full_for`` calls, then refuses ``refuse`` or records."""

    def __init__(self, full_for: int = 0, refuse: KafkaError | None = None) -> None:
        self.full_for, self.refuse = full_for, refuse
        self.records: list[dict[str, Any]] = []
        self.polls = 0

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.full_for > 0:
            self.full_for -= 1
            raise BufferError("queue full")
        if self.refuse is not None:
            raise KafkaException(self.refuse)
        self.records.append({"topic": topic, **kwargs})

    def poll(self, timeout: float = 0.0) -> int:
        self.polls += 1
        return 0


def test_fog_dead_letter_waits_for_room_and_skips_what_kafka_refuses(cfg: Config) -> None:
    # Prepare
    bad = Rejected(b"x" * 200_000, "oversized", "too big")
    full, refusing = (
        QueueFullProducer(full_for=3),
        QueueFullProducer(refuse=KafkaError(KafkaError._INVALID_ARG)),
    )

    # Execute
    spark_driver.publish_dead_letter(full, cfg, "1", bad)
    spark_driver.publish_dead_letter(refusing, cfg, "1", bad)  # logged, not raised

    # Assert
    (record,) = full.records
    assert full.polls == 3 and len(record["value"]) == 64 * 1024
    assert refusing.records == []


def test_fog_dead_letter_gives_up_loudly_when_the_queue_stays_full(cfg: Config) -> None:
    producer = QueueFullProducer(full_for=10**9)

    with pytest.raises(ServiceError, match="still full"):
        spark_driver.publish_dead_letter(producer, cfg, "1", Rejected(b"{", "not-json", ""), 0.2)
