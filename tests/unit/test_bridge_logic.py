"""The bridge's and the sensor's logic, with the transports swapped for fakes.

The real brokers are exercised in ``tests/integration/test_sensor_bridge.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

from fl_runtime.config import load_config
from fl_runtime.core.messages import SensorReading, encode_reading
from fl_runtime.edge.machines import NodeSimulator
from fl_runtime.edge.sensor.service import SensorResult, SensorSettings, run_sensor
from fl_runtime.edge.sensor.tracking import SensorMetrics, Tracker
from fl_runtime.errors import ConfigError
from fl_runtime.fog.bridge.forwarding import BridgeCore, Incoming
from fl_runtime.fog.bridge.metrics import BridgeMetrics
from fl_runtime.fog.bridge.mqtt import wire
from fl_runtime.fog.bridge.routes import (
    Route,
    default_route,
    device_pattern,
    node_filter,
    parse_route,
)
from fl_runtime.service import deadletter
from fl_runtime.service.common import Shutdown
from fl_runtime.service.deadletter import read_headers

LOG = logging.getLogger("test")
TEMPLATE = "factory/node-{node_id}/{device_id}/readings"


# --------------------------------------------------------------------------- fakes
class FakeProducer:
    """Records records; the test decides when (and whether) Kafka confirms them."""

    def __init__(self, full_for: int = 0) -> None:
        self.records: list[dict[str, Any]] = []
        self._full_for = full_for

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        if self._full_for > 0:
            self._full_for -= 1
            raise BufferError("queue full")
        self.records.append({"topic": topic, **kwargs})

    def deliver(self, index: int, err: Any = None) -> None:
        self.records[index]["on_delivery"](err, None)

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0


class FakeAcker:
    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append((mid, qos))


def make_core(
    producer: FakeProducer | None = None, routes: tuple[Route, ...] | None = None
) -> tuple[BridgeCore, FakeProducer, FakeAcker, BridgeMetrics]:
    producer = producer or FakeProducer()
    acker = FakeAcker()
    metrics = BridgeMetrics.create(CollectorRegistry())
    core = BridgeCore(
        node_id="3",
        routes=routes or (Route("factory/node-3/+/readings", "sensor-data-node-3"),),
        dead_letter_topic="fl-dead-letter",
        producer=producer,
        acker=acker,
        metrics=metrics,
        log=LOG,
        topic_template=TEMPLATE if routes is None else None,
    )
    core.connection_up()
    return core, producer, acker, metrics


def reading(node_id: str = "3", index: int = 0) -> SensorReading:
    readings = list(NodeSimulator(node_id, devices=2, seed=1).readings(index + 1, 1.7e9, 10.0))
    return readings[index]


def incoming(r: SensorReading, mid: int = 1, qos: int = 1, **kw: Any) -> Incoming:
    topic = kw.pop("topic", f"factory/node-3/{r.device_id}/readings")
    return Incoming(mid, qos, topic, encode_reading(r), **kw)


# --------------------------------------------------------------------------- routing
def test_node_filter_puts_a_plus_where_the_device_goes() -> None:
    assert node_filter(TEMPLATE, "7") == "factory/node-7/+/readings"
    route = default_route(load_config(env={}), "7")
    assert route == Route("factory/node-7/+/readings", "sensor-data-node-7")
    assert route.matches("factory/node-7/node7-dev1/readings")
    assert not route.matches("factory/node-8/node8-dev1/readings")


def test_parse_route_accepts_wildcards_and_rejects_nonsense() -> None:
    assert parse_route("factory/+/line2/#=sensor-data-node-7") == Route(
        "factory/+/line2/#", "sensor-data-node-7"
    )
    for bad in ("no-equals-sign", "=topic", "a/#/b=topic", "a/b+=topic", "a/+=bad topic"):
        with pytest.raises(ConfigError):
            parse_route(bad)


def test_device_pattern_takes_the_device_out_of_a_topic() -> None:
    pattern = device_pattern(TEMPLATE, "3")
    assert pattern is not None
    found = pattern.fullmatch("factory/node-3/node3-dev2/readings")
    assert found is not None and found["device_id"] == "node3-dev2"
    assert device_pattern("plain/{node_id}", "3") is None


# --------------------------------------------------------------------------- forwarding
def test_valid_reading_is_acked_only_after_kafka_confirms() -> None:
    core, producer, acker, metrics = make_core()
    r = reading()

    core.handle(incoming(r, mid=11))

    assert [rec["topic"] for rec in producer.records] == ["sensor-data-node-3"]
    assert producer.records[0]["key"] == r.device_id.encode()
    assert producer.records[0]["value"] == encode_reading(r)
    assert acker.acks == [] and core.inflight == 1
    assert metrics.value("fl_bridge_inflight") == 1
    producer.deliver(0)
    assert acker.acks == [(11, 1)]
    assert core.inflight == 0
    assert metrics.value("fl_bridge_forwarded_total") == 1
    assert metrics.value("fl_bridge_received_total") == 1


def test_invalid_payload_goes_to_dead_letter_with_reason_then_is_acked() -> None:
    core, producer, acker, metrics = make_core()

    core.handle(Incoming(5, 1, "factory/node-3/node3-dev1/readings", b"{not json"))

    record = producer.records[0]
    assert record["topic"] == "fl-dead-letter"
    assert record["value"] == b"{not json"
    headers = read_headers(record["headers"])
    assert headers["reason"] == "not-json"
    assert headers["source"] == "bridge:factory/node-3/node3-dev1/readings"
    assert headers["node_id"] == "3"
    assert acker.acks == []
    producer.deliver(0)
    assert acker.acks == [(5, 1)]
    assert metrics.value("fl_bridge_dead_lettered_total", reason="not-json") == 1
    assert metrics.value("fl_bridge_forwarded_total") == 0


@pytest.mark.parametrize(
    ("node_id", "topic", "reason"),
    [
        ("4", "factory/node-3/node4-dev1/readings", "node-mismatch"),
        ("3", "factory/node-3/node3-dev9/readings", "device-mismatch"),
    ],
)
def test_reading_on_the_wrong_topic_is_dead_lettered(node_id: str, topic: str, reason: str) -> None:
    core, producer, _, _ = make_core()

    core.handle(incoming(reading(node_id), topic=topic))

    assert producer.records[0]["topic"] == "fl-dead-letter"
    assert read_headers(producer.records[0]["headers"])["reason"] == reason


def test_custom_map_routes_without_the_device_check() -> None:
    routes = (Route("plant/+/line2/#", "line2-readings"),)
    core, producer, _, _ = make_core(routes=routes)

    core.handle(incoming(reading(), topic="plant/a/line2/x/y"))

    assert producer.records[0]["topic"] == "line2-readings"


def test_failed_kafka_write_is_not_acked_and_stops_the_bridge() -> None:
    core, producer, acker, metrics = make_core()

    core.handle(incoming(reading(), mid=2))
    producer.deliver(0, err="KafkaError{code=TOPIC_AUTHORIZATION_FAILED}")

    assert acker.acks == []
    assert core.failure is not None and "TOPIC_AUTHORIZATION_FAILED" in core.failure
    assert metrics.value("fl_bridge_kafka_delivery_errors_total") == 1


def test_ack_is_dropped_after_a_reconnect_because_mosquitto_redelivers() -> None:
    core, producer, acker, metrics = make_core()
    r0, r1 = reading(index=0), reading(index=1)

    core.handle(incoming(r0, mid=1))
    core.connection_down()
    core.connection_up()
    core.handle(incoming(r0, mid=1, dup=True))
    core.handle(incoming(r1, mid=2))
    for i in range(3):
        producer.deliver(i)

    assert acker.acks == [(1, 1), (2, 1)]
    assert metrics.value("fl_bridge_forwarded_total") == 3
    assert metrics.value("fl_bridge_redelivered_total") == 1


def test_qos0_messages_are_forwarded_without_an_ack() -> None:
    core, producer, acker, _ = make_core()

    core.handle(incoming(reading(), mid=0, qos=0))
    producer.deliver(0)

    assert acker.acks == [] and core.inflight == 0


def test_after_stop_accepting_new_messages_are_left_for_redelivery() -> None:
    core, producer, acker, metrics = make_core()

    core.stop_accepting()
    core.handle(incoming(reading()))

    assert producer.records == [] and acker.acks == []
    assert metrics.value("fl_bridge_received_total") == 0


def test_full_producer_queue_blocks_intake_until_there_is_room() -> None:
    core, producer, _, _ = make_core(FakeProducer(full_for=3))

    core.handle(incoming(reading()))

    assert len(producer.records) == 1


def test_inflight_counts_everything_unsettled() -> None:
    core, producer, acker, _ = make_core()

    for mid in range(1, 6):
        core.handle(incoming(reading(index=mid), mid=mid))
    for i in (0, 2):
        producer.deliver(i)

    assert core.inflight == 3
    assert acker.acks == [(1, 1), (3, 1)]


# --------------------------------------------------------------------------- poison pills
KAFKA_MAX_MESSAGE = 1_000_000  # librdkafka's message.max.bytes


class StrictProducer(FakeProducer):
    """Raises what confluent-kafka raises: oversized values, or ``refuse`` for a topic."""

    def __init__(self, refuse: dict[str, KafkaError] | None = None) -> None:
        super().__init__()
        self.refuse = refuse or {}

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        if topic in self.refuse:
            raise KafkaException(self.refuse[topic])
        if len(kwargs.get("value") or b"") > KAFKA_MAX_MESSAGE:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        super().produce(topic, *args, **kwargs)


def test_payload_over_the_producer_limit_is_dead_lettered_truncated_and_the_next_goes_on() -> None:
    # Prepare: a routed topic carrying 2 MB of garbage, then a valid reading
    core, producer, acker, metrics = make_core(StrictProducer())
    giant = b"x" * 2_000_000

    # Execute
    core.handle(Incoming(7, 1, "factory/node-3/node3-dev1/readings", giant))
    core.handle(incoming(reading(), mid=8))
    producer.deliver(0)
    producer.deliver(1)

    # Assert: dead-lettered (bounded, original size kept), acked, and forwarding goes on
    dead, forwarded = producer.records
    assert dead["topic"] == "fl-dead-letter" and forwarded["topic"] == "sensor-data-node-3"
    assert dead["value"] == giant[: deadletter.MAX_VALUE_BYTES]
    headers = read_headers(dead["headers"])
    assert headers["reason"] == "oversized" and headers["original_bytes"] == "2000000"
    assert acker.acks == [(7, 1), (8, 1)]
    assert metrics.value("fl_bridge_dead_lettered_total", reason="oversized") == 1
    assert metrics.value("fl_bridge_forwarded_total") == 1
    assert core.failure is None and core.inflight == 0


def test_valid_reading_that_kafka_refuses_is_dead_lettered_not_fatal() -> None:
    refuse = {"sensor-data-node-3": KafkaError(KafkaError._INVALID_ARG)}
    core, producer, acker, metrics = make_core(StrictProducer(refuse))

    core.handle(incoming(reading(), mid=3))
    producer.deliver(0)

    assert [r["topic"] for r in producer.records] == ["fl-dead-letter"]
    headers = read_headers(producer.records[0]["headers"])
    assert headers["reason"] == "kafka-refused" and "_INVALID_ARG" in headers["detail"]
    assert acker.acks == [(3, 1)] and core.failure is None
    assert metrics.value("fl_bridge_dead_lettered_total", reason="kafka-refused") == 1


def test_fatal_producer_error_stops_the_bridge_instead_of_killing_the_mqtt_thread() -> None:
    fatal = KafkaError(KafkaError._FATAL, "idempotence broken", fatal=True)
    core, producer, acker, _ = make_core(StrictProducer({"sensor-data-node-3": fatal}))

    core.handle(incoming(reading(), mid=4))  # must not raise into paho's thread

    assert producer.records == [] and acker.acks == []
    assert core.failure is not None and "idempotence broken" in core.failure
    assert core.inflight == 0


def test_dead_letter_topic_refusing_a_record_drops_it_loudly_and_goes_on() -> None:
    refuse = {"fl-dead-letter": KafkaError(KafkaError._INVALID_ARG)}
    core, producer, acker, metrics = make_core(StrictProducer(refuse))

    core.handle(Incoming(5, 1, "factory/node-3/node3-dev1/readings", b"{not json"))
    core.handle(incoming(reading(), mid=6))
    producer.deliver(0)

    assert acker.acks == [(5, 1), (6, 1)]  # a poison pill must not block its window slot
    assert metrics.value("fl_bridge_dropped_total", reason="not-json") == 1
    assert core.failure is None and core.inflight == 0


def test_an_unexpected_error_in_on_message_stops_the_bridge_not_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core, _, _, _ = make_core()
    client = type("Client", (), {})()
    wire(client, core, core.routes, LOG)

    def boom(_msg: Incoming) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(core, "handle", boom)  # a bug in the core
    message = type("M", (), {"mid": 1, "qos": 1, "topic": "t", "payload": b"", "dup": 0})()

    client.on_message(client, None, message)  # set by wire(); raises nothing

    assert core.failure is not None and "a bug" in core.failure


# --------------------------------------------------------------------------- the sensor
class FakeTransport:
    """Confirms at once, or holds everything until ``release()``."""

    def __init__(self, tracker: Tracker | None = None, *, hold: bool = False) -> None:
        self.tracker = tracker
        self.hold = hold
        self.sent: list[SensorReading] = []
        self._held: list[str] = []
        self.closed = False

    def send(self, r: SensorReading, payload: bytes) -> None:
        assert payload == encode_reading(r)
        self.sent.append(r)
        if self.hold:
            self._held.append(r.message_id)
        else:
            self._confirm(r.message_id)

    def release(self) -> None:
        held, self._held = self._held, []
        for message_id in held:
            self._confirm(message_id)

    def _confirm(self, message_id: str) -> None:
        assert self.tracker is not None
        self.tracker.confirm(message_id)

    def service(self, timeout: float) -> None:
        time.sleep(timeout)

    def close(self) -> None:
        self.closed = True


def run_with(
    transport: FakeTransport, settings: SensorSettings, shutdown: Shutdown | None = None
) -> tuple[SensorResult, SensorMetrics]:
    metrics = SensorMetrics.create(CollectorRegistry())

    def attach(tracker: Tracker) -> FakeTransport:
        transport.tracker = tracker
        return transport

    result = run_sensor(
        load_config(env={}),
        settings,
        shutdown or Shutdown(install=False),
        LOG,
        make_transport=attach,
        metrics=metrics,
    )
    return result, metrics


def test_sensor_publishes_max_messages_and_records_confirmed_ids(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    transport = FakeTransport()
    settings = SensorSettings(
        node_id="3", rate_hz=20_000, devices=3, max_messages=50, run_id="t1", ids_file=ids
    )

    result, metrics = run_with(transport, settings)

    lines = ids.read_text().split()
    assert len(lines) == len(set(lines)) == 50
    assert lines == [r.message_id for r in transport.sent]
    assert {r.device_id for r in transport.sent} == {"node3-dev1", "node3-dev2", "node3-dev3"}
    assert (result.published, result.confirmed, result.unconfirmed) == (50, 50, 0)
    assert not result.interrupted and transport.closed
    assert metrics.registry.get_sample_value("fl_sensor_confirmed_total") == 50


def test_sensor_keeps_its_rate() -> None:
    settings = SensorSettings(node_id="1", rate_hz=100, devices=2, max_messages=21)

    started = time.monotonic()
    run_with(FakeTransport(), settings)

    assert time.monotonic() - started >= 0.18


def test_sensor_stops_producing_when_confirmations_lag_and_drains_on_shutdown() -> None:
    transport = FakeTransport(hold=True)
    shutdown = Shutdown(install=False)
    settings = SensorSettings(
        node_id="1", rate_hz=10_000, devices=2, max_messages=0, max_pending=7, drain_timeout=5.0
    )
    threading.Timer(0.3, shutdown.set).start()
    threading.Timer(0.5, transport.release).start()

    result, _ = run_with(transport, settings, shutdown)

    assert len(transport.sent) == 7
    assert result.interrupted
    assert (result.published, result.confirmed, result.unconfirmed) == (7, 7, 0)


def test_sensor_timestamps_are_send_times() -> None:
    transport = FakeTransport()
    before = time.time()

    run_with(transport, SensorSettings(node_id="2", rate_hz=1000, devices=1, max_messages=5))

    stamps = [r.timestamp for r in transport.sent]
    assert stamps == sorted(stamps)
    assert before - 0.01 <= stamps[0] <= time.time()
    assert [r.seq for r in transport.sent] == [0, 1, 2, 3, 4]
