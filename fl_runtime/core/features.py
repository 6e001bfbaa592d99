"""The sensor features every tier agrees on, in model order."""

from __future__ import annotations

FEATURES: tuple[str, ...] = (
    "vibration_x",  # mm/s RMS
    "vibration_y",  # mm/s RMS
    "vibration_z",  # mm/s RMS
    "temperature",  # degrees Celsius
    "pressure",  # bar
)
N_FEATURES = len(FEATURES)
WEIGHT_DIM = N_FEATURES + 1  # one weight per feature, then the bias
