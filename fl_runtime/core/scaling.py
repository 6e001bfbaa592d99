"""Federated feature standardisation without sharing raw data.

Each node summarises its features as ``(n, mean, M2)`` (M2 is the sum of squared
deviations). Summaries merge exactly with Chan's parallel formula, so the
aggregator obtains the pooled mean and variance of every node's data, bit for bit
what a central scaler would compute, while only three small vectors leave a node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fl_runtime.core.features import N_FEATURES

MIN_STD = 1e-6


@dataclass(frozen=True)
class FeatureStats:
    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, dim: int = N_FEATURES) -> FeatureStats:
        return cls(0, np.zeros(dim), np.zeros(dim))

    @classmethod
    def of(cls, x: np.ndarray) -> FeatureStats:
        if x.shape[0] == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        return cls(int(x.shape[0]), mean, ((x - mean) ** 2).sum(axis=0))

    def merge(self, other: FeatureStats) -> FeatureStats:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return FeatureStats(n, mean, m2)

    @property
    def variance(self) -> np.ndarray:
        return self.m2 / max(self.n, 1)


def merge_all(stats: Iterable[FeatureStats], dim: int = N_FEATURES) -> FeatureStats:
    total = FeatureStats.empty(dim)
    for s in stats:
        total = total.merge(s)
    return total


@dataclass(frozen=True)
class Scaler:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_stats(cls, stats: FeatureStats) -> Scaler:
        return cls(stats.mean.copy(), np.maximum(np.sqrt(stats.variance), MIN_STD))

    @classmethod
    def identity(cls, dim: int = N_FEATURES) -> Scaler:
        return cls(np.zeros(dim), np.ones(dim))

    def transform(self, x: np.ndarray) -> np.ndarray:
        result: np.ndarray = (x - self.mean) / self.std
        return result


def to_raw(weights: np.ndarray, scaler: Scaler) -> np.ndarray:
    """Weights for standardised features -> the same linear model on raw features.

    ``w . (x - m) / s + b == (w / s) . x + (b - sum(w * m / s))``. Streaming nodes
    publish raw-space weights, so averaging them is exact even while nodes still
    standardise with slightly different scalers (averaging commutes with this
    affine map when they share one)."""
    coef = weights[:-1] / scaler.std
    return np.append(coef, weights[-1] - float(coef @ scaler.mean))


def from_raw(weights: np.ndarray, scaler: Scaler) -> np.ndarray:
    """The inverse of :func:`to_raw`: raw-space weights -> standardised-space weights."""
    coef = weights[:-1]
    return np.append(coef * scaler.std, weights[-1] + float(coef @ scaler.mean))
