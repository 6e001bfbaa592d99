"""The dashboard's memory of the aggregation log, and the follower that feeds it.

:class:`LogFollower` reads only what was appended since its last poll; it copes with
a log that does not exist yet, a line still being written, and a log that was
replaced or truncated (then it starts over and says so). :class:`DashboardState`
keeps the newest ``history`` records plus per-node tallies over the whole log.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from fl_runtime.cloud.agglog import RoundRecord, iter_log
from fl_runtime.report.stats import NodeTally, tally_nodes


@dataclass(frozen=True)
class DashboardSettings:
    """What the dashboard needs to know; built from the fedge config by the CLI."""

    log_path: Path
    max_weight_age_s: float = 120.0
    aggregation_interval_s: float = 10.0
    sensor_topic_prefix: str = "sensor-data-node-"
    history: int = 5000
    poll_interval_s: float = 0.5
    status_interval_s: float = 5.0
    bridge_idle_s: float = 60.0

    @property
    def stall_after_s(self) -> float:
        return max(3 * self.aggregation_interval_s, self.max_weight_age_s)


@dataclass(frozen=True)
class Poll:
    reset: bool
    records: list[RoundRecord]


class LogFollower:
    """Reads new complete lines of one log file, poll by poll."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._identity: tuple[int, int] | None = None

    def poll(self) -> Poll:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return Poll(False, [])
        identity = (st.st_dev, st.st_ino)
        reset = self._identity is not None and (
            identity != self._identity or st.st_size < self.offset
        )
        self._identity = identity
        if reset:
            self.offset = 0
        if st.st_size == self.offset:
            return Poll(reset, [])
        records: list[RoundRecord] = []
        for end, record in iter_log(self.path, offset=self.offset):
            self.offset = end
            records.append(record)
        return Poll(reset, records)


class DashboardState:
    """Records by ``seq`` (0-based position in the log) and per-node tallies."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.epoch = 0
        self.records: deque[tuple[int, RoundRecord]] = deque(maxlen=settings.history)
        self.tallies: dict[str, NodeTally] = {}
        self.total = 0

    def ingest(self, records: Iterable[RoundRecord]) -> int:
        """Add records in log order; return how many were added."""
        added = 0
        for record in records:
            self.records.append((self.total, record))
            tally_nodes([record], self.tallies)
            self.total += 1
            added += 1
        return added

    def reset(self) -> None:
        """Forget everything: the log was replaced or truncated."""
        self.epoch += 1
        self.records.clear()
        self.tallies.clear()
        self.total = 0

    @property
    def latest(self) -> RoundRecord | None:
        return self.records[-1][1] if self.records else None

    def after(self, seq: int, limit: int) -> list[tuple[int, RoundRecord]]:
        """Up to ``limit`` records with a seq above ``seq``, oldest first."""
        if not self.records or self.records[-1][0] <= seq:
            return []
        first = self.records[0][0]
        start = max(0, seq + 1 - first)
        return list(islice(self.records, start, start + limit))

    def newest(self, limit: int) -> list[tuple[int, RoundRecord]]:
        """The newest ``limit`` records, oldest first."""
        return list(islice(self.records, max(0, len(self.records) - limit), None))
