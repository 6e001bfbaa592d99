"""``fl bench``: micro-benchmarks that print figures beside a same-run baseline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from fl_runtime.cli._common import config_option, emit_json, friendly_errors, load, progress


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


@command.command("detect")
@config_option
@click.option("--devices", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 1000.0),
    default=10.0,
    show_default=True,
    help="Readings per second per device.",
)
@click.option(
    "--duration",
    type=click.FloatRange(5.0),
    default=60.0,
    show_default=True,
    help="Seconds of measured load (after the warm-up).",
)
@click.option("--warmup", type=click.FloatRange(0.0), default=15.0, show_default=True)
@click.option(
    "--spark/--no-spark",
    default=True,
    show_default=True,
    help="Also measure the in-job option: fl bridge + a Spark scoring query.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the brokers and services keep their files (default: a temporary one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@friendly_errors
def detect(
    config_path: str | None,
    devices: int,
    rate: float,
    duration: float,
    warmup: float,
    spark: bool,
    workdir: str | None,
    as_json: bool,
) -> None:
    """MQTT publish to MQTT alert, p50/p99, on real Mosquitto, Kafka and fl detect,
    beside the same scoring inside a Spark streaming job."""
    from fl_runtime.bench.detect import DetectBench, run_detect_bench

    cfg = load(config_path)
    bench = DetectBench(
        devices=devices, rate_hz=rate, duration_s=duration, warmup_s=warmup, spark=spark
    )
    cache = Path(os.environ.get("FL_ARTIFACTS_DIR") or ".artifacts")
    with tempfile.TemporaryDirectory(prefix="fl-bench-detect-") as tmp:
        doc = run_detect_bench(bench, cfg, cache, Path(workdir or tmp), progress)
    if as_json:
        emit_json(doc)
        return
    click.echo(
        f"scorer (fl detect): {doc['alerts']} alerts, p50 {doc['p50_ms']} ms, "
        f"p99 {doc['p99_ms']} ms (target p99 < {doc['target_p99_ms']:.0f} ms), "
        f"RSS {doc['scorer_rss_mb']} MB, CPU {doc['scorer_cpu_percent']}%"
    )
    so = doc.get("spark_option")
    if so:
        click.echo(
            f"in the Spark job:   {so['alerts']} alerts, p50 {so['p50_ms']} ms, "
            f"p99 {so['p99_ms']} ms; trigger wait p50 {so['trigger_wait_p50_ms']} ms "
            f"({so['trigger_share']} of the path), JVM RSS {so['jvm_rss_mb']} MB"
        )
