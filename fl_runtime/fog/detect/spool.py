"""The scorer's durable spool: records bound for Kafka, and the active alerts.

One SQLite database in WAL mode under DETECTION_STATE_DIR. The scorer appends a
reading's records (and the alert state they change) in one transaction *before* it
acknowledges the reading over MQTT, and deletes a record only after Kafka's delivery
report, so what was detected while Kafka was unreachable, or before a crash, is sent
when the link returns (at least once: a record can be sent twice, never lost).
``synchronous=NORMAL`` makes a commit survive a crash of the scorer; a power cut may
lose the last commits, as Mosquitto's own persistence may.

The spool is bounded (DETECTION_SPOOL_MAX_RECORDS): when it is full the oldest
records are dropped, counted and logged by the caller.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the shipper sends in id order
    key TEXT NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    device_id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    score REAL NOT NULL,
    reading_time REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Spooled:
    id: int
    key: str
    value: bytes


@dataclass(frozen=True)
class ActiveAlert:
    device_id: str
    alert_id: str
    message_id: str
    score: float
    reading_time: float


class Spool:
    """Thread-safe: the MQTT thread appends, the service loop takes and deletes."""

    def __init__(self, path: Path, max_records: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_records = max_records
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._depth = int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    @property
    def depth(self) -> int:
        """Records not yet confirmed by Kafka."""
        return self._depth

    def append(
        self,
        records: Sequence[tuple[str, bytes]],
        *,
        raised: Iterable[ActiveAlert] = (),
        cleared: Iterable[str] = (),
    ) -> int:
        """Store records and alert changes in one transaction; returns how many of
        the oldest records were dropped to stay within the bound."""
        raised, cleared = list(raised), list(cleared)
        if not records and not raised and not cleared:
            return 0
        with self._lock:
            excess = max(self._depth + len(records) - self.max_records, 0)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped = self._drop_oldest(excess) if excess else 0
                self._db.executemany(
                    "INSERT INTO records (key, value) VALUES (?, ?)", list(records)
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?)",
                    [
                        (a.device_id, a.alert_id, a.message_id, a.score, a.reading_time)
                        for a in raised
                    ],
                )
                self._db.executemany(
                    "DELETE FROM alerts WHERE device_id = ?", [(d,) for d in cleared]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += len(records) - dropped
            return dropped

    def _drop_oldest(self, n: int) -> int:
        cur = self._db.execute(
            "DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY id LIMIT ?)", (n,)
        )
        return max(cur.rowcount, 0)

    def take(self, after_id: int, limit: int) -> list[Spooled]:
        """Up to ``limit`` records with an id above ``after_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, value FROM records WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Spooled(int(i), str(k), bytes(v)) for i, k, v in rows]

    def delete(self, ids: Sequence[int]) -> None:
        """Forget records Kafka confirmed (ids already dropped are ignored)."""
        if not ids:
            return
        with self._lock:
            cur = self._db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])
            self._depth -= max(cur.rowcount, 0)

    def active_alerts(self) -> list[ActiveAlert]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM alerts ORDER BY device_id").fetchall()
        return [ActiveAlert(str(d), str(a), str(m), float(s), float(t)) for d, a, m, s, t in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
