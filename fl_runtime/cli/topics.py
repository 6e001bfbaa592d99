"""``fl topics``: create the configured Kafka topics and show what is there."""

from __future__ import annotations

from dataclasses import asdict

import click

from fl_runtime.cli._common import config_option, emit_json, friendly_errors, load
from fl_runtime.service.topics import (
    DEFAULT_TIMEOUT,
    admin_client,
    desired_topics,
    list_topics,
    reconcile_topics,
)

bootstrap_option = click.option(
    "--bootstrap-servers", default=None, help="Override KAFKA_BOOTSTRAP_SERVERS."
)
timeout_option = click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the cluster.",
)


@click.group("topics")
def command() -> None:
    """Create the configured Kafka topics and show what is there."""


@command.command("ensure")
@click.option(
    "--node-id",
    "node_ids",
    multiple=True,
    help="Fog node whose sensor topic to ensure (repeatable; default NODE_ID).",
)
@bootstrap_option
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@config_option
@friendly_errors
def ensure(
    node_ids: tuple[str, ...],
    bootstrap_servers: str | None,
    timeout: float,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Create missing topics, add partitions, fix drifted configs (idempotent)."""
    cfg = load(config_path)
    if bootstrap_servers:
        cfg = cfg.replace(KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers)
    specs = desired_topics(cfg, node_ids or [cfg.fog.node_id])
    outcomes = reconcile_topics(admin_client(cfg), specs, timeout)
    if as_json:
        emit_json([asdict(o) for o in outcomes])
        return
    for outcome in outcomes:
        detail = "; ".join(outcome.changes)
        click.echo(f"{outcome.status:8} {outcome.name}" + (f"  ({detail})" if detail else ""))
        for warning in outcome.warnings:
            click.echo(f"warning: {outcome.name} {warning}", err=True)


@command.command("list")
@click.option("--all", "internal", is_flag=True, help="Include Kafka's internal __* topics.")
@bootstrap_option
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
@friendly_errors
def list_cmd(
    internal: bool,
    bootstrap_servers: str | None,
    timeout: float,
    as_json: bool,
    config_path: str | None,
) -> None:
    """List topics with their partition count and replication factor."""
    cfg = load(config_path)
    if bootstrap_servers:
        cfg = cfg.replace(KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers)
    topics = list_topics(admin_client(cfg), timeout, internal=internal)
    if as_json:
        emit_json([asdict(t) for t in topics])
        return
    for topic in topics:
        click.echo(f"{topic.name}\tpartitions={topic.partitions}\treplication={topic.replication}")
