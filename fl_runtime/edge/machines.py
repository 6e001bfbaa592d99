"""Simulated industrial machines: vibration, temperature and pressure with faults.

Each fog node watches a different machine (its :class:`MachineProfile`): its own
baselines, noise and anomaly rate, and a dominant fault type. That makes the
federation non-IID in a way FL must overcome: a node that only ever sees bearing
wear learns to watch vibration and misses the pressure leaks its neighbours see.

Faults are physically motivated and of random severity, so mild ones hide in the
noise and the task is not trivially separable:

* ``bearing_wear``: vibration rises on all axes, and friction heats the bearing.
* ``imbalance``: radial (x, y) vibration rises at the rotation frequency.
* ``overheating``: a cooling failure raises temperature.
* ``pressure_leak``: a seal leaks and line pressure drops.
* ``cavitation``: vapour bubbles collapse, axial (z) vibration rises, pressure dips.

Output is deterministic for a given ``(node_id, seed)``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fl_runtime.core.features import N_FEATURES
from fl_runtime.core.messages import SensorReading

FAULTS: tuple[str, ...] = (
    "bearing_wear",
    "imbalance",
    "overheating",
    "pressure_leak",
    "cavitation",
)
DEFAULT_ANOMALY_RATE = 0.10
# Fault severity ~ Beta(2, 1): most faults are clear, a tail of mild ones hides in noise.
_BETA_A, _BETA_B = 2.0, 1.0
# Effect of a fault at full severity on (vib_x, vib_y, vib_z, temperature, pressure).
_FAULT_EFFECT = np.array(
    [
        [3.6, 3.6, 3.6, 14.0, 0.0],  # bearing_wear
        [6.0, 6.0, 0.0, 2.0, 0.0],  # imbalance
        [0.0, 0.0, 0.0, 28.0, 0.0],  # overheating
        [0.0, 0.0, 0.0, 0.0, -3.2],  # pressure_leak
        [0.0, 0.0, 5.2, 0.0, -1.4],  # cavitation
    ]
)


def node_index(node_id: str) -> int:
    """A stable small integer for a node id: ``"3"`` is 3, other ids are hashed."""
    if node_id.isdigit():
        return int(node_id)
    return int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:4], "big") % 1000 + 1


@dataclass(frozen=True)
class MachineProfile:
    """One machine's normal behaviour and fault mix."""

    baseline: np.ndarray  # (N_FEATURES,)
    noise: np.ndarray  # (N_FEATURES,) standard deviations
    anomaly_rate: float
    fault_mix: np.ndarray  # probabilities over FAULTS

    @classmethod
    def for_node(
        cls, node_id: str, seed: int = 0, anomaly_rate: float | None = None
    ) -> MachineProfile:
        k = node_index(node_id)
        rng = np.random.default_rng([seed, k, 0xFED6E])
        baseline = np.array([2.2, 2.2, 1.6, 60.0, 6.0]) + rng.uniform(-1, 1, N_FEATURES) * np.array(
            [0.4, 0.4, 0.3, 4.0, 0.3]
        )
        noise = np.array([0.45, 0.45, 0.4, 2.6, 0.32]) * rng.uniform(0.9, 1.1, N_FEATURES)
        dominant = (k - 1) % len(FAULTS)
        mix = np.full(len(FAULTS), 0.1 / (len(FAULTS) - 1))
        mix[dominant] = 0.9
        rate = (
            DEFAULT_ANOMALY_RATE * rng.uniform(0.7, 1.3) if anomaly_rate is None else anomaly_rate
        )
        return cls(baseline, noise, float(rate), mix)


def generate(
    profile: MachineProfile, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` readings: features ``(n, 5)``, labels ``(n,)`` and fault index
    (-1 for normal). Vectorised, so millions of rows take well under a second."""
    x = profile.baseline + rng.standard_normal((n, N_FEATURES)) * profile.noise
    y = (rng.random(n) < profile.anomaly_rate).astype(np.int8)
    fault = np.full(n, -1, dtype=np.int8)
    idx = np.flatnonzero(y)
    if idx.size:
        kinds = rng.choice(len(FAULTS), size=idx.size, p=profile.fault_mix)
        severity = rng.beta(_BETA_A, _BETA_B, size=idx.size)[:, None]
        jitter = rng.uniform(0.7, 1.3, size=(idx.size, N_FEATURES))
        x[idx] += _FAULT_EFFECT[kinds] * severity * jitter
        fault[idx] = kinds
    np.clip(x, 0.0, None, out=x)  # an RMS or a pressure is never negative
    return x, y, fault


def node_dataset(
    node_id: str, n: int, seed: int = 0, anomaly_rate: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` for one node, deterministic in ``(node_id, seed)``."""
    profile = MachineProfile.for_node(node_id, seed, anomaly_rate)
    rng = np.random.default_rng([seed, node_index(node_id), 1])
    x, y, _ = generate(profile, n, rng)
    return x, y


class NodeSimulator:
    """Streams :class:`SensorReading` objects for the devices of one fog node.

    ``run_id`` makes message ids unique across restarts of a live sensor; the
    default derives it from the seed, so a run is reproducible end to end.
    """

    def __init__(
        self,
        node_id: str,
        *,
        devices: int = 2,
        seed: int = 0,
        anomaly_rate: float | None = None,
        run_id: str | None = None,
    ) -> None:
        if devices < 1:
            raise ValueError("devices must be >= 1")
        self.node_id = node_id
        self.profile = MachineProfile.for_node(node_id, seed, anomaly_rate)
        self.device_ids = [f"node{node_id}-dev{j + 1}" for j in range(devices)]
        self.run_id = run_id or f"s{seed}"
        self._rng = np.random.default_rng([seed, node_index(node_id), 2])
        self._seq = itertools.count()

    def readings(self, count: int, start_ts: float, rate_hz: float) -> Iterator[SensorReading]:
        """``count`` readings with timestamps ``start_ts + i / rate_hz``."""
        x, y, _ = generate(self.profile, count, self._rng)
        for i in range(count):
            seq = next(self._seq)
            device = self.device_ids[seq % len(self.device_ids)]
            row = x[i]
            yield SensorReading(
                message_id=f"{device}-{self.run_id}-{seq}",
                device_id=device,
                node_id=self.node_id,
                seq=seq,
                timestamp=start_ts + i / rate_hz,
                vibration_x=round(float(row[0]), 4),
                vibration_y=round(float(row[1]), 4),
                vibration_z=round(float(row[2]), 4),
                temperature=round(float(row[3]), 3),
                pressure=round(float(row[4]), 4),
                anomaly=int(y[i]),
            )
