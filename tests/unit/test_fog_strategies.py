"""The fog trainer's part of the strategies: FedProx's proximal term and class
weights in local SGD (no Spark, no Kafka: updates go to a list)."""

import time
from pathlib import Path

import numpy as np

from fl_runtime.config import load_config
from fl_runtime.core.messages import GlobalModel, encode_reading
from fl_runtime.core.scaling import Scaler, to_raw
from fl_runtime.edge.machines import NodeSimulator
from fl_runtime.fog.trainer import FogTrainer


def readings(n: int = 600, seed: int = 0) -> list[bytes]:
    sim = NodeSimulator("1", seed=seed, run_id=f"s{seed}")
    return [encode_reading(r) for r in sim.readings(n, 1.8e9, 100.0)]


def trained(
    tmp_path: Path, strategy: str = "fedavg", mu: float | None = None, **env: str
) -> np.ndarray:
    """Weights (standardised) after one batch from a fixed global model, same seed;
    the model runs ``strategy`` with ``mu``, the node's own settings come from ``env``."""
    cfg = load_config(env={"FL_CONFIG": "/dev/null", "FL_CHECKPOINT_DIR": str(tmp_path), **env})
    trainer = FogTrainer(cfg, "1", lambda u: None)
    trainer.rng = np.random.default_rng(0)
    scaler = Scaler(np.array([2.0, 2.0, 1.6, 60.0, 6.0]), np.array([0.5, 0.5, 0.4, 3.0, 0.3]))
    raw = to_raw(np.array([0.1, 0.1, 0.1, 0.2, -0.2, -1.0]), scaler)
    trainer.offer_global(
        GlobalModel(
            1,
            1,
            raw.tolist(),
            time.time(),
            strategy,
            ["1"],
            100,
            scaler.mean.tolist(),
            scaler.std.tolist(),
            fedprox_mu=mu,
        )
    )
    trainer.process_batch(readings(), 0)
    return trainer.weights_std - np.array([0.1, 0.1, 0.1, 0.2, -0.2, -1.0])


def test_fedprox_keeps_local_training_near_the_global_model(tmp_path: Path) -> None:
    # Prepare / Execute: the same batch from the same global model, with and without
    # FedProx; the node's own AGGREGATION_STRATEGY stays fedavg: the model decides
    plain = trained(tmp_path / "a", FL_LOCAL_EPOCHS="5")
    prox = trained(tmp_path / "b", "fedprox", 2.0, FL_LOCAL_EPOCHS="5")
    # an aggregator that predates fedprox_mu: the node's own FEDPROX_MU
    own_mu = trained(tmp_path / "c", "fedprox", None, FL_LOCAL_EPOCHS="5", FL_FEDPROX_MU="2")
    # a node configured for fedprox under a fedavg global model trains plainly
    ignored = trained(
        tmp_path / "d", FL_LOCAL_EPOCHS="5", FL_AGGREGATION_STRATEGY="fedprox", FL_FEDPROX_MU="2"
    )
    # Assert: the proximal term shortens the move away from the global weights
    assert np.linalg.norm(prox) < 0.8 * np.linalg.norm(plain)
    np.testing.assert_allclose(own_mu, prox)
    np.testing.assert_allclose(ignored, plain)


def test_balanced_class_weight_raises_the_bias_on_rare_anomalies(tmp_path: Path) -> None:
    plain = trained(tmp_path / "a")
    balanced = trained(tmp_path / "b", FL_CLASS_WEIGHT="balanced")
    assert balanced[-1] > plain[-1]
