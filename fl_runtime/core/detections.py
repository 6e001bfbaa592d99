"""Versioned records of the ``anomalies`` topic: detections, alert changes, score summaries.

The fog host's scorer writes three kinds of record, each a JSON object with a
``schema`` field, keyed by device id:

* :class:`Detection` (``fedge.detection.v1``): one per reading whose score is over
  the threshold: the reading's message id, device, node, score, threshold, model
  version, reading time and detection time (and the reading's label, when it had one,
  so precision can be measured offline).
* :class:`AlertChange` (``fedge.alert.v1``): a device's alert state changed:
  ``raised`` after k of the last m readings were over the threshold, ``cleared`` after
  a quiet period. The same record goes to the fog host's own Mosquitto.
* :class:`ScoreSummary` (``fedge.score_summary.v1``): per device and interval, how
  many readings were scored, their mean and maximum score, how many were over the
  threshold, and confusion counts of the labelled ones. It feeds the dashboard's
  sparklines and the report's detection quality, and it carries no raw reading.

:func:`decode_anomaly_record` accepts raw bytes and returns one of the three, or
raises :class:`~fl_runtime.errors.ValidationError` with a reason code, like the
decoders in :mod:`fl_runtime.core.messages`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from fl_runtime.core.messages import (
    _ID,
    _NODE,
    TIMESTAMP_RANGE,
    _check_fields,
    _dump,
    _Field,
    _integer,
    _nullable,
    _number,
    _parse,
    _string,
)

DETECTION_SCHEMA = "fedge.detection.v1"
ALERT_SCHEMA = "fedge.alert.v1"
SCORE_SUMMARY_SCHEMA = "fedge.score_summary.v1"
ANOMALY_SCHEMAS = (DETECTION_SCHEMA, ALERT_SCHEMA, SCORE_SUMMARY_SCHEMA)
MAX_ANOMALY_RECORD_BYTES = 8 * 1024
RAISED = "raised"
CLEARED = "cleared"

_ANY = re.compile(r".*")
_STATE = re.compile(rf"^({RAISED}|{CLEARED})$")
_SCORE = _number(0.0, 1.0)
_TIME = _number(*TIMESTAMP_RANGE)
_VERSION = _integer(0, 2**63 - 1)
_COUNT = _integer(0, 2**53)


@dataclass(frozen=True)
class Detection:
    """One reading scored over the threshold."""

    message_id: str
    device_id: str
    node_id: str
    score: float
    threshold: float
    model_version: int
    reading_time: float
    detection_time: float
    anomaly: int | None = None  # the reading's label, when it carried one

    def to_dict(self) -> dict[str, Any]:
        return {"schema": DETECTION_SCHEMA, **asdict(self)}


@dataclass(frozen=True)
class AlertChange:
    """A device's alert was raised or cleared."""

    alert_id: str  # the same id on the raise and on its clear
    state: str  # RAISED or CLEARED
    device_id: str
    node_id: str
    message_id: str  # the reading that changed the state
    score: float
    threshold: float
    model_version: int
    reading_time: float
    detection_time: float
    over: int  # readings over the threshold among the last ``window``
    window: int

    def to_dict(self) -> dict[str, Any]:
        return {"schema": ALERT_SCHEMA, **asdict(self)}


@dataclass(frozen=True)
class ScoreSummary:
    """Scores of one device over one interval; no raw reading in it."""

    device_id: str
    node_id: str
    window_start: float
    window_end: float
    n: int
    mean_score: float
    max_score: float
    over: int
    threshold: float
    model_version: int
    alert_active: bool
    tp: int = 0  # labelled readings only, at ``threshold``
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCORE_SUMMARY_SCHEMA, **asdict(self)}


AnomalyRecord = Detection | AlertChange | ScoreSummary


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        from fl_runtime.errors import ValidationError

        raise ValidationError("wrong-type", f"{name} must be true or false")
    return value


_COMMON = (
    _Field("schema", _string(_ANY)),
    _Field("device_id", _string(_ID)),
    _Field("node_id", _string(_NODE)),
)
_DETECTION_FIELDS = (
    *_COMMON,
    _Field("message_id", _string(_ID)),
    _Field("score", _SCORE),
    _Field("threshold", _SCORE),
    _Field("model_version", _VERSION),
    _Field("reading_time", _TIME),
    _Field("detection_time", _TIME),
    _Field("anomaly", _nullable(_integer(0, 1)), optional=True),
)
_ALERT_FIELDS = (
    *_COMMON,
    _Field("alert_id", _string(_ID)),
    _Field("state", _string(_STATE)),
    _Field("message_id", _string(_ID)),
    _Field("score", _SCORE),
    _Field("threshold", _SCORE),
    _Field("model_version", _VERSION),
    _Field("reading_time", _TIME),
    _Field("detection_time", _TIME),
    _Field("over", _COUNT),
    _Field("window", _integer(1, 1_000_000)),
)
_SUMMARY_FIELDS = (
    *_COMMON,
    _Field("window_start", _TIME),
    _Field("window_end", _TIME),
    _Field("n", _COUNT),
    _Field("mean_score", _SCORE),
    _Field("max_score", _SCORE),
    _Field("over", _COUNT),
    _Field("threshold", _SCORE),
    _Field("model_version", _VERSION),
    _Field("alert_active", _boolean),
    _Field("tp", _COUNT, optional=True),
    _Field("fp", _COUNT, optional=True),
    _Field("tn", _COUNT, optional=True),
    _Field("fn", _COUNT, optional=True),
)
_KINDS: dict[str, tuple[tuple[_Field, ...], type[AnomalyRecord]]] = {
    DETECTION_SCHEMA: (_DETECTION_FIELDS, Detection),
    ALERT_SCHEMA: (_ALERT_FIELDS, AlertChange),
    SCORE_SUMMARY_SCHEMA: (_SUMMARY_FIELDS, ScoreSummary),
}


def encode_anomaly_record(record: AnomalyRecord) -> bytes:
    return _dump(record.to_dict())


def decode_anomaly_record(payload: bytes | str) -> AnomalyRecord:
    """A detection, alert change or score summary from raw bytes, validated."""
    doc = _parse(payload, ANOMALY_SCHEMAS, MAX_ANOMALY_RECORD_BYTES)
    fields, kind = _KINDS[str(doc["schema"])]
    checked = _check_fields(doc, fields)
    checked.pop("schema")
    return kind(**checked)
