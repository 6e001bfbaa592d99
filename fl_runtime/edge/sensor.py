"""The simulated sensor: one fog node's devices publishing readings at a steady rate.

Readings come from :class:`~fl_runtime.edge.machines.NodeSimulator`, are stamped with the
time they are sent and go out over MQTT at QoS 1 to
``MQTT_TOPIC_TEMPLATE.format(node_id=..., device_id=...)`` (or, with the Kafka
transport, straight to the node's Kafka topic keyed by device id). A reading counts
as *confirmed* when the broker acknowledged it (PUBACK, or a Kafka delivery report);
confirmed message ids can be appended to a file, which is what the zero-loss tests
compare with Kafka.

At most ``max_pending`` readings wait for confirmation: when the broker is away the
sensor stops producing instead of piling up memory, and paho resends the
unacknowledged ones when it reconnects. A sensor that falls behind its schedule does
not burst to catch up.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from fl_runtime.config import Config
from fl_runtime.core.messages import SensorReading, encode_reading
from fl_runtime.edge.machines import NodeSimulator
from fl_runtime.errors import ServiceError
from fl_runtime.service.common import Shutdown, event, kafka_producer_conf, start_metrics

TRANSPORTS = ("mqtt", "kafka")
_CHUNK = 1000  # readings drawn from the simulator at a time
_FLUSH_INTERVAL = 0.5  # seconds between writes of the ids file
_STATS_INTERVAL = 30.0
_FELL_BEHIND = 1.0  # seconds behind schedule after which the schedule restarts


@dataclass(frozen=True)
class SensorSettings:
    node_id: str
    rate_hz: float
    devices: int
    max_messages: int = 0  # 0: until stopped
    transport: str = "mqtt"
    seed: int = 42
    run_id: str | None = None
    anomaly_rate: float | None = None
    ids_file: Path | None = None
    metrics_port: int | None = None
    drain_timeout: float = 30.0
    max_pending: int = 1000
    client_id: str | None = None


@dataclass(frozen=True)
class SensorResult:
    published: int
    confirmed: int
    errors: int
    interrupted: bool

    @property
    def unconfirmed(self) -> int:
        return self.published - self.confirmed - self.errors


@dataclass(frozen=True)
class SensorMetrics:
    registry: CollectorRegistry
    published: Counter
    confirmed: Counter
    errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> SensorMetrics:
        reg = REGISTRY if registry is None else registry
        return cls(
            registry=reg,
            published=Counter(
                "fl_sensor_published", "Readings handed to the broker.", registry=reg
            ),
            confirmed=Counter(
                "fl_sensor_confirmed", "Readings the broker acknowledged.", registry=reg
            ),
            errors=Counter(
                "fl_sensor_errors", "Readings the broker refused or failed.", registry=reg
            ),
        )


class Tracker:
    """Counts outcomes (thread-safe) and appends confirmed ids to the ids file."""

    def __init__(self, metrics: SensorMetrics, ids_file: Path | None, log: logging.Logger) -> None:
        self._metrics = metrics
        self._log = log
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if ids_file is not None:
            ids_file.parent.mkdir(parents=True, exist_ok=True)
            self._file = ids_file.open("a", encoding="utf-8")
        self.published = 0
        self.confirmed = 0
        self.errors = 0

    def sent(self) -> None:
        with self._lock:
            self.published += 1
        self._metrics.published.inc()

    def confirm(self, message_id: str) -> None:
        with self._lock:
            self.confirmed += 1
            if self._file is not None:
                self._file.write(message_id + "\n")
        self._metrics.confirmed.inc()

    def fail(self, message_id: str, why: str) -> None:
        with self._lock:
            self.errors += 1
        self._metrics.errors.inc()
        event(self._log, "reading not accepted", logging.WARNING, message_id=message_id, error=why)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @property
    def pending(self) -> int:
        return self.published - self.confirmed - self.errors


# --------------------------------------------------------------------------- transports
class Transport(Protocol):
    """Where readings go. Outcomes are reported to the :class:`Tracker`."""

    def send(self, reading: SensorReading, payload: bytes) -> None: ...

    def service(self, timeout: float) -> None: ...

    def close(self) -> None: ...


class MqttTransport:
    """paho-mqtt 2.x at ``MQTT_QOS``; paho reconnects and resends unacknowledged readings."""

    def __init__(
        self, cfg: Config, client_id: str, tracker: Tracker, log: logging.Logger, window: int
    ) -> None:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self._tracker = tracker
        self._log = log
        self._template = cfg.mqtt_topic_template
        self._qos = int(cfg.mqtt_qos)
        self._lock = threading.Lock()
        self._waiting: dict[int, str] = {}  # mid -> message id
        self._early: dict[int, Any] = {}  # mid -> reason code, acked before publish() returned
        client = Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.connect_async(cfg.mqtt_host, cfg.mqtt_port, keepalive=30)
        client.loop_start()
        self._client = client

    def send(self, reading: SensorReading, payload: bytes) -> None:
        from paho.mqtt.enums import MQTTErrorCode

        topic = self._template.format(node_id=reading.node_id, device_id=reading.device_id)
        info = self._client.publish(topic, payload, qos=self._qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._tracker.fail(reading.message_id, f"publish: {info.rc.name}")
            return
        with self._lock:
            reason = self._early.pop(info.mid, None)
            if reason is None:
                self._waiting[info.mid] = reading.message_id
        if reason is not None:
            self._settle(reading.message_id, reason)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._lock:
            message_id = self._waiting.pop(mid, None)
            if message_id is None:
                self._early[mid] = reason
                return
        self._settle(message_id, reason)

    def _settle(self, message_id: str, reason: Any) -> None:
        if reason.is_failure:
            self._tracker.fail(message_id, f"PUBACK {reason}")
        else:
            self._tracker.confirm(message_id)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        level = logging.ERROR if reason.is_failure else logging.INFO
        event(self._log, "mqtt connect", level, reason=str(reason))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        event(self._log, "mqtt disconnected", logging.WARNING, reason=str(reason))

    def service(self, timeout: float) -> None:
        if timeout > 0:
            time.sleep(timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class KafkaTransport:
    """Straight to the node's Kafka topic: idempotent, ``acks=all``, key = device id."""

    def __init__(
        self, cfg: Config, client_id: str, tracker: Tracker, log: logging.Logger, window: int
    ) -> None:
        from confluent_kafka import Producer

        self._tracker = tracker
        self._cfg = cfg
        self._producer = Producer(
            kafka_producer_conf(
                cfg,
                client_id,
                **{
                    "queue.buffering.max.messages": window + 100,
                    "logger": logging.getLogger("fl_runtime.sensor.kafka"),
                },
            )
        )

    def send(self, reading: SensorReading, payload: bytes) -> None:
        callback = functools.partial(self._delivered, reading.message_id)
        while True:
            try:
                self._producer.produce(
                    self._cfg.sensor_topic(reading.node_id),
                    payload,
                    key=reading.device_id.encode(),
                    on_delivery=callback,
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def _delivered(self, message_id: str, err: Any, _record: Any) -> None:
        if err is None:
            self._tracker.confirm(message_id)
        else:
            self._tracker.fail(message_id, str(err))

    def service(self, timeout: float) -> None:
        self._producer.poll(timeout)

    def close(self) -> None:
        self._producer.flush(0)


# --------------------------------------------------------------------------- the loop
def run_sensor(
    cfg: Config,
    settings: SensorSettings,
    shutdown: Shutdown,
    log: logging.Logger,
    *,
    make_transport: Callable[[Tracker], Transport] | None = None,
    metrics: SensorMetrics | None = None,
) -> SensorResult:
    """Publish until ``max_messages`` or shutdown, then wait for confirmations.

    ``make_transport`` (tests) builds the transport from the tracker it reports to;
    by default it is chosen by ``settings.transport`` and metrics are served.
    """
    if settings.transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}")
    metrics = metrics or SensorMetrics.create()
    port = None if make_transport is not None else _start_metrics(cfg, settings.metrics_port)
    make_transport = make_transport or functools.partial(_default_transport, cfg, settings, log)
    tracker = Tracker(metrics, settings.ids_file, log)
    transport = make_transport(tracker)
    event(
        log,
        "sensor starting",
        node_id=settings.node_id,
        transport=settings.transport,
        rate_hz=settings.rate_hz,
        devices=settings.devices,
        max_messages=settings.max_messages,
        metrics_port=port,
    )
    try:
        _publish(settings, transport, tracker, shutdown, log)
        interrupted = shutdown.requested
        _drain(transport, tracker, settings.drain_timeout)
    finally:
        transport.close()
        tracker.close()
    result = SensorResult(tracker.published, tracker.confirmed, tracker.errors, interrupted)
    event(
        log,
        "sensor stopped",
        published=result.published,
        confirmed=result.confirmed,
        errors=result.errors,
        unconfirmed=result.unconfirmed,
        interrupted=interrupted,
    )
    return result


