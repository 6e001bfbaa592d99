"""The Kafka topics fedge needs, created and kept in line with the configuration.

=========================  ======================  ====================================
topic                      partitions              managed configs
=========================  ======================  ====================================
``<prefix><node id>``      ``TOPIC_PARTITIONS``    delete, ``SENSOR_RETENTION_HOURS``
``WEIGHTS_TOPIC``          1 (one ordered stream)  delete, ``WEIGHTS_RETENTION_HOURS``
``GLOBAL_MODEL_TOPIC``     1                       compact (the latest model per key)
``DEAD_LETTER_TOPIC``      1                       delete, ``DEAD_LETTER_RETENTION_HOURS``
``ANOMALIES_TOPIC``        ``TOPIC_PARTITIONS``    delete, ``ANOMALIES_RETENTION_HOURS``
=========================  ======================  ====================================

:func:`desired_topics` is the one definition of these topics: ``fl topics
ensure`` and the services' start-up create them from it, and ``fl topics plan
--json`` prints it for the kafka role (playbooks/kafka.yml), which creates
whatever list it is given.

:func:`ensure_topics` is idempotent: it creates what is missing, adds
partitions where a topic has fewer than configured (it never removes any),
and sets managed configs that drifted. Every topic gets
``TOPIC_REPLICATION_FACTOR``; an existing topic with another factor is only
reported, since changing it means reassigning replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from fl_runtime.config import NODE_ID_PATTERN, Config
from fl_runtime.errors import ConfigError, ServiceError

CREATED = "created"
EXISTS = "exists"
CHANGED = "changed"
DEFAULT_TIMEOUT = 30.0
_HOUR_MS = 3_600_000
WEIGHTS_RETENTION_HOURS = 24
DEAD_LETTER_RETENTION_HOURS = 168
ANOMALIES_RETENTION_HOURS = 720  # detections and alerts are kept a month for audits


@dataclass(frozen=True)
class TopicSpec:
    """What one topic should look like."""

    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicOutcome:
    """What :func:`reconcile_topics` did to one topic."""

    name: str
    status: str  # CREATED, EXISTS or CHANGED
    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    replication: int


def desired_topics(cfg: Config, node_ids: Iterable[str]) -> list[TopicSpec]:
    """The topics for ``node_ids`` (sensor topics) plus the shared ones."""
    rf = int(cfg.kafka.replication_factor)
    sensor = _delete(int(cfg.kafka.sensor_retention_hours))
    specs = [
        TopicSpec(
            cfg.kafka.sensor_topic(_checked_node_id(n)), int(cfg.kafka.partitions), rf, sensor
        )
        for n in dict.fromkeys(node_ids)
    ]
    specs += [
        TopicSpec(cfg.kafka.weights_topic, 1, rf, _delete(WEIGHTS_RETENTION_HOURS)),
        TopicSpec(cfg.kafka.global_model_topic, 1, rf, {"cleanup.policy": "compact"}),
        TopicSpec(cfg.kafka.dead_letter_topic, 1, rf, _delete(DEAD_LETTER_RETENTION_HOURS)),
        TopicSpec(
            cfg.kafka.anomalies_topic,
            int(cfg.kafka.partitions),
            rf,
            _delete(ANOMALIES_RETENTION_HOURS),
        ),
    ]
    return specs


def plan(specs: Iterable[TopicSpec]) -> list[dict[str, Any]]:
    """``specs`` as the kafka role's ``kafka_topics`` input
    (``name``, ``partitions``, ``replication_factor``, ``config``)."""
    return [
        {
            "name": s.name,
            "partitions": s.partitions,
            "replication_factor": s.replication,
            "config": dict(s.config),
        }
        for s in specs
    ]


def _delete(hours: int) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(hours * _HOUR_MS)}


def admin_client(cfg: Config) -> AdminClient:
    """An AdminClient for the configured cluster."""
    return AdminClient(
        {
            "bootstrap.servers": cfg.kafka.bootstrap_servers,
            "security.protocol": cfg.kafka.security_protocol,
            "log_level": 3,
        }
    )


def ensure_topics(
    cfg: Config,
    node_ids: Iterable[str] | None = None,
    *,
    admin: AdminClient | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, str]:
    """Create or fix every topic; return topic -> ``created``/``exists``/``changed``.

    ``node_ids`` defaults to this node's ``NODE_ID``. Raises ServiceError when
    the cluster does not answer or refuses a change.
    """
    ids = [cfg.fog.node_id] if node_ids is None else list(node_ids)
    outcomes = reconcile_topics(admin or admin_client(cfg), desired_topics(cfg, ids), timeout)
    return {o.name: o.status for o in outcomes}


def reconcile_topics(
    admin: AdminClient, specs: Sequence[TopicSpec], timeout: float = DEFAULT_TIMEOUT
) -> list[TopicOutcome]:
    """Bring each topic in line with its spec; the details of what changed."""
    existing = _partition_counts(admin, timeout)
    missing = [s for s in specs if s.name not in existing]
    created = _create(admin, missing, timeout)
    _wait_for_leaders(admin, created, timeout)
    if len(created) < len(missing):  # someone else created some meanwhile
        existing = _partition_counts(admin, timeout)
    outcomes = []
    for spec in specs:
        if spec.name in created:
            outcomes.append(TopicOutcome(spec.name, CREATED))
        else:
            outcomes.append(_reconcile_one(admin, spec, existing[spec.name], timeout))
    return outcomes


def list_topics(
    admin: AdminClient, timeout: float = DEFAULT_TIMEOUT, *, internal: bool = False
) -> list[TopicInfo]:
    """The cluster's topics, without Kafka's own ``__*`` ones unless ``internal``."""
    metadata = _metadata(admin, timeout)
    infos = []
    for name, topic in sorted(metadata.topics.items()):
        if name.startswith("__") and not internal:
            continue
        first = next(iter(topic.partitions.values()), None)
        replication = len(first.replicas) if first is not None else 0
        infos.append(TopicInfo(name, len(topic.partitions), replication))
    return infos


def _reconcile_one(
    admin: AdminClient, spec: TopicSpec, state: tuple[int, int], timeout: float
) -> TopicOutcome:
    partitions, replication = state
    changes: list[str] = []
    warnings: list[str] = []
    if partitions < spec.partitions:
        _wait(
            admin.create_partitions(
                [NewPartitions(spec.name, spec.partitions)], request_timeout=timeout
            ),
            f"add partitions to {spec.name}",
        )
        changes.append(f"partitions {partitions} -> {spec.partitions}")
    elif partitions > spec.partitions:
        warnings.append(f"has {partitions} partitions, config says {spec.partitions}; kept")
    if replication != spec.replication:
        warnings.append(f"replication factor {replication}, config says {spec.replication}; kept")
    changes += _fix_configs(admin, spec, timeout)
    return TopicOutcome(spec.name, CHANGED if changes else EXISTS, tuple(changes), tuple(warnings))


def _fix_configs(admin: AdminClient, spec: TopicSpec, timeout: float) -> list[str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    current = _wait(
        admin.describe_configs([resource], request_timeout=timeout), f"describe {spec.name}"
    )[resource]
    drift = {
        key: value
        for key, value in spec.config.items()
        if key not in current or current[key].value != value
    }
    if not drift:
        return []
    entries = [
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        for key, value in drift.items()
    ]
    fix = ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
    _wait(admin.incremental_alter_configs([fix], request_timeout=timeout), f"alter {spec.name}")
    return [
        f"{key} {current[key].value if key in current else '(unset)'} -> {value}"
        for key, value in drift.items()
    ]


def _create(admin: AdminClient, specs: Sequence[TopicSpec], timeout: float) -> set[str]:
    if not specs:
        return set()
    new = [NewTopic(s.name, s.partitions, s.replication, config=dict(s.config)) for s in specs]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    created = set()
    for name, future in futures.items():
        try:
            future.result(timeout + 5)
            created.add(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceError(f"cannot create topic {name}: {exc.args[0].str()}") from None
    return created


def _wait_for_leaders(admin: AdminClient, names: set[str], timeout: float) -> None:
    """A created topic answers produce and offset requests only once every partition
    has a leader; wait for that so callers never see NOT_LEADER right after ensure."""
    deadline = time.monotonic() + timeout
    while names:
        topics = _metadata(admin, timeout).topics
        leaderless = [
            n
            for n in names
            if n not in topics or any(p.leader < 0 for p in topics[n].partitions.values())
        ]
        if not leaderless:
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"topics without a leader after {timeout:g} s: {', '.join(leaderless)}"
            )
        time.sleep(0.2)


def _partition_counts(admin: AdminClient, timeout: float) -> dict[str, tuple[int, int]]:
    return {t.name: (t.partitions, t.replication) for t in list_topics(admin, timeout)}


def _metadata(admin: AdminClient, timeout: float) -> Any:
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        reason = exc.args[0].str()
        raise ServiceError(f"Kafka did not answer a metadata request: {reason}") from None


def _wait(futures: Mapping[Any, Any], what: str) -> dict[Any, Any]:
    results: dict[Any, Any] = {}
    for key, future in futures.items():
        try:
            results[key] = future.result()
        except KafkaException as exc:
            raise ServiceError(f"cannot {what}: {exc.args[0].str()}") from None
    return results


def _checked_node_id(node_id: str) -> str:
    if not NODE_ID_PATTERN.fullmatch(node_id):
        raise ConfigError("node id", f"must match {NODE_ID_PATTERN.pattern}; got {node_id!r}")
    return node_id
