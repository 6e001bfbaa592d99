"""``fl simulate``: tune a federation in-process before deploying it."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import click
import numpy as np

from fl_runtime.cli._common import config_option, emit_json, friendly_errors, load, progress
from fl_runtime.config import Config
from fl_runtime.core.strategy import ServerOptimizerSettings
from fl_runtime.sim.comparison import Comparison, compare
from fl_runtime.sim.federation import SIM_STRATEGIES, RoundStats, TrainingParams
from fl_runtime.sim.partition import (
    DATASETS,
    Partition,
    dirichlet,
    iid,
    load_dataset,
    load_labelled,
    simulator_partitions,
)
from fl_runtime.sim.sweep import Run, Summary, summarise, sweep


@click.command("simulate")
@click.option("--nodes", type=click.IntRange(1, 10_000), default=5, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option(
    "--strategy",
    "strategies",
    multiple=True,
    default=("fedavg",),
    show_default=True,
    help=f"One or more of {', '.join(SIM_STRATEGIES)} (repeat, or a comma list).",
)
@click.option(
    "--participation",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of nodes sampled each round.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--seeds",
    default=None,
    help="Several seeds: a comma list (1,2,3), or a count N for --seed .. --seed+N-1.",
)
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
    "--dataset",
    type=click.Choice(sorted(DATASETS)),
    default=None,
    help="A labelled dataset bundled with scikit-learn, one class against the rest.",
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
    "alphas",
    multiple=True,
    default=("0.5",),
    show_default=True,
    help="Dirichlet concentration (smaller = more skewed); several values sweep the skew.",
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
@click.option("--fedprox-mu", type=float, default=None, help="FEDPROX_MU (default from config).")
@click.option(
    "--server-learning-rate",
    type=float,
    default=None,
    help="SERVER_LEARNING_RATE (default from config).",
)
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    default=None,
    help="CLASS_WEIGHT (default from config).",
)
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
    strategies: tuple[str, ...],
    participation: float,
    seed: int,
    seeds: str | None,
    samples_per_node: int,
    data: str | None,
    dataset: str | None,
    partition: str,
    alphas: tuple[str, ...],
    min_nodes: int | None,
    learning_rate: float | None,
    batch_size: int | None,
    local_epochs: int | None,
    fedprox_mu: float | None,
    server_learning_rate: float | None,
    class_weight: str | None,
    log_path: str | None,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Federate simulated (or your own) data with the real strategy and model code,
    and compare the result with centralized and local-only training. Several
    strategies, seeds or alphas print one comparison table per alpha."""
    if data and dataset:
        raise click.UsageError("use --data or --dataset, not both")
    names = _strategies(strategies)
    seed_list = _seeds(seeds, seed)
    alpha_list = _alphas(alphas) if (data or dataset) and partition == "dirichlet" else [None]
    cfg = load(config_path).replace(
        **{
            k: v
            for k, v in {
                "LEARNING_RATE": learning_rate,
                "BATCH_SIZE": batch_size,
                "LOCAL_EPOCHS": local_epochs,
                "MIN_NODES_FOR_AGGREGATION": min_nodes,
                "FEDPROX_MU": fedprox_mu,
                "SERVER_LEARNING_RATE": server_learning_rate,
                "CLASS_WEIGHT": class_weight,
            }.items()
            if v is not None
        }
    )
    params = _params(cfg)
    source = data or dataset or "simulator"
    xy = load_labelled(data) if data else load_dataset(dataset) if dataset else None

    def split(alpha: float | None, run_seed: int) -> list[Partition]:
        if xy is None:
            return simulator_partitions(nodes, samples_per_node, run_seed)
        rng = np.random.default_rng(run_seed)
        if alpha is None:
            return iid(*xy, nodes, rng)
        return dirichlet(*xy, nodes, rng, alpha)

    federated_kw: dict[str, Any] = {
        "participation": participation,
        "min_nodes": cfg.aggregation.min_nodes,
        "trim_ratio": cfg.aggregation.trim_ratio,
        "fedbuff_k": cfg.aggregation.fedbuff_k,
        "server": _server(cfg),
    }
    settings = {
        "nodes": nodes,
        "rounds": rounds,
        "participation": participation,
        "data": source,
        "partition": partition if xy is not None else "simulator-non-iid",
        "learning_rate": params.learning_rate,
        "batch_size": params.batch_size,
        "local_epochs": params.local_epochs,
        "fedprox_mu": params.fedprox_mu,
        "class_weight": params.class_weight,
        "server_learning_rate": cfg.aggregation.server_learning_rate,
    }
    if len(names) == 1 and len(seed_list) == 1 and len(alpha_list) == 1:
        settings.update(strategy=names[0], seed=seed_list[0], alpha=alpha_list[0])
        _single(
            split(alpha_list[0], seed_list[0]),
            rounds,
            params,
            settings,
            as_json,
            log_path,
            federated_kw,
        )
        return
    if log_path:
        raise click.UsageError("--log writes one run's rounds: use it with one strategy and seed")
    total = len(names) * len(seed_list) * len(alpha_list)
    done: list[Run] = []

    def on_run(run: Run) -> None:
        done.append(run)
        progress(
            f"[{len(done)}/{total}] {run.strategy} seed {run.seed}"
            + ("" if run.alpha is None else f" alpha {run.alpha:g}")
            + f": F1 {run.f1:.3f} (central {run.central_f1:.3f}, "
            f"best local-only {run.best_local_f1:.3f})"
        )

    if not as_json:
        progress(
            f"{total} federations of {nodes} nodes x {rounds} rounds on {source} "
            f"({len(names)} strategies x {len(seed_list)} seeds x {len(alpha_list)} alphas)"
        )
    runs = sweep(
        split, names, seed_list, alpha_list, rounds, params=params, on_run=on_run, **federated_kw
    )
    table = summarise(runs)
    if as_json:
        settings.update(strategies=names, seeds=seed_list, alphas=alpha_list)
        emit_json(
            _clean(
                {
                    "settings": settings,
                    "summary": [asdict(row) for row in table],
                    "runs": [
                        {**asdict(r), "ratio": r.ratio, "beats_local": r.beats_local} for r in runs
                    ],
                }
            )
        )
    else:
        _print_table(table, "IID split" if xy is not None else "simulator's non-IID split")


