"""PNG charts of an aggregation log, drawn with matplotlib's object API (no pyplot state).

Tick labels are capped so 50 nodes and 200 rounds stay readable: at most
:data:`MAX_NODE_LABELS` node names on an axis and about ten round ticks.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from fl_runtime.cloud.agglog import RoundRecord
from fl_runtime.report.detection import Confusion, DetectionSummary
from fl_runtime.report.stats import FaultSummary, participation_matrix

MAX_NODE_LABELS = 25
DPI = 100
ACCEPTED_COLOUR, DISCARDED_COLOUR, ABSENT_COLOUR = "#2e9e5b", "#d6453d", "#e8e8e8"
GLOBAL_COLOUR, NODE_COLOUR = "#1f4e9c", "#7f7f7f"


def render_charts(
    records: Sequence[RoundRecord], node_ids: Sequence[str], summary: FaultSummary, out: Path
) -> dict[str, Path]:
    """Write every chart as ``<name>.png`` into ``out``; the rejections chart only when
    some update was rejected."""
    figures = {
        "convergence": convergence_chart(records, node_ids),
        "participation": participation_chart(records, node_ids),
        "participants": participants_chart(records),
    }
    if summary.rejections:
        figures["rejections"] = rejections_chart(summary)
    written = {}
    for name, fig in figures.items():
        written[name] = out / f"{name}.png"
        fig.savefig(written[name], dpi=DPI)
    return written


def render_detection_charts(summary: DetectionSummary, out: Path) -> dict[str, Path]:
    """Write the detection-quality charts as ``<name>.png`` into ``out``."""
    figures = {
        "detection_quality": detection_quality_chart(summary),
        "alerts_per_device": alerts_per_device_chart(summary),
    }
    written = {}
    for name, fig in figures.items():
        written[name] = out / f"{name}.png"
        fig.savefig(written[name], dpi=DPI)
    return written


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def round_positions(records: Sequence[RoundRecord]) -> tuple[list[int], str]:
    """x positions of the records: their round numbers while those strictly increase,
    otherwise (an aggregator restart reset the counter) their position in the log."""
    rounds = [r.round for r in records]
    if all(b > a for a, b in itertools.pairwise(rounds)):
        return rounds, "Round"
    return list(range(1, len(records) + 1)), "Record in log order (round counter restarted)"


def _round_axis(ax: Axes, label: str) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.set_xlabel(label)


def convergence_chart(records: Sequence[RoundRecord], node_ids: Sequence[str]) -> Figure:
    """Global loss with each node's local loss overlaid, and global F1/precision/recall."""
    fig = _figure(11, 6.5)
    loss_ax, score_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    xs, xlabel = round_positions(records)
    by_round = [{p.node_id: p.local_loss for p in r.participants} for r in records]
    lines = []
    for node_id in node_ids:
        losses = [_nan(row.get(node_id)) for row in by_round]
        if not all(math.isnan(v) for v in losses):
            lines.append(list(zip(xs, losses, strict=True)))
    drawn = len(lines)
    # One collection for all nodes: far cheaper to draw than a line per node.
    loss_ax.add_collection(LineCollection(lines, colors=NODE_COLOUR, linewidths=0.6, alpha=0.35))
    loss_ax.plot(xs, [_nan(r.global_loss) for r in records], color=GLOBAL_COLOUR, linewidth=2.2)
    loss_ax.set_ylabel("Log-loss")
    loss_ax.set_title("Convergence: global model and local updates")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(
        handles=[
            Patch(color=GLOBAL_COLOUR, label="global loss (federated evaluation)"),
            Patch(
                color=NODE_COLOUR,
                alpha=0.5,
                label=f"local loss, one line per node ({drawn})"
                if drawn
                else "local loss: not in this log",
            ),
        ],
        loc="upper right",
    )
    for name, colour in (("f1", "#1f4e9c"), ("precision", "#e08a1e"), ("recall", "#2e9e5b")):
        values = [_nan(getattr(r, f"global_{name}")) for r in records]
        score_ax.plot(xs, values, color=colour, linewidth=1.5, label=f"global {name}")
    score_ax.set_ylim(0.0, 1.02)
    score_ax.set_ylabel("Score")
    score_ax.grid(alpha=0.3)
    score_ax.legend(loc="lower right", ncols=3)
    _round_axis(score_ax, xlabel)
    return fig


def participation_chart(records: Sequence[RoundRecord], node_ids: Sequence[str]) -> Figure:
    """A nodes-by-rounds heatmap: accepted, rejected or absent."""
    height = min(12.0, max(3.0, 1.6 + 0.17 * len(node_ids)))
    fig = _figure(11, height)
    ax = fig.subplots()
    cmap = ListedColormap([ABSENT_COLOUR, ACCEPTED_COLOUR, DISCARDED_COLOUR])
    xs, xlabel = round_positions(records)
    columns = [x - xs[0] for x in xs]
    matrix = participation_matrix(records, node_ids, columns=columns, width=columns[-1] + 1)
    ax.imshow(
        matrix,
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        vmin=0,
        vmax=2,
        extent=(xs[0] - 0.5, xs[-1] + 0.5, len(node_ids) - 0.5, -0.5),
    )
    step = max(1, math.ceil(len(node_ids) / MAX_NODE_LABELS))
    ticks = list(range(0, len(node_ids), step))
    ax.set_yticks(ticks, [node_ids[i] for i in ticks])
    ax.set_ylabel("Fog node" + (f" (labelled every {step} nodes)" if step > 1 else ""))
    ax.set_title("Participation per round")
    _round_axis(ax, xlabel)
    fig.legend(
        handles=[
            Patch(color=ACCEPTED_COLOUR, label="update accepted"),
            Patch(color=DISCARDED_COLOUR, label="update rejected"),
            Patch(color=ABSENT_COLOUR, label="no update"),
        ],
        loc="outside lower center",
        ncols=3,
    )
    return fig


