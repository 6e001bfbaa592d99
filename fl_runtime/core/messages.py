"""Versioned wire schemas: sensor reading, weight update and global model.

Every message is a JSON object with a ``schema`` field naming its type and
version. :func:`decode_reading`, :func:`decode_update` and :func:`decode_global`
accept raw bytes from the network and either return a typed message or raise
:class:`~fl_runtime.errors.ValidationError` with a precise ``reason`` code and a
human detail; they never raise anything else, whatever the bytes.

Reason codes: ``oversized``, ``not-json``, ``not-object``, ``schema``,
``missing-field``, ``extra-field``, ``wrong-type``, ``not-finite``,
``out-of-range``, ``wrong-dimension``, ``bad-format``.

The module reads top to bottom: the field checks the schemas share, then the sensor
reading, the weight update and the global model. It stays one module (about 440
lines) because the three schemas and their checks are versioned together.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from fl_runtime.core.features import FEATURES, N_FEATURES, WEIGHT_DIM
from fl_runtime.core.ids import NODE_ID_PATTERN
from fl_runtime.errors import ValidationError

# Encoders write the newest version of each schema; decoders read every version
# listed in *_SCHEMAS, so a fleet upgrades one host at a time.
READING_SCHEMA = "fedge.sensor_reading.v2"  # v2: the anomaly label is optional
READING_SCHEMAS = ("fedge.sensor_reading.v1", READING_SCHEMA)
# v2: evaluation may carry score histograms; later optional: SCAFFOLD's control_delta
UPDATE_SCHEMA = "fedge.weight_update.v2"
UPDATE_SCHEMAS = ("fedge.weight_update.v1", UPDATE_SCHEMA)
# v2: the learned alert threshold; later optional: fedprox_mu, control, label_counts
GLOBAL_SCHEMA = "fedge.global_model.v2"
GLOBAL_SCHEMAS = ("fedge.global_model.v1", GLOBAL_SCHEMA)
# Optional fields added within a version are left out of the encoded message while
# they are None, so a host that predates them still reads what a newer one sends
# unless the feature is in use (see _drop_unset).
# Score histograms: SCORE_BINS equal bins over [0, 1]; bin i holds scores in
# [i / SCORE_BINS, (i + 1) / SCORE_BINS), the last bin includes 1.0.
SCORE_BINS = 100

MAX_READING_BYTES = 4 * 1024
MAX_UPDATE_BYTES = 256 * 1024
MAX_GLOBAL_BYTES = 256 * 1024

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_NODE = NODE_ID_PATTERN
# Physical plausibility: a reading outside these is a broken sensor, not an anomaly.
READING_RANGES: dict[str, tuple[float, float]] = {
    "vibration_x": (0.0, 500.0),
    "vibration_y": (0.0, 500.0),
    "vibration_z": (0.0, 500.0),
    "temperature": (-60.0, 400.0),
    "pressure": (0.0, 700.0),
}
TIMESTAMP_RANGE = (946684800.0, 4102444800.0)  # 2000-01-01 .. 2100-01-01

T = TypeVar("T")


@dataclass(frozen=True)
class _Field:
    name: str
    check: Callable[[str, Any], Any]
    optional: bool = False


def _fail(reason: str, detail: str) -> ValidationError:
    return ValidationError(reason, detail)


def _string(pattern: re.Pattern[str]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _fail("wrong-type", f"{name} must be a string, got {type(value).__name__}")
        if not pattern.match(value):
            raise _fail("bad-format", f"{name} {value[:80]!r} does not match {pattern.pattern}")
        return value

    return check


def _number(lo: float, hi: float) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail("wrong-type", f"{name} must be a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise _fail("not-finite", f"{name} is {value}")
        if not lo <= number <= hi:
            raise _fail("out-of-range", f"{name}={number:g} is outside [{lo:g}, {hi:g}]")
        return number

    return check


def _integer(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail("wrong-type", f"{name} must be an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise _fail("out-of-range", f"{name}={value} is outside [{lo}, {hi}]")
        return value

    return check


def _vector(
    dim: int, lo: float = -math.inf, hi: float = math.inf
) -> Callable[[str, Any], list[float]]:
    def check(name: str, value: Any) -> list[float]:
        if not isinstance(value, list):
            raise _fail("wrong-type", f"{name} must be a list of numbers")
        if len(value) != dim:
            raise _fail("wrong-dimension", f"{name} has {len(value)} entries, expected {dim}")
        out: list[float] = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise _fail("wrong-type", f"{name}[{i}] must be a number")
            if not math.isfinite(item):
                raise _fail("not-finite", f"{name}[{i}] is {item}")
            if not lo <= item <= hi:
                raise _fail("out-of-range", f"{name}[{i}]={item:g} is outside [{lo:g}, {hi:g}]")
            out.append(float(item))
        return out

    return check


def _counts(dim: int) -> Callable[[str, Any], list[int]]:
    def check(name: str, value: Any) -> list[int]:
        if not isinstance(value, list):
            raise _fail("wrong-type", f"{name} must be a list of counts")
        if len(value) != dim:
            raise _fail("wrong-dimension", f"{name} has {len(value)} entries, expected {dim}")
        item = _integer(0, 2**53)
        return [item(f"{name}[{i}]", v) for i, v in enumerate(value)]

    return check


def _object(fields: tuple[_Field, ...]) -> Callable[[str, Any], dict[str, Any]]:
    def check(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail("wrong-type", f"{name} must be an object")
        return _check_fields(value, fields, prefix=f"{name}.")

    return check


def _nullable(inner: Callable[[str, Any], T]) -> Callable[[str, Any], T | None]:
    def check(name: str, value: Any) -> T | None:
        return None if value is None else inner(name, value)

    return check


def _check_fields(
    doc: Mapping[str, Any], fields: tuple[_Field, ...], prefix: str = ""
) -> dict[str, Any]:
    known = {f.name for f in fields}
    extra = sorted(str(k) for k in doc if k not in known)
    if extra:
        raise _fail("extra-field", f"unexpected field(s) {', '.join(prefix + e for e in extra)}")
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in doc:
            if f.optional:
                continue
            raise _fail("missing-field", f"missing field {prefix}{f.name}")
        out[f.name] = f.check(prefix + f.name, doc[f.name])
    return out


def _parse(payload: bytes | str, schemas: tuple[str, ...], max_bytes: int) -> dict[str, Any]:
    raw = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _fail("wrong-type", f"payload must be bytes, got {type(payload).__name__}")
    if len(raw) > max_bytes:
        raise _fail("oversized", f"payload is {len(raw)} bytes, limit {max_bytes}")
    try:
        doc = json.loads(bytes(raw), parse_constant=_reject_constant)
    except ValidationError:
        raise
    except (ValueError, RecursionError) as exc:
        raise _fail("not-json", f"payload is not JSON: {str(exc)[:120]}") from None
    if not isinstance(doc, dict):
        raise _fail("not-object", f"payload must be a JSON object, got {type(doc).__name__}")
    found = doc.get("schema")
    if found not in schemas:
        expected = " or ".join(repr(s) for s in schemas)
        raise _fail("schema", f"schema is {str(found)[:80]!r}, expected {expected}")
    return doc


def _reject_constant(name: str) -> float:
    raise _fail("not-finite", f"payload contains {name}")


def _drop_unset(doc: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``doc`` without those of ``names`` that are None (fields added to a version)."""
    return {k: v for k, v in doc.items() if not (k in names and v is None)}


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")


