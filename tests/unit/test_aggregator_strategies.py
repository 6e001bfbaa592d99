"""The aggregator service builds the configured strategy and publishes what the
nodes need from it (no brokers: the Kafka clients and the start-up read of the
latest global model are swapped for fakes)."""

import time
from pathlib import Path

import numpy as np
import pytest

from fl_runtime.cloud import aggregator
from fl_runtime.config import load_config
from fl_runtime.core.messages import (
    EvalCounts,
    GlobalModel,
    WeightUpdate,
    decode_global,
    encode_update,
)
from fl_runtime.core.strategy import FedAdam, FedAvgM


class FakeClient:
    def __init__(self, conf: dict[str, object]) -> None:
        self.conf = conf

    def commit(self, **kwargs: object) -> None:
        pass


class FakeMessage:
    """A consumed Kafka message: just its value."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b""


@pytest.fixture(autouse=True)
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregator, "Producer", FakeClient)
    monkeypatch.setattr(aggregator, "Consumer", FakeClient)
    monkeypatch.setattr(aggregator, "load_latest_global", lambda cfg: None)


@pytest.mark.parametrize(
    ("mode", "strategy", "kind"),
    [("batch", "fedadam", FedAdam), ("batch", "fedavgm", FedAvgM), ("async", "fedavgm", FedAvgM)],
)
def test_resume_passes_server_optimizer_settings(
    tmp_path: Path, mode: str, strategy: str, kind: type
) -> None:
    # Prepare
    cfg = load_config("/dev/null").replace(
        AGGREGATION_STRATEGY=strategy,
        AGGREGATION_MODE=mode,
        SERVER_LEARNING_RATE=0.3,
        SERVER_MOMENTUM=0.5,
        ADAM_EPSILON=1e-4,
        AGGREGATION_LOG=str(tmp_path / "agg.jsonl"),
    )
    service = aggregator.AggregatorService(cfg)
    # Execute
    service._resume()
    # Assert
    built = service.batch if mode == "batch" else service.fedbuff
    assert built is not None and isinstance(built.optimizer, kind)
    assert built.scaler is not None and built.scaler() is None  # no feature stats yet
    assert built.optimizer.learning_rate == 0.3
    if isinstance(built.optimizer, FedAvgM):
        assert built.optimizer.momentum == 0.5
    else:
        assert built.optimizer.epsilon == 1e-4


def test_resume_runs_fedprox_as_fedavg_on_the_server(tmp_path: Path) -> None:
    cfg = load_config("/dev/null").replace(
        AGGREGATION_STRATEGY="fedprox", AGGREGATION_LOG=str(tmp_path / "agg.jsonl")
    )
    service = aggregator.AggregatorService(cfg)
    service._resume()
    assert service.batch is not None and service.batch.optimizer is None
    assert service.batch.strategy == "fedprox"


class RecordingProducer(FakeClient):
    """Keeps what the service publishes; every message is delivered at once."""

    def __init__(self, conf: dict[str, object]) -> None:
        super().__init__(conf)
        self.sent: list[bytes] = []

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append(value)

    def flush(self, timeout: float = 0) -> int:
        return 0


def latest_model(control: list[float] | None) -> GlobalModel:
    return GlobalModel(7, 7, [0.0] * 6, time.time(), "scaffold", ["1", "2"], 100, control=control)


def test_scaffold_server_variate_round_trips_through_the_global_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a restarted aggregator whose latest global model carries c
    monkeypatch.setattr(aggregator, "Producer", RecordingProducer)
    monkeypatch.setattr(
        aggregator, "load_latest_global", lambda cfg: latest_model([0.1, 0, 0, 0, 0, -0.1])
    )
    cfg = load_config("/dev/null").replace(
        AGGREGATION_STRATEGY="scaffold", AGGREGATION_LOG=str(tmp_path / "agg.jsonl")
    )
    service = aggregator.AggregatorService(cfg)
    service._resume()
    assert service.batch is not None
    # Assert: c and the nodes seen are restored
    np.testing.assert_allclose(service.batch.control, [0.1, 0, 0, 0, 0, -0.1])
    assert service.batch.seen == {"1", "2"} and service.batch.version == 7
    # Execute: one node's update with its control delta, one round
    update = WeightUpdate(
        "u-1", "1", 7, [0.0] * 6, 50, time.time(), control_delta=[0.2, 0, 0, 0, 0, 0.2]
    )
    service._handle(FakeMessage(encode_update(update)))  # type: ignore[arg-type]
    service._batch_round()
    # Assert: c moved by delta / N (N = 2) and went out with the new model
    assert isinstance(service.producer, RecordingProducer)
    published = decode_global(service.producer.sent[-1])
    assert published.version == 8 and published.strategy == "scaffold"
    assert published.control == pytest.approx([0.2, 0, 0, 0, 0, 0.0])
    assert published.fedprox_mu is None


def test_global_model_carries_fedprox_mu_and_pooled_label_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setattr(aggregator, "Producer", RecordingProducer)
    cfg = load_config("/dev/null").replace(
        AGGREGATION_STRATEGY="fedprox",
        FEDPROX_MU=0.5,
        AGGREGATION_LOG=str(tmp_path / "agg.jsonl"),
    )
    service = aggregator.AggregatorService(cfg)
    service._resume()
    # Execute: two nodes report held-out counts (tp + fn positives of n)
    for node, ev in (("1", EvalCounts(0, 3, 1, 90, 6, 9.0, 100)), ("2", None)):
        update = WeightUpdate("u-" + node, node, 0, [0.0] * 6, 50, time.time(), evaluation=ev)
        service._handle(FakeMessage(encode_update(update)))  # type: ignore[arg-type]
    service._batch_round()
    # Assert
    assert isinstance(service.producer, RecordingProducer)
    published = decode_global(service.producer.sent[-1])
    assert published.fedprox_mu == 0.5 and published.control is None
    assert published.label_counts == [100, 9]
