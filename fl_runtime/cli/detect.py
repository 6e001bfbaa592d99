"""``fl detect``: score this fog node's readings with the last global model, raise alerts."""

from __future__ import annotations

from pathlib import Path

import click

from fl_runtime.cli._common import config_option, friendly_errors, load
from fl_runtime.config import NODE_ID_PATTERN
from fl_runtime.errors import ConfigError
from fl_runtime.fog.detect.service import DetectSettings, run_detect
from fl_runtime.service.common import Shutdown, setup_logging


@click.command("detect")
@click.option("--node-id", default=None, help="Fog node id (default: fog.node_id).")
@config_option
@click.option(
    "--client-id",
    default=None,
    help="MQTT client id of the persistent session (default: fl-detect-<node>).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Saved global model and spool (default: detection.state_dir).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(-1, 65535),
    default=None,
    help="Prometheus port; -1 disables (default: service.metrics_port, then 9405).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0.0),
    default=10.0,
    show_default=True,
    help="On SIGTERM, seconds to wait for Kafka to confirm what is in flight (the rest "
    "stays in the spool for the next start).",
)
@click.option(
    "--session-expiry",
    type=click.IntRange(1, 2**32 - 1),
    default=None,
    help="Seconds Mosquitto keeps the session (and queues readings) while the scorer is "
    "away (default: mqtt.session_expiry_seconds).",
)
@friendly_errors
def command(
    node_id: str | None,
    config_path: str | None,
    client_id: str | None,
    state_dir: str | None,
    metrics_port: int | None,
    drain_timeout: float,
    session_expiry: int | None,
) -> None:
    """Score every reading of this fog node and raise alerts, even without the cloud.

    Reads the node's readings from the local Mosquitto (persistent session, QoS 1),
    scores each valid one with the last global model (kept on disk), publishes alert
    changes retained to MQTT_ALERT_TOPIC_TEMPLATE at once, and sends detections, alert
    changes and score summaries to ANOMALIES_TOPIC through a durable spool, so nothing
    detected while Kafka is unreachable is lost. SIGTERM stops cleanly.
    """
    cfg = load(config_path)
    node = node_id if node_id is not None else cfg.fog.node_id
    if not NODE_ID_PATTERN.match(node):
        raise ConfigError("--node-id", f"{node!r} must match {NODE_ID_PATTERN.pattern}")
    settings = DetectSettings(
        node_id=node,
        client_id=client_id or f"fl-detect-{node}",
        state_dir=Path(state_dir or cfg.detection.state_dir),
        metrics_port=metrics_port,
        drain_timeout=drain_timeout,
        session_expiry=session_expiry or cfg.mqtt.session_expiry_seconds,
    )
    log = setup_logging(cfg, "detect")
    run_detect(cfg, settings, Shutdown(), log)
