"""``fl status``: the health of a deployment, for people and for playbooks/status.yml."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from fl_runtime.cli._common import config_option, emit_json, friendly_errors, load


@click.group("status")
def command() -> None:
    """Health of a deployment: a host's report, the table, rounds with given nodes."""


@command.command("host")
@config_option
@click.option("--unit", "units", multiple=True, help="A unit this host must run (repeatable).")
@click.option("--topics", is_flag=True, help="Also list the cluster's topics (needs Kafka).")
@click.option("--rounds", is_flag=True, help="Also read the last round of the aggregation log.")
@friendly_errors
def host(config_path: str | None, units: tuple[str, ...], topics: bool, rounds: bool) -> None:
    """This host's report as one JSON document (every fl-* unit is included)."""
    from fl_runtime.ops.status import read_units

    cfg = load(config_path)
    doc: dict[str, Any] = {"units": read_units(units)}
    if topics:
        from fl_runtime.service.topics import admin_client, list_topics

        found = list_topics(admin_client(cfg))
        doc["topics"] = [
            {"name": t.name, "partitions": t.partitions, "replication": t.replication}
            for t in found
        ]
        doc["sensor_topic_prefix"] = cfg.kafka.sensor_topic_prefix
    if rounds or topics:
        from fl_runtime.cloud.agglog import AggregationLog
        from fl_runtime.ops.status import round_summary

        log = Path(cfg.aggregation.log_path)
        doc["last_round"] = round_summary(AggregationLog(log).last() if log.exists() else None)
    emit_json(doc)


@command.command("table")
@click.argument("statuses", type=click.File("r"))
@click.option("--fog-node", "fog_nodes", multiple=True, metavar="HOST=ID", help="Repeatable.")
@click.option("--strict", is_flag=True, help="Exit 1 when a check below finds a problem.")
@click.option(
    "--check",
    "checks",
    type=click.Choice(["units", "topics", "rounds"]),
    multiple=True,
    help="What --strict requires: units active and enabled, a topic per fog node, every "
    "fog node in the last round (default: all three).",
)
@friendly_errors
def table(statuses: Any, fog_nodes: tuple[str, ...], strict: bool, checks: tuple[str, ...]) -> None:
    """Print the health table from a JSON object of host -> `fl status host` document."""
    from fl_runtime.ops.status import CHECKS, problems, render_table

    docs = json.load(statuses)
    nodes = dict(item.split("=", 1) for item in fog_nodes)
    click.echo(render_table(docs, nodes))
    found = problems(docs, nodes, checks or CHECKS)
    click.echo("Problems: " + ("; ".join(found) if found else "none"))
    if strict and found:
        sys.exit(1)


@command.command("rounds")
@config_option
@click.option("--nodes", required=True, help="Comma-separated node ids every round must include.")
@click.option("--after", type=float, default=0.0, help="Count rounds finished after this time.")
@click.option("--min", "minimum", type=int, default=2, show_default=True)
@click.option("--wait", type=float, default=0.0, help="Seconds to wait for them (polls every 5 s).")
@friendly_errors
def rounds(config_path: str | None, nodes: str, after: float, minimum: int, wait: float) -> None:
    """Rounds that include every node of --nodes, as JSON; exit 1 when fewer than --min."""
    from fl_runtime.cloud.agglog import read_log
    from fl_runtime.ops.status import round_summary, rounds_with_nodes

    cfg = load(config_path)
    wanted = [n for n in nodes.split(",") if n]
    log = Path(cfg.aggregation.log_path)
    deadline = time.monotonic() + wait
    while True:
        records = read_log(log) if log.exists() else []
        count = rounds_with_nodes(records, wanted, after)
        if count >= minimum or time.monotonic() >= deadline:
            break
        time.sleep(5)
    emit_json(
        {
            "nodes": wanted,
            "rounds": len(records),
            "rounds_with_nodes": count,
            "needed": minimum,
            "recent": [round_summary(r) for r in records[-5:]],
        }
    )
    if count < minimum:
        sys.exit(1)
