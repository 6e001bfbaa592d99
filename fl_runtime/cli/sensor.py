"""``fl sensor``: simulated devices publishing readings of one fog node.

``fl sensor [OPTIONS]`` runs the simulator (the ``sensor_simulator`` role's unit);
``fl sensor inject`` switches one of its devices into a fault, or back, through the
device's retained MQTT control topic (:mod:`fl_runtime.edge.sensor.control`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import click
from click.core import ParameterSource

from fl_runtime.cli._common import config_option, friendly_errors, load, progress
from fl_runtime.config import NODE_ID_PATTERN, Config
from fl_runtime.edge.machines import DEFAULT_RAMP_READINGS, FAULTS
from fl_runtime.edge.sensor.control import FaultCommand, publish_command
from fl_runtime.edge.sensor.service import SensorSettings, run_sensor
from fl_runtime.edge.sensor.transports import TRANSPORTS
from fl_runtime.errors import ConfigError, ServiceError
from fl_runtime.service.common import Shutdown, setup_logging

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_INVOCATION_ID = re.compile(r"^[0-9a-f]{32}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # no MQTT wildcards or levels


def run_id_from_environment(env: Mapping[str, str]) -> str | None:
    """A run id from systemd's INVOCATION_ID, which is new at every start of a unit.

    A sensor restarted by systemd then never reuses the message ids of its last
    run, so the bridge's and Kafka's de-duplication by id stays exact. Outside
    systemd there is no such variable and the simulator keeps ``s<seed>``.
    """
    invocation = env.get("INVOCATION_ID", "")
    return f"i{invocation[:16]}" if _INVOCATION_ID.match(invocation) else None


def parse_fault(spec: str) -> tuple[str, str]:
    """``'node1-dev2=bearing_wear'`` -> ``('node1-dev2', 'bearing_wear')``."""
    device, sep, fault = spec.partition("=")
    if not sep or not _DEVICE_ID.match(device):
        raise ConfigError("--fault", f"expected DEVICE=FAULT, got {spec!r}")
    if fault not in FAULTS:
        raise ConfigError("--fault", f"{fault!r} is not one of {', '.join(FAULTS)}")
    return device, fault


def _node(cfg: Config, node_id: str | None) -> str:
    node = node_id if node_id is not None else cfg.fog.node_id
    if not NODE_ID_PATTERN.match(node):
        raise ConfigError("--node-id", f"{node!r} must match {NODE_ID_PATTERN.pattern}")
    return node


@click.group("sensor", invoke_without_command=True)
@click.pass_context
@click.option("--node-id", default=None, help="Fog node id (default: fog.node_id).")
@config_option
@click.option(
    "--rate",
    type=click.FloatRange(0.01, 100_000.0),
    default=None,
    help="Readings per second, all devices together (default: sensor.rate_hz).",
)
@click.option(
    "--devices",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Simulated devices (default: sensor.devices).",
)
@click.option(
    "--max-messages",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Stop after this many readings; 0 runs until SIGTERM.",
)
@click.option(
    "--transport",
    type=click.Choice(TRANSPORTS),
    default="mqtt",
    show_default=True,
    help="mqtt: to Mosquitto (MQTT_QOS); kafka: straight to the node's Kafka topic.",
)
@click.option(
    "--seed", type=click.IntRange(0, 2**32 - 1), default=None, help="Default: sensor.seed."
)
@click.option(
    "--run-id",
    default=None,
    help=(
        "Part of every message id; give each run its own. Default: under systemd, one "
        "from the unit's INVOCATION_ID (new at every start); otherwise 's<seed>'."
    ),
)
@click.option(
    "--ids-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the id of every confirmed reading (PUBACK or Kafka delivery), one per line.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(-1, 65535),
    default=None,
    help="Prometheus port; -1 disables (default: service.metrics_port, then 9401).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0.0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for outstanding confirmations when done or stopped.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="DEVICE=FAULT",
    help=f"Start DEVICE in FAULT from its first reading (repeatable); FAULT: {', '.join(FAULTS)}.",
)
@friendly_errors
def command(
    ctx: click.Context,
    node_id: str | None,
    config_path: str | None,
    rate: float | None,
    devices: int | None,
    max_messages: int,
    transport: str,
    seed: int | None,
    run_id: str | None,
    ids_file: Path | None,
    metrics_port: int | None,
    drain_timeout: float,
    faults: tuple[str, ...],
) -> None:
    """Publish simulated readings of one fog node's devices.

    Exits 0 when --max-messages readings are all confirmed, or on SIGTERM after
    waiting up to --drain-timeout for outstanding confirmations; exits 1 if
    readings are still unconfirmed when done. With MQTT, a device's fault can be
    switched while it runs: see `fl sensor inject --help`.
    """
    if ctx.invoked_subcommand is not None:
        given = [p.name for p in ctx.command.params if _given(ctx, p.name)]
        if given:
            raise click.UsageError(
                f"{', '.join(f'--{g}' for g in given)} belong to `fl sensor` itself, "
                f"not to `fl sensor {ctx.invoked_subcommand}`"
            )
        return
    cfg = load(config_path)
    node = _node(cfg, node_id)
    if run_id is None:
        run_id = run_id_from_environment(os.environ)
    if run_id is not None and not _RUN_ID.match(run_id):
        raise ConfigError("--run-id", f"{run_id!r} must match {_RUN_ID.pattern}")
    settings = SensorSettings(
        node_id=node,
        rate_hz=rate if rate is not None else cfg.sensor.rate_hz,
        devices=devices if devices is not None else cfg.sensor.devices,
        max_messages=max_messages,
        transport=transport,
        seed=seed if seed is not None else cfg.sensor.seed,
        run_id=run_id,
        anomaly_rate=None if cfg.sensor.anomaly_rate < 0 else cfg.sensor.anomaly_rate,
        ids_file=ids_file,
        metrics_port=metrics_port,
        drain_timeout=drain_timeout,
        max_pending=cfg.mqtt.max_inflight,
        unlabelled_share=cfg.sensor.unlabelled_share,
        episode_readings=cfg.sensor.fault_episode_readings,
        faults=tuple(parse_fault(f) for f in faults),
    )
    log = setup_logging(cfg, "sensor")
    result = run_sensor(cfg, settings, Shutdown(), log)
    if result.unconfirmed and not result.interrupted:
        raise ServiceError(
            f"{result.unconfirmed} readings still unconfirmed after {drain_timeout}s"
        )


def _given(ctx: click.Context, name: str | None) -> bool:
    return name is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


@command.command("inject")
@click.option("--node-id", default=None, help="Fog node id (default: fog.node_id).")
@config_option
@click.option("--device", required=True, help="Device id, e.g. node1-dev2.")
@click.option(
    "--fault",
    type=click.Choice(FAULTS),
    default="bearing_wear",
    show_default=True,
    help="The fault to switch the device into.",
)
@click.option(
    "--ramp-readings",
    type=click.IntRange(0, 10**9),
    default=DEFAULT_RAMP_READINGS,
    show_default=True,
    help="Readings of the device until the fault is at full severity (0: at once).",
)
@click.option("--clear", is_flag=True, help="Switch the device back to normal operation.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the broker's acknowledgement.",
)
@friendly_errors
def inject(
    node_id: str | None,
    config_path: str | None,
    device: str,
    fault: str,
    ramp_readings: int,
    clear: bool,
    timeout: float,
) -> None:
    """Switch a simulated device into a fault (or back with --clear).

    Publishes the command retained at QoS 1 on the device's control topic
    (SENSOR_CONTROL_TOPIC_TEMPLATE) of MQTT_HOST, so a running `fl sensor --transport
    mqtt` applies it from its next reading and a restarted one resumes it. Exits 0
    once the broker acknowledged it.
    """
    cfg = load(config_path)
    node = _node(cfg, node_id)
    if not _DEVICE_ID.match(device):
        raise ConfigError("--device", f"{device!r} must match {_DEVICE_ID.pattern}")
    command_ = FaultCommand(None if clear else fault, ramp_readings)
    topic = publish_command(cfg, node, device, command_, timeout)
    what = "cleared" if clear else f"{fault} injected"
    progress(f"{device} on node {node}: {what} (retained on {topic})")
