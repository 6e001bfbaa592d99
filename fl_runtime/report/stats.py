"""Figures over aggregation-log records, shared by ``fl report`` and the dashboard.

Pure functions and small accumulators: no I/O, no clock. A node is *seen* in a
round when it appears there as a participant (its update was accepted) or as a
discarded update (it was rejected, with a reason).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fl_runtime.cloud.agglog import RoundRecord

ABSENT, ACCEPTED, DISCARDED = 0, 1, 2
ACCEPTED_OUTCOME = "accepted"


def natural_key(node_id: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``node-2`` before ``node-10``."""
    parts = re.split(r"(\d+)", node_id)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def sorted_nodes(node_ids: Iterable[str]) -> list[str]:
    return sorted(set(node_ids), key=natural_key)


def round_duration(record: RoundRecord) -> float:
    """Wall time of a round in seconds, as the aggregator measured it if it did."""
    wall = record.timings.get("round_wall_s")
    if wall is not None:
        return float(wall)
    return max(0.0, record.finished_at - record.started_at)


@dataclass
class NodeTally:
    """What the log says about one node, folded round by round with :meth:`add`."""

    node_id: str
    accepted: int = 0
    rejected: int = 0
    total_samples: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    first_round: int | None = None
    last_round: int | None = None
    last_seen: float | None = None
    last_outcome: str = ""
    last_n_samples: int = 0
    last_staleness_s: float | None = None
    last_staleness_versions: int | None = None
    last_local_loss: float | None = None
    staleness_sum_s: float = 0.0

    @property
    def mean_staleness_s(self) -> float | None:
        return self.staleness_sum_s / self.accepted if self.accepted else None

    def add(self, record: RoundRecord) -> None:
        """Fold in one round; a node absent from it is left unchanged."""
        mine = [p for p in record.participants if p.node_id == self.node_id]
        rejected = [d.reason for d in record.discarded if d.node_id == self.node_id]
        if not mine and not rejected:
            return
        if self.first_round is None:
            self.first_round = record.round
        self.last_round = record.round
        self.last_seen = record.finished_at
        self.rejected += len(rejected)
        self.rejected_by_reason.update(rejected)
        self.last_outcome = ACCEPTED_OUTCOME if mine else rejected[-1]
        self.last_n_samples = sum(p.n_samples for p in mine)
        for p in mine:
            self.accepted += 1
            self.total_samples += p.n_samples
            self.last_staleness_s = p.staleness_s
            self.last_staleness_versions = p.staleness_versions
            self.staleness_sum_s += p.staleness_s
            if p.local_loss is not None:
                self.last_local_loss = p.local_loss


def tally_nodes(
    records: Iterable[RoundRecord], tallies: dict[str, NodeTally] | None = None
) -> dict[str, NodeTally]:
    """Fold ``records`` into per-node tallies (updating ``tallies`` in place if given)."""
    tallies = {} if tallies is None else tallies
    for record in records:
        for node_id in {*record.node_ids, *(d.node_id for d in record.discarded)}:
            tally = tallies.get(node_id)
            if tally is None:
                tally = tallies[node_id] = NodeTally(node_id)
            tally.add(record)
    return tallies


def participation_matrix(
    records: Sequence[RoundRecord],
    node_ids: Sequence[str],
    *,
    columns: Sequence[int] | None = None,
    width: int | None = None,
) -> list[list[int]]:
    """Rows per node, one column per record (or record ``i`` in column ``columns[i]``
    of ``width``): ``ACCEPTED``, ``DISCARDED`` or ``ABSENT``. A node both accepted and
    discarded in one round counts as accepted."""
    columns = range(len(records)) if columns is None else columns
    width = len(records) if width is None else width
    row_of = {node_id: i for i, node_id in enumerate(node_ids)}
    matrix = [[ABSENT] * width for _ in node_ids]
    for col, record in zip(columns, records, strict=True):
        for d in record.discarded:
            if d.node_id in row_of:
                matrix[row_of[d.node_id]][col] = DISCARDED
        for p in record.participants:
            if p.node_id in row_of:
                matrix[row_of[p.node_id]][col] = ACCEPTED
    return matrix


@dataclass(frozen=True)
class FaultSummary:
    """Faults and rejections over a whole log."""

    rounds: int
    nodes: int
    rejections: int
    rejections_by_reason: list[tuple[str, int]]
    rejections_by_node: list[tuple[str, int]]
    rounds_with_rejections: int
    rounds_without_metrics: list[int]
    missing_rounds: list[int]
    restarts: int
    min_participants: int
    mean_participants: float
    dropped_nodes: list[tuple[str, int]]
    slowest_rounds: list[tuple[int, float]]


def fault_summary(records: Sequence[RoundRecord], *, dropout_rounds: int = 5) -> FaultSummary:
    """Count rejections, gaps, restarts and nodes that stopped appearing.

    A node *dropped out* when its last appearance is more than ``dropout_rounds``
    records before the end of the log.
    """
    tallies = tally_nodes(records)
    reasons: Counter[str] = Counter()
    for t in tallies.values():
        reasons.update(t.rejected_by_reason)
    by_node = sorted(
        ((t.node_id, t.rejected) for t in tallies.values() if t.rejected),
        key=lambda item: (-item[1], natural_key(item[0])),
    )
    last_index = {
        nid: i
        for i, r in enumerate(records)
        for nid in {*r.node_ids, *(d.node_id for d in r.discarded)}
    }
    dropped = [
        (nid, tallies[nid].last_round or 0)
        for nid in sorted_nodes(last_index)
        if len(records) - 1 - last_index[nid] > dropout_rounds
    ]
    counts = [len(r.participants) for r in records]
    slowest = sorted(((r.round, round_duration(r)) for r in records), key=lambda x: -x[1])
    return FaultSummary(
        rounds=len(records),
        nodes=len(tallies),
        rejections=sum(reasons.values()),
        rejections_by_reason=sorted(reasons.items(), key=lambda item: (-item[1], item[0])),
        rejections_by_node=by_node,
        rounds_with_rejections=sum(1 for r in records if r.discarded),
        rounds_without_metrics=[r.round for r in records if r.global_loss is None],
        missing_rounds=_missing_rounds(records),
        restarts=sum(1 for a, b in itertools.pairwise(records) if b.round <= a.round),
        min_participants=min(counts, default=0),
        mean_participants=sum(counts) / len(counts) if counts else 0.0,
        dropped_nodes=dropped,
        slowest_rounds=slowest[:5],
    )


def _missing_rounds(records: Sequence[RoundRecord]) -> list[int]:
    missing: list[int] = []
    for a, b in itertools.pairwise(records):
        if b.round > a.round + 1:
            missing.extend(range(a.round + 1, b.round))
    return missing
