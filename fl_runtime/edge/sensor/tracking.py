"""What happened to each reading: counts, Prometheus metrics and the ids file."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from fl_runtime.service.common import event


@dataclass(frozen=True)
class SensorMetrics:
    registry: CollectorRegistry
    published: Counter
    confirmed: Counter
    errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> SensorMetrics:
        reg = REGISTRY if registry is None else registry
        return cls(
            registry=reg,
            published=Counter(
                "fl_sensor_published", "Readings handed to the broker.", registry=reg
            ),
            confirmed=Counter(
                "fl_sensor_confirmed", "Readings the broker acknowledged.", registry=reg
            ),
            errors=Counter(
                "fl_sensor_errors", "Readings the broker refused or failed.", registry=reg
            ),
        )


class Tracker:
    """Counts outcomes (thread-safe) and appends confirmed ids to the ids file."""

    def __init__(self, metrics: SensorMetrics, ids_file: Path | None, log: logging.Logger) -> None:
        self._metrics = metrics
        self._log = log
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if ids_file is not None:
            ids_file.parent.mkdir(parents=True, exist_ok=True)
            self._file = ids_file.open("a", encoding="utf-8")
        self.published = 0
        self.confirmed = 0
        self.errors = 0

    def sent(self) -> None:
        with self._lock:
            self.published += 1
        self._metrics.published.inc()

    def confirm(self, message_id: str) -> None:
        with self._lock:
            self.confirmed += 1
            if self._file is not None:
                self._file.write(message_id + "\n")
        self._metrics.confirmed.inc()

    def fail(self, message_id: str, why: str) -> None:
        with self._lock:
            self.errors += 1
        self._metrics.errors.inc()
        event(self._log, "reading not accepted", logging.WARNING, message_id=message_id, error=why)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @property
    def pending(self) -> int:
        return self.published - self.confirmed - self.errors