_READING_FIELDS = (
    _Field("schema", _string(re.compile(r".*"))),
    _Field("message_id", _string(_ID)),
    _Field("device_id", _string(_ID)),
    _Field("node_id", _string(_NODE)),
    _Field("seq", _integer(0, 2**63 - 1)),
    _Field("timestamp", _number(*TIMESTAMP_RANGE)),
    *(_Field(name, _number(*READING_RANGES[name])) for name in FEATURES),
    _Field("anomaly", _integer(0, 1)),
)
# v2: the label may be absent or null (most production readings carry none).
_READING_FIELDS_V2 = (
    *_READING_FIELDS[:-1],
    _Field("anomaly", _nullable(_integer(0, 1)), optional=True),
)


@dataclass(frozen=True)
class SensorReading:
    message_id: str
    device_id: str
    node_id: str
    seq: int
    timestamp: float
    vibration_x: float
    vibration_y: float
    vibration_z: float
    temperature: float
    pressure: float
    anomaly: int | None = None  # None: unlabelled (scored, never trained on)

    @property
    def labelled(self) -> bool:
        return self.anomaly is not None

    def features(self) -> list[float]:
        return [getattr(self, name) for name in FEATURES]

    def to_dict(self) -> dict[str, Any]:
        doc = {"schema": READING_SCHEMA, **asdict(self)}
        if self.anomaly is None:
            del doc["anomaly"]
        return doc


