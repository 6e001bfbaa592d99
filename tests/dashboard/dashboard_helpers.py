"""Helpers for the dashboard tests: a healthy Kafka snapshot and small HTTP clients."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from fl_runtime.dashboard import KafkaSnapshot


def kafka_ok(now: float | None = None) -> KafkaSnapshot:
    now = time.time() if now is None else now
    topics = {f"sensor-data-node-{i}" for i in range(1, 7)} | {"model-weights", "fl-dead-letter"}
    return KafkaSnapshot(
        status="ok",
        detail="1 broker(s) answered",
        checked_at=now,
        brokers=1,
        topics=frozenset(topics),
        end_offsets={t: 100 for t in topics if t.startswith("sensor")},
        first_seen={t: now - 600 for t in topics},
        last_growth={t: now - 1 for t in topics if t != "sensor-data-node-4"},
        dead_letter_topic="fl-dead-letter",
        dead_letters={"3": {"schema": 2, "range": 1}, "": {"unparseable": 4}},
    )


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def read_events(
    url: str,
    until: Callable[[list[tuple[str, Any]]], bool],
    timeout_s: float = 10.0,
    headers: dict[str, str] | None = None,
) -> list[tuple[str, Any]]:
    """Read a server-sent event stream until ``until(events)`` holds; (event, data) pairs."""
    events: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout_s) as stream:
        name, data = "message", ""
        while time.monotonic() < deadline:
            line = stream.readline().decode("utf-8").rstrip("\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif line == "" and data:
                events.append((name, json.loads(data)))
                name, data = "message", ""
                if until(events):
                    return events
    raise AssertionError(f"stream did not deliver in {timeout_s} s; got {[e for e, _ in events]}")
