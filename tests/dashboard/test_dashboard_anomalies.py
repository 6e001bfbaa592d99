"""The anomalies view: the bounded book of the anomalies topic, and its API over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from fl_runtime.core.detections import (
    CLEARED,
    RAISED,
    AlertChange,
    Detection,
    ScoreSummary,
    encode_anomaly_record,
)
from fl_runtime.dashboard import (
    AnomalyBook,
    DashboardSettings,
    MemoryAnomalySource,
    StaticKafkaSource,
    create_app,
    serve_in_thread,
)
from fl_runtime.report.synthetic import synthetic_anomaly_records
from tests.dashboard.dashboard_helpers import get_json, kafka_ok, read_events

T0 = 1_790_000_000.0


def _alert(
    state: str, device: str = "node1-dev1", at: float = T0, score: float = 0.9
) -> AlertChange:
    return AlertChange(
        f"{device}-a1", state, device, "1", f"{device}-m", score, 0.5, 4, at - 0.1, at, 3, 5
    )


def _summary(device: str, at: float, top: float, *, active: bool = False) -> ScoreSummary:
    return ScoreSummary(device, "1", at - 5, at, 40, top / 2, top, 2, 0.5, 4, active, 1, 0, 6, 1)


def test_a_raised_alert_sets_the_device_state_and_is_listed() -> None:
    book = AnomalyBook()

    book.add(Detection("m1", "node1-dev1", "1", 0.8, 0.5, 4, T0 - 1.1, T0 - 1))
    book.add(_alert(RAISED))
    snap = book.snapshot()

    (device,) = snap.devices
    assert (device.active, device.since, device.alert_id) == (True, T0, "node1-dev1-a1")
    assert (device.last_score, device.model_version, device.detections) == (0.9, 4, 1)
    assert [a.state for a in snap.alerts] == [RAISED]
    assert snap.records == {"detection": 1, "alert": 1}


def test_a_clear_ends_the_alert_and_alerts_are_newest_first() -> None:
    book = AnomalyBook()

    book.add(_alert(RAISED))
    book.add(_alert(CLEARED, at=T0 + 30, score=0.1))
    snap = book.snapshot()

    assert (snap.devices[0].active, snap.devices[0].since) == (False, T0 + 30)
    assert [a.state for a in snap.alerts] == [CLEARED, RAISED]


def test_summaries_draw_the_sparkline_and_fix_a_missed_raise() -> None:
    book = AnomalyBook(max_points=3)

    for k in range(5):
        book.add(_summary("node1-dev2", T0 + 5 * k, 0.1 * k, active=k == 4))
    (device,) = book.snapshot().devices

    assert [p.t for p in device.points] == [T0 + 10, T0 + 15, T0 + 20]
    assert [p.max for p in device.points] == pytest.approx([0.2, 0.3, 0.4])
    assert device.active and device.since is None  # the raise itself was never read
    assert device.last_score == pytest.approx(0.4)


def test_bad_records_are_counted_by_reason_never_raised() -> None:
    book = AnomalyBook()
    good = encode_anomaly_record(_alert(RAISED))

    book.ingest(b"{not json")
    book.ingest(good.replace(b'"score":0.9', b'"score":7'))
    book.ingest(b'{"schema": "fedge.detection.v9"}')
    book.ingest(None)
    book.ingest(good)
    snap = book.snapshot()

    assert sum(snap.invalid.values()) == 4 and len(snap.invalid) >= 3
    assert snap.records == {"alert": 1}


def test_the_book_stays_bounded() -> None:
    book = AnomalyBook(max_devices=3, max_alerts=4)

    for k in range(10):
        book.add(_alert(RAISED, device=f"node1-dev{k}", at=T0 + k))
    snap = book.snapshot()

    assert [d.device_id for d in snap.devices] == ["node1-dev7", "node1-dev8", "node1-dev9"]
    assert snap.devices_dropped == 7
    assert [a.device_id for a in snap.alerts] == [f"node1-dev{k}" for k in (9, 8, 7, 6)]


@pytest.fixture
def fed(log_path: Path) -> Iterator[tuple[str, MemoryAnomalySource]]:
    """The dashboard with an in-memory anomalies source that the test feeds."""
    source = MemoryAnomalySource()
    settings = DashboardSettings(log_path=log_path, poll_interval_s=0.1, status_interval_s=1.0)
    app = create_app(settings, StaticKafkaSource(kafka_ok()), anomalies=source)
    with serve_in_thread(app) as url:
        yield url, source


def _validate(url: str, body: Any) -> list[Any]:
    openapi = get_json(f"{url}/api/openapi.json")
    schema = {"$ref": "#/components/schemas/AnomaliesOut", "components": openapi["components"]}
    return list(Draft202012Validator(schema).iter_errors(body))


def test_api_serves_devices_alerts_and_sparklines(fed: tuple[str, MemoryAnomalySource]) -> None:
    url, source = fed
    source.feed(*synthetic_anomaly_records(nodes=3, intervals=30, seed=4))

    body = get_json(f"{url}/api/anomalies?alerts=10")

    assert _validate(url, body) == []
    assert body["status"] == "ok" and len(body["devices"]) == 6
    assert body["records"]["score_summary"] == 180
    assert [(a["device_id"], a["state"]) for a in body["alerts"]] == [
        ("node1-dev1", "cleared"),
        ("node1-dev1", "raised"),
        ("node2-dev2", "cleared"),  # a noisy moment: a false alert
        ("node2-dev2", "raised"),
    ]
    faulty = next(d for d in body["devices"] if d["device_id"] == "node1-dev1")
    assert faulty["alerts_raised"] == 1 and len(faulty["sparkline"]) == 30
    assert faulty["sparkline"][-1]["t"] > faulty["sparkline"][0]["t"]


def test_api_says_no_detections_when_nothing_is_followed(log_path: Path) -> None:
    app = create_app(DashboardSettings(log_path=log_path), StaticKafkaSource())
    with serve_in_thread(app) as url:
        body = get_json(f"{url}/api/anomalies")
        errors = _validate(url, body)

    assert errors == []
    assert (body["status"], body["devices"], body["alerts"]) == ("disabled", [], [])
    assert body["active_alerts"] == 0


def test_a_new_alert_is_pushed_within_two_seconds(fed: tuple[str, MemoryAnomalySource]) -> None:
    url, source = fed
    fed_at: list[float] = []

    def raise_once(events: list[tuple[str, Any]]) -> bool:
        if not fed_at and any(name == "anomalies" for name, _ in events):
            source.feed(_alert(RAISED, at=time.time()))
            fed_at.append(time.monotonic())
        return any(name == "anomalies" and data["active_alerts"] for name, data in events)

    events = read_events(f"{url}/api/events?after=29", raise_once)

    delay = time.monotonic() - fed_at[0]
    pushed = [data for name, data in events if name == "anomalies"][-1]
    assert pushed["devices"][0]["alert_active"] and pushed["alerts"][0]["state"] == "raised"
    assert delay < 2.0


def test_a_stream_of_records_sends_at_most_one_anomalies_event_a_second(
    fed: tuple[str, MemoryAnomalySource],
) -> None:
    url, source = fed
    started = time.monotonic()

    def feed_for_three_seconds(events: list[tuple[str, Any]]) -> bool:
        source.feed(_summary("node1-dev1", time.time(), 0.3))
        return time.monotonic() - started > 3.0

    events = read_events(f"{url}/api/events?after=29", feed_for_three_seconds, timeout_s=8)

    names = [name for name, _ in events]
    assert 3 <= names.count("anomalies") <= 5  # one on connecting, then about one a second
    assert names.count("status") <= 5  # status_interval_s=1: streaming records add none
