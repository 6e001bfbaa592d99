"""``fl sensor`` and ``fl bridge`` as real processes against real Mosquitto and Kafka.

Every test has its own fog node id, so its MQTT topics and Kafka topic are its own
even on the shared brokers. Zero loss is checked the strict way: every message id
the sensor saw confirmed (PUBACK from Mosquitto) must be found in Kafka.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from fl_runtime.config import Config, load_config
from fl_runtime.service.deadletter import read_headers
from fl_runtime.service.topics import ensure_topics
from tests.harness.kafka import KafkaBroker
from tests.harness.mosquitto import MosquittoBroker
from tests.harness.ports import LOOPBACK, free_port, wait_until

FL = str(Path(sys.executable).with_name("fl"))


@dataclass(frozen=True)
class Record:
    partition: int
    key: str
    doc: dict[str, object]


@dataclass
class Node:
    """One fog node's sensor and bridge processes, with their config and logs."""

    node_id: str
    tmp: Path
    cfg: Config
    config_path: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    bridge_metrics: int = 0

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FL_")}
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [FL, *args, "--node-id", self.node_id, "--config", str(self.config_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def start_bridge(self) -> subprocess.Popen[bytes]:
        """Start the bridge and wait until its subscription is in place."""
        self.bridge_metrics = free_port()
        before = self.log("bridge").count("mqtt subscribed")
        proc = self.start("bridge", "bridge", "--metrics-port", str(self.bridge_metrics))
        subscribed = wait_until(lambda: self.log("bridge").count("mqtt subscribed") > before, 20)
        assert subscribed, f"bridge did not subscribe:\n{self.log('bridge')[-3000:]}"
        return proc

    def start_sensor(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start(
            "sensor",
            "sensor",
            "--ids-file",
            str(self.ids_path),
            "--metrics-port",
            "-1",
            "--run-id",
            f"t{uuid.uuid4().hex[:6]}",
            *args,
        )

    def wait(self, name: str, timeout: float = 60.0) -> int:
        return self.procs[name].wait(timeout)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        return proc.wait(timeout)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def ids_path(self) -> Path:
        return self.tmp / "confirmed-ids.txt"

    def confirmed(self) -> list[str]:
        return self.ids_path.read_text().split() if self.ids_path.exists() else []

    def metric(self, name: str, **labels: str) -> float:
        url = f"http://{LOOPBACK}:{self.bridge_metrics}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        )
        for line in text.splitlines():
            if line.split(" ")[0] == wanted:
                return float(line.split(" ")[1])
        return 0.0


def make_node(
    tmp: Path,
    kafka: KafkaBroker,
    mosquitto: MosquittoBroker,
    node_id: str,
    max_inflight: int = 1000,
) -> Node:
    path = tmp / "fl.toml"
    path.write_text(f"""
[kafka]
bootstrap_servers = "{kafka.bootstrap}"
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
max_inflight = {max_inflight}
[sensor]
devices = 3
[service]
log_format = "json"
""")
    cfg = load_config(path, env={})
    ensure_topics(cfg, [node_id])
    return Node(node_id, tmp, cfg, path)


@pytest.fixture
def procs_cleanup() -> Iterator[list[Node]]:
    """Nodes registered here have their processes killed at the end, whatever happened."""
    nodes: list[Node] = []
    yield nodes
    for node in nodes:
        for proc in node.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def read_topic(bootstrap: str, topic: str) -> list[Record]:
    """Every record on ``topic`` now, in partition order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        records: list[Record] = []
        left = sum(ends.values())
        deadline = time.monotonic() + 60
        while left > 0 and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if msg.error() is None and offset < ends[partition]:
                    key = (msg.key() or b"").decode()
                    records.append(Record(partition, key, json.loads(msg.value() or b"null")))
                    left -= 1
        return records
    finally:
        consumer.close()


def read_dead_letters(bootstrap: str, topic: str, source_prefix: str) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[dict[str, str]] = []
    try:
        idle = 0
        while idle < 4:
            msgs = consumer.consume(500, 0.5)
            idle = idle + 1 if not msgs else 0
            for msg in msgs:
                if msg.error() is None:
                    headers = read_headers(msg.headers())  # type: ignore[arg-type]  # stubs allow str values
                    if headers.get("source", "").startswith(source_prefix):
                        value = (msg.value() or b"").decode(errors="replace")
                        found.append({**headers, "value": value})
    finally:
        consumer.close()
    return found


def wait_for_ids(node: Node, bootstrap: str, timeout: float = 60.0) -> list[Record]:
    """Kafka's records once every confirmed id is there (or the timeout passed)."""
    confirmed = set(node.confirmed())
    records: list[Record] = []

    def all_there() -> bool:
        nonlocal records
        records = read_topic(bootstrap, node.cfg.kafka.sensor_topic(node.node_id))
        return confirmed <= {str(r.doc["message_id"]) for r in records}

    wait_until(all_there, timeout, 1.0)
    return records


def assert_all_confirmed_in_kafka(node: Node, records: list[Record]) -> Counter[str]:
    confirmed = node.confirmed()
    assert confirmed, "the sensor confirmed nothing"
    assert len(confirmed) == len(set(confirmed))
    counts = Counter(str(r.doc["message_id"]) for r in records)
    missing = set(confirmed) - set(counts)
    assert not missing, (
        f"{len(missing)} of {len(confirmed)} confirmed readings lost: {sorted(missing)[:5]}"
    )
    return counts


def first_seen_seqs_per_device(records: list[Record]) -> dict[tuple[int, str], list[int]]:
    """Per (partition, key): the seq of each reading at its first appearance."""
    seen: set[str] = set()
    out: dict[tuple[int, str], list[int]] = defaultdict(list)
    for r in records:
        message_id = str(r.doc["message_id"])
        if message_id not in seen:
            seen.add(message_id)
            out[(r.partition, r.key)].append(int(str(r.doc["seq"])))
    return out


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    assert wait_until(predicate, timeout, 0.2), f"timed out waiting for {what}"


# --------------------------------------------------------------------------- tests
def test_help_works_for_both() -> None:
    for name in ("sensor", "bridge"):
        done = subprocess.run(
            [FL, name, "--help"], check=False, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "--node-id" in done.stdout and "--config" in done.stdout


@pytest.mark.integration
def test_order_per_device_and_sigterm(
    kafka: KafkaBroker, mosquitto: MosquittoBroker, tmp_path: Path, procs_cleanup: list[Node]
) -> None:
    node = make_node(tmp_path, kafka, mosquitto, "91")
    procs_cleanup.append(node)
    node.start_bridge()

    node.start_sensor("--rate", "2000", "--max-messages", "3000")
    assert node.wait("sensor", 60) == 0, node.log("sensor")[-2000:]
    records = wait_for_ids(node, kafka.bootstrap)

    counts = assert_all_confirmed_in_kafka(node, records)
    assert len(counts) == 3000 and max(counts.values()) == 1  # a clean run: no duplicates
    assert {r.key for r in records} == {"node91-dev1", "node91-dev2", "node91-dev3"}
    for r in records:
        assert r.key == r.doc["device_id"]
    by_device: dict[tuple[int, str], list[int]] = defaultdict(list)
    for r in records:
        by_device[(r.partition, r.key)].append(int(str(r.doc["seq"])))
    assert len(by_device) == 3  # each device's readings sit in one partition
    for (_, key), seqs in by_device.items():
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), f"{key} out of order"
    assert node.metric("fl_bridge_forwarded_total") == 3000

    # SIGTERM: a sensor running without --max-messages and the bridge both exit 0.
    node.start_sensor("--rate", "200")
    poll(lambda: len(node.confirmed()) > 3100, 20, "the endless sensor to get going")
    assert node.stop("sensor") == 0
    assert_all_confirmed_in_kafka(node, wait_for_ids(node, kafka.bootstrap))
    assert node.stop("bridge") == 0
    assert '"bridge stopped' in node.log("bridge")


@pytest.mark.integration
def test_malformed_payload_is_dead_lettered_and_forwarding_goes_on(
    kafka: KafkaBroker, mosquitto: MosquittoBroker, tmp_path: Path, procs_cleanup: list[Node]
) -> None:
    node = make_node(tmp_path, kafka, mosquitto, "92")
    procs_cleanup.append(node)
    node.start_bridge()
    topic = node.cfg.mqtt.topic_template.format(node_id="92", device_id="node92-dev1")

    for payload in ("{not json", '{"schema": "fedge.sensor_reading.v1", "temperature": 1}'):
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                mosquitto.host,
                "-p",
                str(mosquitto.port),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                payload,
            ],
            check=True,
            timeout=30,
        )
    node.start_sensor("--rate", "500", "--max-messages", "500")
    assert node.wait("sensor", 60) == 0

    records = wait_for_ids(node, kafka.bootstrap)
    assert len(assert_all_confirmed_in_kafka(node, records)) == 500
    poll(
        lambda: node.metric("fl_bridge_dead_lettered_total", reason="missing-field") == 1,
        20,
        "the dead-letter writes to be confirmed",
    )
    dead = read_dead_letters(kafka.bootstrap, node.cfg.kafka.dead_letter_topic, f"bridge:{topic}")
    assert sorted(d["reason"] for d in dead) == ["missing-field", "not-json"]
    assert all(d["node_id"] == "92" and d["detail"] for d in dead)
    assert any(d["value"] == "{not json" for d in dead)
    assert node.metric("fl_bridge_dead_lettered_total", reason="not-json") == 1
    assert node.metric("fl_bridge_dead_lettered_total", reason="missing-field") == 1
    assert node.metric("fl_bridge_inflight") == 0
    assert node.procs["bridge"].poll() is None
    assert node.stop("bridge") == 0


@pytest.mark.integration
def test_no_confirmed_reading_lost_across_bridge_crash_and_kafka_outage(
    kafka_private: KafkaBroker,
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    procs_cleanup: list[Node],
) -> None:
    window = 200
    node = make_node(tmp_path, kafka_private, mosquitto, "93", max_inflight=window)
    procs_cleanup.append(node)
    node.start_bridge()
    node.start_sensor("--rate", "400", "--max-messages", "6000")

    # 1. kill -9 the bridge mid-stream; Mosquitto keeps its session and redelivers.
    poll(lambda: node.metric("fl_bridge_forwarded_total") > 500, 20, "forwarding to start")
    assert node.stop("bridge", signal.SIGKILL) == -signal.SIGKILL
    time.sleep(1.0)
    node.start_bridge()
    poll(lambda: node.metric("fl_bridge_forwarded_total") > 500, 20, "forwarding to resume")

    # 2. Kafka goes away: the window fills and stays bounded, the bridge stays up.
    kafka_private.stop()
    poll(lambda: node.metric("fl_bridge_inflight") >= window, 20, "the MQTT window to fill")
    held = node.metric("fl_bridge_inflight")
    time.sleep(2.0)
    # Bounded means flat: nothing more arrives while the window is full. Mosquitto
    # 2.0.11 may send a message or two over Receive Maximum on a resumed session.
    assert node.metric("fl_bridge_inflight") == held <= window + 10
    assert node.procs["bridge"].poll() is None
    kafka_private.start()

    assert node.wait("sensor", 90) == 0, node.log("sensor")[-2000:]
    assert len(node.confirmed()) == 6000
    records = wait_for_ids(node, kafka_private.bootstrap, timeout=90)
    counts = assert_all_confirmed_in_kafka(node, records)
    duplicates = sum(counts.values()) - len(counts)
    print(
        f"{len(counts)} confirmed, all in Kafka; {duplicates} duplicates (at least once), "
        f"{node.metric('fl_bridge_redelivered_total'):.0f} redelivered after the restart"
    )
    for (_, key), seqs in first_seen_seqs_per_device(records).items():
        assert seqs == sorted(seqs), f"{key}: first appearances out of order"
    assert node.stop("bridge") == 0


@pytest.mark.integration
def test_sensor_and_bridge_ride_out_a_mosquitto_restart(
    kafka: KafkaBroker,
    mosquitto_private: MosquittoBroker,
    tmp_path: Path,
    procs_cleanup: list[Node],
) -> None:
    node = make_node(tmp_path, kafka, mosquitto_private, "94")
    procs_cleanup.append(node)
    node.start_bridge()
    node.start_sensor("--rate", "300", "--max-messages", "3000")
    poll(lambda: len(node.confirmed()) > 600, 20, "the sensor to get going")

    mosquitto_private.restart()

    assert node.wait("sensor", 90) == 0, node.log("sensor")[-2000:]
    assert len(node.confirmed()) == 3000
    records = wait_for_ids(node, kafka.bootstrap)
    assert_all_confirmed_in_kafka(node, records)
    assert node.log("bridge").count("mqtt subscribed") >= 2  # it reconnected
    assert node.stop("bridge") == 0


@pytest.mark.integration
def test_sensor_kafka_transport_writes_keyed_readings(
    kafka: KafkaBroker, mosquitto: MosquittoBroker, tmp_path: Path, procs_cleanup: list[Node]
) -> None:
    node = make_node(tmp_path, kafka, mosquitto, "95")
    procs_cleanup.append(node)

    node.start_sensor("--transport", "kafka", "--rate", "1000", "--max-messages", "600")
    assert node.wait("sensor", 60) == 0, node.log("sensor")[-2000:]

    records = wait_for_ids(node, kafka.bootstrap)
    assert len(assert_all_confirmed_in_kafka(node, records)) == 600
    assert all(r.key == r.doc["device_id"] for r in records)


class Readings:
    """Every reading of a node on MQTT, as parsed JSON, in arrival order."""

    def __init__(self, mosquitto: MosquittoBroker, topic_filter: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.docs: list[dict[str, Any]] = []
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        self._client.on_message = lambda _c, _u, msg: self.docs.append(json.loads(msg.payload))
        self._client.connect(mosquitto.host, mosquitto.port)
        self._client.subscribe(topic_filter, qos=1)
        self._client.loop_start()

    def of(self, device: str, run_id: str | None = None) -> list[dict[str, Any]]:
        return [
            d
            for d in list(self.docs)
            if d["device_id"] == device and (run_id is None or f"-{run_id}-" in d["message_id"])
        ]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _mean(docs: list[dict[str, Any]], name: str) -> float:
    return sum(float(d[name]) for d in docs) / len(docs)


@pytest.mark.integration
def test_inject_switches_a_running_device_into_bearing_wear(
    mosquitto: MosquittoBroker, tmp_path: Path, procs_cleanup: list[Node]
) -> None:
    # Prepare: a sensor with healthy machines, half its readings unlabelled
    path = tmp_path / "fl.toml"
    path.write_text(f"""
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
[sensor]
devices = 2
anomaly_rate = 0.0
unlabelled_share = 0.5
[service]
log_format = "json"
""")
    node = Node("94", tmp_path, load_config(path, env={}), path)
    procs_cleanup.append(node)
    seen = Readings(mosquitto, "factory/node-94/+/readings")
    sick, healthy = "node94-dev1", "node94-dev2"

    def inject(*args: str) -> None:
        cmd = [FL, "sensor", "inject", "--device", sick, *args]
        done = subprocess.run(
            [*cmd, "--node-id", "94", "--config", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    try:
        node.start_sensor("--rate", "100", "--run-id", "before")
        poll(lambda: len(seen.of(sick)) >= 100, 30, "healthy readings")
        # Execute: switch dev1 into bearing wear at full severity while it runs
        healthy_until = len(seen.of(sick))
        inject("--fault", "bearing_wear", "--ramp-readings", "0")
        poll(lambda: '"fault injected' in node.log("sensor"), 20, "the sensor to apply it")
        mark = len(seen.of(sick))
        poll(lambda: len(seen.of(sick)) >= mark + 100, 30, "readings in the fault")
        # Assert: from the switch on, dev1 vibrates and heats and is labelled 1; dev2 is not
        dev1 = seen.of(sick)
        before, during = dev1[:healthy_until], dev1[mark + 5 :]
        assert all(d.get("anomaly", 1) == 1 for d in during)
        assert any("anomaly" not in d for d in during)  # unlabelled ones carry no label
        assert all(d.get("anomaly", 0) == 0 for d in [*before, *seen.of(healthy)])
        assert _mean(during, "vibration_x") > _mean(before, "vibration_x") + 2.5
        assert _mean(during, "temperature") > _mean(before, "temperature") + 8
        # A restarted sensor resumes the retained fault; --clear ends it.
        assert node.stop("sensor") == 0
        node.start_sensor("--rate", "100", "--run-id", "after")
        poll(lambda: len(seen.of(sick, "after")) >= 60, 30, "readings after the restart")
        resumed = seen.of(sick, "after")[20:]
        assert all(d.get("anomaly", 1) == 1 for d in resumed)
        inject("--clear")
        poll(lambda: '"fault cleared' in node.log("sensor"), 20, "the sensor to clear it")
        mark = len(seen.of(sick, "after"))
        poll(lambda: len(seen.of(sick, "after")) >= mark + 60, 30, "readings after the clear")
        cleared = seen.of(sick, "after")[mark + 5 :]
        assert all(d.get("anomaly", 0) == 0 for d in cleared)
        assert _mean(cleared, "vibration_x") < _mean(before, "vibration_x") + 0.5
    finally:
        seen.close()
