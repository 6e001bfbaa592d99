"""The dashboard's bounded memory of the ``anomalies`` topic, and the sources that feed it.

:class:`AnomalyBook` folds detections, alert changes and score summaries
(:mod:`fl_runtime.core.detections`) into per-device alert state, the newest alert
changes and a score sparkline per device. Every collection in it is bounded, and a
record that fails validation is counted with its reason, never raised. It is
thread-safe: a source's consumer thread feeds it while the web server reads
:meth:`AnomalyBook.snapshot`.

An :class:`AnomalySource` owns a book: :class:`KafkaAnomalySource` follows the topic
from its beginning on a daemon thread; :class:`MemoryAnomalySource` is fed by hand
(tests, ``--no-kafka``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fl_runtime.core.detections import (
    RAISED,
    AlertChange,
    AnomalyRecord,
    Detection,
    ScoreSummary,
    decode_anomaly_record,
)
from fl_runtime.errors import ValidationError

log = logging.getLogger(__name__)

AnomalyStatus = Literal["ok", "missing", "unreachable", "disabled"]


@dataclass(frozen=True)
class ScorePoint:
    """One score summary, as a sparkline point."""

    t: float  # window_end
    mean: float
    max: float
    threshold: float
    n: int
    over: int


@dataclass
class DeviceState:
    """What the book knows about one device; ``since`` is when its state last changed
    (None when only a score summary told, so the change itself was not seen)."""

    device_id: str
    node_id: str
    active: bool = False
    since: float | None = None
    alert_id: str | None = None
    last_score: float | None = None
    threshold: float | None = None
    model_version: int | None = None
    last_seen: float | None = None
    detections: int = 0
    raised: int = 0
    points: deque[ScorePoint] = field(default_factory=deque)


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    node_id: str
    active: bool
    since: float | None
    alert_id: str | None
    last_score: float | None
    threshold: float | None
    model_version: int | None
    last_seen: float | None
    detections: int
    raised: int
    points: tuple[ScorePoint, ...]


@dataclass(frozen=True)
class AnomalySnapshot:
    """The book at one moment: devices least recently heard first, alerts newest first."""

    status: AnomalyStatus
    detail: str
    topic: str
    version: int
    devices: tuple[DeviceView, ...]
    alerts: tuple[AlertChange, ...]
    records: Mapping[str, int]
    invalid: Mapping[str, int]
    devices_dropped: int


class AnomalyBook:
    """Bounded: ``max_devices`` devices (the longest silent is forgotten first),
    ``max_alerts`` alert changes, ``max_points`` sparkline points per device."""

    def __init__(
        self,
        *,
        topic: str = "anomalies",
        max_devices: int = 1000,
        max_alerts: int = 200,
        max_points: int = 60,
    ) -> None:
        self.topic = topic
        self.max_devices, self.max_points = max_devices, max_points
        self._lock = threading.Lock()
        self._devices: OrderedDict[str, DeviceState] = OrderedDict()
        self._alerts: deque[AlertChange] = deque(maxlen=max_alerts)
        self._records: Counter[str] = Counter()
        self._invalid: Counter[str] = Counter()
        self._dropped = 0
        self._status: AnomalyStatus = "disabled"
        self._detail = "not following the anomalies topic"
        self.version = 0

    def ingest(self, payload: bytes | str | None) -> AnomalyRecord | None:
        """Decode and fold one raw record; a bad one is counted by its reason."""
        try:
            record = decode_anomaly_record(payload if payload is not None else b"")
        except ValidationError as exc:
            with self._lock:
                self._invalid[exc.reason] += 1
                self.version += 1
            return None
        self.add(record)
        return record

    def add(self, record: AnomalyRecord) -> None:
        with self._lock:
            device = self._device(record.device_id, record.node_id)
            if isinstance(record, Detection):
                self._records["detection"] += 1
                device.detections += 1
                _seen(device, record.detection_time, record.score, record.model_version)
                device.threshold = record.threshold
            elif isinstance(record, AlertChange):
                self._records["alert"] += 1
                self._alerts.append(record)
                _change(device, record)
            else:
                self._records["score_summary"] += 1
                _summary(device, record, self.max_points)
            self.version += 1

    def add_all(self, records: Iterable[AnomalyRecord]) -> None:
        for record in records:
            self.add(record)

    def set_status(self, status: AnomalyStatus, detail: str) -> None:
        with self._lock:
            if (status, detail) != (self._status, self._detail):
                self._status, self._detail = status, detail
                self.version += 1

    def snapshot(self) -> AnomalySnapshot:
        with self._lock:
            devices = [_view(d) for d in self._devices.values()]
            return AnomalySnapshot(
                status=self._status,
                detail=self._detail,
                topic=self.topic,
                version=self.version,
                devices=tuple(devices),
                # Partitions interleave on catch-up: order by time, not by arrival.
                alerts=tuple(sorted(self._alerts, key=_when, reverse=True)),
                records=dict(self._records),
                invalid=dict(self._invalid),
                devices_dropped=self._dropped,
            )

    def _device(self, device_id: str, node_id: str) -> DeviceState:
        device = self._devices.get(device_id)
        if device is None:
            device = DeviceState(device_id, node_id, points=deque(maxlen=self.max_points))
            self._devices[device_id] = device
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
                self._dropped += 1
        else:
            self._devices.move_to_end(device_id)
        device.node_id = node_id
        return device


def _when(alert: AlertChange) -> float:
    return alert.detection_time


def _seen(device: DeviceState, at: float, score: float, model_version: int) -> None:
    if device.last_seen is None or at >= device.last_seen:
        device.last_seen, device.last_score, device.model_version = at, score, model_version


def _change(device: DeviceState, alert: AlertChange) -> None:
    device.active = alert.state == RAISED
    device.since = alert.detection_time
    device.alert_id = alert.alert_id
    device.threshold = alert.threshold
    device.raised += int(device.active)
    _seen(device, alert.detection_time, alert.score, alert.model_version)


def _summary(device: DeviceState, s: ScoreSummary, max_points: int) -> None:
    device.points.append(
        ScorePoint(s.window_end, s.mean_score, s.max_score, s.threshold, s.n, s.over)
    )
    device.threshold = s.threshold
    if s.alert_active != device.active:  # the change itself was not seen (retention, a gap)
        device.active, device.since = s.alert_active, None
    if s.n:
        _seen(device, s.window_end, s.max_score, s.model_version)


def _view(d: DeviceState) -> DeviceView:
    return DeviceView(
        device_id=d.device_id,
        node_id=d.node_id,
        active=d.active,
        since=d.since,
        alert_id=d.alert_id if d.active else None,
        last_score=d.last_score,
        threshold=d.threshold,
        model_version=d.model_version,
        last_seen=d.last_seen,
        detections=d.detections,
        raised=d.raised,
        points=tuple(d.points),
    )


class AnomalySource(Protocol):
    book: AnomalyBook

    def start(self) -> None: ...

    def close(self) -> None: ...


class MemoryAnomalySource:
    """A book fed by hand: :meth:`feed` takes records or raw payloads (tests, ``--no-kafka``)."""

    def __init__(self, book: AnomalyBook | None = None, *, status: AnomalyStatus = "ok") -> None:
        self.book = book or AnomalyBook()
        detail = "records fed in-process" if status == "ok" else "not following the topic"
        self.book.set_status(status, detail)

    def feed(self, *items: AnomalyRecord | bytes | str) -> None:
        for item in items:
            if isinstance(item, bytes | str):
                self.book.ingest(item)
            else:
                self.book.add(item)

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None


class KafkaAnomalySource:
    """Follows ``topic`` from its beginning on a daemon thread with its own consumer
    (offsets are never committed: every dashboard start rebuilds the book). The topic's
    partitions are looked up every ``interval_s``, so a topic created later is picked up;
    until then the status says ``missing``."""

    def __init__(
        self,
        consumer_conf: Mapping[str, Any],
        topic: str,
        *,
        book: AnomalyBook | None = None,
        interval_s: float = 5.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conf = {
            **consumer_conf,
            "enable.auto.commit": False,
            "logger": logging.getLogger("fl_runtime.dashboard.librdkafka"),
        }
        self.topic = topic
        self.book = book or AnomalyBook(topic=topic)
        self.book.set_status("unreachable", "not checked yet")
        self._interval, self._timeout, self._clock = interval_s, timeout_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._partitions = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="dashboard-anomalies", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 2.0)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _run(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            try:
                if self._clock() >= next_check:
                    self.check()
                    next_check = self._clock() + self._interval
                if self._partitions:
                    self.poll(0.5)
                else:
                    self._stop.wait(min(self._interval, 0.5))
            except Exception as exc:  # keep following whatever the client raises
                log.exception("following the anomalies topic failed")
                self.book.set_status("unreachable", f"check failed: {exc}")
                self._stop.wait(self._interval)

    def check(self) -> AnomalyStatus:
        """Look the topic up and (re)assign its partitions; returns the status."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

        try:
            if self._consumer is None:
                self._consumer = Consumer(dict(self._conf))
            metadata = self._consumer.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            self.book.set_status("unreachable", _reason(exc))
            return "unreachable"
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            self.book.set_status("missing", f"topic {self.topic} does not exist yet")
            return "missing"
        partitions = len(topic.partitions)
        if partitions != self._partitions:
            # New partitions start at their beginning; known ones keep their position.
            known = {p.partition: p.offset for p in self._position()}
            self._consumer.assign(
                [
                    TopicPartition(self.topic, p, known.get(p, OFFSET_BEGINNING))
                    for p in range(partitions)
                ]
            )
            self._partitions = partitions
        self.book.set_status("ok", f"following {self.topic} ({partitions} partition(s))")
        return "ok"

    def poll(self, timeout_s: float) -> int:
        """Consume what is there within ``timeout_s``; returns how many records arrived."""
        if self._consumer is None:
            return 0
        seen = 0
        for message in self._consumer.consume(num_messages=500, timeout=timeout_s):
            if message.error() is None:
                self.book.ingest(message.value())
                seen += 1
        return seen

    def _position(self) -> list[Any]:
        if not self._partitions:
            return []
        from confluent_kafka import TopicPartition

        mine = [TopicPartition(self.topic, p) for p in range(self._partitions)]
        return [p for p in self._consumer.position(mine) if p.offset >= 0]


def _reason(exc: Exception) -> str:
    err: Any = exc.args[0] if exc.args else None
    return str(err.str()) if hasattr(err, "str") else str(exc)
