"""A small, seeded generator of realistic aggregation logs for tests, demos and benchmarks.

It writes real :class:`~fl_runtime.cloud.agglog.RoundRecord` objects through
:class:`~fl_runtime.cloud.agglog.AggregationLog`, with the faults a dashboard must show:
partial participation, an outage, a node that drops out, rejected updates with
reasons, and the odd round without evaluation metrics.

:func:`synthetic_anomaly_records` does the same for the ``anomalies`` topic: score
summaries of every device, one device that develops a fault (detections, an alert
raised and later cleared) and the odd false detection of a healthy device.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fl_runtime.cloud.agglog import AggregationLog, Discarded, Participant, RoundRecord
from fl_runtime.core.detections import (
    CLEARED,
    RAISED,
    AlertChange,
    AnomalyRecord,
    Detection,
    ScoreSummary,
    encode_anomaly_record,
)

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


def synthetic_anomaly_records(
    *,
    nodes: int,
    devices: int = 2,
    intervals: int = 60,
    interval_s: float = 5.0,
    readings: int = 40,
    threshold: float = 0.5,
    seed: int = 0,
    end: float | None = None,
) -> list[AnomalyRecord]:
    """Records of ``intervals`` summary intervals ending at ``end`` (default: now), in
    time order. Device ``node1-dev1`` is faulty from 40% to 80% of the run, ``node2-dev2``
    (when there is one) is noisy for a moment at 20% and raises a false alert; every fifth
    labelled reading carries a label."""
    rng = random.Random(seed)
    end = time.time() if end is None else end
    start = end - intervals * interval_s
    ids = [(str(n + 1), f"node{n + 1}-dev{d + 1}") for n in range(nodes) for d in range(devices)]
    alerting: dict[str, str] = {}
    out: list[AnomalyRecord] = []
    for i in range(intervals):
        t0 = start + i * interval_s
        for node, device in ids:
            faulty = device == "node1-dev1" and 0.4 <= i / intervals < 0.8
            noisy = device == "node2-dev2" and 0.2 <= i / intervals < 0.2 + 3 / intervals
            out += _interval(
                rng, node, device, i, t0, interval_s, readings, threshold, faulty, alerting, noisy
            )
    return out


def _interval(
    rng: random.Random,
    node: str,
    device: str,
    i: int,
    t0: float,
    interval_s: float,
    readings: int,
    threshold: float,
    faulty: bool,
    alerting: dict[str, str],
    noisy: bool = False,
) -> list[AnomalyRecord]:
    version = 1 + i // 6
    if noisy:  # scores like a fault's, but every labelled reading was normal
        over = int(readings * rng.uniform(0.2, 0.3))
        labelled = readings // 5
        return _noise(
            rng,
            node,
            device,
            i,
            t0,
            interval_s,
            readings,
            threshold,
            over,
            labelled,
            version,
            alerting,
        )
    mean = rng.uniform(0.55, 0.8) if faulty else rng.uniform(0.03, 0.12)
    over = int(readings * rng.uniform(0.6, 0.9)) if faulty else int(rng.random() < 0.04)
    peak = min(1.0, rng.uniform(0.85, 0.99) if faulty else mean + rng.uniform(0.05, 0.3))
    if over and not faulty:
        peak = rng.uniform(threshold, 0.7)
    labelled, labelled_over = readings // 5, over // 5 if faulty else over
    tp = labelled_over if faulty else 0
    fn = max(0, labelled - labelled_over - 1) if faulty else 0
    fp = 0 if faulty else labelled_over
    records: list[AnomalyRecord] = []
    for k in range(min(over, 3)):
        at = t0 + interval_s * (k + 1) / 4
        records.append(
            Detection(
                f"{device}-{i}-{k}",
                device,
                node,
                round(peak, 4),
                threshold,
                version,
                at - 0.05,
                at,
                int(faulty) if k == 0 else None,
            )
        )
    changed = _alert_change(
        device, node, i, t0 + interval_s * 0.9, peak, threshold, version, over, faulty, alerting
    )
    records += changed
    records.append(
        ScoreSummary(
            device,
            node,
            t0,
            t0 + interval_s,
            readings,
            round(mean, 4),
            round(peak, 4),
            over,
            threshold,
            version,
            device in alerting,
            tp,
            fp,
            labelled - tp - fp - fn,
            fn,
        )
    )
    return records


def _noise(
    rng: random.Random,
    node: str,
    device: str,
    i: int,
    t0: float,
    interval_s: float,
    readings: int,
    threshold: float,
    over: int,
    labelled: int,
    version: int,
    alerting: dict[str, str],
) -> list[AnomalyRecord]:
    peak = round(rng.uniform(0.6, 0.75), 4)
    at = t0 + interval_s / 2
    records: list[AnomalyRecord] = [
        Detection(f"{device}-{i}-0", device, node, peak, threshold, version, at - 0.05, at, 0)
    ]
    records += _alert_change(
        device, node, i, at + 0.1, peak, threshold, version, over, True, alerting
    )
    fp = labelled // 4
    records.append(
        ScoreSummary(
            device,
            node,
            t0,
            t0 + interval_s,
            readings,
            0.3,
            peak,
            over,
            threshold,
            version,
            True,
            0,
            fp,
            labelled - fp,
            0,
        )
    )
    return records


def _alert_change(
    device: str,
    node: str,
    i: int,
    at: float,
    score: float,
    threshold: float,
    version: int,
    over: int,
    faulty: bool,
    alerting: dict[str, str],
) -> list[AlertChange]:
    if faulty and device not in alerting:
        alerting[device] = f"{device}-alert-{i}"
        state = RAISED
    elif not faulty and device in alerting:
        state = CLEARED
    else:
        return []
    alert_id = alerting[device] if state == RAISED else alerting.pop(device)
    return [
        AlertChange(
            alert_id,
            state,
            device,
            node,
            f"{device}-{i}-0",
            round(score, 4),
            threshold,
            version,
            at - 0.05,
            at,
            min(over, 5),
            5,
        )
    ]


def write_synthetic_anomalies(
    path: str | Path,
    *,
    nodes: int,
    devices: int = 2,
    intervals: int = 60,
    seed: int = 0,
    end: float | None = None,
) -> list[AnomalyRecord]:
    """Write :func:`synthetic_anomaly_records` as JSON lines (as ``fl anomalies export``
    writes them); return them."""
    records = synthetic_anomaly_records(
        nodes=nodes, devices=devices, intervals=intervals, seed=seed, end=end
    )
    with open(path, "wb") as out:
        for record in records:
            out.write(encode_anomaly_record(record) + b"\n")
    return records
