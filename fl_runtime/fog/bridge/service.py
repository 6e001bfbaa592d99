"""``fl bridge``: the bridge service, wiring the core to paho-mqtt and confluent-kafka."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from fl_runtime.config import Config
from fl_runtime.errors import ServiceError
from fl_runtime.fog.bridge.forwarding import BridgeCore
from fl_runtime.fog.bridge.metrics import BridgeMetrics
from fl_runtime.fog.bridge.mqtt import mqtt_client, wire
from fl_runtime.fog.bridge.routes import Route, default_route
from fl_runtime.service.common import Shutdown, event, kafka_producer_conf, start_metrics

_STATS_INTERVAL = 30.0


@dataclass(frozen=True)
class BridgeSettings:
    node_id: str
    client_id: str
    routes: tuple[Route, ...]
    metrics_port: int | None = None
    drain_timeout: float = 10.0
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30


def run_bridge(
    cfg: Config, settings: BridgeSettings, shutdown: Shutdown, log: logging.Logger
) -> None:
    """Run until SIGTERM (returns) or a Kafka write fails for good (raises ServiceError)."""
    from confluent_kafka import Producer as KafkaProducer

    metrics = BridgeMetrics.create()
    port = _start_metrics(cfg, settings.metrics_port)
    max_inflight = int(cfg.mqtt.max_inflight)
    producer = KafkaProducer(
        kafka_producer_conf(
            cfg,
            settings.client_id,
            **{
                # Room for a full window, a redelivered one after a reconnect, and dead letters.
                "queue.buffering.max.messages": 4 * max_inflight + 1000,
                "error_cb": functools.partial(_kafka_error, log),
                "logger": logging.getLogger("fl_runtime.bridge.kafka"),
            },
        )
    )
    client = mqtt_client(
        cfg,
        client_id=settings.client_id,
        max_inflight=max_inflight,
        session_expiry=settings.session_expiry,
        keepalive=settings.keepalive,
    )
    core = BridgeCore(
        node_id=settings.node_id,
        routes=settings.routes,
        dead_letter_topic=cfg.kafka.dead_letter_topic,
        producer=producer,
        acker=client,
        metrics=metrics,
        log=log,
        topic_template=cfg.mqtt.topic_template if _uses_default_route(cfg, settings) else None,
    )
    disconnected = wire(client, core, settings.routes, log)
    event(
        log,
        "bridge starting",
        node_id=settings.node_id,
        client_id=settings.client_id,
        routes=[f"{r.mqtt_filter}={r.kafka_topic}" for r in settings.routes],
        max_inflight=max_inflight,
        metrics_port=port,
    )
    client.loop_start()
    try:
        _serve(producer, core, metrics, shutdown, log)
    finally:
        core.stop_accepting()
        left = producer.flush(settings.drain_timeout)
        client.disconnect()
        disconnected.wait(5.0)
        client.loop_stop()
        event(log, "bridge stopped", unsettled=left, inflight=core.inflight)
    if core.failure is not None:
        raise ServiceError(core.failure)


def _serve(
    producer: Any, core: BridgeCore, metrics: BridgeMetrics, shutdown: Shutdown, log: logging.Logger
) -> None:
    next_stats = time.monotonic() + _STATS_INTERVAL
    while not shutdown.requested and core.failure is None:
        producer.poll(0.1)
        if time.monotonic() >= next_stats:
            next_stats += _STATS_INTERVAL
            event(
                log,
                "bridge stats",
                received=int(metrics.value("fl_bridge_received_total")),
                forwarded=int(metrics.value("fl_bridge_forwarded_total")),
                inflight=core.inflight,
                kafka_queue=len(producer),
            )


def _uses_default_route(cfg: Config, settings: BridgeSettings) -> bool:
    return settings.routes == (default_route(cfg, settings.node_id),)


def _start_metrics(cfg: Config, port: int | None) -> int | None:
    try:
        return start_metrics(cfg, "bridge", port)
    except OSError as exc:
        raise ServiceError(f"cannot serve metrics on port {port}: {exc}") from None


def _kafka_error(log: logging.Logger, err: Any) -> None:
    """Client-wide Kafka errors; each failed connection is already in librdkafka's log."""
    from confluent_kafka import KafkaError

    if err.fatal() or err.code() == KafkaError._ALL_BROKERS_DOWN:
        level = logging.ERROR if err.fatal() else logging.WARNING
        event(log, "kafka client error", level, error=str(err), fatal=err.fatal())
