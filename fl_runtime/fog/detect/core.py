"""The scorer's logic, free of sockets: validate, score, track alerts, spool, decide the ack.

:class:`DetectorCore` gets MQTT messages through :meth:`DetectorCore.handle` (on the
MQTT thread) and the wall clock through :meth:`DetectorCore.tick` (on the service
loop); alert changes leave through any :class:`AlertSink`, so tests drive it with
fakes. ``handle`` returns whether the message may be acknowledged: only once the
records it produced are in the spool.

Invalid payloads are counted by reason and logged (rate-limited), then acknowledged:
the bridge reads the same messages and dead-letters them with the reason, so the
scorer does not write them a second time.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fl_runtime.core.detections import (
    RAISED,
    AlertChange,
    AnomalyRecord,
    Detection,
    encode_anomaly_record,
)
from fl_runtime.core.messages import GlobalModel, SensorReading, decode_reading
from fl_runtime.errors import ValidationError
from fl_runtime.fog.bridge.forwarding import Incoming
from fl_runtime.fog.bridge.routes import device_pattern
from fl_runtime.fog.detect.alerts import AlertTracker, Change, Scored
from fl_runtime.fog.detect.metrics import DetectMetrics
from fl_runtime.fog.detect.scoring import Scorer
from fl_runtime.fog.detect.spool import ActiveAlert, Spool
from fl_runtime.fog.detect.summary import SummaryAccumulator
from fl_runtime.service.common import event

_INVALID_LOGGED_PER_REASON = 10
_INVALID_LOG_EVERY = 1000
_RECENT_IDS = 10_000  # message ids remembered to skip MQTT redeliveries


class AlertSink(Protocol):
    def publish_alert(self, topic: str, payload: bytes, reading_time: float | None) -> None: ...


@dataclass(frozen=True)
class DetectRules:
    """The [detection] settings the core applies."""

    threshold: float  # DETECTION_THRESHOLD; -1 uses the model's
    alert_k: int
    alert_m: int
    alert_clear_seconds: float
    summary_interval_seconds: float


class DetectorCore:
    """Thread model: :meth:`handle` on the MQTT thread, :meth:`tick` and
    :meth:`set_model` elsewhere; one lock keeps the per-device state consistent."""

    def __init__(
        self,
        *,
        node_id: str,
        rules: DetectRules,
        topic_template: str,
        alert_topic_template: str,
        spool: Spool,
        sink: AlertSink,
        metrics: DetectMetrics,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_id = node_id
        self.rules = rules
        self._alert_template = alert_topic_template
        self._device_re = device_pattern(topic_template, node_id)
        self._spool = spool
        self._sink = sink
        self._metrics = metrics
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._scorer: Scorer | None = None
        self._trackers: dict[str, AlertTracker] = {}
        self._summaries: dict[str, SummaryAccumulator] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._invalid: dict[str, int] = {}
        self._next_summary = clock() + rules.summary_interval_seconds
        metrics.spool_depth.set_function(lambda: spool.depth)
        metrics.active_alerts.set_function(lambda: self.active_alerts)

    @property
    def scorer(self) -> Scorer | None:
        return self._scorer

    @property
    def active_alerts(self) -> int:
        return sum(t.active for t in list(self._trackers.values()))

    # ------------------------------------------------------------------ the model
    def set_model(self, model: GlobalModel) -> bool:
        """Score with ``model`` from now on if it is newer than the current one.

        Versions only grow within one aggregator's history; a model from a re-created
        cluster (lower versions) is ignored until the saved one is removed from
        DETECTION_STATE_DIR."""
        with self._lock:
            if self._scorer is not None and model.version <= self._scorer.version:
                return False
            self._scorer = Scorer.of(model, self.rules.threshold)
        self._metrics.model_version.set(model.version)
        self._metrics.threshold.set(self._scorer.threshold)
        return True

    def restore_alerts(self, alerts: list[ActiveAlert]) -> None:
        """Resume the alerts that were active when the scorer stopped."""
        wall = self._clock()
        with self._lock:
            for a in alerts:
                last = Scored(a.message_id, a.score, True, a.reading_time)
                self._tracker(a.device_id).restore(a.alert_id, last, wall)

    # ------------------------------------------------------------------ readings
    def handle(self, msg: Incoming) -> bool:
        """Process one MQTT message; True when it may be acknowledged."""
        received = time.perf_counter()
        self._metrics.received.inc()
        reading = self._validate(msg)
        if reading is None:
            return True
        with self._lock:
            if reading.message_id in self._recent:
                self._metrics.duplicates.inc()
                return True
            scorer = self._scorer
            if scorer is None:
                self._metrics.unscored.inc()
                return True
            if not self._score(reading, scorer):
                return False
            self._remember(reading.message_id)
        self._metrics.scoring_latency.observe(time.perf_counter() - received)
        return True

    def _validate(self, msg: Incoming) -> SensorReading | None:
        try:
            reading = decode_reading(msg.payload)
        except ValidationError as exc:
            self._reject(msg.topic, exc.reason, exc.detail)
            return None
        if reading.node_id != self.node_id:
            self._reject(msg.topic, "node-mismatch", f"node_id {reading.node_id!r}")
            return None
        found = None if self._device_re is None else self._device_re.fullmatch(msg.topic)
        if found is not None and found["device_id"] != reading.device_id:
            self._reject(msg.topic, "device-mismatch", f"device_id {reading.device_id!r}")
            return None
        return reading

    def _score(self, reading: SensorReading, scorer: Scorer) -> bool:
        """Score, update the device's state, spool the records; False if the spool failed."""
        now = self._clock()
        score = scorer.score(reading)
        over = scorer.is_over(score)
        device = reading.device_id
        scored = Scored(reading.message_id, score, over, reading.timestamp)
        self._summary(device, now).add(score, over, reading.anomaly)
        change = self._tracker(device).observe(scored, now)
        records: list[AnomalyRecord] = []
        if over:
            records.append(
                Detection(
                    reading.message_id,
                    device,
                    self.node_id,
                    score,
                    scorer.threshold,
                    scorer.version,
                    reading.timestamp,
                    now,
                    reading.anomaly,
                )
            )
        if change is not None:
            records.append(self._alert(device, change, scorer, now))
        self._metrics.scored.inc()
        self._metrics.detections.inc(over)
        return self._emit(device, records, change, scored)

    def _alert(self, device: str, change: Change, scorer: Scorer, now: float) -> AlertChange:
        t = change.trigger
        return AlertChange(
            alert_id=change.alert_id,
            state=change.state,
            device_id=device,
            node_id=self.node_id,
            message_id=t.message_id,
            score=t.score,
            threshold=scorer.threshold,
            model_version=scorer.version,
            reading_time=t.reading_time,
            detection_time=now,
            over=change.over,
            window=change.window,
        )

    def _emit(
        self,
        device: str,
        records: list[AnomalyRecord],
        change: Change | None,
        scored: Scored | None,
    ) -> bool:
        """Alert change to MQTT at once; every record, and the device's alert state, into
        the spool. False if spooling failed. ``scored`` is the reading (None on a tick)."""
        raised: list[ActiveAlert] = []
        cleared: list[str] = []
        tracker = self._trackers[device]
        if change is None and scored is not None and scored.over and tracker.alert_id:
            # An active alert remembers its latest over reading, so after a restart its
            # quiet period is counted from there, not from the raise.
            raised.append(ActiveAlert(device, tracker.alert_id, scored.message_id,
                                      scored.score, scored.reading_time))  # fmt: skip
        if change is not None:
            alert = next(r for r in records if isinstance(r, AlertChange))
            topic = self._alert_template.format(node_id=self.node_id, device_id=device)
            reading_time = None if scored is None else scored.reading_time
            self._sink.publish_alert(topic, encode_anomaly_record(alert), reading_time)
            self._metrics.alerts.labels(state=change.state).inc()
            event(
                self._log,
                f"alert {change.state}",
                logging.WARNING if change.state == RAISED else logging.INFO,
                device_id=device,
                alert_id=change.alert_id,
                score=round(alert.score, 4),
                over=change.over,
                window=change.window,
            )
            t = change.trigger
            if change.state == RAISED:
                raised.append(
                    ActiveAlert(device, change.alert_id, t.message_id, t.score, t.reading_time)
                )
            else:
                cleared.append(device)
        return self._spool_records(records, raised, cleared)

    def _spool_records(
        self, records: list[AnomalyRecord], raised: list[ActiveAlert], cleared: list[str]
    ) -> bool:
        try:
            dropped = self._spool.append(
                [(r.device_id, encode_anomaly_record(r)) for r in records],
                raised=raised,
                cleared=cleared,
            )
        except Exception as exc:  # sqlite3.Error, OSError: disk full, read-only, ...
            self._metrics.spool_errors.inc()
            event(self._log, "spool write failed", logging.ERROR, error=str(exc)[:200])
            return False
        if dropped:
            self._metrics.spool_dropped.inc(dropped)
            event(
                self._log,
                "SPOOL FULL: dropped the oldest records, they will never reach Kafka",
                logging.ERROR,
                dropped=dropped,
                max_records=self._spool.max_records,
            )
        return True

    # ------------------------------------------------------------------ the clock
    def tick(self) -> None:
        """Clear the alerts of quiet devices; emit the summaries when they are due."""
        now = self._clock()
        with self._lock:
            scorer = self._scorer
            if scorer is None:
                return
            for device, tracker in self._trackers.items():
                change = tracker.tick(now)
                if change is not None:
                    self._emit(device, [self._alert(device, change, scorer, now)], change, None)
            if now >= self._next_summary:
                self._next_summary = now + self.rules.summary_interval_seconds
                self._flush_summaries(now, scorer)

    def _flush_summaries(self, now: float, scorer: Scorer) -> None:
        records: list[AnomalyRecord] = []
        for device, acc in self._summaries.items():
            summary = acc.flush(
                now,
                threshold=scorer.threshold,
                model_version=scorer.version,
                alert_active=self._trackers[device].active,
            )
            if summary is not None:
                records.append(summary)
        self._spool_records(records, [], [])

    # ------------------------------------------------------------------ helpers
    def _tracker(self, device: str) -> AlertTracker:
        tracker = self._trackers.get(device)
        if tracker is None:
            tracker = AlertTracker(
                k=self.rules.alert_k,
                m=self.rules.alert_m,
                clear_seconds=self.rules.alert_clear_seconds,
                new_id=lambda: f"{device[:100]}.{uuid.uuid4().hex[:16]}",
            )
            self._trackers[device] = tracker
        return tracker

    def _summary(self, device: str, now: float) -> SummaryAccumulator:
        acc = self._summaries.get(device)
        if acc is None:
            acc = SummaryAccumulator(device, self.node_id, now)
            self._summaries[device] = acc
        return acc

    def _remember(self, message_id: str) -> None:
        self._recent[message_id] = None
        if len(self._recent) > _RECENT_IDS:
            self._recent.popitem(last=False)

    def _reject(self, topic: str, reason: str, detail: str) -> None:
        self._metrics.invalid.labels(reason=reason).inc()
        seen = self._invalid.get(reason, 0) + 1
        self._invalid[reason] = seen
        loud = seen <= _INVALID_LOGGED_PER_REASON or seen % _INVALID_LOG_EVERY == 0
        event(
            self._log,
            "invalid reading not scored",
            logging.WARNING if loud else logging.DEBUG,
            reason=reason,
            topic=topic[:200],
            detail=detail[:200],
            count=seen,
        )
