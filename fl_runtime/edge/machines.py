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

Two ways to draw readings. :func:`generate` and :func:`node_dataset` (batch
simulation, ``fl simulate``) draw each reading's fault independently.
:class:`NodeSimulator` (the live stream, ``fl sensor``) gives each device fault
*episodes* instead: a fault starts, lasts a few seconds (geometric length, mean
``episode_readings`` readings of that device) with one kind and severity, and
ends, with the same long-run share of anomalous readings as the profile's rate.
It can also hold a device in a persistent fault (:meth:`NodeSimulator.inject_fault`)
whose severity ramps up like wear progressing, and leave a share of readings
unlabelled, as most production readings are.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
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
DEFAULT_EPISODE_READINGS = 20.0  # mean fault episode, in readings of one device
DEFAULT_RAMP_READINGS = 30  # readings an injected fault takes to reach full severity
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


def fault_index(fault: str) -> int:
    """The index of a fault name in :data:`FAULTS`; ValueError for an unknown one."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    return FAULTS.index(fault)


def node_dataset(
    node_id: str, n: int, seed: int = 0, anomaly_rate: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` for one node, deterministic in ``(node_id, seed)``."""
    profile = MachineProfile.for_node(node_id, seed, anomaly_rate)
    rng = np.random.default_rng([seed, node_index(node_id), 1])
    x, y, _ = generate(profile, n, rng)
    return x, y


@dataclass
class _Fault:
    """A fault a device is in: kind, severity, and for an injected one its ramp."""

    kind: int
    severity: float
    ramp_readings: int = 0  # injected faults: readings to full severity (0: at once)
    readings: int = 0  # readings of the device since the fault began

    def effect(self, jitter: np.ndarray) -> np.ndarray:
        self.readings += 1
        ramp = min(1.0, self.readings / self.ramp_readings) if self.ramp_readings else 1.0
        result: np.ndarray = _FAULT_EFFECT[self.kind] * (self.severity * ramp) * jitter
        return result


class NodeSimulator:
    """Streams :class:`SensorReading` objects for the devices of one fog node.

    ``run_id`` makes message ids unique across restarts of a live sensor; the
    default derives it from the seed, so a run is reproducible end to end.
    ``unlabelled_share`` of the readings carry no label (``anomaly`` None). Faults
    come in per-device episodes of mean length ``episode_readings``;
    :meth:`inject_fault` and :meth:`clear_fault` may be called from another thread.
    """

    def __init__(
        self,
        node_id: str,
        *,
        devices: int = 2,
        seed: int = 0,
        anomaly_rate: float | None = None,
        run_id: str | None = None,
        unlabelled_share: float = 0.0,
        episode_readings: float = DEFAULT_EPISODE_READINGS,
    ) -> None:
        if devices < 1:
            raise ValueError("devices must be >= 1")
        if not 0.0 <= unlabelled_share <= 1.0:
            raise ValueError("unlabelled_share must be in [0, 1]")
        if episode_readings < 1.0:
            raise ValueError("episode_readings must be >= 1")
        self.node_id = node_id
        self.profile = MachineProfile.for_node(node_id, seed, anomaly_rate)
        self.device_ids = [f"node{node_id}-dev{j + 1}" for j in range(devices)]
        self.run_id = run_id or f"s{seed}"
        self.unlabelled_share = unlabelled_share
        self._p_end = 1.0 / episode_readings
        rate = self.profile.anomaly_rate
        self._p_start = 1.0 if rate >= 1.0 else min(1.0, rate * self._p_end / (1.0 - rate))
        self._rng = np.random.default_rng([seed, node_index(node_id), 2])
        self._label_rng = np.random.default_rng([seed, node_index(node_id), 3])
        self._seq = itertools.count()
        self._lock = threading.Lock()  # guards _injected (inject_fault from other threads)
        self._episodes: dict[str, _Fault | None] = dict.fromkeys(self.device_ids)
        self._injected: dict[str, _Fault] = {}

    # ----------------------------------------------------------------- injected faults
    def inject_fault(
        self,
        device_id: str,
        fault: str = "bearing_wear",
        *,
        ramp_readings: int = DEFAULT_RAMP_READINGS,
    ) -> None:
        """From the next reading on, ``device_id`` is in ``fault``: its severity ramps
        up to full over ``ramp_readings`` of the device's readings and stays there, and
        every labelled reading of it is labelled 1, until :meth:`clear_fault`."""
        kind = fault_index(fault)
        if device_id not in self._episodes:
            raise ValueError(f"no device {device_id!r} on node {self.node_id}")
        if ramp_readings < 0:
            raise ValueError("ramp_readings must be >= 0")
        with self._lock:
            self._injected[device_id] = _Fault(kind, 1.0, ramp_readings)

    def clear_fault(self, device_id: str) -> None:
        """``device_id`` runs normally again (its random episodes resume)."""
        with self._lock:
            self._injected.pop(device_id, None)

    @property
    def injected_faults(self) -> dict[str, str]:
        """Device id -> the fault injected into it."""
        with self._lock:
            return {d: FAULTS[f.kind] for d, f in self._injected.items()}

    # ----------------------------------------------------------------- the stream
    def readings(self, count: int, start_ts: float, rate_hz: float) -> Iterator[SensorReading]:
        """``count`` readings with timestamps ``start_ts + i / rate_hz``. Each reading's
        fault state is decided when it is drawn, so an injected fault shows at once."""
        normal = self.profile.baseline + self._rng.standard_normal((count, N_FEATURES)) * (
            self.profile.noise
        )
        jitter = self._rng.uniform(0.7, 1.3, size=(count, N_FEATURES))
        u = self._rng.random(count)
        unlabelled = self._label_rng.random(count) < self.unlabelled_share
        clean = np.clip(normal, 0.0, None)  # an RMS or a pressure is never negative
        for i in range(count):
            seq = next(self._seq)
            device = self.device_ids[seq % len(self.device_ids)]
            fault = self._fault_of(device, float(u[i]))
            row = clean[i]
            if fault is not None:
                row = np.clip(normal[i] + fault.effect(jitter[i]), 0.0, None)
            yield self._reading(device, seq, start_ts + i / rate_hz, row, fault, unlabelled[i])

    def _fault_of(self, device: str, u: float) -> _Fault | None:
        """The fault ``device`` is in for its next reading: injected, or its episode,
        which ends (or, when none runs, starts) with probability ``u``."""
        with self._lock:
            injected = self._injected.get(device)
        if injected is not None:
            return injected
        episode = self._episodes[device]
        if episode is not None and u < self._p_end:
            episode = None
        elif episode is None and u < self._p_start:
            kind = int(self._rng.choice(len(FAULTS), p=self.profile.fault_mix))
            episode = _Fault(kind, float(self._rng.beta(_BETA_A, _BETA_B)))
        self._episodes[device] = episode
        return episode

    def _reading(
        self,
        device: str,
        seq: int,
        ts: float,
        row: np.ndarray,
        fault: _Fault | None,
        unlabelled: bool,
    ) -> SensorReading:
        return SensorReading(
            message_id=f"{device}-{self.run_id}-{seq}",
            device_id=device,
            node_id=self.node_id,
            seq=seq,
            timestamp=ts,
            vibration_x=round(float(row[0]), 4),
            vibration_y=round(float(row[1]), 4),
            vibration_z=round(float(row[2]), 4),
            temperature=round(float(row[3]), 3),
            pressure=round(float(row[4]), 4),
            anomaly=None if unlabelled else int(fault is not None),
        )
