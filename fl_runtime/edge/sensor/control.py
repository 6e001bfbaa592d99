"""The simulator's control channel: fault commands per device over MQTT.

A command is a small JSON object on the device's control topic
(``SENSOR_CONTROL_TOPIC_TEMPLATE``, default
``factory/node-{node_id}/{device_id}/sim-control``)::

    {"fault": "bearing_wear"}                       inject (severity ramps up)
    {"fault": "bearing_wear", "ramp_readings": 0}   inject at full severity at once
    {"fault": null}                                 clear

An empty payload clears too. ``fl sensor inject`` publishes commands at QoS 1 and
*retained*, so a simulator that restarts reads its device's last command when it
subscribes and resumes the fault; ``--clear`` publishes an empty retained payload,
which also removes the retained command from the broker.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from fl_runtime.config import Config
from fl_runtime.edge.machines import DEFAULT_RAMP_READINGS, FAULTS, NodeSimulator
from fl_runtime.errors import ConfigError, ServiceError

MAX_COMMAND_BYTES = 1024


@dataclass(frozen=True)
class FaultCommand:
    """Put a device into ``fault`` (None: back to normal)."""

    fault: str | None
    ramp_readings: int = DEFAULT_RAMP_READINGS

    def encode(self) -> bytes:
        """The retained payload: empty for a clear, so the broker forgets the command."""
        if self.fault is None:
            return b""
        doc = {"fault": self.fault, "ramp_readings": self.ramp_readings}
        return json.dumps(doc, separators=(",", ":")).encode()


def parse_command(payload: bytes) -> FaultCommand:
    """A command from a control payload; ValueError says what is wrong with it."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"command of {len(payload)} bytes (at most {MAX_COMMAND_BYTES})")
    if not payload.strip():
        return FaultCommand(None)
    doc = json.loads(payload)
    if not isinstance(doc, dict) or "fault" not in doc:
        raise ValueError('a command is a JSON object with a "fault" key')
    fault, ramp = doc["fault"], doc.get("ramp_readings", DEFAULT_RAMP_READINGS)
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)} or null")
    if isinstance(ramp, bool) or not isinstance(ramp, int) or not 0 <= ramp <= 10**9:
        raise ValueError(f"ramp_readings must be an integer >= 0, got {ramp!r}")
    return FaultCommand(fault, ramp)


def control_topic(cfg: Config, node_id: str, device_id: str) -> str:
    template = cfg.sensor.control_topic_template
    try:
        return template.format(node_id=node_id, device_id=device_id)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            "SENSOR_CONTROL_TOPIC_TEMPLATE", f"cannot fill in {template!r}: {exc}"
        ) from None


def control_topics(cfg: Config, sim: NodeSimulator) -> dict[str, str]:
    """Control topic -> device id, for every device of the simulator."""
    return {control_topic(cfg, sim.node_id, d): d for d in sim.device_ids}


def apply_command(sim: NodeSimulator, device_id: str, command: FaultCommand) -> None:
    if command.fault is None:
        sim.clear_fault(device_id)
    else:
        sim.inject_fault(device_id, command.fault, ramp_readings=command.ramp_readings)


def publish_command(
    cfg: Config, node_id: str, device_id: str, command: FaultCommand, timeout: float = 10.0
) -> str:
    """Publish ``command`` retained at QoS 1 and wait for the PUBACK; returns the topic."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    topic = control_topic(cfg, node_id, device_id)
    acked = threading.Event()
    outcome: list[Any] = []

    def on_publish(_c: Any, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        outcome.append(reason)
        acked.set()

    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"fl-sensor-inject-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_publish = on_publish
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=30)
    except OSError as exc:
        raise ServiceError(f"cannot reach MQTT {cfg.mqtt.host}:{cfg.mqtt.port}: {exc}") from None
    client.loop_start()
    try:
        client.publish(topic, command.encode(), qos=1, retain=True)
        if not acked.wait(timeout):
            raise ServiceError(f"no PUBACK for {topic} within {timeout}s")
        if outcome[0].is_failure:
            raise ServiceError(f"the broker refused the command on {topic}: {outcome[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
    return topic
