"""``fl report``: a self-contained HTML report and PNG charts from an aggregation log.

matplotlib is imported only when a report is rendered, so :mod:`fl_runtime.report.stats`
(shared with the dashboard) stays light.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from fl_runtime.cloud.agglog import read_log
from fl_runtime.errors import FLError
from fl_runtime.report.stats import fault_summary, sorted_nodes, tally_nodes

__all__ = ["Report", "ReportError", "render_report"]


class ReportError(FLError):
    """The report could not be produced (no log, or a log without readable rounds)."""


@dataclass(frozen=True)
class Report:
    """What :func:`render_report` wrote, and how long each stage took (seconds)."""

    html: Path
    charts: dict[str, Path]
    rounds: int
    nodes: int
    timings: dict[str, float] = field(default_factory=dict)


def render_report(
    log_path: str | Path,
    out_dir: str | Path,
    *,
    title: str = "fedge federated training report",
    anomalies: str | Path | None = None,
) -> Report:
    """Read ``log_path`` and write ``report.html`` plus one PNG per chart into ``out_dir``;
    with ``anomalies`` (JSON lines, as ``fl anomalies export`` writes them) the report
    gains a "Detection quality" section."""
    from fl_runtime.report import charts
    from fl_runtime.report.detection import read_anomalies, summarise_detection
    from fl_runtime.report.html import ReportPage, render_html

    log_path, out = Path(log_path), Path(out_dir)
    t0 = time.perf_counter()
    if not log_path.exists():
        raise ReportError(f"aggregation log {log_path} does not exist")
    records = read_log(log_path)
    if not records:
        raise ReportError(f"aggregation log {log_path} has no readable rounds")
    detection, anomalies_path = None, None
    if anomalies is not None:
        anomalies_path = Path(anomalies)
        if not anomalies_path.exists():
            raise ReportError(f"anomaly records {anomalies_path} do not exist")
        found, invalid = read_anomalies(anomalies_path)
        detection = summarise_detection(found, invalid=dict(invalid))
    tallies = tally_nodes(records)
    node_ids = sorted_nodes(tallies)
    summary = fault_summary(records)
    t1 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    written = charts.render_charts(records, node_ids, summary, out)
    if detection is not None:
        written |= charts.render_detection_charts(detection, out)
    t2 = time.perf_counter()
    page = ReportPage(
        title, log_path, records, node_ids, tallies, summary, written, detection, anomalies_path
    )
    html_path = out / "report.html"
    html_path.write_text(render_html(page), encoding="utf-8")
    t3 = time.perf_counter()
    return Report(
        html_path,
        written,
        len(records),
        len(node_ids),
        {"read_s": t1 - t0, "charts_s": t2 - t1, "html_s": t3 - t2, "total_s": t3 - t0},
    )
