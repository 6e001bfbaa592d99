"""One configuration file (TOML) with ``FL_*`` environment overrides.

Every setting is declared once in :data:`SETTINGS` with its canonical name (the
seed's upper-case names such as ``LEARNING_RATE``), its place in the TOML file,
its type, its allowed range and a one-line description. The README's
configuration reference is generated from the same table (``fl config docs``).

Precedence, lowest first: built-in default, the TOML file, ``FL_<NAME>``
environment variables. A bad value raises :class:`~fl_runtime.errors.ConfigError`
naming the key and what is allowed; unknown keys in the file are errors too, so
a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fl_runtime.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/fl/fl.toml")
CONFIG_PATH_ENV = "FL_CONFIG"
ENV_PREFIX = "FL_"
# FL_* variables that belong to tools, not to settings (a typo elsewhere is an error).
RESERVED_ENV_PREFIXES = ("FL_CONFIG", "FL_ARTIFACTS_", "FL_DASHBOARD_", "FL_LAB_", "FL_TEST_")
NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


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


def _s(
    name: str, section: str, key: str, kind: type, default: Any, help: str, **kw: Any
) -> Setting:
    return Setting(name, section, key, kind, default, help, **kw)


SETTINGS: tuple[Setting, ...] = (
    # Kafka
    _s(
        "KAFKA_BOOTSTRAP_SERVERS",
        "kafka",
        "bootstrap_servers",
        str,
        "localhost:9092",
        "Kafka bootstrap servers, comma-separated host:port.",
        pattern=r"^[^\s,]+(,[^\s,]+)*$",
    ),
    _s(
        "SENSOR_TOPIC_PREFIX",
        "kafka",
        "sensor_topic_prefix",
        str,
        "sensor-data-node-",
        "Prefix of each fog node's sensor topic; the node id is appended.",
        pattern=r"^[A-Za-z0-9._-]+$",
    ),
    _s(
        "WEIGHTS_TOPIC",
        "kafka",
        "weights_topic",
        str,
        "model-weights",
        "Topic on which fog nodes publish weight updates.",
        pattern=r"^[A-Za-z0-9._-]+$",
    ),
    _s(
        "GLOBAL_MODEL_TOPIC",
        "kafka",
        "global_model_topic",
        str,
        "global-model",
        "Compacted topic holding each global model.",
        pattern=r"^[A-Za-z0-9._-]+$",
    ),
    _s(
        "DEAD_LETTER_TOPIC",
        "kafka",
        "dead_letter_topic",
        str,
        "fl-dead-letter",
        "Topic for rejected input, with the reason in a header.",
        pattern=r"^[A-Za-z0-9._-]+$",
    ),
    _s(
        "TOPIC_PARTITIONS",
        "kafka",
        "partitions",
        int,
        3,
        "Partitions of each sensor topic.",
        minimum=1,
        maximum=1024,
    ),
    _s(
        "TOPIC_REPLICATION_FACTOR",
        "kafka",
        "replication_factor",
        int,
        1,
        "Replication factor of every topic (3 on a 3-broker cluster).",
        minimum=1,
        maximum=16,
    ),
    _s(
        "SENSOR_RETENTION_HOURS",
        "kafka",
        "sensor_retention_hours",
        int,
        168,
        "How long raw readings stay on the fog node's topic.",
        minimum=1,
        maximum=87600,
    ),
    _s(
        "KAFKA_SECURITY_PROTOCOL",
        "kafka",
        "security_protocol",
        str,
        "PLAINTEXT",
        "Kafka client security protocol.",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ),
    # MQTT
    _s("MQTT_HOST", "mqtt", "host", str, "localhost", "Mosquitto broker host of this fog node."),
    _s("MQTT_PORT", "mqtt", "port", int, 1883, "Mosquitto broker port.", minimum=1, maximum=65535),
    _s(
        "MQTT_TOPIC_TEMPLATE",
        "mqtt",
        "topic_template",
        str,
        "factory/node-{node_id}/{device_id}/readings",
        "MQTT topic a device publishes to; {node_id} and {device_id} are filled in.",
    ),
    _s(
        "MQTT_QOS",
        "mqtt",
        "qos",
        int,
        1,
        "MQTT QoS for readings (1 = at least once).",
        minimum=0,
        maximum=2,
    ),
    _s(
        "MQTT_SESSION_EXPIRY_SECONDS",
        "mqtt",
        "session_expiry_seconds",
        int,
        604800,
        "Seconds Mosquitto keeps the bridge's session (and queues readings) while it is away.",
        minimum=1,
        maximum=2**32 - 1,
    ),
    _s(
        "MQTT_MAX_INFLIGHT",
        "mqtt",
        "max_inflight",
        int,
        1000,
        "Unacknowledged MQTT messages the bridge holds at most (back-pressure bound).",
        minimum=1,
        maximum=65535,
    ),
    # Training (fog)
    _s(
        "LEARNING_RATE",
        "training",
        "learning_rate",
        float,
        0.05,
        "Local SGD step size.",
        minimum=1e-6,
        maximum=10.0,
    ),
    _s(
        "BATCH_SIZE",
        "training",
        "batch_size",
        int,
        32,
        "Local mini-batch size.",
        minimum=1,
        maximum=1_000_000,
    ),
    _s(
        "LOCAL_EPOCHS",
        "training",
        "local_epochs",
        int,
        1,
        "Passes over the local data per update.",
        minimum=1,
        maximum=1000,
    ),
    _s(
        "L2",
        "training",
        "l2",
        float,
        1e-4,
        "L2 regularisation strength.",
        minimum=0.0,
        maximum=10.0,
    ),
    _s(
        "HOLDOUT_FRACTION",
        "training",
        "holdout_fraction",
        float,
        0.2,
        "Share of local readings kept for federated evaluation.",
        minimum=0.0,
        maximum=0.9,
    ),
    # Aggregation (cloud)
    _s(
        "AGGREGATION_INTERVAL_SECONDS",
        "aggregation",
        "interval_seconds",
        float,
        10.0,
        "Seconds between batch aggregation rounds.",
        minimum=0.1,
        maximum=86400.0,
    ),
    _s(
        "MIN_NODES_FOR_AGGREGATION",
        "aggregation",
        "min_nodes",
        int,
        1,
        "Fresh updates needed before a round runs (partial participation).",
        minimum=1,
        maximum=100_000,
    ),
    _s(
        "MAX_WEIGHT_AGE",
        "aggregation",
        "max_weight_age_seconds",
        float,
        120.0,
        "Updates older than this many seconds are discarded as stale.",
        minimum=0.1,
        maximum=86400.0,
    ),
    _s(
        "AGGREGATION_MODE",
        "aggregation",
        "mode",
        str,
        "batch",
        "batch: a round every interval; async: FedBuff.",
        choices=("batch", "async"),
    ),
    _s(
        "AGGREGATION_STRATEGY",
        "aggregation",
        "strategy",
        str,
        "fedavg",
        "How updates are combined.",
        choices=("fedavg", "median", "trimmed-mean"),
    ),
    _s(
        "TRIM_RATIO",
        "aggregation",
        "trim_ratio",
        float,
        0.2,
        "Share trimmed from each end per coordinate (trimmed-mean).",
        minimum=0.0,
        maximum=0.49,
    ),
    _s(
        "FEDBUFF_K",
        "aggregation",
        "fedbuff_k",
        int,
        2,
        "Async mode: aggregate every K buffered updates.",
        minimum=1,
        maximum=10_000,
    ),
    _s(
        "FEDBUFF_SERVER_LR",
        "aggregation",
        "fedbuff_server_lr",
        float,
        1.0,
        "Async mode: server step applied to the buffered mean delta.",
        minimum=1e-6,
        maximum=10.0,
    ),
    _s(
        "MAX_STALENESS_VERSIONS",
        "aggregation",
        "max_staleness_versions",
        int,
        20,
        "Async mode: updates more global versions behind than this are discarded.",
        minimum=0,
        maximum=1_000_000,
    ),
    _s(
        "MAX_UPDATE_NORM",
        "aggregation",
        "max_update_norm",
        float,
        1e4,
        "Updates whose L2 norm exceeds this are rejected as absurd.",
        minimum=1e-3,
        maximum=1e12,
    ),
    _s(
        "AGGREGATION_LOG",
        "aggregation",
        "log_path",
        str,
        "/var/lib/fl/aggregation.jsonl",
        "JSON-lines aggregation log (one object per round).",
    ),
    # Fog node
    _s(
        "NODE_ID",
        "fog",
        "node_id",
        str,
        "1",
        "This fog node's id (also in its topic name).",
        pattern=NODE_ID_PATTERN.pattern,
    ),
    _s(
        "WEIGHT_PUBLISH_INTERVAL_SECONDS",
        "fog",
        "weight_publish_interval_seconds",
        float,
        5.0,
        "Seconds between weight updates from a fog node.",
        minimum=0.1,
        maximum=86400.0,
    ),
    _s(
        "SPARK_MASTER",
        "fog",
        "spark_master",
        str,
        "local[*]",
        "Spark master: local[*] or spark://host:7077.",
    ),
    _s(
        "SPARK_TRIGGER_SECONDS",
        "fog",
        "trigger_seconds",
        float,
        2.0,
        "Spark micro-batch trigger interval.",
        minimum=0.1,
        maximum=3600.0,
    ),
    _s(
        "CHECKPOINT_DIR",
        "fog",
        "checkpoint_dir",
        str,
        "/var/lib/fl/checkpoints",
        "Spark checkpoint and local state directory.",
    ),
    _s(
        "SPARK_JARS",
        "fog",
        "spark_jars",
        str,
        "",
        "Comma-separated local jars for Spark (the Kafka connector); empty uses pyspark/jars.",
    ),
    # Sensor simulator
    _s(
        "SENSOR_RATE_HZ",
        "sensor",
        "rate_hz",
        float,
        20.0,
        "Readings per second per simulated sensor process.",
        minimum=0.01,
        maximum=100_000.0,
    ),
    _s(
        "SENSOR_DEVICES",
        "sensor",
        "devices",
        int,
        2,
        "Simulated devices per sensor process.",
        minimum=1,
        maximum=10_000,
    ),
    _s(
        "ANOMALY_RATE",
        "sensor",
        "anomaly_rate",
        float,
        -1.0,
        "Share of anomalous readings; -1 keeps the node's own profile rate.",
        minimum=-1.0,
        maximum=1.0,
    ),
    _s("SEED", "sensor", "seed", int, 42, "Seed of the simulator.", minimum=0, maximum=2**32 - 1),
    # Service plumbing
    _s(
        "METRICS_PORT",
        "service",
        "metrics_port",
        int,
        0,
        "Prometheus /metrics port; 0 picks the per-service default, -1 disables.",
        minimum=-1,
        maximum=65535,
    ),
    _s(
        "LOG_LEVEL",
        "service",
        "log_level",
        str,
        "INFO",
        "Log level.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    _s(
        "LOG_FORMAT",
        "service",
        "log_format",
        str,
        "json",
        "Log line format.",
        choices=("json", "text"),
    ),
)

_BY_PATH = {s.path: s for s in SETTINGS}
_BY_NAME = {s.name: s for s in SETTINGS}
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))


@dataclass(frozen=True)
class Config:
    """Validated settings. Read them by canonical name: ``cfg["LEARNING_RATE"]`` or
    ``cfg.learning_rate``. ``sources`` tells where each value came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __getattr__(self, attr: str) -> Any:
        try:
            return self.values[attr.upper()]
        except KeyError:
            raise AttributeError(attr) from None

    def replace(self, **overrides: Any) -> Config:
        """A copy with some settings changed, validated like any other source."""
        values = dict(self.values)
        sources = dict(self.sources)
        for name, raw in overrides.items():
            setting = _lookup_name(name.upper())
            values[setting.name] = coerce(setting, raw, setting.name)
            sources[setting.name] = "override"
        return Config(values, sources)

    def sensor_topic(self, node_id: str) -> str:
        return f"{self.values['SENSOR_TOPIC_PREFIX']}{node_id}"

    def to_toml(self) -> str:
        """The settings as a TOML document, grouped by section."""
        lines: list[str] = []
        for section in SECTIONS:
            lines.append(f"[{section}]")
            for s in (s for s in SETTINGS if s.section == section):
                lines.append(f"{s.key} = {_toml_value(self.values[s.name])}")
            lines.append("")
        return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _lookup_name(name: str) -> Setting:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(name, "unknown setting") from None


