"""``fl simulate``: tune a federation in-process before deploying it."""

from __future__ import annotations

import math
from typing import Any

import click
import numpy as np

from fl_runtime.cli._common import config_option, emit_json, friendly_errors, load, progress
from fl_runtime.sim.comparison import Comparison, compare
from fl_runtime.sim.federation import SIM_STRATEGIES, RoundStats, TrainingParams
from fl_runtime.sim.partition import dirichlet, iid, load_labelled, simulator_partitions


@click.command("simulate")
@click.option("--nodes", type=click.IntRange(1, 10_000), default=5, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--strategy", type=click.Choice(SIM_STRATEGIES), default="fedavg", show_default=True)
@click.option(
    "--participation",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of nodes sampled each round.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--samples-per-node",
    type=click.IntRange(10),
    default=2500,
    show_default=True,
    help="Simulator readings per node (ignored with --data).",
)
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Your own labelled data (.npz with X, y; or .csv with a label column).",
)
@click.option(
    "--partition",
    type=click.Choice(["iid", "dirichlet"]),
    default="dirichlet",
    show_default=True,
    help="How --data is split across nodes.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, min_open=True),
    default=0.5,
    show_default=True,
    help="Dirichlet concentration for --partition dirichlet (smaller = more skewed).",
)
@click.option(
    "--min-nodes",
    type=click.IntRange(1),
    default=None,
    help="MIN_NODES_FOR_AGGREGATION (default from config).",
)
@click.option(
    "--learning-rate", type=float, default=None, help="LEARNING_RATE (default from config)."
)
@click.option("--batch-size", type=int, default=None, help="BATCH_SIZE (default from config).")
@click.option("--local-epochs", type=int, default=None, help="LOCAL_EPOCHS (default from config).")
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write an aggregation log (JSON lines) for fl report / the dashboard.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@config_option
@friendly_errors
def command(
    nodes: int,
    rounds: int,
    strategy: str,
    participation: float,
    seed: int,
    samples_per_node: int,
    data: str | None,
    partition: str,
    alpha: float,
    min_nodes: int | None,
    learning_rate: float | None,
    batch_size: int | None,
    local_epochs: int | None,
    log_path: str | None,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Federate simulated (or your own) data with the real strategy and model code,
    and compare the result with centralized and local-only training."""
    cfg = load(config_path).replace(
        **{
            k: v
            for k, v in {
                "LEARNING_RATE": learning_rate,
                "BATCH_SIZE": batch_size,
                "LOCAL_EPOCHS": local_epochs,
                "MIN_NODES_FOR_AGGREGATION": min_nodes,
            }.items()
            if v is not None
        }
    )
    params = TrainingParams(
        cfg.training.learning_rate,
        cfg.training.batch_size,
        cfg.training.local_epochs,
        cfg.training.l2,
    )
    if data:
        x, y = load_labelled(data)
        rng = np.random.default_rng(seed)
        parts = iid(x, y, nodes, rng) if partition == "iid" else dirichlet(x, y, nodes, rng, alpha)
    else:
        parts = simulator_partitions(nodes, samples_per_node, seed)
    on_round = None if as_json else _print_round
    if not as_json:
        progress(
            f"federating {nodes} nodes for {rounds} rounds ({strategy}, "
            f"participation {participation:g})"
        )
        click.echo(f"{'round':>5} {'nodes':>5} {'n':>7} {'loss':>8} {'f1':>6}")
    result = compare(
        parts,
        rounds,
        params=params,
        seed=seed,
        strategy=strategy,
        participation=participation,
        min_nodes=cfg.aggregation.min_nodes,
        trim_ratio=cfg.aggregation.trim_ratio,
        fedbuff_k=cfg.aggregation.fedbuff_k,
        log_path=log_path,
        on_round=on_round,
    )
    doc = result.to_dict()
    doc["settings"] = {
        "nodes": nodes,
        "rounds": rounds,
        "strategy": strategy,
        "participation": participation,
        "seed": seed,
        "data": data or "simulator",
        "partition": partition if data else "simulator-non-iid",
        "learning_rate": params.learning_rate,
        "batch_size": params.batch_size,
        "local_epochs": params.local_epochs,
    }
    if as_json:
        emit_json(_clean(doc))
    else:
        _print_summary(result)


def _print_round(stats: RoundStats) -> None:
    click.echo(
        f"{stats.round:>5} {len(stats.participants):>5} {stats.n_total:>7} "
        f"{_f(stats.loss, 4):>8} {_f(stats.f1, 3):>6}"
    )


def _print_summary(result: Comparison) -> None:
    local = result.local_only
    best = max(local, key=lambda k: local[k]["f1"])
    rows = [
        ("federated", result.federated),
        ("centralized", result.centralized),
        (f"best local-only (node {best})", local[best]),
    ]
    click.echo("\nOn the same pooled held-out data:")
    click.echo(f"  {'model':<28} {'f1':>6} {'loss':>7} {'auc':>6}")
    for name, m in rows:
        click.echo(
            f"  {name:<28} {_f(m['f1'], 3):>6} {_f(m['loss'], 4):>7} {_f(m['roc_auc'], 3):>6}"
        )
    mean_local = sum(m["f1"] for m in local.values()) / len(local)
    click.echo(f"  {'mean local-only':<28} {mean_local:>6.3f}")
    ratio = result.federated["f1"] / result.centralized["f1"] if result.centralized["f1"] else 0.0
    click.echo(f"federated / centralized F1 = {ratio:.3f}")


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _clean(value: Any) -> Any:
    """NaN (e.g. AUC of a single-class slice) becomes null, which JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
