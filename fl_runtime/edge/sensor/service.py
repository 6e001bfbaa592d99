"""``fl sensor``: publish one fog node's simulated readings at a steady rate until done."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from fl_runtime.config import Config
from fl_runtime.core.messages import SensorReading, encode_reading
from fl_runtime.edge.machines import NodeSimulator
from fl_runtime.edge.sensor.tracking import SensorMetrics, Tracker
from fl_runtime.edge.sensor.transports import TRANSPORTS, KafkaTransport, MqttTransport, Transport
from fl_runtime.errors import ServiceError
from fl_runtime.service.common import Shutdown, event, start_metrics

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
