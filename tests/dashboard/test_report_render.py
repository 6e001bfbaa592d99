"""The offline report: files, content, and charts whose text is readable."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from fl_runtime.cloud.agglog import read_log
from fl_runtime.report import ReportError, render_report
from fl_runtime.report.charts import (
    MAX_NODE_LABELS,
    convergence_chart,
    participants_chart,
    participation_chart,
    rejections_chart,
)
from fl_runtime.report.stats import fault_summary, sorted_nodes, tally_nodes
from fl_runtime.report.synthetic import write_synthetic_log

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "aggregation.jsonl"
    write_synthetic_log(path, rounds=200, nodes=50, seed=11)
    return path


def test_report_writes_html_and_pngs(big_log: Path, tmp_path: Path) -> None:
    report = render_report(big_log, tmp_path / "out")

    assert (report.rounds, report.nodes) == (200, 50)
    assert set(report.charts) == {"convergence", "participation", "participants", "rejections"}
    for png in report.charts.values():
        assert png.read_bytes().startswith(PNG_MAGIC)
    html = report.html.read_text(encoding="utf-8")
    for heading in (
        "Convergence",
        "Participation",
        "Faults and rejections",
        "Fog nodes",
        "Round details",
    ):
        assert f"<h2>{heading}" in html
    assert html.count("src='data:image/png;base64,") == 4
    assert "http://" not in html and "https://" not in html  # self-contained
    assert html.count("<tr><td>") == 50  # one row per node in the node table


def test_report_rejects_a_missing_or_empty_log(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        render_report(tmp_path / "nope.jsonl", tmp_path / "out")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ReportError, match="no readable rounds"):
        render_report(tmp_path / "empty.jsonl", tmp_path / "out")


def _figures(path: Path) -> dict[str, Figure]:
    records = read_log(path)
    nodes = sorted_nodes(tally_nodes(records))
    return {
        "convergence": convergence_chart(records, nodes),
        "participation": participation_chart(records, nodes),
        "participants": participants_chart(records),
        "rejections": rejections_chart(fault_summary(records)),
    }


def _texts(fig: Figure) -> list[Text]:
    """Every piece of text matplotlib draws: titles, axis labels, in-view tick labels
    and legend entries."""
    fig.canvas.draw()
    texts: list[Text] = [t for legend in fig.legends for t in legend.get_texts()]
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            texts += [
                label
                for tick in axis.get_major_ticks()
                if lo <= tick.get_loc() <= hi
                for label in (tick.label1, tick.label2)
            ]
        legend = ax.get_legend()
        if legend is not None:
            texts += legend.get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("name", ["convergence", "participation", "participants", "rejections"])
def test_chart_text_does_not_overlap(big_log: Path, name: str) -> None:
    fig = _figures(big_log)[name]

    texts = _texts(fig)
    boxes = [(t.get_text(), t.get_window_extent().expanded(0.98, 0.9)) for t in texts]

    overlapping = [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b)
    ]
    assert overlapping == []
    labels = {t.get_text() for t in texts}
    assert labels & {"Round", "Updates"}  # axes are labelled


def test_chart_axes_and_legends_are_labelled(big_log: Path) -> None:
    figs = _figures(big_log)

    loss_ax, score_ax = figs["convergence"].axes
    heat_ax = figs["participation"].axes[0]

    assert loss_ax.get_ylabel() == "Log-loss" and score_ax.get_xlabel() == "Round"
    assert loss_ax.get_legend() is not None and score_ax.get_legend() is not None
    assert figs["participation"].legends and heat_ax.get_xlabel() == "Round"
    shown = [t for t in heat_ax.get_yticklabels() if t.get_text()]
    assert 10 <= len(shown) <= MAX_NODE_LABELS
    assert len(heat_ax.get_xticklabels()) <= 12
