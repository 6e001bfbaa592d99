"""Alert state of one device: raised after k of the last m readings were over the
threshold, cleared after a quiet period.

The quiet period is measured two ways. By *reading time*: a reading that comes
ALERT_CLEAR_SECONDS after the device's last over-threshold reading clears the alert
(right also for a backlog replayed after a restart). By *wall clock*: :meth:`tick`
clears the alert of a device that went silent, ALERT_CLEAR_SECONDS after the scorer
last saw an over-threshold reading from it. Each raise gets a new alert id, and its
clear reuses it, so a consumer pairs them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from fl_runtime.core.detections import CLEARED, RAISED


@dataclass(frozen=True)
class Scored:
    """What the tracker needs to know of one scored reading."""

    message_id: str
    score: float
    over: bool
    reading_time: float


@dataclass(frozen=True)
class Change:
    """An alert state change, before it becomes an AlertChange record."""

    alert_id: str
    state: str  # RAISED or CLEARED
    trigger: Scored  # the reading that changed the state (the last one seen, on a tick)
    over: int
    window: int


class AlertTracker:
    """k-of-m raise, quiet-period clear, for one device."""

    def __init__(self, *, k: int, m: int, clear_seconds: float, new_id: Callable[[], str]) -> None:
        if not 1 <= k <= m:
            raise ValueError(f"need 1 <= k <= m, got k={k}, m={m}")
        self.k, self.m, self.clear_seconds = k, m, clear_seconds
        self._new_id = new_id
        self._window: deque[bool] = deque(maxlen=m)
        self.alert_id: str | None = None
        self._last: Scored | None = None
        self._last_over_reading = 0.0
        self._last_over_wall = 0.0

    @property
    def active(self) -> bool:
        return self.alert_id is not None

    @property
    def over(self) -> int:
        return sum(self._window)

    def restore(self, alert_id: str, last: Scored, wall: float) -> None:
        """Resume an alert raised before a restart; its quiet period starts at ``wall``."""
        self.alert_id = alert_id
        self._last = last
        self._last_over_reading = last.reading_time
        self._last_over_wall = wall

    def observe(self, scored: Scored, wall: float) -> Change | None:
        """Add one scored reading, received at wall-clock ``wall``; the change it made."""
        self._window.append(scored.over)
        self._last = scored
        if scored.over:
            self._last_over_reading = max(self._last_over_reading, scored.reading_time)
            self._last_over_wall = wall
        if not self.active:
            if self.over >= self.k:
                self.alert_id = self._new_id()
                return self._change(RAISED, scored)
            return None
        quiet = scored.reading_time - self._last_over_reading
        if not scored.over and quiet >= self.clear_seconds:
            return self._clear(scored)
        return None

    def tick(self, wall: float) -> Change | None:
        """Clear the alert of a device that has been quiet by the wall clock."""
        if not self.active or self._last is None:
            return None
        if wall - self._last_over_wall < self.clear_seconds:
            return None
        return self._clear(self._last)

    def _clear(self, trigger: Scored) -> Change:
        change = self._change(CLEARED, trigger)
        self.alert_id = None
        self._window.clear()
        return change

    def _change(self, state: str, trigger: Scored) -> Change:
        assert self.alert_id is not None
        return Change(self.alert_id, state, trigger, self.over, self.m)
