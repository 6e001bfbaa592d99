"""A small, seeded generator of realistic aggregation logs for tests, demos and benchmarks.

It writes real :class:`~fl_runtime.cloud.agglog.RoundRecord` objects through
:class:`~fl_runtime.cloud.agglog.AggregationLog`, with the faults a dashboard must show:
partial participation, an outage, a node that drops out, rejected updates with
reasons, and the odd round without evaluation metrics.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fl_runtime.cloud.agglog import AggregationLog, Discarded, Participant, RoundRecord

REJECTIONS: tuple[tuple[str, str], ...] = (
    ("stale", "update is {age:.0f} s old, MAX_WEIGHT_AGE is 120 s"),
    ("norm", "update L2 norm {norm:.3g} exceeds MAX_UPDATE_NORM 1e4"),
    ("shape", "expected 12 weights, got 10"),
)


@dataclass(frozen=True)
class _Node:
    node_id: str
    samples: int
    bias: float
    presence: float


def synthetic_records(
    *,
    rounds: int,
    nodes: int,
    seed: int = 0,
    interval_s: float = 10.0,
    end: float | None = None,
    first_round: int = 1,
) -> Iterator[RoundRecord]:
    """Yield ``rounds`` records over ``nodes`` fog nodes (ids ``"1"``, ``"2"``, ...).

    Rounds start every ``interval_s``; the last one starts ``interval_s`` before ``end``
    (default: now), so live views see fresh nodes.
    """
    rng = random.Random(seed)
    end = time.time() if end is None else end
    fleet = [
        _Node(str(i + 1), rng.randint(80, 400), rng.uniform(-0.1, 0.25), rng.uniform(0.85, 0.99))
        for i in range(nodes)
    ]
    dropout_at = int(rounds * 0.8)
    for i in range(rounds):
        r = first_round + i
        started = end - (rounds - i) * interval_s
        participants: list[Participant] = []
        discarded: list[Discarded] = []
        for k, node in enumerate(fleet):
            if _absent(rng, node, k, i, rounds, dropout_at):
                continue
            if rng.random() < 0.03:
                discarded.append(_rejection(rng, node, r))
                continue
            participants.append(_participant(rng, node, r, r - 1))
        yield _record(rng, r, r - 1, started, participants, discarded)


def _absent(rng: random.Random, node: _Node, k: int, i: int, rounds: int, dropout_at: int) -> bool:
    if k == 1 and i >= dropout_at:
        return True  # node 2 drops out for good
    outage = k % 10 == 3 and rounds // 3 <= i < rounds // 3 + max(3, rounds // 20)
    return outage or rng.random() > node.presence


def _participant(rng: random.Random, node: _Node, r: int, progress: int) -> Participant:
    loss = _global_loss(progress) * (1.0 + node.bias) + rng.gauss(0.0, 0.02)
    staleness_versions = 0 if rng.random() < 0.8 else rng.randint(1, 3)
    return Participant(
        node_id=node.node_id,
        n_samples=max(1, int(node.samples * rng.uniform(0.7, 1.3))),
        staleness_s=round(rng.uniform(0.2, 9.0), 3),
        staleness_versions=staleness_versions,
        base_version=max(0, r - 1 - staleness_versions),
        local_loss=round(max(0.01, loss), 5),
        update_id=f"{node.node_id}-{r}",
    )


def _rejection(rng: random.Random, node: _Node, r: int) -> Discarded:
    reason, template = rng.choice(REJECTIONS)
    detail = template.format(age=rng.uniform(121, 600), norm=rng.uniform(2e4, 1e6))
    return Discarded(
        node_id=node.node_id, reason=reason, detail=detail, update_id=f"{node.node_id}-{r}"
    )


def _record(
    rng: random.Random,
    r: int,
    progress: int,
    started: float,
    participants: list[Participant],
    discarded: list[Discarded],
) -> RoundRecord:
    wall = rng.uniform(0.05, 0.4) + 0.004 * len(participants)
    evaluated = rng.random() > 0.02
    f1 = min(0.99, 0.93 - 0.55 * math.exp(-progress / 25) + rng.gauss(0.0, 0.01))
    return RoundRecord(
        round=r,
        global_version=r,
        mode="batch",
        strategy="fedavg",
        started_at=round(started, 3),
        finished_at=round(started + wall, 3),
        participants=participants,
        discarded=discarded,
        global_loss=round(_global_loss(progress) + rng.gauss(0.0, 0.005), 5) if evaluated else None,
        global_f1=round(f1, 4) if evaluated else None,
        global_precision=round(min(0.99, f1 + 0.02), 4) if evaluated else None,
        global_recall=round(max(0.0, f1 - 0.02), 4) if evaluated else None,
        global_accuracy=round(min(0.999, 0.97 + 0.02 * (1 - math.exp(-progress / 25))), 4)
        if evaluated
        else None,
        eval_n=sum(p.n_samples for p in participants) // 4 if evaluated else 0,
        eval_version=r if evaluated else None,
        timings={
            "aggregate_ms": round(1.0 + 0.3 * len(participants) + rng.random(), 3),
            "publish_ms": round(rng.uniform(2.0, 12.0), 3),
            "round_wall_s": round(wall, 4),
        },
    )


def _global_loss(i: int) -> float:
    return 0.12 + 0.55 * math.exp(-i / 30)


def write_synthetic_log(
    path: str | Path,
    *,
    rounds: int,
    nodes: int,
    seed: int = 0,
    interval_s: float = 10.0,
    end: float | None = None,
    first_round: int = 1,
) -> list[RoundRecord]:
    """Append synthetic rounds to the aggregation log at ``path``; return them."""
    log = AggregationLog(path)
    records = list(
        synthetic_records(
            rounds=rounds,
            nodes=nodes,
            seed=seed,
            interval_s=interval_s,
            end=end,
            first_round=first_round,
        )
    )
    for record in records:
        log.append(record)
    return records
