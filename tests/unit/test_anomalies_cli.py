"""``fl anomalies``: export to the topic's end and tail, against a fake consumer
(the real-broker export is in tests/integration/test_anomalies_export.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from fl_runtime.cli import anomalies as cli
from fl_runtime.cli import main
from fl_runtime.core.detections import (
    AlertChange,
    Detection,
    decode_anomaly_record,
    encode_anomaly_record,
)
from fl_runtime.report.synthetic import synthetic_anomaly_records

T0 = 1_790_000_000.0


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v


class FakeConsumer:
    """A topic of ``partitions`` in-memory logs; ``appended`` arrive after the start."""

    def __init__(self, topic: str, logs: list[list[bytes]] | None) -> None:
        self.topic, self.logs = topic, logs
        self.positions: dict[int, int] = {}
        self.closed = False

    def list_topics(self, timeout: float) -> Any:
        found = (
            {}
            if self.logs is None
            else {
                self.topic: SimpleNamespace(
                    error=None, partitions=dict.fromkeys(range(len(self.logs)))
                )
            }
        )
        return SimpleNamespace(topics=found)

    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        assert self.logs is not None
        return 0, len(self.logs[tp.partition])

    def assign(self, tps: list[Any]) -> None:
        self.positions = {tp.partition: tp.offset for tp in tps}

    def incremental_assign(self, tps: list[Any]) -> None:
        assert self.logs is not None
        self.positions.update({tp.partition: len(self.logs[tp.partition]) for tp in tps})

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        assert self.logs is not None
        out = []
        for p, at in self.positions.items():
            for offset in range(at, len(self.logs[p])):
                out.append(FakeMessage(self.topic, p, offset, self.logs[p][offset]))
            self.positions[p] = len(self.logs[p])
        return out

    def close(self) -> None:
        self.closed = True


def _logs() -> list[list[bytes]]:
    records = synthetic_anomaly_records(nodes=2, intervals=10, seed=1, end=T0)
    logs: list[list[bytes]] = [[], [], []]
    for r in records:
        logs[int(r.node_id) % 3].append(encode_anomaly_record(r))
    logs[1] += [b"{broken", b'{"schema": "fedge.alert.v7"}']
    return logs


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConsumer]:
    consumer = FakeConsumer("anomalies", _logs())
    monkeypatch.setattr(cli, "consumer_factory", lambda conf: consumer)
    yield consumer


def test_export_writes_every_valid_record_and_reports_the_bad(
    fake: FakeConsumer, tmp_path: Path
) -> None:
    out = tmp_path / "anomalies.jsonl"
    expected = sum(len(log) for log in fake.logs or []) - 2

    result = CliRunner().invoke(main, ["anomalies", "export", "--out", str(out)])

    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    assert len(lines) == expected
    assert all(decode_anomaly_record(line) for line in lines)
    assert "invalid records skipped: 2 (not-json 1, schema 1)" in result.output
    assert "valid records: 61 (4 alert, 17 detection, 40 score_summary)" in result.output
    assert fake.closed


def test_export_fails_clearly_when_the_topic_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "consumer_factory", lambda conf: FakeConsumer("anomalies", None))

    result = CliRunner().invoke(main, ["anomalies", "export", "--out", str(tmp_path / "x")])

    assert result.exit_code == 1 and "topic anomalies does not exist" in result.output


def test_read_to_end_stops_at_the_end_it_saw_first() -> None:
    consumer = FakeConsumer("anomalies", [[b"a"], []])
    start_end = [len(log) for log in consumer.logs or []]
    seen: list[Any] = []

    tally, complete = cli.read_to_end(consumer, "anomalies", seen.append, timeout_s=5)

    assert complete and start_end == [1, 0]
    assert sum(tally.invalid.values()) == 1 and seen == []


def _alert(state: str) -> AlertChange:
    return AlertChange("a1", state, "node1-dev1", "1", "m1", 0.91, 0.5, 3, T0, T0 + 0.25, 4, 5)


def test_tail_prints_new_records_only_as_people_or_json_read_them() -> None:
    consumer = FakeConsumer("anomalies", [[b"old"]])
    printed: list[str] = []
    calls = iter(range(100))

    def stop() -> bool:
        step = next(calls)
        if step == 1 and consumer.logs is not None:  # after the first assign
            detection = Detection("m1", "node1-dev1", "1", 0.8, 0.5, 3, T0, T0 + 0.1)
            consumer.logs[0] += [encode_anomaly_record(r) for r in (detection, _alert("raised"))]
        return step >= 3

    tally = cli.follow(consumer, "anomalies", lambda r: printed.append(cli.human_line(r)), stop)

    assert printed == [
        "2026-09-21T14:13:20.100Z node 1 node1-dev1 detection score 0.800 > 0.500 (model v3) "
        "reading m1",
        "2026-09-21T14:13:20.250Z node 1 node1-dev1 alert RAISED score 0.910 (threshold 0.500, "
        "4/5 over, model v3) id a1",
    ]
    assert sum(tally.valid.values()) == 2 and not tally.invalid


def test_tail_command_alerts_only_json(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer("anomalies", [[]])
    batches = iter(
        [
            [],
            [
                FakeMessage("anomalies", 0, 0, encode_anomaly_record(_alert("raised"))),
                FakeMessage("anomalies", 0, 1, b"{nope"),
            ],
        ]
    )

    def consume(num_messages: int, timeout: float) -> list[FakeMessage]:
        batch = next(batches, None)
        if batch is None:
            raise KeyboardInterrupt  # Ctrl-C
        return batch

    consumer.consume = consume  # type: ignore[method-assign]
    monkeypatch.setattr(cli, "consumer_factory", lambda conf: consumer)
    monkeypatch.setattr(
        "fl_runtime.service.common.Shutdown", lambda: SimpleNamespace(requested=False)
    )

    result = CliRunner().invoke(main, ["anomalies", "tail", "--alerts-only", "--json"])

    first = result.output.splitlines()[0]
    assert (
        json.loads(first)["schema"] == "fedge.alert.v1" and json.loads(first)["state"] == "raised"
    )
    assert "invalid record at anomalies/0@1" in result.output
    assert consumer.closed
