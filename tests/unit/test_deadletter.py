"""The dead-letter publisher stays safe for any payload (issue #12, poison pills)."""

from __future__ import annotations

from typing import Any

from fl_runtime.service import deadletter
from fl_runtime.service.deadletter import read_headers


class RecordingProducer:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.records.append({"topic": topic, **kwargs})


def test_a_huge_payload_is_truncated_with_its_original_size_in_a_header() -> None:
    # Prepare
    producer = RecordingProducer()
    payload = bytes(range(256)) * 40_000  # 10 MB

    # Execute
    deadletter.publish(
        producer,  # type: ignore[arg-type]  # a fake producer
        "fl-dead-letter",
        payload,
        reason="oversized",
        detail="d" * 50_000,
        source="aggregator:" + "t" * 50_000,
        node_id="2",
    )

    # Assert
    (record,) = producer.records
    assert record["value"] == payload[: deadletter.MAX_VALUE_BYTES]
    assert len(record["value"]) == 64 * 1024
    headers = read_headers(record["headers"])
    assert headers["original_bytes"] == str(len(payload))
    assert headers["reason"] == "oversized" and headers["node_id"] == "2"
    assert len(headers["detail"]) == len(headers["source"]) == deadletter.MAX_HEADER_CHARS


def test_a_small_payload_is_kept_whole() -> None:
    dead = deadletter.record(b"{not json", reason="not-json", detail="", source="bridge:t")

    assert dead["value"] == b"{not json"
    assert read_headers(dead["headers"])["original_bytes"] == "9"
    assert deadletter.record(None, reason="r", detail="", source="s")["value"] == b""
