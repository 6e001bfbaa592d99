"""Fixtures for the dashboard and report tests: synthetic logs and a served app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fl_runtime.dashboard import (
    DashboardSettings,
    StaticKafkaSource,
    create_app,
    serve_in_thread,
)
from fl_runtime.report.synthetic import write_synthetic_log
from tests.dashboard.dashboard_helpers import kafka_ok


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A 30-round, 6-node aggregation log whose last round finished just now."""
    path = tmp_path / "aggregation.jsonl"
    write_synthetic_log(path, rounds=30, nodes=6, seed=3, interval_s=2.0)
    return path


@pytest.fixture
def served(log_path: Path) -> Iterator[str]:
    """The dashboard for ``log_path`` (Kafka stubbed as healthy) on a free loopback port."""
    settings = DashboardSettings(log_path=log_path, poll_interval_s=0.1, status_interval_s=1.0)
    with serve_in_thread(create_app(settings, StaticKafkaSource(kafka_ok()))) as url:
        yield url
