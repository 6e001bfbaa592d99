"""``fl topics``: create the configured Kafka topics and show what is there."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import click

from fl_runtime.cli._common import config_option, emit_json, friendly_errors, load
from fl_runtime.config import Config, load_config, setting_at
from fl_runtime.errors import ConfigError
from fl_runtime.service.topics import (
    DEFAULT_TIMEOUT,
    admin_client,
    desired_topics,
    list_topics,
    plan,
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


@command.command("plan")
@click.option(
    "--node-id",
    "node_ids",
    multiple=True,
    help="Fog node whose sensor topic to plan (repeatable; default NODE_ID).",
)
@click.option(
    "--nodes",
    default=None,
    help="Comma-separated fog node ids instead of --node-id; empty: only the shared topics.",
)
@click.option(
    "--settings",
    "settings_json",
    default=None,
    help="JSON of settings by section, like the inventory's fl_runtime_config; "
    "applied over the defaults, and this machine's config file and FL_* are not read.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@config_option
@friendly_errors
def plan_cmd(
    node_ids: tuple[str, ...],
    nodes: str | None,
    settings_json: str | None,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Print the topics `ensure` would create, without contacting Kafka.

    The JSON is the kafka role's `kafka_topics` input (playbooks/kafka.yml).
    """
    if settings_json is None:
        cfg = load(config_path)
    else:
        # The defaults (os.devnull is an empty file) or --config, never this machine's
        # /etc/fl/fl.toml or FL_* variables: the plan is for the hosts, not the controller.
        base = load_config(config_path or os.devnull, env={})
        cfg = with_settings(base, settings_json)
    if nodes is not None:
        node_ids = tuple(n.strip() for n in nodes.split(",") if n.strip())
    elif not node_ids:
        node_ids = (cfg.fog.node_id,)
    topics = plan(desired_topics(cfg, node_ids))
    if as_json:
        emit_json(topics)
        return
    for topic in topics:
        configs = ",".join(f"{k}={v}" for k, v in topic["config"].items())
        click.echo(
            f"{topic['name']}\tpartitions={topic['partitions']}"
            f"\treplication={topic['replication_factor']}\t{configs}"
        )


def with_settings(cfg: Config, settings_json: str) -> Config:
    """``cfg`` with the settings of a ``{section: {key: value}}`` JSON document."""
    try:
        doc: Any = json.loads(settings_json)
    except json.JSONDecodeError as exc:
        raise ConfigError("--settings", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(t, dict) for t in doc.values()):
        raise ConfigError("--settings", "must be an object of sections, each an object")
    overrides = {
        setting_at(f"{section}.{key}").name: value
        for section, table in doc.items()
        for key, value in table.items()
    }
    return cfg.replace(**overrides)


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