def participants_chart(records: Sequence[RoundRecord]) -> Figure:
    """Accepted and rejected updates per round, with the samples behind each round."""
    fig = _figure(11, 3.8)
    ax = fig.subplots()
    xs, xlabel = round_positions(records)
    accepted = [len(r.participants) for r in records]
    rejected = [a + len(r.discarded) for a, r in zip(accepted, records, strict=True)]
    ax.fill_between(
        xs, 0, accepted, step="mid", color=ACCEPTED_COLOUR, alpha=0.8, label="accepted updates"
    )
    ax.fill_between(
        xs,
        accepted,
        rejected,
        step="mid",
        color=DISCARDED_COLOUR,
        alpha=0.8,
        label="rejected updates",
    )
    ax.set_ylabel("Updates")
    ax.set_ylim(0, max(rejected, default=1) * 1.15 + 1)
    samples_ax = ax.twinx()
    samples_ax.plot(
        xs, [r.n_total for r in records], color="#333333", linewidth=1.0, label="samples (n_total)"
    )
    samples_ax.set_ylabel("Samples aggregated")
    samples_ax.set_ylim(0, max((r.n_total for r in records), default=1) * 1.15 + 1)
    handles = ax.get_legend_handles_labels()[0] + samples_ax.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    ax.set_title("Updates and samples per round")
    _round_axis(ax, xlabel)
    return fig


def rejections_chart(summary: FaultSummary, *, top: int = 15) -> Figure:
    """Rejected updates by reason and by node (the ``top`` nodes)."""
    fig = _figure(11, 4.2)
    by_reason, by_node = fig.subplots(1, 2, width_ratios=[1, 1.4])
    reasons = summary.rejections_by_reason or [("none", 0)]
    by_reason.barh(
        [r for r, _ in reasons][::-1], [n for _, n in reasons][::-1], color=DISCARDED_COLOUR
    )
    by_reason.set_title("Rejected updates by reason")
    by_reason.set_xlabel("Updates")
    nodes = summary.rejections_by_node[:top] or [("none", 0)]
    by_node.barh(
        [f"node {n}" for n, _ in nodes][::-1], [c for _, c in nodes][::-1], color=DISCARDED_COLOUR
    )
    shown = (
        f"top {top} of {len(summary.rejections_by_node)}"
        if len(summary.rejections_by_node) > top
        else "all"
    )
    by_node.set_title(f"Rejected updates by node ({shown})")
    by_node.set_xlabel("Updates")
    for ax in (by_reason, by_node):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="x", alpha=0.3)
    return fig


def detection_quality_chart(summary: DetectionSummary) -> Figure:
    """Precision and recall against labels per time bin: pooled over every device (thick)
    and per fog node (thin grey)."""
    fig = _figure(11, 5.5)
    axes = fig.subplots(2, 1, sharex=True)
    xs = [(t - summary.start) / 60.0 for t in summary.bins]
    for ax, name, colour in zip(axes, ("precision", "recall"), ("#e08a1e", "#2e9e5b"), strict=True):
        lines = [
            list(zip(xs, _values(bins, name), strict=True)) for bins in summary.per_node.values()
        ]
        ax.add_collection(LineCollection(lines, colors=NODE_COLOUR, linewidths=0.7, alpha=0.4))
        ax.plot(xs, _values(summary.pooled, name), color=colour, linewidth=2.2, marker=".")
        ax.set_ylim(-0.02, 1.05)
        ax.set_ylabel(name.capitalize())
        ax.grid(alpha=0.3)
        ax.legend(
            handles=[
                Patch(color=colour, label=f"{name}, all devices pooled"),
                Patch(
                    color=NODE_COLOUR,
                    alpha=0.5,
                    label=f"{name} per fog node ({len(summary.per_node)})",
                ),
            ],
            loc="lower left",
            ncols=2,
        )
    axes[0].set_title(
        f"Detection quality against labels, per {summary.bin_s:.0f} s "
        "(labelled readings at the threshold in force)"
    )
    axes[1].xaxis.set_major_locator(MaxNLocator(nbins=10))
    axes[1].set_xlabel(f"Minutes since {_utc(summary.start)}")
    return fig


def alerts_per_device_chart(summary: DetectionSummary, *, top: int = 25) -> Figure:
    """Alerts raised per device (the ``top`` devices)."""
    rows = summary.alerts_by_device[:top]
    fig = _figure(11, min(9.0, max(2.6, 1.2 + 0.28 * len(rows))))
    ax = fig.subplots()
    shown = rows or [("no alert raised", "", 0)]
    ax.barh(
        [f"{d} (node {n})" if n else d for d, n, _ in shown][::-1],
        [c for _, _, c in shown][::-1],
        color=DISCARDED_COLOUR,
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max((c for _, _, c in shown), default=0) + 1)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("Alerts raised")
    more = f", top {top}" if len(summary.alerts_by_device) > top else ""
    ax.set_title(
        f"Alerts per device ({len(summary.alerts_by_device)} of {summary.devices} "
        f"devices raised one{more})"
    )
    return fig


def _values(bins: Sequence[Confusion], name: str) -> list[float]:
    return [_nan(getattr(c, name)) for c in bins]


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(unix))


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