def encode_reading(reading: SensorReading) -> bytes:
    return _dump(reading.to_dict())


def validate_reading_dict(doc: Mapping[str, Any]) -> SensorReading:
    """Validate an already-parsed reading of any readable version (the Spark job
    parses JSON itself); raises ``schema`` for anything else."""
    schema = doc.get("schema")
    if schema not in READING_SCHEMAS:
        expected = " or ".join(repr(s) for s in READING_SCHEMAS)
        raise _fail("schema", f"schema is {str(schema)[:80]!r}, expected {expected}")
    fields = _READING_FIELDS if schema == READING_SCHEMAS[0] else _READING_FIELDS_V2
    checked = _check_fields(doc, fields)
    checked.pop("schema")
    return SensorReading(**checked)


def decode_reading(payload: bytes | str) -> SensorReading:
    return validate_reading_dict(_parse(payload, READING_SCHEMAS, MAX_READING_BYTES))


_EVAL_FIELDS = (
    _Field("version", _integer(0, 2**63 - 1)),
    _Field("tp", _integer(0, 2**53)),
    _Field("fp", _integer(0, 2**53)),
    _Field("tn", _integer(0, 2**53)),
    _Field("fn", _integer(0, 2**53)),
    _Field("loss_sum", _number(0.0, 1e300)),
    _Field("n", _integer(0, 2**53)),
    # v2: per-class histograms of the global model's scores on the held-out slice
    _Field("score_hist_pos", _nullable(_counts(SCORE_BINS)), optional=True),
    _Field("score_hist_neg", _nullable(_counts(SCORE_BINS)), optional=True),
)
_STATS_FIELDS = (
    _Field("n", _integer(0, 2**53)),
    _Field("mean", _vector(N_FEATURES)),
    _Field("m2", _vector(N_FEATURES, 0.0)),
)
_UPDATE_FIELDS = (
    _Field("schema", _string(re.compile(r".*"))),
    _Field("update_id", _string(_ID)),
    _Field("node_id", _string(_NODE)),
    _Field("base_version", _integer(0, 2**63 - 1)),
    _Field("weights", _vector(WEIGHT_DIM)),
    _Field("n_samples", _integer(1, 2**53)),
    _Field("timestamp", _number(*TIMESTAMP_RANGE)),
    _Field("local_loss", _nullable(_number(0.0, 1e6))),
    _Field("evaluation", _nullable(_object(_EVAL_FIELDS))),
    _Field("feature_stats", _nullable(_object(_STATS_FIELDS))),
    # optional in v2: SCAFFOLD's change of the node's control variate
    _Field("control_delta", _nullable(_vector(WEIGHT_DIM)), optional=True),
)
_UPDATE_ADDED = ("control_delta",)


@dataclass(frozen=True)
class EvalCounts:
    """Counts from evaluating global model ``version`` on a node's held-out slice."""

    version: int
    tp: int
    fp: int
    tn: int
    fn: int
    loss_sum: float
    n: int
    score_hist_pos: list[int] | None = None  # SCORE_BINS counts, labelled anomalies
    score_hist_neg: list[int] | None = None  # SCORE_BINS counts, labelled normal readings


@dataclass(frozen=True)
class FeatureStatsMsg:
    n: int
    mean: list[float]
    m2: list[float]


