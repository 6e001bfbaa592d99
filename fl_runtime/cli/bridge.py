"""``fl bridge``: forward one fog node's MQTT readings to Kafka, at least once."""

from __future__ import annotations

import click

from fl_runtime.cli._common import config_option, friendly_errors, load
from fl_runtime.config import NODE_ID_PATTERN
from fl_runtime.errors import ConfigError
from fl_runtime.fog.bridge.routes import default_route, parse_route
from fl_runtime.fog.bridge.service import BridgeSettings, run_bridge
from fl_runtime.service.common import Shutdown, setup_logging


@click.command("bridge")
@click.option("--node-id", default=None, help="Fog node id (default: fog.node_id).")
@config_option
@click.option(
    "--client-id",
    default=None,
    help="MQTT client id of the persistent session (default: fl-bridge-<node>).",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="FILTER=TOPIC",
    help="Route an MQTT topic filter to a Kafka topic, e.g. 'factory/+/line2/#=sensor-data-"
    "node-7'; repeatable. Default: MQTT_TOPIC_TEMPLATE with + for the device -> the node's "
    "sensor topic.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(-1, 65535),
    default=None,
    help="Prometheus port; -1 disables (default: service.metrics_port, then 9402).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0.0),
    default=10.0,
    show_default=True,
    help="On SIGTERM, seconds to wait for Kafka to confirm what is in flight.",
)
@click.option(
    "--session-expiry",
    type=click.IntRange(1, 2**32 - 1),
    default=None,
    help="Seconds Mosquitto keeps the session (and queues readings) while the bridge is away "
    "(default: mqtt.session_expiry_seconds).",
)
@friendly_errors
def command(
    node_id: str | None,
    config_path: str | None,
    client_id: str | None,
    maps: tuple[str, ...],
    metrics_port: int | None,
    drain_timeout: float,
    session_expiry: int | None,
) -> None:
    """Forward this fog node's MQTT readings to Kafka, at least once.

    Valid readings go to the node's Kafka topic keyed by device id; invalid ones
    to the dead-letter topic with the reason in a header. An MQTT message is
    acknowledged only after Kafka confirmed the write. SIGTERM stops intake,
    flushes, acknowledges what was delivered and exits 0.
    """
    cfg = load(config_path)
    node = node_id if node_id is not None else cfg.fog.node_id
    if not NODE_ID_PATTERN.match(node):
        raise ConfigError("--node-id", f"{node!r} must match {NODE_ID_PATTERN.pattern}")
    routes = tuple(parse_route(m) for m in maps) or (default_route(cfg, node),)
    settings = BridgeSettings(
        node_id=node,
        client_id=client_id or f"fl-bridge-{node}",
        routes=routes,
        metrics_port=metrics_port,
        drain_timeout=drain_timeout,
        session_expiry=session_expiry or cfg.mqtt.session_expiry_seconds,
    )
    log = setup_logging(cfg, "bridge")
    run_bridge(cfg, settings, Shutdown(), log)
