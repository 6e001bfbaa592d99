"""Scoring one reading with a global model: P(anomaly) and the threshold in force.

Global models carry weights for *raw* features (:func:`fl_runtime.core.scaling.to_raw`),
so a reading is scored without standardising it, exactly as a fog node evaluates
the global model on its held-out slice. A reading is *over* when its score is at
least the threshold, the same rule as :class:`fl_runtime.core.model.Confusion`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_runtime.core.messages import GlobalModel, SensorReading
from fl_runtime.core.model import predict_proba

# The threshold when neither DETECTION_THRESHOLD nor the global model sets one: a
# model without a learned threshold has only ever been evaluated at 0.5.
FALLBACK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Scorer:
    """A global model ready to score: raw-space weights and the threshold in force."""

    version: int
    weights: np.ndarray
    threshold: float

    @classmethod
    def of(cls, model: GlobalModel, configured_threshold: float) -> Scorer:
        return cls(
            model.version,
            model.weights_array(),
            choose_threshold(configured_threshold, model.threshold),
        )

    def score(self, reading: SensorReading) -> float:
        """P(anomaly) of one reading."""
        x = np.array(reading.features(), dtype=np.float64)
        return float(predict_proba(self.weights, x))

    def is_over(self, score: float) -> bool:
        return score >= self.threshold


def choose_threshold(configured: float, learned: float | None) -> float:
    """DETECTION_THRESHOLD when set (>= 0), else the model's learned one, else the fallback."""
    if configured >= 0:
        return configured
    if learned is not None:
        return learned
    return FALLBACK_THRESHOLD
