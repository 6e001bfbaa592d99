"""The test harness itself: real Kafka and Mosquitto round trips, crashes and restarts."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from tests.harness.kafka import KafkaBroker
from tests.harness.mosquitto import MosquittoBroker
from tests.harness.spark import spark_session

pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i, value in enumerate(values):
        producer.produce(topic, key=str(i).encode(), value=value)
    assert producer.flush(30) == 0


def consume(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"harness-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value() or b"")
    finally:
        consumer.close()
    return got


def create_topic(broker: KafkaBroker, topic: str, partitions: int = 1) -> None:
    admin = broker.admin()  # keep a reference: the futures die with the client
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)
    futures[topic].result(35)


def test_kafka_round_trip(kafka: KafkaBroker) -> None:
    topic = f"harness-{uuid.uuid4().hex[:8]}"
    create_topic(kafka, topic, partitions=3)
    values = [f"reading-{i}".encode() for i in range(200)]

    produce(kafka.bootstrap, topic, values)
    got = consume(kafka.bootstrap, topic, len(values))

    assert sorted(got) == sorted(values)


def test_kafka_keeps_its_data_across_a_crash(kafka_private: KafkaBroker) -> None:
    topic = "survives-kill"
    create_topic(kafka_private, topic)
    produce(kafka_private.bootstrap, topic, [b"before-crash"])
    old_pid = kafka_private.pid

    kafka_private.kill()
    assert not kafka_private.running()
    kafka_private.start()

    assert kafka_private.pid != old_pid
    produce(kafka_private.bootstrap, topic, [b"after-restart"])
    assert consume(kafka_private.bootstrap, topic, 2) == [b"before-crash", b"after-restart"]


def mqtt(args: list[str], broker: MosquittoBroker, timeout: float = 20) -> str:
    argv = [args[0], "-h", broker.host, "-p", str(broker.port), *args[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout


def test_mosquitto_pub_sub_round_trip(mosquitto: MosquittoBroker) -> None:
    client, topic = f"sub-{uuid.uuid4().hex[:8]}", f"factory/{uuid.uuid4().hex[:8]}/readings"
    # A persistent session (-c, QoS 1) queues messages while the subscriber is away.
    mqtt(["mosquitto_sub", "-c", "-i", client, "-q", "1", "-t", topic, "-E"], mosquitto)
    for i in range(3):
        mqtt(["mosquitto_pub", "-q", "1", "-t", topic, "-m", f"reading-{i}"], mosquitto)

    out = mqtt(
        ["mosquitto_sub", "-c", "-i", client, "-q", "1", "-t", topic, "-C", "3", "-W", "10"],
        mosquitto,
    )

    assert out.split() == ["reading-0", "reading-1", "reading-2"]


def test_mosquitto_queue_survives_a_restart(mosquitto_private: MosquittoBroker) -> None:
    client, topic = "persistent-sub", "factory/node-1/dev-1/readings"
    mqtt(["mosquitto_sub", "-c", "-i", client, "-q", "1", "-t", topic, "-E"], mosquitto_private)
    mqtt(["mosquitto_pub", "-q", "1", "-t", topic, "-m", "queued"], mosquitto_private)

    mosquitto_private.restart()

    out = mqtt(
        ["mosquitto_sub", "-c", "-i", client, "-q", "1", "-t", topic, "-C", "1", "-W", "10"],
        mosquitto_private,
    )
    assert out.split() == ["queued"]


def test_a_broker_is_torn_down_when_the_test_body_fails(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path)
    with pytest.raises(RuntimeError, match="test body failed"), broker:
        assert broker.running()
        raise RuntimeError("test body failed")
    assert not broker.running()


@pytest.mark.slow
def test_spark_reads_kafka_with_the_cached_connector(
    kafka: KafkaBroker, artifacts_cache: Path, tmp_path: Path
) -> None:
    topic = f"spark-{uuid.uuid4().hex[:8]}"
    create_topic(kafka, topic, partitions=2)
    produce(kafka.bootstrap, topic, [f"{i}".encode() for i in range(50)])

    with spark_session(artifacts_cache, app_name="harness-spark") as spark:
        frame = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", kafka.bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .load()
        )
        values = sorted(int(row.value) for row in frame.select("value").collect())

    assert values == list(range(50))