@dataclass(frozen=True)
class WeightUpdate:
    update_id: str
    node_id: str
    base_version: int
    weights: list[float]
    n_samples: int
    timestamp: float
    local_loss: float | None = None
    evaluation: EvalCounts | None = None
    feature_stats: FeatureStatsMsg | None = None
    # SCAFFOLD: c_i(new) - c_i(old), the change of this node's control variate, for
    # weights on features standardised with the global model's scaler (like
    # GlobalModel.control); None for every other strategy.
    control_delta: list[float] | None = None

    def weights_array(self) -> np.ndarray:
        return np.asarray(self.weights, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return _drop_unset({"schema": UPDATE_SCHEMA, **asdict(self)}, _UPDATE_ADDED)


def encode_update(update: WeightUpdate) -> bytes:
    return _dump(update.to_dict())


def decode_update(payload: bytes | str) -> WeightUpdate:
    checked = _check_fields(_parse(payload, UPDATE_SCHEMAS, MAX_UPDATE_BYTES), _UPDATE_FIELDS)
    checked.pop("schema")
    if checked.get("evaluation") is not None:
        checked["evaluation"] = EvalCounts(**checked["evaluation"])
    if checked.get("feature_stats") is not None:
        checked["feature_stats"] = FeatureStatsMsg(**checked["feature_stats"])
    return WeightUpdate(**checked)


def _node_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 100_000:
        raise _fail("wrong-type", f"{name} must be a list of node ids")
    check = _string(_NODE)
    return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]


_GLOBAL_FIELDS = (
    _Field("schema", _string(re.compile(r".*"))),
    _Field("version", _integer(0, 2**63 - 1)),
    _Field("round", _integer(0, 2**63 - 1)),
    _Field("weights", _vector(WEIGHT_DIM)),
    _Field("scaler_mean", _nullable(_vector(N_FEATURES))),
    _Field("scaler_std", _nullable(_vector(N_FEATURES, 1e-12))),
    _Field("timestamp", _number(*TIMESTAMP_RANGE)),
    _Field("strategy", _string(re.compile(r"^[a-z-]{1,32}$"))),
    _Field("participants", _node_list),
    _Field("n_total", _integer(0, 2**53)),
    # v2: the alert threshold on P(anomaly), learned from federated score histograms
    _Field("threshold", _nullable(_number(0.0, 1.0)), optional=True),
    # optional in v2: what the nodes' local training needs from the strategy
    _Field("fedprox_mu", _nullable(_number(0.0, 100.0)), optional=True),
    _Field("control", _nullable(_vector(WEIGHT_DIM)), optional=True),
    _Field("label_counts", _nullable(_counts(2)), optional=True),
)
_GLOBAL_ADDED = ("fedprox_mu", "control", "label_counts")


@dataclass(frozen=True)
class GlobalModel:
    version: int
    round: int
    weights: list[float]
    timestamp: float
    strategy: str = "fedavg"
    participants: list[str] = field(default_factory=list)
    n_total: int = 0
    scaler_mean: list[float] | None = None
    scaler_std: list[float] | None = None
    threshold: float | None = None  # None: no histograms yet, scorers use their default
    # fedprox: the proximal weight mu every node applies (the aggregator's FEDPROX_MU)
    fedprox_mu: float | None = None
    # scaffold: the server control variate c, for weights on features standardised
    # with this model's scaler (scaler_mean, scaler_std), bias last
    control: list[float] | None = None
    # [n, positives]: labelled readings in the nodes' held-out slices, pooled over
    # every node the aggregator has heard from (CLASS_WEIGHT = balanced uses them)
    label_counts: list[int] | None = None

    def weights_array(self) -> np.ndarray:
        return np.asarray(self.weights, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return _drop_unset({"schema": GLOBAL_SCHEMA, **asdict(self)}, _GLOBAL_ADDED)


def encode_global(model: GlobalModel) -> bytes:
    return _dump(model.to_dict())


def decode_global(payload: bytes | str) -> GlobalModel:
    checked = _check_fields(_parse(payload, GLOBAL_SCHEMAS, MAX_GLOBAL_BYTES), _GLOBAL_FIELDS)
    checked.pop("schema")
    counts = checked.get("label_counts")
    if counts is not None and counts[1] > counts[0]:
        raise _fail("out-of-range", f"label_counts has {counts[1]} positives of {counts[0]}")
    return GlobalModel(**checked)
