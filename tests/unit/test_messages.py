import json
import math
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_runtime.core.messages import (
    MAX_READING_BYTES,
    EvalCounts,
    FeatureStatsMsg,
    GlobalModel,
    SensorReading,
    WeightUpdate,
    decode_global,
    decode_reading,
    decode_update,
    encode_global,
    encode_reading,
    encode_update,
)
from fl_runtime.errors import ValidationError

NOW = time.time()
READING = SensorReading("node1-dev1-s0-0", "node1-dev1", "1", 0, NOW, 2.1, 2.2, 1.5, 61.0, 6.1, 0)
UPDATE = WeightUpdate(
    "u-1",
    "1",
    3,
    [0.1, -0.2, 0.3, 0.4, -0.5, 0.6],
    500,
    NOW,
    0.31,
    EvalCounts(3, 10, 2, 80, 3, 25.5, 95),
    FeatureStatsMsg(500, [2.0, 2.0, 1.5, 60.0, 6.0], [10.0, 11, 9, 300, 5]),
)
GLOBAL = GlobalModel(
    4,
    4,
    [0.0] * 6,
    NOW,
    "fedavg",
    ["1", "2"],
    1000,
    [2.0, 2.0, 1.5, 60.0, 6.0],
    [0.5, 0.5, 0.4, 3.0, 0.3],
)


def test_round_trips() -> None:
    assert decode_reading(encode_reading(READING)) == READING
    assert decode_update(encode_update(UPDATE)) == UPDATE
    assert decode_global(encode_global(GLOBAL)) == GLOBAL
    bare = replace(UPDATE, evaluation=None, feature_stats=None, local_loss=None)
    assert decode_update(encode_update(bare)) == bare


def test_strategy_fields_round_trip_and_are_left_out_while_unset() -> None:
    # Prepare: a SCAFFOLD update and a global model with every optional strategy field
    update = replace(UPDATE, control_delta=[0.01, -0.02, 0.0, 0.5, -1.0, 2.0])
    model = replace(
        GLOBAL,
        fedprox_mu=0.1,
        control=[0.1, 0.0, -0.1, 0.2, 0.0, 0.3],
        label_counts=[1000, 50],
    )
    # Execute / Assert: they round-trip ...
    assert decode_update(encode_update(update)) == update
    assert decode_global(encode_global(model)) == model
    # ... and a message without them has no such keys, so older hosts still read it
    assert "control_delta" not in json.loads(encode_update(UPDATE))
    plain = json.loads(encode_global(GLOBAL))
    assert not {"fedprox_mu", "control", "label_counts"} & plain.keys()


