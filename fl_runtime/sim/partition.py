"""Splitting a user's labelled data across simulated nodes, and loading it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fl_runtime.errors import ValidationError

Partition = tuple[np.ndarray, np.ndarray]
LABEL_COLUMNS = ("anomaly", "label", "y", "target")


def iid(x: np.ndarray, y: np.ndarray, nodes: int, rng: np.random.Generator) -> list[Partition]:
    """Shuffle and deal the rows out evenly."""
    order = rng.permutation(len(y))
    return [(x[idx], y[idx]) for idx in np.array_split(order, nodes)]


def dirichlet(
    x: np.ndarray, y: np.ndarray, nodes: int, rng: np.random.Generator, alpha: float = 0.5
) -> list[Partition]:
    """Label-skewed split: each class is shared out by Dirichlet(alpha) proportions.
    Small alpha gives very uneven label mixes; every node gets at least one row."""
    if alpha <= 0:
        raise ValueError("alpha must be > 0")
    buckets: list[list[int]] = [[] for _ in range(nodes)]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        shares = rng.dirichlet(np.full(nodes, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for node, part in enumerate(np.split(idx, cuts)):
            buckets[node].extend(part.tolist())
    for node in range(nodes):  # no node may be empty
        if not buckets[node]:
            donor = max(range(nodes), key=lambda k: len(buckets[k]))
            buckets[node].append(buckets[donor].pop())
    return [(x[np.array(b)], y[np.array(b)]) for b in buckets]


def load_labelled(path: str | Path) -> Partition:
    """``(X, y)`` from an ``.npz`` (arrays ``X`` and ``y``) or a CSV with a header
    whose label column is one of :data:`LABEL_COLUMNS` (else the last column)."""
    p = Path(path)
    if p.suffix == ".npz":
        with np.load(p) as data:
            if "X" not in data or "y" not in data:
                raise ValidationError("missing-field", f"{p} needs arrays 'X' and 'y'")
            x, y = np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"])
    elif p.suffix == ".csv":
        x, y = _load_csv(p)
    else:
        raise ValidationError("bad-format", f"{p}: use a .npz or .csv file")
    return _check(x, y, p)


def _load_csv(p: Path) -> Partition:
    with p.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise ValidationError("bad-format", f"{p}: needs a header and at least one row")
    header = [h.strip().lower() for h in rows[0]]
    label = next((header.index(c) for c in LABEL_COLUMNS if c in header), len(header) - 1)
    try:
        table = np.array([[float(v) for v in row] for row in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise ValidationError("wrong-type", f"{p}: non-numeric value ({exc})") from None
    return np.delete(table, label, axis=1), table[:, label]


def _check(x: np.ndarray, y: np.ndarray, p: Path) -> Partition:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValidationError("wrong-dimension", f"{p}: X must be (n, d) and y (n,)")
    if not np.isfinite(x).all():
        raise ValidationError("not-finite", f"{p}: X contains NaN or inf")
    if not np.isin(y, (0, 1)).all():
        raise ValidationError("out-of-range", f"{p}: labels must be 0 or 1")
    return x, y.astype(np.int8)


# Labelled data bundled with scikit-learn (read from its package, no download), made
# binary with the rarer or harder class as the "anomaly": name -> (loader, positive class).
DATASETS = {
    "breast-cancer": ("load_breast_cancer", 0),  # malignant (212 of 569)
    "wine": ("load_wine", 2),  # cultivar 3 against the other two (48 of 178)
    "digits": ("load_digits", 8),  # the digit 8 against the rest (174 of 1797)
    "iris": ("load_iris", 2),  # virginica against the other two (50 of 150)
}


def load_dataset(name: str) -> Partition:
    """``(X, y)`` of a bundled scikit-learn dataset, one class against the rest."""
    if name not in DATASETS:
        raise ValidationError(
            "out-of-range", f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        )
    try:
        from sklearn import datasets
    except ImportError:
        raise ValidationError(
            "missing-dependency", "--dataset needs scikit-learn (pip install scikit-learn)"
        ) from None
    loader, positive = DATASETS[name]
    bunch = getattr(datasets, loader)()
    x = np.asarray(bunch.data, dtype=np.float64)
    return x, (np.asarray(bunch.target) == positive).astype(np.int8)


def simulator_partitions(
    nodes: int, samples_per_node: int, seed: int, anomaly_rate: float | None = None
) -> list[Partition]:
    """The default non-IID federation: node k watches machine k of the simulator."""
    from fl_runtime.edge.machines import node_dataset

    return [node_dataset(str(k), samples_per_node, seed, anomaly_rate) for k in range(1, nodes + 1)]
