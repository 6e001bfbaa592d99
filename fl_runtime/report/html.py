"""The self-contained HTML report: inline CSS, charts embedded as data URIs, no scripts."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from fl_runtime.cloud.agglog import RoundRecord
from fl_runtime.report.detection import DetectionSummary
from fl_runtime.report.stats import FaultSummary, NodeTally, round_duration

MAX_ROUND_ROWS = 500
MAX_ALERT_ROWS = 200

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d232b;background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{margin:0 0 4px} h2{margin:32px 0 8px;border-bottom:1px solid #d5d9de;padding-bottom:4px}
.meta{color:#5b6470}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{background:#fff;border:1px solid #d5d9de;border-radius:6px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:20px}
img{max-width:100%;background:#fff;border:1px solid #d5d9de;border-radius:6px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #d5d9de;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eef0f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b3261e} ul{margin:4px 0}
"""


@dataclass(frozen=True)
class ReportPage:
    """Everything the page shows; built by :func:`fl_runtime.report.render_report`."""

    title: str
    log_path: Path
    records: Sequence[RoundRecord]
    node_ids: Sequence[str]
    tallies: Mapping[str, NodeTally]
    summary: FaultSummary
    charts: Mapping[str, Path]
    detection: DetectionSummary | None = None
    anomalies_path: Path | None = None


def render_html(page: ReportPage) -> str:
    return "".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{escape(page.title)}</title><style>{_CSS}</style></head><body><main>",
            _header(page),
            _cards(page),
            _charts(
                page,
                ("convergence", "Convergence"),
                ("participation", "Participation"),
                ("participants", "Updates per round"),
            ),
            _detection(page),
            _faults(page),
            _node_table(page),
            _round_table(page.records),
            "</main></body></html>\n",
        ]
    )


def _header(page: ReportPage) -> str:
    first, last = page.records[0], page.records[-1]
    span = f"{_ts(first.started_at)} to {_ts(last.finished_at)}"
    modes = ", ".join(sorted({f"{r.mode}/{r.strategy}" for r in page.records}))
    return (
        f"<h1>{escape(page.title)}</h1><p class='meta'>Log <code>{escape(str(page.log_path))}"
        f"</code> &middot; {escape(span)} &middot; {escape(modes)} &middot; generated "
        f"{escape(_ts(time.time()))}</p>"
    )


def _cards(page: ReportPage) -> str:
    s, last = page.summary, page.records[-1]
    f1s = [r.global_f1 for r in page.records if r.global_f1 is not None]
    cards = [
        ("Rounds", str(s.rounds)),
        ("Fog nodes", str(s.nodes)),
        ("Final global loss", _num(_last_metric(page.records, "global_loss"))),
        ("Final global F1", _num(_last_metric(page.records, "global_f1"))),
        ("Best F1", _num(max(f1s) if f1s else None)),
        ("Samples aggregated", f"{sum(r.n_total for r in page.records):,}"),
        ("Mean participants", f"{s.mean_participants:.1f}"),
        ("Rejected updates", str(s.rejections)),
        ("Last global version", str(last.global_version)),
    ]
    body = "".join(f"<div class='card'>{escape(k)}<b>{escape(v)}</b></div>" for k, v in cards)
    return f"<section class='cards'>{body}</section>"


def _charts(page: ReportPage, *names: tuple[str, str]) -> str:
    return "".join(
        f"<h2>{escape(title)}</h2>{_img(page.charts[name], title)}"
        for name, title in names
        if name in page.charts
    )


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{data}'>"


def _faults(page: ReportPage) -> str:
    s = page.summary
    items = [
        f"{s.rejections} rejected updates in {s.rounds_with_rejections} of {s.rounds} rounds"
        + (
            ": " + ", ".join(f"{escape(r)} &times;{n}" for r, n in s.rejections_by_reason)
            if s.rejections_by_reason
            else ""
        ),
        f"Fewest participants in a round: {s.min_participants}",
        _listed("Rounds without evaluation metrics", s.rounds_without_metrics),
        _listed("Missing round numbers", s.missing_rounds),
        f"Aggregator restarts (round counter went back): {s.restarts}",
        _listed(
            "Nodes that stopped appearing (node, last round)",
            [f"{n} (r{r})" for n, r in s.dropped_nodes],
        ),
        "Slowest rounds: " + ", ".join(f"r{r} {d:.2f} s" for r, d in s.slowest_rounds),
    ]
    body = "".join(f"<li>{item}</li>" for item in items)
    chart = _img(page.charts["rejections"], "Rejections") if "rejections" in page.charts else ""
    return f"<h2>Faults and rejections</h2><ul>{body}</ul>{chart}"


def _detection(page: ReportPage) -> str:
    if page.anomalies_path is None:
        return ""
    source = f"<p class='meta'>From <code>{escape(str(page.anomalies_path))}</code>"
    invalid = page.detection.invalid if page.detection else {}
    if invalid:
        reasons = ", ".join(f"{escape(r)} &times;{n}" for r, n in sorted(invalid.items()))
        source += f" &middot; <span class='bad'>invalid lines skipped: {reasons}</span>"
    source += "</p>"
    d = page.detection
    if d is None:
        return f"<h2>Detection quality</h2>{source}<p>No anomaly records: no detections yet.</p>"
    t = d.total
    cards = [
        ("Devices", str(d.devices)),
        ("Readings scored", f"{d.readings:,}"),
        ("Labelled readings", f"{t.labelled:,}"),
        ("Detections", f"{d.detections:,}"),
        ("Alerts raised", str(sum(a.raised_at is not None for a in d.alerts))),
        ("Precision (all)", _num(t.precision, 3)),
        ("Recall (all)", _num(t.recall, 3)),
        ("TP / FP / FN", f"{t.tp:,} / {t.fp:,} / {t.fn:,}"),
    ]
    body = "".join(f"<div class='card'>{escape(k)}<b>{escape(v)}</b></div>" for k, v in cards)
    charts = "".join(
        _img(page.charts[name], title)
        for name, title in (
            ("detection_quality", "Precision and recall over time"),
            ("alerts_per_device", "Alerts per device"),
        )
        if name in page.charts
    )
    return (
        f"<h2>Detection quality</h2>{source}<section class='cards'>{body}</section>"
        f"{charts}{_alert_table(d)}"
    )