def coerce(setting: Setting, raw: Any, where: str) -> Any:
    """Turn ``raw`` (from TOML or a string from the environment) into a checked value."""
    value = _convert(setting, raw, where)
    if setting.kind in (int, float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(where, f"must be finite, {setting.allowed()}; got {raw!r}")
        if (setting.minimum is not None and value < setting.minimum) or (
            setting.maximum is not None and value > setting.maximum
        ):
            raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}")
    if setting.choices and value not in setting.choices:
        raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}")
    if setting.pattern and not re.fullmatch(setting.pattern, value):
        raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}")
    return value


def _convert(setting: Setting, raw: Any, where: str) -> Any:
    kind = setting.kind
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
                return raw.lower() in ("true", "1", "yes")
            raise ValueError
        if kind is int:
            if isinstance(raw, (bool, float)):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError):
        raise ConfigError(where, f"must be {setting.allowed()}; got {raw!r}") from None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_file: bool = False,
) -> Config:
    """Load defaults, then the TOML file, then ``FL_*`` overrides, validating each.

    ``path`` defaults to ``$FL_CONFIG`` or ``/etc/fl/fl.toml``; a missing default
    file is fine (defaults apply) unless ``require_file`` is set.
    """
    env = os.environ if env is None else env
    explicit = path is not None or CONFIG_PATH_ENV in env
    cfg_path = Path(path if path is not None else env.get(CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH))
    values = {s.name: s.default for s in SETTINGS}
    sources = dict.fromkeys(values, "default")
    if cfg_path.exists():
        for setting, raw in _read_toml(cfg_path):
            values[setting.name] = coerce(setting, raw, f"{cfg_path}: {setting.path}")
            sources[setting.name] = str(cfg_path)
    elif explicit or require_file:
        raise ConfigError(str(cfg_path), "config file not found")
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(RESERVED_ENV_PREFIXES):
            continue
        env_setting = _BY_NAME.get(name[len(ENV_PREFIX) :])
        if env_setting is None:
            raise ConfigError(name, "unknown FL_* environment setting")
        values[env_setting.name] = coerce(env_setting, raw, name)
        sources[env_setting.name] = "env"
    return Config(values, sources)


def _read_toml(path: Path) -> list[tuple[Setting, Any]]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    found: list[tuple[Setting, Any]] = []
    for section, table in doc.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{path}: [{section}]", "unknown section; known: " + ", ".join(SECTIONS)
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section}", "must be a table")
        for key, raw in table.items():
            setting = _BY_PATH.get(f"{section}.{key}")
            if setting is None:
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                raise ConfigError(f"{path}: {section}.{key}", f"unknown key; known: {known}")
            found.append((setting, raw))
    return found


def reference_markdown() -> str:
    """The configuration reference table for the README."""
    rows = [
        "| TOML key | Name (env `FL_<NAME>`) | Default | Allowed | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        rows.append(
            f"| `{s.path}` | `{s.name}` | `{_toml_value(s.default)}` | {s.allowed()} | {s.help} |"
        )
    return "\n".join(rows)
