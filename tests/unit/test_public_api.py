import fl_runtime


def test_public_api_is_pinned() -> None:
    assert sorted(fl_runtime.__all__) == sorted(
        [
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
    )
    for name in fl_runtime.__all__:
        assert hasattr(fl_runtime, name)


def test_error_hierarchy() -> None:
    for exc in (
        fl_runtime.ConfigError("k", "m"),
        fl_runtime.ValidationError("r", "d"),
        fl_runtime.ArtifactError("x"),
        fl_runtime.ServiceError("x"),
    ):
        assert isinstance(exc, fl_runtime.FLError)
