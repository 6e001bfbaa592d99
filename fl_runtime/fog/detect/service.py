"""``fl detect``: the scorer service, wiring the core to paho-mqtt, Kafka and the state dir."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fl_runtime.config import Config
from fl_runtime.core.messages import GlobalModel
from fl_runtime.errors import ConfigError, ServiceError
from fl_runtime.fog.bridge.mqtt import mqtt_client
from fl_runtime.fog.bridge.routes import node_filter
from fl_runtime.fog.detect.core import DetectorCore, DetectRules
from fl_runtime.fog.detect.kafka import ModelFollower, Shipper
from fl_runtime.fog.detect.metrics import DetectMetrics
from fl_runtime.fog.detect.modelstore import MODEL_FILE, load_model, save_model
from fl_runtime.fog.detect.mqtt import MqttAlertSink, wire
from fl_runtime.fog.detect.spool import Spool
from fl_runtime.service.common import Shutdown, event, start_metrics

SPOOL_FILE = "spool.sqlite3"
_TICK_SECONDS = 0.1
_STATS_INTERVAL = 30.0


@dataclass(frozen=True)
class DetectSettings:
    node_id: str
    client_id: str
    state_dir: Path
    metrics_port: int | None = None
    drain_timeout: float = 10.0
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30


def rules_of(cfg: Config) -> DetectRules:
    d = cfg.detection
    return DetectRules(
        threshold=float(d.threshold),
        alert_k=int(d.alert_k),
        alert_m=int(d.alert_m),
        alert_clear_seconds=float(d.alert_clear_seconds),
        summary_interval_seconds=float(d.summary_interval_seconds),
    )


def readings_filter(cfg: Config, node_id: str) -> str:
    """The node's readings filter, checked not to match its own alert topics."""
    from paho.mqtt.client import topic_matches_sub

    topic_filter = node_filter(cfg.mqtt.topic_template, node_id)
    try:
        sample = cfg.mqtt.alert_topic_template.format(node_id=node_id, device_id="dev")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("MQTT_ALERT_TOPIC_TEMPLATE", f"cannot fill it in: {exc}") from None
    if topic_matches_sub(topic_filter, sample):
        raise ConfigError(
            "MQTT_ALERT_TOPIC_TEMPLATE",
            f"alert topics like {sample!r} match the readings filter {topic_filter!r}",
        )
    return topic_filter


def run_detect(
    cfg: Config, settings: DetectSettings, shutdown: Shutdown, log: logging.Logger
) -> None:
    """Score this node's readings until SIGTERM; survives Kafka and Mosquitto outages."""
    topic_filter = readings_filter(cfg, settings.node_id)
    metrics = DetectMetrics.create()
    port = _start_metrics(cfg, settings.metrics_port)
    spool = _open_spool(settings.state_dir / SPOOL_FILE, int(cfg.detection.spool_max_records))
    client = mqtt_client(
        cfg,
        client_id=settings.client_id,
        max_inflight=int(cfg.mqtt.max_inflight),
        session_expiry=settings.session_expiry,
        keepalive=settings.keepalive,
    )
    core = DetectorCore(
        node_id=settings.node_id,
        rules=rules_of(cfg),
        topic_template=cfg.mqtt.topic_template,
        alert_topic_template=cfg.mqtt.alert_topic_template,
        spool=spool,
        sink=MqttAlertSink(client, metrics),
        metrics=metrics,
        log=log,
    )
    _resume(core, spool, settings.state_dir, log)
    shipper = Shipper(cfg, settings.client_id, spool, metrics, log)
    stop = threading.Event()
    follower = ModelFollower(
        cfg, f"{settings.client_id}-global", _on_model(core, settings.state_dir, log), stop, log
    )
    disconnected = wire(client, core, topic_filter, log)
    event(
        log,
        "scorer starting",
        node_id=settings.node_id,
        client_id=settings.client_id,
        topic_filter=topic_filter,
        state_dir=str(settings.state_dir),
        spool_depth=spool.depth,
        metrics_port=port,
    )
    follower.start()
    client.loop_start()
    try:
        _serve(core, shipper, spool, metrics, shutdown, log)
    finally:
        stop.set()
        client.disconnect()
        disconnected.wait(5.0)
        client.loop_stop()
        left = shipper.flush(settings.drain_timeout)
        follower.join(5.0)
        event(log, "scorer stopped", unconfirmed=left, spool_depth=spool.depth)
        spool.close()


def _resume(core: DetectorCore, spool: Spool, state_dir: Path, log: logging.Logger) -> None:
    model = load_model(state_dir)
    if model is not None:
        core.set_model(model)
        event(
            log,
            "scoring with the saved global model",
            version=model.version,
            threshold=core.scorer.threshold if core.scorer else None,
        )
    elif (state_dir / MODEL_FILE).exists():
        event(log, "the saved global model is unreadable; waiting for one", logging.WARNING)
    alerts = spool.active_alerts()
    core.restore_alerts(alerts)
    if alerts:
        event(log, "resumed active alerts", devices=[a.device_id for a in alerts])


def _on_model(
    core: DetectorCore, state_dir: Path, log: logging.Logger
) -> Callable[[GlobalModel], None]:
    def apply(model: GlobalModel) -> None:
        if not core.set_model(model):
            return
        try:
            save_model(state_dir, model)
        except OSError as exc:
            event(log, "cannot save the global model", logging.ERROR, error=str(exc))
        scorer = core.scorer
        event(
            log,
            "global model applied",
            version=model.version,
            threshold=None if scorer is None else scorer.threshold,
            learned_threshold=model.threshold,
        )

    return apply


def _serve(
    core: DetectorCore,
    shipper: Shipper,
    spool: Spool,
    metrics: DetectMetrics,
    shutdown: Shutdown,
    log: logging.Logger,
) -> None:
    next_stats = time.monotonic() + _STATS_INTERVAL
    while not shutdown.requested:
        core.tick()
        shipper.pump(_TICK_SECONDS)
        if time.monotonic() >= next_stats:
            next_stats += _STATS_INTERVAL
            event(
                log,
                "scorer stats",
                scored=int(metrics.value("fl_detect_scored_total")),
                detections=int(metrics.value("fl_detect_detections_total")),
                active_alerts=core.active_alerts,
                spool_depth=spool.depth,
                kafka_in_flight=shipper.in_flight,
            )


def _open_spool(path: Path, max_records: int) -> Spool:
    try:
        return Spool(path, max_records)
    except (sqlite3.Error, OSError) as exc:
        raise ServiceError(f"cannot open the spool {path}: {exc}") from None


def _start_metrics(cfg: Config, port: int | None) -> int | None:
    try:
        return start_metrics(cfg, "detect", port)
    except OSError as exc:
        raise ServiceError(f"cannot serve metrics on port {port}: {exc}") from None
