"""The simulator's fault control channel without a broker: commands, handler, CLI."""

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from fl_runtime.cli.sensor import command, parse_fault
from fl_runtime.config import load_config
from fl_runtime.core.messages import SensorReading
from fl_runtime.edge.machines import NodeSimulator
from fl_runtime.edge.sensor.control import (
    FaultCommand,
    control_topic,
    control_topics,
    parse_command,
)
from fl_runtime.edge.sensor.service import SensorSettings, control_handler, run_sensor
from fl_runtime.edge.sensor.tracking import SensorMetrics, Tracker
from fl_runtime.errors import ConfigError
from fl_runtime.service.common import Shutdown

LOG = logging.getLogger("test.sensor.control")


@dataclass
class ListTransport:
    tracker: Tracker | None = None
    sent: list[SensorReading] = field(default_factory=list)

    def send(self, reading: SensorReading, payload: bytes) -> None:
        assert self.tracker is not None
        self.sent.append(reading)
        self.tracker.confirm(reading.message_id)

    def service(self, timeout: float) -> None:
        pass

    def close(self) -> None:
        pass


def run(settings: SensorSettings) -> list[SensorReading]:
    transport = ListTransport()

    def attach(tracker: Tracker) -> ListTransport:
        transport.tracker = tracker
        return transport

    run_sensor(
        load_config(env={}),
        settings,
        Shutdown(install=False),
        LOG,
        make_transport=attach,
        metrics=SensorMetrics.create(CollectorRegistry()),
    )
    return transport.sent


def test_commands_round_trip_and_an_empty_payload_clears() -> None:
    wear = FaultCommand("bearing_wear", 5)
    assert parse_command(wear.encode()) == wear
    assert parse_command(b'{"fault": "imbalance"}') == FaultCommand("imbalance")
    assert parse_command(b'{"fault": null}').fault is None
    assert FaultCommand(None).encode() == b"" and parse_command(b"").fault is None


@pytest.mark.parametrize(
    "payload",
    [b"nope", b"[1]", b"{}", b'{"fault": "rust"}', b'{"fault": "imbalance", "ramp_readings": -1}',
     b'{"fault": "imbalance", "ramp_readings": true}', b" " * 2000],
)  # fmt: skip
def test_bad_commands_are_refused(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_command(payload)


def test_control_topics_follow_the_template() -> None:
    cfg = load_config(env={"FL_SENSOR_CONTROL_TOPIC_TEMPLATE": "plant/{node_id}/{device_id}/ctl"})
    assert control_topic(cfg, "4", "node4-dev2") == "plant/4/node4-dev2/ctl"
    topics = control_topics(load_config(env={}), NodeSimulator("4", devices=2))
    assert topics == {
        "factory/node-4/node4-dev1/sim-control": "node4-dev1",
        "factory/node-4/node4-dev2/sim-control": "node4-dev2",
    }
    bad = load_config(env={"FL_SENSOR_CONTROL_TOPIC_TEMPLATE": "x/{machine}"})
    with pytest.raises(ConfigError):
        control_topic(bad, "4", "node4-dev1")


def test_handler_applies_commands_and_ignores_bad_ones(caplog: pytest.LogCaptureFixture) -> None:
    sim = NodeSimulator("5", devices=2)
    handle = control_handler(sim, LOG)
    handle("node5-dev2", b'{"fault": "bearing_wear", "ramp_readings": 0}')
    assert sim.injected_faults == {"node5-dev2": "bearing_wear"}
    with caplog.at_level(logging.WARNING):
        handle("node5-dev2", b'{"fault": "rust"}')
    assert "control command ignored" in caplog.text
    assert sim.injected_faults == {"node5-dev2": "bearing_wear"}  # unchanged
    handle("node5-dev2", b"")
    assert sim.injected_faults == {}


def test_sensor_starts_with_a_fault_and_sends_unlabelled_readings() -> None:
    settings = SensorSettings(
        node_id="6",
        rate_hz=50_000,
        devices=2,
        max_messages=400,
        anomaly_rate=0.0,
        unlabelled_share=0.5,
        faults=(("node6-dev1", "overheating"),),
    )
    sent = run(settings)
    dev1 = [r for r in sent if r.device_id == "node6-dev1"]
    dev2 = [r for r in sent if r.device_id == "node6-dev2"]
    assert {r.anomaly for r in dev1} == {1, None} and {r.anomaly for r in dev2} == {0, None}
    assert (
        sum(r.temperature for r in dev1[-50:]) / 50
        > sum(r.temperature for r in dev2) / len(dev2) + 15
    )
    with pytest.raises(ConfigError):
        run(SensorSettings(node_id="6", rate_hz=1000, devices=1, faults=(("node6-dev9", "x"),)))


def test_fault_option_parsing() -> None:
    assert parse_fault("node1-dev2=bearing_wear") == ("node1-dev2", "bearing_wear")
    for bad in ("node1-dev2", "node1-dev2=rust", "a/b=imbalance", "+=imbalance"):
        with pytest.raises(ConfigError):
            parse_fault(bad)


def test_inject_is_a_subcommand_and_refuses_the_run_options() -> None:
    runner = CliRunner()
    mixed = runner.invoke(command, ["--rate", "5", "inject", "--device", "node1-dev1"])
    assert mixed.exit_code == 2 and "--rate" in mixed.output
    bad = runner.invoke(command, ["inject", "--node-id", "1", "--device", "a/#"])
    assert bad.exit_code == 1 and "--device" in bad.output
    env: dict[str, Any] = {"FL_CONFIG": "/dev/null", "FL_MQTT_HOST": "127.0.0.1"}
    env["FL_MQTT_PORT"] = "1"  # nobody listens there
    down = runner.invoke(command, ["inject", "--node-id", "1", "--device", "node1-dev1"], env=env)
    assert down.exit_code == 1 and "cannot reach MQTT" in down.output
