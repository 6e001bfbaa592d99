"""Faults at the MQTT edge, on real Mosquitto and Kafka (issue #12, items 5 and 7).

The broker runs with the ``mosquitto`` role's own defaults (read from its defaults
file, the one owner of those settings), so the tests prove what the hosts run:
poison pills are dead-lettered by the bridge or refused by Mosquitto, and a
``kill -9`` of Mosquitto loses no message it acknowledged.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from fl_runtime.service import deadletter
from tests.harness.kafka import KafkaBroker
from tests.harness.mosquitto import MosquittoBroker
from tests.harness.ports import wait_until
from tests.integration.test_sensor_bridge import (
    Node,
    assert_all_confirmed_in_kafka,
    make_node,
    poll,
    read_dead_letters,
    wait_for_ids,
)

REPO = Path(__file__).resolve().parents[2]
ROLE_DEFAULTS = REPO / "roles" / "mosquitto" / "defaults" / "main.yml"


def role_defaults() -> dict[str, Any]:
    return dict(yaml.safe_load(ROLE_DEFAULTS.read_text(encoding="utf-8")))


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    """Nodes registered here have their processes killed at the end, whatever happened."""
    registered: list[Node] = []
    yield registered
    for node in registered:
        for proc in node.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def mosquitto_role(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto of the test's own with the role's settings, free to be killed."""
    broker = MosquittoBroker.from_role(tmp_path / "mosquitto-role", role_defaults())
    try:
        yield broker.start()
    finally:
        broker.stop()


def publish_all(
    broker: MosquittoBroker, topic: str, payloads: Sequence[bytes], timeout: float = 60.0
) -> list[ReasonCode]:
    """Publish at QoS 1 over MQTT v5; the PUBACK reason code of each, in order."""
    acks: dict[int, ReasonCode] = {}
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"pub-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.on_publish = lambda _c, _u, mid, reason, _p: acks.__setitem__(mid, reason)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        mids = [client.publish(topic, p, qos=1).mid for p in payloads]
        assert wait_until(lambda: len(acks) >= len(mids), timeout, 0.01), (
            f"{len(acks)} of {len(mids)} acknowledged"
        )
        return [acks[mid] for mid in mids]
    finally:
        client.disconnect()
        client.loop_stop()


def mosquitto_pub_file(broker: MosquittoBroker, topic: str, path: Path) -> str:
    """Publish a file's bytes at QoS 1 over MQTT v5 with Debian's client; its stderr.

    Mosquitto 2.0.11 refuses a payload over ``message_size_limit`` with PUBACK reason
    0x95, which mosquitto_pub reports as "Packet too large" (paho-mqtt 2.2 cannot
    parse that reason code in a PUBACK, so a real client is used here).
    """
    server = ["-h", broker.host, "-p", str(broker.port), "-V", "mqttv5"]
    done = subprocess.run(
        ["mosquitto_pub", *server, "-q", "1", "-t", topic, "-f", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stderr


# --------------------------------------------------------------------------- poison pills
@pytest.mark.integration
@pytest.mark.parametrize("broker_settings", ["harness", "role"])
def test_poison_pills_are_dead_lettered_or_refused_and_the_bridge_goes_on(
    broker_settings: str,
    kafka: KafkaBroker,
    tmp_path: Path,
    nodes: list[Node],
    request: pytest.FixtureRequest,
) -> None:
    # Prepare: a bridge behind a broker without a size limit, or with the role's
    fixture = "mosquitto" if broker_settings == "harness" else "mosquitto_role"
    broker: MosquittoBroker = request.getfixturevalue(fixture)
    node_id = "71" if broker_settings == "harness" else "72"
    node = make_node(tmp_path, kafka, broker, node_id)
    nodes.append(node)
    node.start_bridge()
    topic = node.cfg.mqtt.topic_template.format(node_id=node_id, device_id=f"node{node_id}-dev1")
    giant, big = tmp_path / "giant.bin", tmp_path / "big.bin"
    giant.write_bytes(b"x" * 2_000_000)
    big.write_bytes(b"{" + b"y" * 100_000)

    # Execute: 2 MB and 100 KB on a reading topic, then normal readings
    errors = [mosquitto_pub_file(broker, topic, path) for path in (giant, big)]
    node.start_sensor("--rate", "500", "--max-messages", "300")

    # Assert: the readings arrive, the big ones were dead-lettered or refused
    assert node.wait("sensor", 60) == 0, node.log("sensor")[-2000:]
    records = wait_for_ids(node, kafka.bootstrap)
    assert len(assert_all_confirmed_in_kafka(node, records)) == 300
    refused_at_broker = broker_settings == "role"
    assert ("Packet too large" in errors[0]) == refused_at_broker, errors[0]
    assert errors[1] == ""
    sizes = {str(path.stat().st_size) for path in (giant, big)}
    expected = {str(big.stat().st_size)} if refused_at_broker else sizes
    poll(
        lambda: node.metric("fl_bridge_dead_lettered_total", reason="oversized") == len(expected),
        30,
        "the dead letters to be confirmed",
    )
    dead = read_dead_letters(kafka.bootstrap, node.cfg.kafka.dead_letter_topic, f"bridge:{topic}")
    assert {d["original_bytes"] for d in dead} == expected
    assert all(d["reason"] == "oversized" for d in dead)
    assert all(len(d["value"]) == deadletter.MAX_VALUE_BYTES for d in dead)
    assert node.metric("fl_bridge_inflight") == 0
    assert node.procs["bridge"].poll() is None
    assert node.stop("bridge") == 0


# --------------------------------------------------------------------------- persistence
def _session(broker: MosquittoBroker, client_id: str, got: list[bytes]) -> mqtt.Client:
    """A persistent session (MQTT v3.1.1, clean session off) subscribed at QoS 1."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.max_inflight_messages_set(1000)
    client.on_message = lambda _c, _u, msg: got.append(bytes(msg.payload))
    subscribed: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _r, _p: subscribed.append(mid)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe("fault/#", qos=1)
    assert wait_until(lambda: bool(subscribed), 10, 0.01), "no SUBACK"
    return client


@pytest.mark.integration
def test_mosquitto_kill_9_loses_no_acknowledged_message(mosquitto_role: MosquittoBroker) -> None:
    # Prepare: a persistent subscriber that goes offline, as a stopped bridge does
    n, client_id = 2000, f"sub-{uuid.uuid4().hex[:8]}"
    offline = _session(mosquitto_role, client_id, [])
    offline.disconnect()
    offline.loop_stop()
    payloads = [f'{{"message_id": "m-{i:05d}", "pad": "{"p" * 200}"}}'.encode() for i in range(n)]

    # Execute: every message acknowledged, then kill -9 and a restart
    started = time.monotonic()
    codes = publish_all(mosquitto_role, "fault/node-1/dev-1/readings", payloads)
    rate = n / (time.monotonic() - started)
    assert not any(c.is_failure for c in codes)
    mosquitto_role.kill()
    mosquitto_role.start()
    got: list[bytes] = []
    back = _session(mosquitto_role, client_id, got)

    # Assert: the subscriber gets all of them
    try:
        wait_until(lambda: len(set(got)) >= n, 30, 0.1)
    finally:
        back.disconnect()
        back.loop_stop()
    lost = set(payloads) - set(got)
    print(f"{n} acknowledged at {rate:.0f} msg/s; after kill -9: {n - len(lost)} delivered")
    assert not lost, f"{len(lost)} of {n} acknowledged messages lost"
