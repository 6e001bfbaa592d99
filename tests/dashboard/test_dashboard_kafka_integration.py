"""The Kafka sources against a real KRaft broker: topics, growth, dead letters, outage;
and the anomalies topic followed from before it exists."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from fl_runtime import artifacts
from fl_runtime.core.detections import encode_anomaly_record
from fl_runtime.dashboard.anomalies import KafkaAnomalySource
from fl_runtime.dashboard.kafka_source import ConfluentKafkaSource
from fl_runtime.report.synthetic import synthetic_anomaly_records
from fl_runtime.service import deadletter
from tests.harness.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]
DLQ = "fl-dead-letter"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own: the test kills it at the end."""
    cache = Path(os.environ.get("FL_ARTIFACTS_DIR") or REPO / ".artifacts")
    artifacts.fetch(cache, wheels=False)
    kafka = KafkaBroker(cache, tmp_path / "kafka")
    try:
        yield kafka.start()
    finally:
        kafka.kill()


def _produce(bootstrap: str, sensor: dict[str, int], dead: list[tuple[str, str | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for topic, n in sensor.items():
        for i in range(n):
            producer.produce(topic, b"reading", key=str(i).encode())
    for reason, node in dead:
        deadletter.publish(
            producer, DLQ, b"payload", reason=reason, detail="test", source="test", node_id=node
        )
    assert producer.flush(30) == 0


def test_source_reads_topics_growth_and_dead_letters_then_sees_the_outage(
    broker: KafkaBroker,
) -> None:
    topics = ["sensor-data-node-1", "sensor-data-node-2", DLQ]
    admin = broker.admin()  # keep the client alive until its futures resolve
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics]).values():
        future.result(30)
    _produce(
        broker.bootstrap,
        {"sensor-data-node-1": 10},
        [("not-finite", "1"), ("not-finite", "1"), ("schema", None)],
    )
    source = ConfluentKafkaSource(
        bootstrap_servers=broker.bootstrap,
        dead_letter_topic=DLQ,
        sensor_topic_prefix="sensor-data-node-",
        timeout_s=5.0,
    )

    first = source.refresh()
    _produce(broker.bootstrap, {"sensor-data-node-2": 4}, [("range", "2")])
    second = source.refresh()
    broker.kill()
    third = source.refresh()
    source.close()

    assert first.status == "ok" and set(topics) <= first.topics and first.brokers == 1
    assert first.end_offsets == {"sensor-data-node-1": 10, "sensor-data-node-2": 0}
    assert first.dead_letters == {"1": {"not-finite": 2}, "": {"schema": 1}}
    assert second.end_offsets["sensor-data-node-2"] == 4
    assert set(second.last_growth) == {"sensor-data-node-2"}
    assert second.dead_letters == {"1": {"not-finite": 2}, "": {"schema": 1}, "2": {"range": 1}}
    assert third.status == "unreachable" and third.detail
    assert third.dead_letters == second.dead_letters  # last known counts are kept


def _poll_until(source: KafkaAnomalySource, n: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        source.poll(0.5)
        snap = source.book.snapshot()
        if sum(snap.records.values()) + sum(snap.invalid.values()) >= n:
            break
    return sum(source.book.snapshot().records.values())


def test_anomaly_source_waits_for_the_topic_then_follows_it(broker: KafkaBroker) -> None:
    source = KafkaAnomalySource(
        {"bootstrap.servers": broker.bootstrap, "group.id": "t"}, "anomalies", timeout_s=3.0
    )
    records = synthetic_anomaly_records(nodes=2, intervals=10, seed=3)
    producer = Producer({"bootstrap.servers": broker.bootstrap})

    missing = source.check()
    admin = broker.admin()
    admin.create_topics([NewTopic("anomalies", 3, 1)])["anomalies"].result(30)
    for record in records[:-1]:
        producer.produce("anomalies", encode_anomaly_record(record), key=record.device_id.encode())
    producer.produce("anomalies", b"[1, 2]", key=b"x")
    assert producer.flush(30) == 0
    found = source.check()
    read_first = _poll_until(source, len(records))
    last = records[-1]
    producer.produce("anomalies", encode_anomaly_record(last), key=last.device_id.encode())
    assert producer.flush(30) == 0
    read_then = _poll_until(source, len(records) + 1)
    broker.kill()
    lost = source.check()
    snap = source.book.snapshot()
    source.close()

    assert (missing, found, lost) == ("missing", "ok", "unreachable")
    assert (read_first, read_then) == (len(records) - 1, len(records))
    assert sum(snap.invalid.values()) == 1
    assert {d.device_id for d in snap.devices} == {r.device_id for r in records}
    assert [a.state for a in snap.alerts] == ["cleared", "cleared", "raised", "raised"]
