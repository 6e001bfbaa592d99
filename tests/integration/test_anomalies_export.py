"""``fl anomalies`` against a real KRaft broker: export writes every valid record, in
partition order, and counts the invalid ones by reason; tail prints only what is new."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from fl_runtime.cli import anomalies as cli
from fl_runtime.cli import main
from fl_runtime.core.detections import (
    AnomalyRecord,
    ScoreSummary,
    decode_anomaly_record,
    encode_anomaly_record,
)
from fl_runtime.report.synthetic import synthetic_anomaly_records
from tests.harness.kafka import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_export_reads_the_topic_to_its_end(kafka: KafkaBroker, tmp_path: Path) -> None:
    topic = f"anomalies-{uuid.uuid4().hex[:8]}"
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    records = synthetic_anomaly_records(nodes=3, intervals=20, seed=2)
    # idempotent: a retried batch must not overtake a later one (order per key is checked)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for record in records:
        producer.produce(topic, encode_anomaly_record(record), key=record.device_id.encode())
    producer.produce(topic, b"{truncated", key=b"node1-dev1")
    assert producer.flush(30) == 0
    out = tmp_path / "anomalies.jsonl"
    env = {"FL_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "FL_ANOMALIES_TOPIC": topic}

    result = CliRunner().invoke(
        main, ["anomalies", "export", "--out", str(out), "--timeout", "60"], env=env
    )

    assert result.exit_code == 0, result.output
    exported = [decode_anomaly_record(line) for line in out.read_bytes().splitlines()]
    assert sorted(map(repr, exported)) == sorted(map(repr, records))
    for device in {r.device_id for r in records}:  # one partition per device: order kept
        assert [r for r in exported if r.device_id == device] == [
            r for r in records if r.device_id == device
        ]
    assert "invalid records skipped: 1 (not-json 1)" in result.output


def test_tail_prints_what_arrives_after_it_started(kafka: KafkaBroker) -> None:
    topic = f"anomalies-{uuid.uuid4().hex[:8]}"
    admin = kafka.admin()  # keep the client alive until its future resolves
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    records = synthetic_anomaly_records(nodes=1, devices=1, intervals=2, seed=5)
    old, new = [r for r in records if isinstance(r, ScoreSummary)]
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topic, encode_anomaly_record(old), key=b"node1-dev1")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "tail-test"})
    printed: list[AnomalyRecord] = []
    sent: list[float] = []
    started = time.monotonic()

    def stopped() -> bool:  # called once per poll: send the new record after 3 s
        if not sent and time.monotonic() - started > 3.0:
            producer.produce(topic, encode_anomaly_record(new), key=b"node1-dev1")
            producer.flush(10)
            sent.append(time.monotonic())
        return bool(printed) or time.monotonic() - started > 60

    try:
        tally = cli.follow(consumer, topic, printed.append, stopped)
    finally:
        consumer.close()

    assert printed == [new]  # the record from before the start is not replayed
    assert sum(tally.valid.values()) == 1
