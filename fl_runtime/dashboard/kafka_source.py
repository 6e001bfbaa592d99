"""What the dashboard learns from Kafka, behind a small pluggable interface.

A :class:`KafkaSource` hands out immutable :class:`KafkaSnapshot` objects and never
blocks a web request: :class:`ConfluentKafkaSource` refreshes its snapshot on a
background thread (broker metadata, the sensor topics' end offsets, and the
dead-letter topic's ``reason``/``node_id`` headers). When the brokers cannot be
reached the snapshot says ``unreachable`` and the dashboard keeps serving the log.
Tests plug in a :class:`StaticKafkaSource`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from fl_runtime.service import deadletter

log = logging.getLogger(__name__)

KafkaStatus = Literal["ok", "unreachable", "disabled"]
UNKNOWN_NODE = ""
UNKNOWN_REASON = "unknown"


@dataclass(frozen=True)
class KafkaSnapshot:
    """Kafka as last seen. ``end_offsets`` sums each topic's partitions;
    ``first_seen``/``last_growth`` say when the dashboard first saw a topic and when
    its end offset last grew; ``dead_letters`` counts ``node_id -> reason -> n``
    (node ``""`` when a message had no ``node_id`` header)."""

    status: KafkaStatus
    detail: str = ""
    checked_at: float | None = None
    brokers: int | None = None
    topics: frozenset[str] = frozenset()
    end_offsets: Mapping[str, int] = field(default_factory=dict)
    first_seen: Mapping[str, float] = field(default_factory=dict)
    last_growth: Mapping[str, float] = field(default_factory=dict)
    dead_letter_topic: str = ""
    dead_letters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


DISABLED = KafkaSnapshot(status="disabled", detail="Kafka checks are switched off (--no-kafka)")


class KafkaSource(Protocol):
    def start(self) -> None: ...

    def snapshot(self) -> KafkaSnapshot: ...

    def close(self) -> None: ...


class StaticKafkaSource:
    """A source that always answers the same snapshot (tests, ``--no-kafka``)."""

    def __init__(self, snapshot: KafkaSnapshot = DISABLED) -> None:
        self.current = snapshot

    def start(self) -> None:
        return None

    def snapshot(self) -> KafkaSnapshot:
        return self.current

    def close(self) -> None:
        return None


class DeadLetterCounter:
    """Counts dead-letter messages by their ``node_id`` and ``reason`` headers
    (see :mod:`fl_runtime.service.deadletter`)."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def add(self, raw_headers: list[tuple[str, bytes | None]] | None) -> None:
        found = deadletter.read_headers(raw_headers)
        node = found.get("node_id") or UNKNOWN_NODE
        self.counts[node][found.get("reason") or UNKNOWN_REASON] += 1

    def frozen(self) -> dict[str, dict[str, int]]:
        return {node: dict(reasons) for node, reasons in self.counts.items()}