def _default_transport(
    cfg: Config, settings: SensorSettings, log: logging.Logger, tracker: Tracker
) -> Transport:
    client_id = settings.client_id or f"fl-sensor-{settings.node_id}-{uuid.uuid4().hex[:8]}"
    kind = MqttTransport if settings.transport == "mqtt" else KafkaTransport
    return kind(cfg, client_id, tracker, log, settings.max_pending)


def _readings(settings: SensorSettings) -> Iterator[SensorReading]:
    sim = NodeSimulator(
        settings.node_id,
        devices=settings.devices,
        seed=settings.seed,
        anomaly_rate=settings.anomaly_rate,
        run_id=settings.run_id,
    )
    left = settings.max_messages or -1
    while left != 0:
        count = _CHUNK if left < 0 else min(_CHUNK, left)
        yield from sim.readings(count, time.time(), settings.rate_hz)
        left = left - count if left > 0 else left


def _publish(
    settings: SensorSettings,
    transport: Transport,
    tracker: Tracker,
    shutdown: Shutdown,
    log: logging.Logger,
) -> None:
    interval = 1.0 / settings.rate_hz
    next_due = time.monotonic()
    next_flush = next_due + _FLUSH_INTERVAL
    next_stats = next_due + _STATS_INTERVAL
    for reading in _readings(settings):
        if not _room(transport, tracker, settings.max_pending, shutdown):
            return
        now = time.monotonic()
        if next_due - now > 0.002 and shutdown.wait(next_due - now):
            return
        if now - next_due > _FELL_BEHIND:
            next_due = now
        stamped = replace(reading, timestamp=round(time.time(), 3))
        tracker.sent()
        transport.send(stamped, encode_reading(stamped))
        transport.service(0)
        next_due += interval
        if now >= next_flush:
            tracker.flush()
            next_flush = now + _FLUSH_INTERVAL
        if now >= next_stats:
            next_stats = now + _STATS_INTERVAL
            event(
                log,
                "sensor stats",
                published=tracker.published,
                confirmed=tracker.confirmed,
                errors=tracker.errors,
            )
        if shutdown.requested:
            return


def _room(transport: Transport, tracker: Tracker, max_pending: int, shutdown: Shutdown) -> bool:
    """Wait until fewer than ``max_pending`` readings await confirmation."""
    while tracker.pending >= max_pending:
        if shutdown.requested:
            return False
        transport.service(0.01)
    return True


def _drain(transport: Transport, tracker: Tracker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while tracker.pending > 0 and time.monotonic() < deadline:
        transport.service(0.02)
    tracker.flush()


def _start_metrics(cfg: Config, port: int | None) -> int | None:
    try:
        return start_metrics(cfg, "sensor", port)
    except OSError as exc:
        raise ServiceError(f"cannot serve metrics on port {port}: {exc}") from None
