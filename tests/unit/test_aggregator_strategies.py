"""The aggregator service builds the configured strategy (no brokers: the Kafka
clients and the start-up read of the latest global model are swapped for fakes)."""

from pathlib import Path

import pytest

from fl_runtime.cloud import aggregator
from fl_runtime.config import load_config
from fl_runtime.core.strategy import FedAdam, FedAvgM


class FakeClient:
    def __init__(self, conf: dict[str, object]) -> None:
        self.conf = conf


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
