"""``fl fog``: the fog node's Spark Structured Streaming job."""

from __future__ import annotations

import click

from fl_runtime.cli._common import config_option, friendly_errors, load
from fl_runtime.config import NODE_ID_PATTERN


@click.command("fog")
@click.option("--node-id", default=None, help="This fog node's id (default: NODE_ID).")
@click.option(
    "--spark-master", default=None, help="local[*] or spark://host:7077 (default: SPARK_MASTER)."
)
@click.option("--metrics-port", type=int, default=None, help="Prometheus port (-1 disables).")
@config_option
@friendly_errors
def command(
    node_id: str | None, spark_master: str | None, metrics_port: int | None, config_path: str | None
) -> None:
    """Train locally on sensor-data-node-<id> and publish weight updates (until SIGTERM)."""
    from fl_runtime.fog import spark_driver
    from fl_runtime.service.common import setup_logging, start_metrics
    from fl_runtime.service.topics import ensure_topics

    overrides = {k: v for k, v in {"NODE_ID": node_id, "SPARK_MASTER": spark_master}.items() if v}
    cfg = load(config_path).replace(**overrides)
    if not NODE_ID_PATTERN.match(cfg.fog.node_id):
        raise click.BadParameter(f"bad node id {cfg.fog.node_id!r}")
    setup_logging(cfg, "fog")
    ensure_topics(cfg, [cfg.fog.node_id])
    start_metrics(cfg, "fog", metrics_port)
    spark_driver.run(cfg, cfg.fog.node_id)
