"""The dashboard's anomalies view in real headless Chromium, fed in-process the way the
scorer's records arrive from the anomalies topic; and the report's detection section."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fl_runtime.core.detections import RAISED, AlertChange, ScoreSummary
from fl_runtime.dashboard import (
    DashboardSettings,
    MemoryAnomalySource,
    StaticKafkaSource,
    create_app,
    serve_in_thread,
)
from fl_runtime.report import render_report
from fl_runtime.report.synthetic import (
    synthetic_anomaly_records,
    write_synthetic_anomalies,
    write_synthetic_log,
)
from tests.browser.test_dashboard_browser import Page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
NODES = 4


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "aggregation.jsonl"
    write_synthetic_log(path, rounds=20, nodes=NODES, seed=8, interval_s=3.0)
    return path


@pytest.fixture
def page(browser: Any) -> Any:
    p = Page(browser)
    yield p
    p.context.close()


def _raise(device: str, node: str, at: float) -> list[Any]:
    summary = ScoreSummary(device, node, at - 5, at, 40, 0.62, 0.97, 31, 0.5, 11, True, 6, 0, 1, 1)
    alert = AlertChange(
        f"{device}-live", RAISED, device, node, f"{device}-m9", 0.97, 0.5, 11, at - 0.2, at, 4, 5
    )
    return [alert, summary]


def test_a_raised_alert_appears_live_with_state_and_sparkline(
    page: Page, log_path: Path, artifacts: Path
) -> None:
    source = MemoryAnomalySource()
    source.feed(*synthetic_anomaly_records(nodes=NODES, intervals=40, seed=6))
    settings = DashboardSettings(log_path=log_path, poll_interval_s=0.2)

    with serve_in_thread(create_app(settings, StaticKafkaSource(), anomalies=source)) as url:
        p = page.page
        p.goto(url)
        p.wait_for_function("() => document.getElementById('live').textContent === 'live'")
        p.wait_for_selector(
            "#devices-table tr[data-device='node1-dev1'] polyline.spark-max", state="attached"
        )
        devices_before = p.locator("#devices-table tbody tr").count()
        pill_before = p.locator("#alerts-pill").inner_text()
        p.evaluate("() => { window.__sameDocument = true; }")

        source.feed(*_raise("node3-dev2", "3", time.time()))
        fed = time.monotonic()
        row = "#devices-table tbody tr:first-child"
        p.wait_for_function(
            f"() => document.querySelector(\"{row}\").dataset.device === 'node3-dev2'",
            timeout=3000,
        )
        latency = time.monotonic() - fed
        p.locator("#anomalies-panel").screenshot(path=artifacts / "dashboard-anomalies.png")
        p.screenshot(path=artifacts / "dashboard-anomalies-page.png", full_page=True)

        live = p.locator(row)
        newest = p.locator("#alerts-table tbody tr").first
        assert devices_before == 2 * NODES and pill_before == "no active alert"
        assert live.locator(".state").inner_text() == "alert"
        assert live.locator("td.score").inner_text() == "0.970"
        assert live.locator("svg.spark polyline.spark-max").count() == 1
        assert (newest.get_attribute("data-state"), newest.get_attribute("data-alert")) == (
            RAISED,
            "node3-dev2-live",
        )
        assert p.locator("#alerts-pill").inner_text() == "1 active alert(s)"
        assert p.locator("#alerts-table tbody tr").count() == 5  # and the synthetic 2 x 2
        assert p.evaluate("() => window.__sameDocument") is True
        assert latency < 2.0
        assert page.errors == [] and page.outside == []
    print(f"\nnew alert visible in the browser {latency:.2f} s after it was read")


def test_the_view_says_no_detections_yet_without_the_topic(page: Page, log_path: Path) -> None:
    source = MemoryAnomalySource(status="missing")
    source.book.set_status("missing", "topic anomalies does not exist yet")

    with serve_in_thread(
        create_app(DashboardSettings(log_path=log_path), StaticKafkaSource(), anomalies=source)
    ) as url:
        p = page.page
        p.goto(url)
        p.locator("#anomalies-empty", has_text="No detections yet").wait_for()
        text = p.locator("#anomalies-empty").inner_text()

        assert "does not exist yet" in text
        assert p.locator("#devices-table tbody tr").count() == 0
        assert page.errors == [] and page.outside == []


def test_offline_report_shows_detection_quality(
    page: Page, tmp_path: Path, artifacts: Path
) -> None:
    log, anomalies = tmp_path / "aggregation.jsonl", tmp_path / "anomalies.jsonl"
    write_synthetic_log(log, rounds=100, nodes=10, seed=2)
    write_synthetic_anomalies(anomalies, nodes=10, intervals=240, seed=2)
    report = render_report(log, artifacts / "report-detection", anomalies=anomalies)

    p = page.page
    p.goto(report.html.as_uri())
    widths = p.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    section = p.locator("h2", has_text="Detection quality")
    section.scroll_into_view_if_needed()
    p.screenshot(path=artifacts / "report-detection.png", full_page=True)

    assert len(widths) == 6 and all(w >= 800 for w in widths)
    assert p.locator("table.alerts tr").count() == 1 + 2  # header, the fault, the false alert
    assert page.errors == [] and page.outside == []
