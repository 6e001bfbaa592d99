"""``fl aggregate``: the cloud aggregator service."""

from __future__ import annotations

import click

from fl_runtime.cli._common import config_option, friendly_errors, load


@click.command("aggregate")
@click.option(
    "--mode",
    type=click.Choice(["batch", "async"]),
    default=None,
    help="batch: a round every AGGREGATION_INTERVAL_SECONDS; async: FedBuff. "
    "Default: AGGREGATION_MODE.",
)
@click.option("--metrics-port", type=int, default=None, help="Prometheus port (-1 disables).")
@config_option
@friendly_errors
def command(mode: str | None, metrics_port: int | None, config_path: str | None) -> None:
    """Aggregate weight updates into global models (runs until SIGTERM)."""
    from fl_runtime.cloud.aggregator import AggregatorService
    from fl_runtime.service.common import setup_logging, start_metrics
    from fl_runtime.service.topics import ensure_topics

    cfg = load(config_path)
    setup_logging(cfg, "aggregator")
    ensure_topics(cfg, [])
    start_metrics(cfg, "aggregator", metrics_port)
    AggregatorService(cfg, mode=mode).run()