class ConfluentKafkaSource:
    """Polls Kafka every ``interval_s`` on a daemon thread, each call bounded by
    ``timeout_s``. Only :meth:`snapshot` is called from the web server's thread."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        dead_letter_topic: str,
        sensor_topic_prefix: str,
        security_protocol: str = "PLAINTEXT",
        interval_s: float = 5.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "security.protocol": security_protocol,
            "logger": logging.getLogger("fl_runtime.dashboard.librdkafka"),
        }
        self._dlq_topic = dead_letter_topic
        self._prefix = sensor_topic_prefix
        self._interval, self._timeout, self._clock = interval_s, timeout_s, clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin: Any = None
        self._consumer: Any = None
        self._next: dict[tuple[str, int], int] = {}
        self._dead = DeadLetterCounter()
        self._ends: dict[str, int] = {}
        self._first_seen: dict[str, float] = {}
        self._growth: dict[str, float] = {}
        self._snapshot = KafkaSnapshot(
            status="unreachable", detail="not checked yet", dead_letter_topic=dead_letter_topic
        )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dashboard-kafka", daemon=True)
            self._thread.start()

    def snapshot(self) -> KafkaSnapshot:
        with self._lock:
            return self._snapshot

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 2.0)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._interval)

    def refresh(self) -> KafkaSnapshot:
        """One poll of Kafka (also callable directly, e.g. from tests)."""
        from confluent_kafka import KafkaException

        try:
            snap = self._poll()
        except KafkaException as exc:
            snap = replace(
                self._snapshot, status="unreachable", detail=_reason(exc), checked_at=self._clock()
            )
        except Exception as exc:  # keep the poller alive whatever the client raises
            log.exception("Kafka check failed")
            snap = replace(
                self._snapshot,
                status="unreachable",
                detail=f"check failed: {exc}",
                checked_at=self._clock(),
            )
        with self._lock:
            self._snapshot = snap
        return snap

    def _poll(self) -> KafkaSnapshot:
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient(dict(self._conf))
        metadata = self._admin.list_topics(timeout=self._timeout)
        topics = frozenset(t for t in metadata.topics if not t.startswith("__"))
        now = self._clock()
        sensor = {
            t: len(metadata.topics[t].partitions) for t in topics if t.startswith(self._prefix)
        }
        ends = self._offsets(sensor, "latest")
        totals = {t: sum(o for (topic, _), o in ends.items() if topic == t) for t in sensor}
        self._observe_offsets(now, totals)
        if self._dlq_topic in topics:
            self._drain_dead_letters(len(metadata.topics[self._dlq_topic].partitions))
        return KafkaSnapshot(
            status="ok",
            detail=f"{len(metadata.brokers)} broker(s) answered",
            checked_at=now,
            brokers=len(metadata.brokers),
            topics=topics,
            end_offsets=dict(self._ends),
            first_seen=dict(self._first_seen),
            last_growth=dict(self._growth),
            dead_letter_topic=self._dlq_topic,
            dead_letters=self._dead.frozen(),
        )

    def _offsets(self, partitions: Mapping[str, int], which: str) -> dict[tuple[str, int], int]:
        """The ``earliest`` or ``latest`` offset of every partition, in one request."""
        from confluent_kafka import TopicPartition

        # OffsetSpec is public but untyped, and not re-exported in a way mypy sees.
        from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

        if not partitions:
            return {}
        spec: Any = getattr(OffsetSpec, which)()
        request = {TopicPartition(t, p): spec for t, n in partitions.items() for p in range(n)}
        futures = self._admin.list_offsets(request, request_timeout=self._timeout)
        return {(tp.topic, tp.partition): max(0, f.result().offset) for tp, f in futures.items()}

    def _observe_offsets(self, now: float, ends: Mapping[str, int]) -> None:
        for topic, end in ends.items():
            self._first_seen.setdefault(topic, now)
            previous = self._ends.get(topic)
            if previous is not None and end > previous:
                self._growth[topic] = now
            self._ends[topic] = end

    def _drain_dead_letters(self, partitions: int) -> None:
        """Read the dead-letter topic up to its current end (within ``timeout_s``),
        counting every message once; offsets are kept here, never committed."""
        from confluent_kafka import Consumer, TopicPartition

        lows = self._offsets({self._dlq_topic: partitions}, "earliest")
        highs = self._offsets({self._dlq_topic: partitions}, "latest")
        for key, low in lows.items():
            self._next[key] = max(self._next.get(key, 0), low)
        behind = {k: v for k, v in highs.items() if self._next[k] < v}
        if not behind:
            return
        if self._consumer is None:
            self._consumer = Consumer(
                {**self._conf, "group.id": "fl-dashboard", "enable.auto.commit": False}
            )
        self._consumer.assign([TopicPartition(t, p, self._next[(t, p)]) for t, p in behind])
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline and any(self._next[k] < v for k, v in behind.items()):
            for message in self._consumer.consume(num_messages=500, timeout=0.2):
                if message.error() is None:
                    self._dead.add(message.headers())
                    self._next[(message.topic(), message.partition())] = message.offset() + 1


def _reason(exc: Exception) -> str:
    err: Any = exc.args[0] if exc.args else None
    return str(err.str()) if hasattr(err, "str") else str(exc)