def test_messages_written_before_the_strategy_fields_still_decode() -> None:
    # v2 as an older host writes it: no optional strategy fields; v1 without threshold
    old_global = {k: v for k, v in GLOBAL.to_dict().items() if k != "threshold"}
    decoded = decode_global(mutate(old_global, schema="fedge.global_model.v1"))
    assert decoded.control is None and decoded.fedprox_mu is None
    assert decoded.label_counts is None
    old_update = mutate(UPDATE.to_dict(), schema="fedge.weight_update.v1")
    assert decode_update(old_update).control_delta is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"control": [0.0] * 5}, "wrong-dimension"),
        ({"control": [0.0, 0.0, 0.0, 0.0, 0.0, "x"]}, "wrong-type"),
        ({"fedprox_mu": -0.1}, "out-of-range"),
        ({"label_counts": [10, 11]}, "out-of-range"),
        ({"label_counts": [10]}, "wrong-dimension"),
        ({"label_counts": [10.5, 1]}, "wrong-type"),
    ],
)
def test_bad_strategy_fields_on_a_global_model(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        decode_global(mutate(GLOBAL.to_dict(), **changes))
    assert err.value.reason == reason


def mutate(doc: dict[str, Any], **changes: Any) -> bytes:
    out = dict(doc)
    for key, value in changes.items():
        if value is ...:
            out.pop(key)
        else:
            out[key] = value
    return json.dumps(out).encode()


READING_DOC = READING.to_dict()
UPDATE_DOC = UPDATE.to_dict()


@pytest.mark.parametrize(
    ("payload", "reason", "fragment"),
    [
        (mutate(READING_DOC, temperature=...), "missing-field", "temperature"),
        (mutate(READING_DOC, colour="red"), "extra-field", "colour"),
        (mutate(READING_DOC, pressure="6.1"), "wrong-type", "pressure"),
        (mutate(READING_DOC, anomaly=True), "wrong-type", "anomaly"),
        (mutate(READING_DOC, anomaly=2), "out-of-range", "anomaly"),
        (mutate(READING_DOC, temperature=9000), "out-of-range", "temperature"),
        (mutate(READING_DOC, vibration_x=-1), "out-of-range", "vibration_x"),
        (mutate(READING_DOC, timestamp=12), "out-of-range", "timestamp"),
        (mutate(READING_DOC, device_id="has space"), "bad-format", "device_id"),
        (mutate(READING_DOC, schema="fedge.sensor_reading.v9"), "schema", "v9"),
        (b'{"schema": "fedge.sensor_reading.v1", "temperature": NaN}', "not-finite", "NaN"),
        (
            b'{"schema": "fedge.sensor_reading.v1", "temperature": Infinity}',
            "not-finite",
            "Infinity",
        ),
        (b'{"temperature": 1e999}', "schema", "schema"),
        (b"[1, 2]", "not-object", "list"),
        (b"\xff\xfe\x00", "not-json", "JSON"),
        (b"", "not-json", "JSON"),
        (b" " * (MAX_READING_BYTES + 1), "oversized", "limit"),
    ],
)
def test_bad_readings_get_a_precise_reason(payload: bytes, reason: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        decode_reading(payload)
    assert err.value.reason == reason
    assert fragment in err.value.detail


def test_inf_inside_a_field_is_not_finite() -> None:
    raw = encode_reading(READING).replace(b'"temperature":61.0', b'"temperature":1e999')
    with pytest.raises(ValidationError) as err:
        decode_reading(raw)
    assert err.value.reason == "not-finite"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"weights": [0.1] * 5}, "wrong-dimension"),
        ({"weights": [0.1] * 7}, "wrong-dimension"),
        ({"weights": [0.1, 0.2, "x", 0, 0, 0]}, "wrong-type"),
        ({"n_samples": 0}, "out-of-range"),
        ({"base_version": -1}, "out-of-range"),
        ({"evaluation": {"version": 1, "tp": 1}}, "missing-field"),
        ({"evaluation": "good"}, "wrong-type"),
        ({"feature_stats": {"n": 1, "mean": [0] * 5, "m2": [-1] * 5}}, "out-of-range"),
        ({"update_id": ...}, "missing-field"),
        ({"gradient": [1]}, "extra-field"),
        ({"control_delta": [0.1] * 5}, "wrong-dimension"),
        ({"control_delta": [0.1, 0.2, 0.3, 0.4, 0.5, True]}, "wrong-type"),
    ],
)
def test_bad_updates(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        decode_update(mutate(UPDATE_DOC, **changes))
    assert err.value.reason == reason


def test_nan_weights_are_rejected_by_the_decoder() -> None:
    raw = encode_update(UPDATE).replace(b'"weights":[0.1', b'"weights":[NaN')
    with pytest.raises(ValidationError) as err:
        decode_update(raw)
    assert err.value.reason == "not-finite"


def test_oversized_update_and_bad_global() -> None:
    with pytest.raises(ValidationError) as err:
        decode_update(b"{" + b" " * 300_000 + b"}")
    assert err.value.reason == "oversized"
    with pytest.raises(ValidationError) as err:
        decode_global(mutate(GLOBAL.to_dict(), scaler_std=[0.0] * 5))
    assert err.value.reason == "out-of-range"
    with pytest.raises(ValidationError) as err:
        decode_global(mutate(GLOBAL.to_dict(), participants=["ok", "not ok"]))
    assert err.value.reason == "bad-format"


DECODERS = (decode_reading, decode_update, decode_global)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_bytes_only_ever_raise_validation_error(payload: bytes) -> None:
    for decode in DECODERS:
        with pytest.raises(ValidationError):
            decode(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(READING_DOC) + sorted(UPDATE_DOC) + ["x"]), json_values, max_size=14
    )
)
def test_json_shaped_garbage_only_raises_validation_error(doc: dict[str, Any]) -> None:
    for schema, decode in (
        ("fedge.sensor_reading.v1", decode_reading),
        ("fedge.weight_update.v1", decode_update),
    ):
        body = {**doc, "schema": schema}
        payload = json.dumps(body).encode()
        try:
            decoded = decode(payload)
        except ValidationError:
            continue
        assert decoded is not None  # a valid message only if every field checked out


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 5))
def test_any_single_weight_value_is_accepted_only_if_finite(value: float, index: int) -> None:
    weights = [0.0] * 6
    weights[index] = value
    payload = json.dumps({**UPDATE_DOC, "weights": weights}).encode()
    if math.isfinite(value):
        assert decode_update(payload).weights[index] == value
    else:
        with pytest.raises(ValidationError):
            decode_update(payload)
