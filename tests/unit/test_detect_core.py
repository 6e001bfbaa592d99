"""The scorer's logic without sockets: a real spool in a temp dir, fake MQTT and Kafka."""

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fl_runtime.config import load_config
from fl_runtime.core.detections import (
    CLEARED,
    RAISED,
    AlertChange,
    Detection,
    ScoreSummary,
    decode_anomaly_record,
)
from fl_runtime.core.messages import GlobalModel, SensorReading, encode_reading
from fl_runtime.errors import ConfigError
from fl_runtime.fog.bridge.forwarding import Incoming
from fl_runtime.fog.detect.core import DetectorCore, DetectRules
from fl_runtime.fog.detect.kafka import Shipper
from fl_runtime.fog.detect.metrics import DetectMetrics
from fl_runtime.fog.detect.modelstore import MODEL_FILE, load_model, save_model
from fl_runtime.fog.detect.service import readings_filter
from fl_runtime.fog.detect.spool import Spool

NOW = 1_750_000_000.0
# P(anomaly) = sigmoid(temperature - 70): 80 degrees is over any threshold, 60 is not.
MODEL = GlobalModel(3, 3, [0.0, 0.0, 0.0, 1.0, 0.0, -70.0], NOW, threshold=0.6)
HOT, COOL = 80.0, 60.0
RULES = DetectRules(
    threshold=-1.0, alert_k=2, alert_m=3, alert_clear_seconds=5.0, summary_interval_seconds=1.0
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish_alert(self, topic: str, payload: bytes, reading_time: float | None) -> None:
        self.published.append((topic, payload))


class Rig:
    def __init__(self, tmp: Path, rules: DetectRules = RULES, max_records: int = 1000) -> None:
        self.clock = Clock()
        self.sink = Sink()
        self.spool = Spool(tmp / "spool.sqlite3", max_records)
        self.metrics = DetectMetrics.create(CollectorRegistry())
        self.core = DetectorCore(
            node_id="1",
            rules=rules,
            topic_template="factory/node-{node_id}/{device_id}/readings",
            alert_topic_template="factory/node-{node_id}/{device_id}/alerts",
            spool=self.spool,
            sink=self.sink,
            metrics=self.metrics,
            log=logging.getLogger("test"),
            clock=self.clock,
        )
        self.seq = 0

    def send(self, temperature: float, device: str = "dev1", label: int | None = None) -> bool:
        self.seq += 1
        r = SensorReading(
            f"{device}-{self.seq}", device, "1", self.seq, self.clock.now,
            1.0, 1.0, 1.0, temperature, 5.0, anomaly=label,
        )  # fmt: skip
        return self.core.handle(self.incoming(encode_reading(r), device))

    def incoming(self, payload: bytes, device: str = "dev1") -> Incoming:
        return Incoming(self.seq, 1, f"factory/node-1/{device}/readings", payload)

    def records(self) -> list[Any]:
        return [decode_anomaly_record(r.value) for r in self.spool.take(0, 10_000)]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.value(name, **labels)


def test_invalid_payloads_are_counted_by_reason_and_acked(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    assert rig.core.handle(rig.incoming(b"not json"))
    assert rig.core.handle(rig.incoming(b'{"schema": "other"}'))
    rig.send(HOT, device="dev2")  # fine
    wrong_topic = rig.incoming(encode_reading_for("dev9"), device="dev1")
    assert rig.core.handle(wrong_topic)
    assert rig.metric("fl_detect_invalid_total", reason="not-json") == 1
    assert rig.metric("fl_detect_invalid_total", reason="schema") == 1
    assert rig.metric("fl_detect_invalid_total", reason="device-mismatch") == 1
    assert rig.metric("fl_detect_scored_total") == 1


def encode_reading_for(device: str) -> bytes:
    r = SensorReading("x-1", device, "1", 1, NOW, 1.0, 1.0, 1.0, HOT, 5.0)
    return encode_reading(r)


def test_readings_before_any_model_are_unscored_and_acked(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    assert rig.send(HOT)
    assert rig.metric("fl_detect_unscored_total") == 1
    assert rig.records() == []


def test_over_threshold_readings_are_detections_and_k_of_m_raises_an_alert(
    tmp_path: Path,
) -> None:
    # Prepare
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    # Execute: cool, hot (detection), hot (second of three: raised)
    for temp in (COOL, HOT, HOT):
        assert rig.send(temp, label=1)
        rig.clock.now += 0.1
    # Assert: two detections and one raise, in the spool and on MQTT (retained topic)
    records = rig.records()
    kinds = [type(r).__name__ for r in records]
    assert kinds == ["Detection", "Detection", "AlertChange"]
    det: Detection = records[0]
    assert (det.message_id, det.threshold, det.model_version, det.anomaly) == ("dev1-2", 0.6, 3, 1)
    alert: AlertChange = records[2]
    assert (alert.state, alert.message_id, alert.over, alert.window) == (RAISED, "dev1-3", 2, 3)
    [(topic, payload)] = rig.sink.published
    assert topic == "factory/node-1/dev1/alerts"
    assert decode_anomaly_record(payload) == alert
    assert rig.metric("fl_detect_alerts_total", state=RAISED) == 1
    assert rig.metric("fl_detect_active_alerts") == 1
    assert rig.metric("fl_detect_spool_depth") == 3
    assert [a.alert_id for a in rig.spool.active_alerts()] == [alert.alert_id]


def test_a_silent_device_is_cleared_by_the_clock_and_its_alert_forgotten(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    rig.send(HOT)
    rig.send(HOT)
    rig.clock.now += 5.0
    rig.core.tick()
    cleared = [decode_anomaly_record(p) for _, p in rig.sink.published][-1]
    assert isinstance(cleared, AlertChange) and cleared.state == CLEARED
    assert rig.spool.active_alerts() == []
    assert rig.metric("fl_detect_active_alerts") == 0


def test_an_alert_survives_a_restart_and_clears_later(tmp_path: Path) -> None:
    first = Rig(tmp_path)
    first.core.set_model(MODEL)
    first.send(HOT)
    first.send(HOT)
    raised = decode_anomaly_record(first.sink.published[0][1])
    first.spool.close()
    # Execute: a new scorer on the same state dir
    second = Rig(tmp_path)
    second.core.set_model(MODEL)
    second.core.restore_alerts(second.spool.active_alerts())
    second.clock.now += 5.0
    second.core.tick()
    # Assert: the restored alert clears under its own id
    cleared = decode_anomaly_record(second.sink.published[0][1])
    assert isinstance(cleared, AlertChange) and isinstance(raised, AlertChange)
    assert (cleared.state, cleared.alert_id) == (CLEARED, raised.alert_id)


def test_redelivered_readings_are_not_scored_twice(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    r = SensorReading("dup-1", "dev1", "1", 1, NOW, 1.0, 1.0, 1.0, HOT, 5.0)
    for _ in range(3):
        assert rig.core.handle(rig.incoming(encode_reading(r)))
    assert rig.metric("fl_detect_scored_total") == 1
    assert rig.metric("fl_detect_duplicates_total") == 2


def test_summaries_are_spooled_every_interval(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    rig.send(COOL, label=0)
    rig.send(COOL, device="dev2")
    rig.clock.now += 1.0
    rig.core.tick()
    summaries = [r for r in rig.records() if isinstance(r, ScoreSummary)]
    assert sorted((s.device_id, s.n, s.tn) for s in summaries) == [("dev1", 1, 1), ("dev2", 1, 0)]


def test_a_newer_model_replaces_an_older_one_only(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    assert rig.core.set_model(MODEL)
    older = GlobalModel(2, 2, MODEL.weights, NOW, threshold=0.1)
    assert not rig.core.set_model(older)
    assert rig.core.scorer is not None and rig.core.scorer.threshold == 0.6
    assert rig.metric("fl_detect_model_version") == 3


def test_a_full_spool_drops_the_oldest_records_and_counts_them(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_records=100)
    rig.core.set_model(MODEL)
    for _ in range(130):
        rig.send(HOT, device="dev1")
    assert rig.spool.depth == 100
    assert rig.metric("fl_detect_spool_dropped_total") >= 30
    assert rig.records()[-1].message_id == "dev1-130"


def test_a_failed_spool_write_withholds_the_ack(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    rig.spool.close()  # every write fails from now on
    assert not rig.send(HOT)
    assert rig.metric("fl_detect_spool_errors_total") == 1
    assert rig.send(COOL)  # nothing to spool: acked


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.keys: list[bytes] = []

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent.append((value, on_delivery))
        self.keys.append(key)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return len(self.sent)


def test_spooled_records_are_deleted_only_after_kafka_confirms(tmp_path: Path) -> None:
    # Prepare: three records in the spool, a producer whose deliveries we control
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    for _ in range(3):
        rig.send(HOT)
    producers: list[FakeProducer] = []

    def factory(_conf: dict[str, Any]) -> FakeProducer:
        producers.append(FakeProducer())
        return producers[-1]

    cfg = load_config(None, env={})
    shipper = Shipper(cfg, "t", rig.spool, rig.metrics, logging.getLogger("t"), factory)
    # Execute: hand over; nothing confirmed yet
    shipper.pump(0)
    shipper.pump(0)
    assert len(producers[0].sent) == 4 and rig.spool.depth == 4  # sent once each
    assert set(producers[0].keys) == {b"dev1"}
    # one confirmed, one failed for good
    producers[0].sent[0][1](None, None)
    producers[0].sent[1][1]("fatal", None)
    shipper.pump(0)
    # Assert: the confirmed one is gone; a new producer resends what is left
    assert rig.spool.depth == 3
    assert len(producers) == 2 and len(producers[1].sent) == 3
    for _, deliver in producers[1].sent:
        deliver(None, None)
    shipper.pump(0)
    assert rig.spool.depth == 0
    assert rig.metric("fl_detect_kafka_delivered_total") == 4


def test_the_saved_model_round_trips_and_a_damaged_one_counts_as_none(tmp_path: Path) -> None:
    assert load_model(tmp_path) is None
    save_model(tmp_path, MODEL)
    assert load_model(tmp_path) == MODEL
    (tmp_path / MODEL_FILE).write_bytes(b"{broken")
    assert load_model(tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_FILE]  # no temp files left


def test_alert_topics_must_not_match_the_readings_filter() -> None:
    cfg = load_config(None, env={})
    assert readings_filter(cfg, "4") == "factory/node-4/+/readings"
    clash = cfg.replace(MQTT_TOPIC_TEMPLATE="factory/node-{node_id}/{device_id}/#")
    with pytest.raises(ConfigError, match="MQTT_ALERT_TOPIC_TEMPLATE"):
        readings_filter(clash, "4")


def test_kafka_client_logs_are_rate_limited_per_kind() -> None:
    from fl_runtime.fog.detect.kafka import _OncePerInterval

    limit = _OncePerInterval(30.0)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("k", logging.ERROR, "", 0, msg, None, None)

    refused = "FAIL [rdkafka#consumer-2] [thrd:x]: Connect to 127.0.0.1:1 failed"
    assert limit.filter(record(refused))
    assert not limit.filter(record(refused))
    assert limit.filter(record("GETPID [producer-1] [thrd:main]: retrying"))


def test_a_restored_alert_counts_its_quiet_period_from_the_latest_over_reading(
    tmp_path: Path,
) -> None:
    # Prepare: raised at t0, still over at t0 + 4, then the scorer restarts
    first = Rig(tmp_path)
    first.core.set_model(MODEL)
    first.send(HOT)
    first.send(HOT)
    first.clock.now += 4.0
    first.send(HOT)
    first.spool.close()
    second = Rig(tmp_path)
    second.core.set_model(MODEL)
    second.core.restore_alerts(second.spool.active_alerts())
    second.clock.now = NOW + 6.0
    # Execute: a cool reading 2 s after the latest over one (6 s after the raise)
    second.send(COOL)
    # Assert: not quiet long enough (ALERT_CLEAR_SECONDS is 5)
    assert second.sink.published == []
    assert second.metric("fl_detect_active_alerts") == 1


class FakeMessage:
    def __init__(self, mid: int, payload: bytes) -> None:
        self.mid, self.qos, self.payload, self.dup = mid, 1, payload, False
        self.topic = "factory/node-1/dev1/readings"


class FakeClient:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.on_message: Any = None

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def test_a_reading_is_acked_only_once_its_records_are_spooled(tmp_path: Path) -> None:
    from fl_runtime.fog.detect.mqtt import wire

    # Prepare: the paho callbacks wired to a core whose spool will fail
    rig = Rig(tmp_path)
    rig.core.set_model(MODEL)
    client = FakeClient()
    wire(client, rig.core, "factory/node-1/+/readings", logging.getLogger("t"))

    def deliver(mid: int, temperature: float) -> None:
        r = SensorReading(f"m{mid}", "dev1", "1", mid, NOW, 1.0, 1.0, 1.0, temperature, 5.0)
        client.on_message(client, None, FakeMessage(mid, encode_reading(r)))

    # Execute
    deliver(1, HOT)
    deliver(2, COOL)
    client.on_message(client, None, FakeMessage(3, b"garbage"))
    rig.spool.close()
    deliver(4, HOT)  # its detection cannot be spooled
    # Assert
    assert client.acked == [1, 2, 3]


def test_the_spool_keeps_records_across_a_reopen_and_never_reuses_an_id(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "spool.sqlite3"
    spool = Spool(path, 100)
    spool.append([("dev1", b"a"), ("dev2", b"b"), ("dev1", b"c")])
    spool.delete([3])
    spool.close()
    # Execute
    reopened = Spool(path, 100)
    reopened.append([("dev1", b"d")])
    # Assert: what Kafka never confirmed is still there, in order, with fresh ids
    assert reopened.depth == 3
    assert [(r.id, r.key, r.value) for r in reopened.take(0, 10)] == [
        (1, "dev1", b"a"),
        (2, "dev2", b"b"),
        (4, "dev1", b"d"),
    ]
    assert [r.id for r in reopened.take(2, 10)] == [4]
