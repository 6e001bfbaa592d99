"""``fl report``: render the offline HTML report and PNG charts from an aggregation log."""

from __future__ import annotations

from pathlib import Path

import click

from fl_runtime.cli._common import config_option, friendly_errors, load

DEFAULT_OUT = Path("reports/latest")


def resolve_log(config_path: str | None, log_path: Path | None) -> Path:
    """``--log`` if given, else the config's AGGREGATION_LOG."""
    return log_path if log_path is not None else Path(load(config_path).aggregation.log_path)


def render_offline(log: Path, out: Path, title: str, anomalies: Path | None = None) -> None:
    """Render the report and print where it went (shared with ``fl dashboard --mode offline``)."""
    from fl_runtime.report import render_report

    report = render_report(log, out, title=title, anomalies=anomalies)
    click.echo(
        f"report: {report.html} ({report.rounds} rounds, {report.nodes} nodes, "
        f"{report.timings['total_s']:.2f} s)"
    )
    for name, path in report.charts.items():
        click.echo(f"  {name}: {path}")


@click.command(name="report")
@config_option
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Aggregation log to read (default: the config's AGGREGATION_LOG).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Directory for report.html and the PNG charts.",
)
@click.option("--title", default="fedge federated training report", show_default=True)
@click.option(
    "--anomalies",
    "anomalies_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Anomaly records as JSON lines (`fl anomalies export`): adds a "
    '"Detection quality" section (precision and recall over time, alerts per device).',
)
@click.option(
    "--bench", is_flag=True, help="Instead: time a render of a synthetic log and print the figure."
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 1_000_000),
    default=200,
    show_default=True,
    help="Rounds of the synthetic log (--bench).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Fog nodes of the synthetic log (--bench).",
)
@friendly_errors
def command(
    config_path: str | None,
    log_path: Path | None,
    out: Path,
    title: str,
    anomalies_path: Path | None,
    bench: bool,
    rounds: int,
    nodes: int,
) -> None:
    """Write a self-contained HTML report plus PNG charts (convergence, participation
    heatmap, updates per round, rejections; detection quality with --anomalies) from an
    aggregation log."""
    if bench:
        from fl_runtime.report.bench import run_bench

        result = run_bench(rounds=rounds, nodes=nodes, out_dir=out if out != DEFAULT_OUT else None)
        for line in result.lines():
            click.echo(line)
        return
    render_offline(resolve_log(config_path, log_path), out, title, anomalies_path)
