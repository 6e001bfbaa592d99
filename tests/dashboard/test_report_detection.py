"""The report's "Detection quality" section: figures from anomaly records, charts whose
text is readable, and ``fl report --anomalies``."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner

from fl_runtime.cli import main
from fl_runtime.core.detections import CLEARED, RAISED, AlertChange, ScoreSummary
from fl_runtime.report import ReportError, render_report
from fl_runtime.report.charts import alerts_per_device_chart, detection_quality_chart
from fl_runtime.report.detection import read_anomalies, summarise_detection
from fl_runtime.report.synthetic import write_synthetic_anomalies, write_synthetic_log
from tests.dashboard.test_dashboard_cli import CLEAN_ENV
from tests.dashboard.test_report_render import PNG_MAGIC, _texts

T0 = 1_790_000_000.0


def _summary(node: str, end: float, tp: int, fp: int, fn: int) -> ScoreSummary:
    return ScoreSummary(
        f"node{node}-dev1", node, end - 5, end, 40, 0.2, 0.9, tp + fp, 0.5, 3, False, tp, fp, 10, fn
    )


def _alert(state: str, at: float, alert_id: str = "a1") -> AlertChange:
    return AlertChange(alert_id, state, "node1-dev1", "1", "m", 0.9, 0.5, 3, at, at, 4, 5)


def test_precision_and_recall_are_pooled_per_bin_and_per_node() -> None:
    records = [
        _summary("1", T0 + 5, tp=3, fp=1, fn=0),
        _summary("2", T0 + 5, tp=1, fp=0, fn=4),
        _summary("1", T0 + 10, tp=0, fp=0, fn=0),
    ]

    d = summarise_detection(records)

    assert d is not None and d.bin_s == 5.0 and len(d.bins) == 2
    assert (d.pooled[0].precision, d.pooled[0].recall) == (0.8, 0.5)
    assert (d.pooled[1].precision, d.pooled[1].recall) == (None, None)  # nothing labelled positive
    assert d.per_node["2"][0].recall == 0.2 and d.per_node["1"][0].precision == 0.75
    assert (d.total.tp, d.total.fp, d.total.fn, d.readings) == (4, 1, 4, 120)


def test_long_runs_are_binned_to_at_most_sixty_points() -> None:
    records = [_summary("1", T0 + 5 * k, 1, 0, 1) for k in range(1, 1001)]

    d = summarise_detection(records)

    assert d is not None and len(d.bins) <= 60
    assert sum(c.tp for c in d.pooled) == 1000


def test_alerts_pair_raise_and_clear_and_count_per_device() -> None:
    records = [
        _alert(RAISED, T0),
        _alert(CLEARED, T0 + 30),
        _alert(RAISED, T0 + 60, "a2"),
    ]

    d = summarise_detection(records)

    assert d is not None
    assert [(a.alert_id, a.duration_s) for a in d.alerts] == [("a2", None), ("a1", 30.0)]
    assert d.alerts_by_device == [("node1-dev1", "1", 2)]


def test_bad_lines_are_counted_and_an_empty_file_has_no_summary(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"schema": "fedge.alert.v1"}\n\nnot json\n')

    records, invalid = read_anomalies(path)

    assert records == [] and sum(invalid.values()) == 2
    assert summarise_detection(records) is None


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("detection")
    write_synthetic_log(root / "aggregation.jsonl", rounds=60, nodes=20, seed=4)
    write_synthetic_anomalies(root / "anomalies.jsonl", nodes=20, devices=2, intervals=240)
    with open(root / "anomalies.jsonl", "a", encoding="utf-8") as f:
        f.write("{broken\n")
    return root / "aggregation.jsonl", root / "anomalies.jsonl"


def test_report_gains_the_detection_section(files: tuple[Path, Path], tmp_path: Path) -> None:
    log, anomalies = files

    report = render_report(log, tmp_path / "out", anomalies=anomalies)

    html = report.html.read_text(encoding="utf-8")
    assert {"detection_quality", "alerts_per_device"} <= set(report.charts)
    assert report.charts["detection_quality"].read_bytes().startswith(PNG_MAGIC)
    assert "<h2>Detection quality" in html and "invalid lines skipped: not-json &times;1" in html
    assert html.count("src='data:image/png;base64,") == 6
    assert "<table class='alerts'>" in html and "node1-dev1-alert-" in html


def test_report_without_anomalies_is_unchanged(files: tuple[Path, Path], tmp_path: Path) -> None:
    report = render_report(files[0], tmp_path / "out")

    assert "Detection quality" not in report.html.read_text(encoding="utf-8")
    with pytest.raises(ReportError, match="do not exist"):
        render_report(files[0], tmp_path / "o", anomalies=tmp_path / "nope.jsonl")


@pytest.mark.parametrize("chart", [detection_quality_chart, alerts_per_device_chart])
def test_detection_chart_text_does_not_overlap(files: tuple[Path, Path], chart: object) -> None:
    records, _ = read_anomalies(files[1])
    summary = summarise_detection(records)
    assert summary is not None and callable(chart)

    texts = _texts(chart(summary))

    boxes = [(t.get_text(), t.get_window_extent().expanded(0.98, 0.9)) for t in texts]
    overlapping = [(a, b) for (a, x), (b, y) in itertools.combinations(boxes, 2) if x.overlaps(y)]
    assert overlapping == []
    assert {t.get_text() for t in texts} & {"Precision", "Alerts raised"}


def test_fl_report_takes_anomalies(files: tuple[Path, Path], tmp_path: Path) -> None:
    log, anomalies = files
    out = tmp_path / "cli"

    result = CliRunner(env=CLEAN_ENV).invoke(
        main, ["report", "--log", str(log), "--anomalies", str(anomalies), "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert "detection_quality: " in result.output and (out / "alerts_per_device.png").exists()
