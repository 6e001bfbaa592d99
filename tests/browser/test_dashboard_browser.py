"""The live dashboard in real headless Chromium, fed by a real aggregation log."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Error as PlaywrightError

from fl_runtime.cloud.agglog import AggregationLog, Participant, read_log
from fl_runtime.dashboard import (
    Authenticator,
    ConfluentKafkaSource,
    DashboardSettings,
    KafkaSnapshot,
    KafkaSource,
    StaticKafkaSource,
    create_app,
    hash_password,
    serve_in_thread,
)
from fl_runtime.report import render_report
from fl_runtime.report.synthetic import synthetic_records, write_synthetic_log

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]
NODES = 8
LOOPBACK = {"127.0.0.1", "localhost"}


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "aggregation.jsonl"
    write_synthetic_log(path, rounds=40, nodes=NODES, seed=21, interval_s=3.0)
    return path


def _kafka_ok() -> KafkaSnapshot:
    now = time.time()
    topics = frozenset({f"sensor-data-node-{i}" for i in range(1, NODES + 1)} | {"model-weights"})
    return KafkaSnapshot(
        status="ok",
        detail="1 broker(s) answered",
        checked_at=now,
        brokers=1,
        topics=topics,
        first_seen=dict.fromkeys(topics, now - 600),
        last_growth=dict.fromkeys(topics, now),
        dead_letter_topic="fl-dead-letter",
        dead_letters={"5": {"not-finite": 2}},
    )


class Page:
    """A page that records console errors and refuses (and counts) non-loopback requests."""

    def __init__(self, browser: Any, **context: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "file:")) or urlparse(url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.context.close()


def _serve(log_path: Path, kafka: KafkaSource, **kw: Any) -> Any:
    return serve_in_thread(create_app(DashboardSettings(log_path=log_path), kafka, **kw))


def test_chart_heatmap_and_a_live_round_without_reload(
    page: Page, log_path: Path, artifacts: Path
) -> None:
    last = read_log(log_path)[-1]
    (new,) = synthetic_records(rounds=1, nodes=NODES, seed=5, first_round=last.round + 1)
    newcomer = Participant("9", 123, 0.5, 0, new.round - 1, 0.3, "9-new")
    new = type(new)(**{**new.__dict__, "participants": [*new.participants, newcomer]})

    with _serve(log_path, StaticKafkaSource(_kafka_ok())) as url:
        p = page.page
        p.goto(url)
        p.wait_for_selector("#chart-convergence canvas")
        p.wait_for_function("() => document.getElementById('live').textContent === 'live'")
        rows_before = p.locator("#heatmap g.hm-row").count()
        node_rows = p.locator("#nodes-table tbody tr").count()
        p.screenshot(path=artifacts / "dashboard-initial.png", full_page=True)
        p.evaluate("() => { window.__sameDocument = true; }")

        AggregationLog(log_path).append(new)
        appended = time.monotonic()
        p.wait_for_function(
            f"() => document.getElementById('latest-round').textContent === 'round {new.round}'",
            timeout=2000,
        )
        latency = time.monotonic() - appended
        p.wait_for_function(
            f"() => document.querySelectorAll('#heatmap g.hm-row').length === {NODES + 1}"
        )
        p.screenshot(path=artifacts / "dashboard-live-update.png", full_page=True)

        assert rows_before == NODES and node_rows == NODES
        assert latency < 2.0
        assert p.evaluate("() => window.__sameDocument") is True  # no reload happened
        assert p.locator("#rounds-table tbody tr").first.get_attribute("data-round") == str(
            new.round
        )
        assert p.locator("#heatmap g.hm-row[data-node='9'] rect.hm-accepted").count() == 1
        assert p.locator("#chart-convergence canvas").count() >= 1
        assert page.errors == [] and page.outside == []
    print(f"\nnew round visible in the browser {latency:.2f} s after it was appended")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dashboard_stays_up_and_says_kafka_unreachable(
    page: Page, log_path: Path, artifacts: Path
) -> None:
    kafka = ConfluentKafkaSource(
        bootstrap_servers=f"127.0.0.1:{_closed_port()}",
        dead_letter_topic="fl-dead-letter",
        sensor_topic_prefix="sensor-data-node-",
        interval_s=0.5,
        timeout_s=0.5,
    )

    with _serve(log_path, kafka) as url:
        p = page.page
        p.goto(url)
        p.wait_for_selector("#chart-convergence canvas")
        p.locator("#health-kafka .kafka-text", has_text="Kafka unreachable").wait_for()
        p.wait_for_function("() => document.getElementById('overall').textContent === 'degraded'")
        p.screenshot(path=artifacts / "dashboard-kafka-unreachable.png", full_page=True)

        assert p.locator("#heatmap g.hm-row").count() == NODES
        assert p.locator("#nodes-table tbody tr td:nth-child(9)").first.inner_text() == "n/a"
        assert page.errors == [] and page.outside == []


def test_login_guards_the_page(browser: Any, log_path: Path) -> None:
    auth = Authenticator({"ops": hash_password("s3cret", iterations=2000)})

    with _serve(log_path, StaticKafkaSource(_kafka_ok()), authenticator=auth) as url:
        anonymous = Page(browser)
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            anonymous.page.goto(url)  # Chromium's answer to a 401 it cannot log in to
        denied = anonymous.context.request.get(f"{url}/api/health")
        denied_status = denied.status
        anonymous.context.close()
        user = Page(browser, http_credentials={"username": "ops", "password": "s3cret"})
        user.page.goto(url)
        user.page.wait_for_selector("#chart-convergence canvas")
        user.page.wait_for_function("() => document.getElementById('live').textContent === 'live'")
        rows = user.page.locator("#heatmap g.hm-row").count()
        user.context.close()

    assert denied_status == 401
    assert rows == NODES


def test_offline_report_renders_in_the_browser(page: Page, tmp_path: Path, artifacts: Path) -> None:
    log = tmp_path / "big.jsonl"
    write_synthetic_log(log, rounds=200, nodes=50, seed=2)
    report = render_report(log, artifacts / "report")

    p = page.page
    p.goto(report.html.as_uri())
    widths = p.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    p.screenshot(path=artifacts / "report-page.png", full_page=True)

    assert len(widths) == 4 and all(w >= 800 for w in widths)
    assert page.errors == [] and page.outside == []
