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
from fl_runtime.edge.machines import DEFAULT_EPISODE_READINGS, NodeSimulator
from fl_runtime.edge.sensor.control import (
    FaultCommand,
    apply_command,
    control_topics,
    parse_command,
)
from fl_runtime.edge.sensor.tracking import SensorMetrics, Tracker
from fl_runtime.edge.sensor.transports import (
    TRANSPORTS,
    ControlHandler,
    KafkaTransport,
    MqttTransport,
    Transport,
)
from fl_runtime.errors import ConfigError, ServiceError
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
    unlabelled_share: float = 0.0
    episode_readings: float = DEFAULT_EPISODE_READINGS
    faults: tuple[tuple[str, str], ...] = ()  # (device id, fault) from the first reading


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
    by default it is chosen by ``settings.transport`` and metrics are served. The
    MQTT transport also takes fault commands from the devices' control topics.
    """
    if settings.transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}")
    sim = _simulator(settings)
    metrics = metrics or SensorMetrics.create()
    port = None if make_transport is not None else _start_metrics(cfg, settings.metrics_port)
    make_transport = make_transport or functools.partial(
        _default_transport, cfg, settings, log, sim
    )
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
        unlabelled_share=settings.unlabelled_share,
        faults=",".join(f"{d}={f}" for d, f in settings.faults) or None,
    )
    try:
        _publish(settings, _readings(sim, settings), transport, tracker, shutdown, log)
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
    cfg: Config, settings: SensorSettings, log: logging.Logger, sim: NodeSimulator, tracker: Tracker
) -> Transport:
    client_id = settings.client_id or f"fl-sensor-{settings.node_id}-{uuid.uuid4().hex[:8]}"
    if settings.transport == "kafka":
        return KafkaTransport(cfg, client_id, tracker, log, settings.max_pending)
    return MqttTransport(
        cfg,
        client_id,
        tracker,
        log,
        settings.max_pending,
        control=control_handler(sim, log),
        control_topics=control_topics(cfg, sim),
    )


def _simulator(settings: SensorSettings) -> NodeSimulator:
    sim = NodeSimulator(
        settings.node_id,
        devices=settings.devices,
        seed=settings.seed,
        anomaly_rate=settings.anomaly_rate,
        run_id=settings.run_id,
        unlabelled_share=settings.unlabelled_share,
        episode_readings=settings.episode_readings,
    )
    for device, fault in settings.faults:
        try:
            apply_command(sim, device, FaultCommand(fault))
        except ValueError as exc:
            raise ConfigError("--fault", str(exc)) from None
    return sim


def control_handler(sim: NodeSimulator, log: logging.Logger) -> ControlHandler:
    """Apply a control payload to ``sim``; a bad command is logged and ignored."""

    def handle(device_id: str, payload: bytes) -> None:
        try:
            command = parse_command(payload)
            apply_command(sim, device_id, command)
        except ValueError as exc:
            event(
                log,
                "control command ignored",
                logging.WARNING,
                device=device_id,
                error=str(exc)[:200],
            )
            return
        what = "fault cleared" if command.fault is None else "fault injected"
        event(log, what, device=device_id, fault=command.fault, ramp=command.ramp_readings)

    return handle


def _readings(sim: NodeSimulator, settings: SensorSettings) -> Iterator[SensorReading]:
    left = settings.max_messages or -1
    while left != 0:
        count = _CHUNK if left < 0 else min(_CHUNK, left)
        yield from sim.readings(count, time.time(), settings.rate_hz)
        left = left - count if left > 0 else left


def _publish(
    settings: SensorSettings,
    readings: Iterator[SensorReading],
    transport: Transport,
    tracker: Tracker,
    shutdown: Shutdown,
    log: logging.Logger,
) -> None:
    interval = 1.0 / settings.rate_hz
    next_due = time.monotonic()
    next_flush = next_due + _FLUSH_INTERVAL
    next_stats = next_due + _STATS_INTERVAL
    for reading in readings:
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
