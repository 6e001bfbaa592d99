"""``fl bench``: micro-benchmarks that print figures beside a same-run baseline."""

from __future__ import annotations

import click

from fl_runtime.cli._common import emit_json


@click.group("bench")
def command() -> None:
    """Micro-benchmarks (figures with a baseline measured in the same run)."""


@command.command("sgd")
@click.option("--samples", type=click.IntRange(1000), default=200_000, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    multiple=True,
    help="Batch size(s) to measure; repeat the option for a sweep (default 32).",
)
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def sgd(samples: int, batch_size: tuple[int, ...], repeats: int, as_json: bool) -> None:
    """Local training throughput vs scikit-learn's SGDClassifier.partial_fit."""
    from fl_runtime.sim.bench import sgd_throughput

    runs = [sgd_throughput(samples, b, repeats=repeats) for b in (batch_size or (32,))]
    if as_json:
        emit_json(runs[0] if len(runs) == 1 else {"runs": runs})
        return
    click.echo(f"{'batch':>6} {'fl_runtime samples/s':>22} {'sklearn samples/s':>19} {'ratio':>7}")
    for r in runs:
        sk = r["sklearn_samples_per_s"]
        ratio = r["ratio_vs_sklearn"]
        click.echo(
            f"{r['batch_size']:>6} {r['fl_runtime_samples_per_s']:>22,.0f} "
            f"{(f'{sk:,.0f}' if sk else 'n/a'):>19} {(f'{ratio:.2f}x' if ratio else 'n/a'):>7}"
        )
