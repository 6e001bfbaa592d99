"""``fl monitor``: a per-round table from the aggregation log."""

from __future__ import annotations

import time

import click

from fl_runtime.cli._common import config_option, emit_json, friendly_errors, load
from fl_runtime.cloud.agglog import RoundRecord, iter_log


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_row(r: RoundRecord) -> str:
    nodes = ",".join(r.node_ids)
    discarded = ",".join(f"{d.node_id}:{d.reason}" for d in r.discarded) or "-"
    return (
        f"{r.round:>6} {r.global_version:>7} {len(r.participants):>5} {r.n_total:>8} "
        f"{_f(r.global_loss):>8} {_f(r.global_f1, 3):>6}  {nodes:<20} {discarded}"
    )


HEADER = (
    f"{'round':>6} {'version':>7} {'nodes':>5} {'n':>8} {'loss':>8} {'f1':>6}  "
    f"{'participants':<20} discarded"
)


@click.command("monitor")
@click.option(
    "--mode",
    type=click.Choice(["offline", "follow"]),
    default="offline",
    show_default=True,
    help="offline: print the log; follow: keep printing new rounds.",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Aggregation log (default: AGGREGATION_LOG).",
)
@click.option("--last", type=click.IntRange(1), default=None, help="Only the last N rounds.")
@click.option("--json", "as_json", is_flag=True, help="Print the rounds as a JSON list.")
@config_option
@friendly_errors
def command(
    mode: str, log_path: str | None, last: int | None, as_json: bool, config_path: str | None
) -> None:
    """Show aggregation rounds: participants, n_k, loss, F1 and discarded updates."""
    path = log_path or load(config_path).aggregation.log_path
    offset = 0
    records: list[RoundRecord] = []
    for offset, r in iter_log(path):  # noqa: B007 - the last offset is where following starts
        records.append(r)
    if last:
        records = records[-last:]
    if as_json:
        emit_json(
            [
                {
                    **r.__dict__,
                    "participants": [p.__dict__ for p in r.participants],
                    "discarded": [d.__dict__ for d in r.discarded],
                }
                for r in records
            ]
        )
        return
    click.echo(HEADER)
    for r in records:
        click.echo(format_row(r))
    while mode == "follow":
        for end, r in iter_log(path, offset=offset):
            offset = end
            click.echo(format_row(r))
        time.sleep(1.0)
