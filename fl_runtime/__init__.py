"""fedge's federated-learning runtime: the code every tier runs.

The public API is re-exported here; everything else is an implementation detail
of its module. ``tests/unit/test_public_api.py`` pins this list.
"""

from fl_runtime.cloud.agglog import AggregationLog, RoundRecord, read_log
from fl_runtime.config import Config, load_config
from fl_runtime.core.features import FEATURES, N_FEATURES, WEIGHT_DIM
from fl_runtime.core.messages import (
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
from fl_runtime.core.model import Confusion, LogisticRegressionModel
from fl_runtime.core.scaling import FeatureStats, Scaler
from fl_runtime.core.strategy import (
    BatchAggregator,
    FedBuffAggregator,
    coordinate_median,
    fedavg,
    trimmed_mean,
)
from fl_runtime.errors import ArtifactError, ConfigError, FLError, ServiceError, ValidationError
from fl_runtime.sim.comparison import compare
from fl_runtime.sim.federation import run_federated

__all__ = [
    "FEATURES",
    "N_FEATURES",
    "WEIGHT_DIM",
    "AggregationLog",
    "ArtifactError",
    "BatchAggregator",
    "Config",
    "ConfigError",
    "Confusion",
    "FLError",
    "FeatureStats",
    "FedBuffAggregator",
    "GlobalModel",
    "LogisticRegressionModel",
    "RoundRecord",
    "Scaler",
    "SensorReading",
    "ServiceError",
    "ValidationError",
    "WeightUpdate",
    "compare",
    "coordinate_median",
    "decode_global",
    "decode_reading",
    "decode_update",
    "encode_global",
    "encode_reading",
    "encode_update",
    "fedavg",
    "load_config",
    "read_log",
    "run_federated",
    "trimmed_mean",
]
