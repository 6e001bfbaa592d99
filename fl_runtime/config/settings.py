"""The settings table: every setting, declared once as a field of its section.

A section is a frozen dataclass named after its TOML table (``[kafka]`` is
:class:`KafkaSection`); each field is a TOML key, typed, and :func:`_s` gives its
canonical name (``LEARNING_RATE``: the ``FL_<NAME>`` override and the docs use it),
its default, its help and what is allowed. :mod:`fl_runtime.config.loader` reads
the table from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from fl_runtime.core.ids import NODE_ID, NODE_ID_PATTERN

__all__ = ["ENV_PREFIX", "NODE_ID_PATTERN", "Setting"]

ENV_PREFIX = "FL_"
_NODE_ID = NODE_ID
_TOPIC = r"^[A-Za-z0-9._-]+$"
_BROKERS = r"^[^\s,]+(,[^\s,]+)*$"

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """The declaration of one configuration key."""

    name: str  # canonical name, e.g. LEARNING_RATE; env override is FL_LEARNING_RATE
    section: str
    key: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.name}"

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        lo = "-inf" if self.minimum is None else _fmt(self.minimum)
        hi = "inf" if self.maximum is None else _fmt(self.maximum)
        if self.kind in (int, float):
            return f"{self.kind.__name__} in [{lo}, {hi}]"
        if self.pattern:
            return f"a string matching {self.pattern}"
        return "a string"


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Declared:
    name: str
    help: str
    between: tuple[float, float] | None
    choices: tuple[str, ...] | None
    pattern: str | None


def _s(
    name: str,
    default: T,
    help: str,
    *,
    between: tuple[float, float] | None = None,
    choices: tuple[str, ...] | None = None,
    pattern: str | None = None,
) -> T:
    """Declare a section field as a setting: canonical name, default, help, what is allowed."""
    declared = Declared(name, help, between, choices, pattern)
    return field(default=default, metadata={"setting": declared})


# The settings table: one field per setting, in the order of `fl config docs`.
# fmt: off
@dataclass(frozen=True)
class KafkaSection:
    """``[kafka]``: brokers, topic names and topic layout."""

    bootstrap_servers: str = _s("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", pattern=_BROKERS,
        help="Kafka bootstrap servers, comma-separated host:port.")
    sensor_topic_prefix: str = _s("SENSOR_TOPIC_PREFIX", "sensor-data-node-", pattern=_TOPIC,
        help="Prefix of each fog node's sensor topic; the node id is appended.")
    weights_topic: str = _s("WEIGHTS_TOPIC", "model-weights", pattern=_TOPIC,
        help="Topic on which fog nodes publish weight updates.")
    global_model_topic: str = _s("GLOBAL_MODEL_TOPIC", "global-model", pattern=_TOPIC,
        help="Compacted topic holding each global model.")
    dead_letter_topic: str = _s("DEAD_LETTER_TOPIC", "fl-dead-letter", pattern=_TOPIC,
        help="Topic for rejected input, with the reason in a header.")
    anomalies_topic: str = _s("ANOMALIES_TOPIC", "anomalies", pattern=_TOPIC,
        help="Topic of detections, alert changes and score summaries from the fog scorers.")
    partitions: int = _s("TOPIC_PARTITIONS", 3, between=(1, 1024),
        help="Partitions of each sensor topic.")
    replication_factor: int = _s("TOPIC_REPLICATION_FACTOR", 1, between=(1, 16),
        help="Replication factor of every topic (3 on a 3-broker cluster).")
    sensor_retention_hours: int = _s("SENSOR_RETENTION_HOURS", 168, between=(1, 87600),
        help="How long raw readings stay on the fog node's topic.")
    security_protocol: str = _s("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        help="Kafka client security protocol.")

    def sensor_topic(self, node_id: str) -> str:
        return f"{self.sensor_topic_prefix}{node_id}"


@dataclass(frozen=True)
class MqttSection:
    """``[mqtt]``: the fog node's Mosquitto broker and the bridge's session."""

    host: str = _s("MQTT_HOST", "localhost",
        help="Mosquitto broker host of this fog node.")
    port: int = _s("MQTT_PORT", 1883, between=(1, 65535),
        help="Mosquitto broker port.")
    topic_template: str = _s("MQTT_TOPIC_TEMPLATE", "factory/node-{node_id}/{device_id}/readings",
        help="MQTT topic a device publishes to; {node_id} and {device_id} are filled in.")
    qos: int = _s("MQTT_QOS", 1, between=(0, 2),
        help="MQTT QoS for readings (1 = at least once).")
    session_expiry_seconds: int = _s("MQTT_SESSION_EXPIRY_SECONDS", 604800, between=(1, 2**32 - 1),
        help="Seconds Mosquitto keeps the bridge's session (and queues readings) while it is away.")
    max_inflight: int = _s("MQTT_MAX_INFLIGHT", 1000, between=(1, 65535),
        help="Unacknowledged MQTT messages the bridge holds at most (back-pressure bound).")
    alert_topic_template: str = _s("MQTT_ALERT_TOPIC_TEMPLATE",
        "factory/node-{node_id}/{device_id}/alerts",
        help="MQTT topic of a device's alert changes on the fog host's broker (retained).")


@dataclass(frozen=True)
class TrainingSection:
    """``[training]``: local training on each fog node."""

    learning_rate: float = _s("LEARNING_RATE", 0.05, between=(1e-6, 10.0),
        help="Local SGD step size.")
    batch_size: int = _s("BATCH_SIZE", 32, between=(1, 1_000_000),
        help="Local mini-batch size.")
    local_epochs: int = _s("LOCAL_EPOCHS", 1, between=(1, 1000),
        help="Passes over the local data per update.")
    l2: float = _s("L2", 1e-4, between=(0.0, 10.0),
        help="L2 regularisation strength.")
    holdout_fraction: float = _s("HOLDOUT_FRACTION", 0.2, between=(0.0, 0.9),
        help="Share of local readings kept for federated evaluation.")
    fedprox_mu: float = _s("FEDPROX_MU", 0.1, between=(0.0, 100.0),
        help="fedprox: weight mu of the proximal term mu/2 * ||w - w_global||^2 in local SGD.")
    class_weight: str = _s("CLASS_WEIGHT", "none", choices=("none", "balanced"),
        help="Class weights in the local loss; balanced: n / (2 * n_class) from label counts.")


@dataclass(frozen=True)
class AggregationSection:
    """``[aggregation]``: how the cloud aggregator runs rounds."""

    interval_seconds: float = _s("AGGREGATION_INTERVAL_SECONDS", 10.0, between=(0.1, 86400.0),
        help="Seconds between batch aggregation rounds.")
    min_nodes: int = _s("MIN_NODES_FOR_AGGREGATION", 1, between=(1, 100_000),
        help="Fresh updates needed before a round runs (partial participation).")
    max_weight_age_seconds: float = _s("MAX_WEIGHT_AGE", 120.0, between=(0.1, 86400.0),
        help="Updates older than this many seconds are discarded as stale.")
    mode: str = _s("AGGREGATION_MODE", "batch", choices=("batch", "async"),
        help="batch: a round every interval; async: FedBuff.")
    strategy: str = _s("AGGREGATION_STRATEGY", "fedavg",
        choices=("fedavg", "median", "trimmed-mean", "fedprox", "fedavgm", "fedadam", "scaffold"),
        help="How updates are combined (async mode: fedavg, fedprox, fedavgm or fedadam).")
    trim_ratio: float = _s("TRIM_RATIO", 0.2, between=(0.0, 0.49),
        help="Share trimmed from each end per coordinate (trimmed-mean).")
    fedbuff_k: int = _s("FEDBUFF_K", 2, between=(1, 10_000),
        help="Async mode: aggregate every K buffered updates.")
    fedbuff_server_lr: float = _s("FEDBUFF_SERVER_LR", 1.0, between=(1e-6, 10.0),
        help="Async mode: server step applied to the buffered mean delta.")
    server_learning_rate: float = _s("SERVER_LEARNING_RATE", 1.0, between=(1e-6, 10.0),
        help="fedavgm, fedadam: the server optimizer's step (replaces FEDBUFF_SERVER_LR in async).")
    server_momentum: float = _s("SERVER_MOMENTUM", 0.9, between=(0.0, 0.999),
        help="fedavgm: momentum of the server's velocity.")
    adam_beta1: float = _s("ADAM_BETA1", 0.9, between=(0.0, 0.999),
        help="fedadam: decay of the server's first moment.")
    adam_beta2: float = _s("ADAM_BETA2", 0.99, between=(0.0, 0.9999),
        help="fedadam: decay of the server's second moment.")
    adam_epsilon: float = _s("ADAM_EPSILON", 1e-3, between=(1e-12, 1.0),
        help="fedadam: added to sqrt(v); bounds the step where updates are tiny.")
    max_staleness_versions: int = _s("MAX_STALENESS_VERSIONS", 20, between=(0, 1_000_000),
        help="Async mode: updates more global versions behind than this are discarded.")
    max_update_norm: float = _s("MAX_UPDATE_NORM", 1e4, between=(1e-3, 1e12),
        help="Updates whose L2 norm exceeds this are rejected as absurd.")
    log_path: str = _s("AGGREGATION_LOG", "/var/lib/fl/aggregation.jsonl",
        help="JSON-lines aggregation log (one object per round).")


@dataclass(frozen=True)
class DetectionSection:
    """``[detection]``: scoring every reading on the fog host and raising alerts."""

    threshold: float = _s("DETECTION_THRESHOLD", -1.0, between=(-1.0, 1.0),
        help="Fixed alert threshold on P(anomaly); -1 uses the one learned with the global model.")
    target_precision: float = _s("DETECTION_TARGET_PRECISION", 0.0, between=(0.0, 1.0),
        help="0 learns the threshold that maximises F1; above 0, the lowest one meeting it.")
    alert_k: int = _s("ALERT_K", 3, between=(1, 10_000),
        help="An alert is raised when ALERT_K of a device's last ALERT_M readings are over.")
    alert_m: int = _s("ALERT_M", 5, between=(1, 10_000),
        help="Window of readings per device for ALERT_K.")
    alert_clear_seconds: float = _s("ALERT_CLEAR_SECONDS", 10.0, between=(0.0, 86400.0),
        help="An alert clears after this many seconds without a reading over the threshold.")
    summary_interval_seconds: float = _s("SCORE_SUMMARY_INTERVAL_SECONDS", 5.0,
        between=(0.1, 86400.0),
        help="Seconds between per-device score summaries on the anomalies topic.")
    state_dir: str = _s("DETECTION_STATE_DIR", "/var/lib/fl/detect",
        help="The scorer's state: last global model and the spool of undelivered records.")
    spool_max_records: int = _s("DETECTION_SPOOL_MAX_RECORDS", 200_000, between=(100, 100_000_000),
        help="Records the scorer keeps for Kafka while it is unreachable; beyond, the oldest drop.")


@dataclass(frozen=True)
class FogSection:
    """``[fog]``: the fog node's identity and its Spark job."""

    node_id: str = _s("NODE_ID", "1", pattern=_NODE_ID,
        help="This fog node's id (also in its topic name).")
    weight_publish_interval_seconds: float = _s("WEIGHT_PUBLISH_INTERVAL_SECONDS", 5.0,
        between=(0.1, 86400.0),
        help="Seconds between weight updates from a fog node.")
    spark_master: str = _s("SPARK_MASTER", "local[*]",
        help="Spark master: local[*] or spark://host:7077.")
    trigger_seconds: float = _s("SPARK_TRIGGER_SECONDS", 2.0, between=(0.1, 3600.0),
        help="Spark micro-batch trigger interval.")
    checkpoint_dir: str = _s("CHECKPOINT_DIR", "/var/lib/fl/checkpoints",
        help="Spark checkpoint and local state directory.")
    spark_jars: str = _s("SPARK_JARS", "",
        help="Comma-separated local jars for Spark (the Kafka connector); empty uses pyspark/jars.")