def _single(
    parts: list[Partition],
    rounds: int,
    params: TrainingParams,
    settings: dict[str, Any],
    as_json: bool,
    log_path: str | None,
    federated_kw: dict[str, Any],
) -> None:
    """One federation, round by round, then beside its baselines."""
    on_round = None if as_json else _print_round
    if not as_json:
        progress(
            f"federating {settings['nodes']} nodes for {rounds} rounds ({settings['strategy']}, "
            f"participation {settings['participation']:g})"
        )
        click.echo(f"{'round':>5} {'nodes':>5} {'n':>7} {'loss':>8} {'f1':>6}")
    result = compare(
        parts,
        rounds,
        params=params,
        seed=settings["seed"],
        strategy=settings["strategy"],
        log_path=log_path,
        on_round=on_round,
        **federated_kw,
    )
    doc = result.to_dict()
    doc["settings"] = settings
    if as_json:
        emit_json(_clean(doc))
    else:
        _print_summary(result)


def _params(cfg: Config) -> TrainingParams:
    t = cfg.training
    return TrainingParams(
        t.learning_rate, t.batch_size, t.local_epochs, t.l2, t.fedprox_mu, t.class_weight
    )


def _server(cfg: Config) -> ServerOptimizerSettings:
    a = cfg.aggregation
    return ServerOptimizerSettings(
        a.server_learning_rate, a.server_momentum, a.adam_beta1, a.adam_beta2, a.adam_epsilon
    )


def _strategies(values: tuple[str, ...]) -> list[str]:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in SIM_STRATEGIES]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'none given'}; choose from {', '.join(SIM_STRATEGIES)}",
            param_hint="--strategy",
        )
    return list(dict.fromkeys(names))


def _seeds(value: str | None, seed: int) -> list[int]:
    if value is None:
        return [seed]
    try:
        if "," in value:
            return list(dict.fromkeys(int(v) for v in value.split(",") if v.strip()))
        count = int(value)
    except ValueError:
        raise click.BadParameter(
            "a comma list of integers or a count", param_hint="--seeds"
        ) from None
    if count < 1:
        raise click.BadParameter("the count must be >= 1", param_hint="--seeds")
    return list(range(seed, seed + count))


def _alphas(values: tuple[str, ...]) -> list[float | None]:
    try:
        alphas = [float(a) for v in values for a in v.split(",") if a.strip()]
    except ValueError:
        raise click.BadParameter("numbers > 0", param_hint="--alpha") from None
    if not alphas or any(not a > 0 for a in alphas):
        raise click.BadParameter("numbers > 0", param_hint="--alpha")
    return list(dict.fromkeys(alphas))


def _print_table(table: list[Summary], unskewed: str) -> None:
    """One table per alpha; ``unskewed`` names the split when there is no alpha."""
    alphas = list(dict.fromkeys(row.alpha for row in table))
    for alpha in alphas:
        rows = [r for r in table if r.alpha == alpha]
        title = unskewed if alpha is None else f"Dirichlet alpha {alpha:g}"
        click.echo(
            f"\n{title}, {rows[0].seeds} seeds: centralized F1 {rows[0].central_f1_mean:.3f}, "
            f"best local-only F1 {rows[0].best_local_f1_mean:.3f} (means)"
        )
        click.echo(
            f"  {'strategy':<13} {'F1 mean':>7} {'min':>6} {'max':>6}  "
            f"{'F1/central':>10} {'min':>6} {'max':>6}  {'PR-AUC':>6}  {'beats local':>11}"
        )
        for r in rows:
            click.echo(
                f"  {r.strategy:<13} {r.f1_mean:>7.3f} {r.f1_min:>6.3f} {r.f1_max:>6.3f}  "
                f"{r.ratio_mean:>10.3f} {r.ratio_min:>6.3f} {r.ratio_max:>6.3f}  "
                f"{_f(r.pr_auc_mean, 3):>6}  {f'{r.beats_local}/{r.seeds}':>11}"
            )


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
    click.echo(f"  {'model':<28} {'f1':>6} {'loss':>7} {'roc-auc':>7} {'pr-auc':>6}")
    for name, m in rows:
        click.echo(
            f"  {name:<28} {_f(m['f1'], 3):>6} {_f(m['loss'], 4):>7} "
            f"{_f(m['roc_auc'], 3):>7} {_f(m['pr_auc'], 3):>6}"
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
