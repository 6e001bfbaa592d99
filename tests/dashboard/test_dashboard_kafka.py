"""The Kafka source: dead-letter header counting, and an unreachable broker."""

from __future__ import annotations

import socket
import time

from fl_runtime.dashboard.kafka_source import ConfluentKafkaSource, DeadLetterCounter


def test_dead_letters_are_counted_by_node_and_reason() -> None:
    counter = DeadLetterCounter()

    counter.add([("reason", b"schema"), ("node_id", b"3")])
    counter.add([("node_id", b"3"), ("reason", b"schema"), ("source", b"bridge")])
    counter.add([("reason", b"range"), ("node_id", b"3")])
    counter.add([("reason", b"unparseable")])
    counter.add(None)

    assert counter.frozen() == {
        "3": {"schema": 2, "range": 1},
        "": {"unparseable": 1, "unknown": 1},
    }


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_broker_is_reported_not_raised() -> None:
    source = ConfluentKafkaSource(
        bootstrap_servers=f"127.0.0.1:{_closed_port()}",
        dead_letter_topic="fl-dead-letter",
        sensor_topic_prefix="sensor-data-node-",
        timeout_s=1.0,
    )
    started = time.monotonic()

    snapshot = source.refresh()

    assert time.monotonic() - started < 5.0
    assert snapshot.status == "unreachable" and snapshot.detail
    assert snapshot.checked_at is not None and snapshot.dead_letters == {}
    source.close()


def test_the_background_thread_starts_and_stops_promptly() -> None:
    source = ConfluentKafkaSource(
        bootstrap_servers=f"127.0.0.1:{_closed_port()}",
        dead_letter_topic="fl-dead-letter",
        sensor_topic_prefix="sensor-data-node-",
        timeout_s=0.5,
        interval_s=0.2,
    )
    source.start()
    deadline = time.monotonic() + 5
    while source.snapshot().checked_at is None and time.monotonic() < deadline:
        time.sleep(0.05)

    started = time.monotonic()
    source.close()

    assert source.snapshot().status == "unreachable"
    assert time.monotonic() - started < 3.0