def _alert_table(d: DetectionSummary) -> str:
    head = (
        "<tr><th>Raised</th><th>Device</th><th>Node</th><th>Score</th><th>Cleared</th>"
        "<th>Score at clear</th><th>Duration (s)</th><th>Model</th><th>Alert id</th></tr>"
    )
    rows = [
        f"<tr><td>{_opt_ts(a.raised_at)}</td><td>{escape(a.device_id)}</td>"
        f"<td>{escape(a.node_id)}</td><td class='num'>{_num(a.raised_score, 3)}</td>"
        f"<td>{_opt_ts(a.cleared_at) if a.cleared_at else 'still active'}</td>"
        f"<td class='num'>{_num(a.cleared_score, 3)}</td>"
        f"<td class='num'>{_num(a.duration_s, 1)}</td><td class='num'>{a.model_version}</td>"
        f"<td>{escape(a.alert_id)}</td></tr>"
        for a in d.alerts[:MAX_ALERT_ROWS]
    ]
    if not rows:
        return "<p>No alert was raised.</p>"
    more = (
        f" (newest {MAX_ALERT_ROWS} of {len(d.alerts)})" if len(d.alerts) > MAX_ALERT_ROWS else ""
    )
    return f"<h3>Alerts{more}, newest first</h3><table class='alerts'>{head}{''.join(rows)}</table>"


def _opt_ts(unix: float | None) -> str:
    return "n/a" if unix is None else escape(_ts(unix))


def _listed(label: str, values: Iterable[object], cap: int = 30) -> str:
    items = [str(v) for v in values]
    if not items:
        return f"{escape(label)}: none"
    more = f" and {len(items) - cap} more" if len(items) > cap else ""
    return f"<span class='bad'>{escape(label)}: {escape(', '.join(items[:cap]))}{more}</span>"


def _node_table(page: ReportPage) -> str:
    head = (
        "<tr><th>Node</th><th>First round</th><th>Last round</th><th>Accepted</th>"
        "<th>Rejected</th><th>Samples</th><th>Mean staleness (s)</th>"
        "<th>Last local loss</th><th>Last outcome</th></tr>"
    )
    rows = []
    for node_id in page.node_ids:
        t = page.tallies[node_id]
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(t.rejected_by_reason.items()))
        rows.append(
            f"<tr><td>{escape(node_id)}</td><td class='num'>{t.first_round}</td>"
            f"<td class='num'>{t.last_round}</td><td class='num'>{t.accepted}</td>"
            f"<td class='num'>{t.rejected}{' (' + escape(reasons) + ')' if reasons else ''}</td>"
            f"<td class='num'>{t.total_samples:,}</td><td class='num'>"
            f"{_num(t.mean_staleness_s, 2)}</td><td class='num'>{_num(t.last_local_loss)}</td>"
            f"<td>{escape(t.last_outcome)}</td></tr>"
        )
    return f"<h2>Fog nodes</h2><table>{head}{''.join(rows)}</table>"


def _round_table(records: Sequence[RoundRecord]) -> str:
    shown = records[-MAX_ROUND_ROWS:][::-1]
    head = (
        "<tr><th>Round</th><th>Finished</th><th>Participants (n_k)</th><th>n_total</th>"
        "<th>Rejected (reason)</th><th>Loss</th><th>F1</th><th>Wall (s)</th>"
        "<th>Aggregate (ms)</th><th>Publish (ms)</th></tr>"
    )
    rows = []
    for r in shown:
        parts = ", ".join(f"{p.node_id}:{p.n_samples}" for p in r.participants)
        rejected = ", ".join(f"{d.node_id}: {d.reason}" for d in r.discarded)
        rows.append(
            f"<tr><td class='num'>{r.round}</td><td>{escape(_ts(r.finished_at))}</td>"
            f"<td>{len(r.participants)}: {escape(parts)}</td><td class='num'>{r.n_total}</td>"
            f"<td class='bad'>{escape(rejected)}</td><td class='num'>{_num(r.global_loss)}</td>"
            f"<td class='num'>{_num(r.global_f1)}</td>"
            f"<td class='num'>{round_duration(r):.2f}</td>"
            f"<td class='num'>{_num(r.timings.get('aggregate_ms'), 1)}</td>"
            f"<td class='num'>{_num(r.timings.get('publish_ms'), 1)}</td></tr>"
        )
    note = f" (newest {MAX_ROUND_ROWS} of {len(records)})" if len(records) > MAX_ROUND_ROWS else ""
    return (
        f"<h2>Round details{note}</h2><details><summary>Show {len(shown)} rounds, newest "
        f"first</summary><table>{head}{''.join(rows)}</table></details>"
    )


def _last_metric(records: Sequence[RoundRecord], name: str) -> float | None:
    for r in reversed(records):
        value: float | None = getattr(r, name)
        if value is not None:
            return value
    return None


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ts(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))