@dataclass(frozen=True)
class SensorSection:
    """``[sensor]``: the simulated sensors."""

    rate_hz: float = _s("SENSOR_RATE_HZ", 20.0, between=(0.01, 100_000.0),
        help="Readings per second per simulated sensor process.")
    devices: int = _s("SENSOR_DEVICES", 2, between=(1, 10_000),
        help="Simulated devices per sensor process.")
    anomaly_rate: float = _s("ANOMALY_RATE", -1.0, between=(-1.0, 1.0),
        help="Share of anomalous readings; -1 keeps the node's own profile rate.")
    seed: int = _s("SEED", 42, between=(0, 2**32 - 1),
        help="Seed of the simulator.")
    unlabelled_share: float = _s("SENSOR_UNLABELLED_SHARE", 0.8, between=(0.0, 1.0),
        help="Share of simulated readings sent without a label, as most production readings are.")
    fault_episode_readings: float = _s("SENSOR_FAULT_EPISODE_READINGS", 20.0,
        between=(1.0, 1_000_000.0),
        help="Mean length of a simulated device's fault episode, in its readings.")
    control_topic_template: str = _s("SENSOR_CONTROL_TOPIC_TEMPLATE",
        "factory/node-{node_id}/{device_id}/sim-control",
        help="MQTT topic of a simulated device's fault commands (fl sensor inject; retained).")


@dataclass(frozen=True)
class ServiceSection:
    """``[service]``: what every long-running service shares."""

    metrics_port: int = _s("METRICS_PORT", 0, between=(-1, 65535),
        help="Prometheus /metrics port; 0 picks the per-service default, -1 disables.")
    log_level: str = _s("LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="Log level.")
    log_format: str = _s("LOG_FORMAT", "json", choices=("json", "text"),
        help="Log line format.")
# fmt: on
