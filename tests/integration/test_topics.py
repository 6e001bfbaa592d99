"""``ensure_topics`` and ``fl topics`` against a real broker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from fl_runtime.cli import main
from fl_runtime.config import Config, load_config
from fl_runtime.errors import ConfigError, ServiceError
from fl_runtime.service.topics import desired_topics, ensure_topics, list_topics
from tests.harness.kafka import KafkaBroker


def isolated_config(bootstrap: str = "127.0.0.1:9") -> Config:
    """Defaults with topic names of this test's own, on the shared broker."""
    tag = uuid.uuid4().hex[:8]
    return load_config(env={}).replace(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        SENSOR_TOPIC_PREFIX=f"t{tag}-sensor-",
        WEIGHTS_TOPIC=f"t{tag}-weights",
        GLOBAL_MODEL_TOPIC=f"t{tag}-global",
        DEAD_LETTER_TOPIC=f"t{tag}-dead",
        ANOMALIES_TOPIC=f"t{tag}-anomalies",
    )


def topic_config(kafka: KafkaBroker, topic: str) -> dict[str, str]:
    admin = kafka.admin()
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries: dict[str, Any] = admin.describe_configs([resource])[resource].result(30)
    return {name: entry.value for name, entry in entries.items()}


def partitions(kafka: KafkaBroker, topic: str) -> int:
    return len(kafka.admin().list_topics(topic, timeout=10).topics[topic].partitions)


def test_desired_topics_follow_the_config() -> None:
    cfg = isolated_config().replace(TOPIC_PARTITIONS=4, SENSOR_RETENTION_HOURS=2)

    specs = {s.name: s for s in desired_topics(cfg, ["1", "2", "1"])}

    assert list(specs) == [
        cfg.kafka.sensor_topic("1"),
        cfg.kafka.sensor_topic("2"),
        cfg.kafka.weights_topic,
        cfg.kafka.global_model_topic,
        cfg.kafka.dead_letter_topic,
        cfg.kafka.anomalies_topic,
    ]
    assert specs[cfg.kafka.sensor_topic("2")].partitions == 4
    assert specs[cfg.kafka.anomalies_topic].partitions == 4
    assert specs[cfg.kafka.sensor_topic("2")].config["retention.ms"] == str(2 * 3_600_000)
    assert specs[cfg.kafka.global_model_topic].config == {"cleanup.policy": "compact"}
    with pytest.raises(ConfigError, match="node id"):
        desired_topics(cfg, ["../etc"])


def test_an_unreachable_cluster_is_a_service_error() -> None:
    with pytest.raises(ServiceError, match="metadata"):
        ensure_topics(isolated_config("127.0.0.1:9"), ["1"], timeout=2)


@pytest.mark.integration
def test_ensure_creates_then_finds_everything(kafka: KafkaBroker) -> None:
    cfg = isolated_config(kafka.bootstrap)

    first = ensure_topics(cfg, ["1", "2"])
    second = ensure_topics(cfg, ["1", "2"])

    assert set(first.values()) == {"created"} and len(first) == 6
    assert second == dict.fromkeys(first, "exists")
    assert partitions(kafka, cfg.kafka.sensor_topic("1")) == cfg.kafka.partitions
    assert topic_config(kafka, cfg.kafka.global_model_topic)["cleanup.policy"] == "compact"
    assert topic_config(kafka, cfg.kafka.sensor_topic("2"))["retention.ms"] == str(168 * 3_600_000)


@pytest.mark.integration
def test_ensure_adds_partitions_and_repairs_drifted_configs(kafka: KafkaBroker) -> None:
    cfg = isolated_config(kafka.bootstrap)
    ensure_topics(cfg, ["7"])
    sensor = cfg.kafka.sensor_topic("7")
    admin = kafka.admin()
    drift = ConfigResource(
        ConfigResource.Type.TOPIC,
        cfg.kafka.global_model_topic,
        incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([drift])[drift].result(30)

    outcome = ensure_topics(cfg.replace(TOPIC_PARTITIONS=5, SENSOR_RETENTION_HOURS=1), ["7"])

    assert outcome[sensor] == "changed" and outcome[cfg.kafka.global_model_topic] == "changed"
    assert outcome[cfg.kafka.weights_topic] == "exists"
    assert partitions(kafka, sensor) == 5
    assert topic_config(kafka, sensor)["retention.ms"] == "3600000"
    assert topic_config(kafka, cfg.kafka.global_model_topic)["cleanup.policy"] == "compact"


@pytest.mark.integration
def test_fewer_partitions_in_the_config_never_shrink_a_topic(kafka: KafkaBroker) -> None:
    cfg = isolated_config(kafka.bootstrap).replace(TOPIC_PARTITIONS=4)
    ensure_topics(cfg, ["3"])

    outcome = ensure_topics(cfg.replace(TOPIC_PARTITIONS=2), ["3"])

    assert outcome[cfg.kafka.sensor_topic("3")] == "exists"
    assert partitions(kafka, cfg.kafka.sensor_topic("3")) == 4


@pytest.mark.integration
def test_cli_ensure_and_list(kafka: KafkaBroker) -> None:
    cfg = isolated_config(kafka.bootstrap)
    env = {
        "FL_SENSOR_TOPIC_PREFIX": cfg.kafka.sensor_topic_prefix,
        "FL_WEIGHTS_TOPIC": cfg.kafka.weights_topic,
        "FL_GLOBAL_MODEL_TOPIC": cfg.kafka.global_model_topic,
        "FL_DEAD_LETTER_TOPIC": cfg.kafka.dead_letter_topic,
    }
    runner = CliRunner()
    args = ["--bootstrap-servers", kafka.bootstrap]

    created = runner.invoke(
        main, ["topics", "ensure", "--node-id", "a", "--node-id", "b", *args], env=env
    )
    again = runner.invoke(main, ["topics", "ensure", "--node-id", "a", "--json", *args], env=env)
    listed = runner.invoke(main, ["topics", "list", "--json", *args], env=env)

    assert created.exit_code == 0, created.output
    assert f"created  {cfg.kafka.sensor_topic('b')}" in created.output
    statuses = {o["name"]: o["status"] for o in json.loads(again.output)}
    assert statuses[cfg.kafka.sensor_topic("a")] == "exists"
    names = {t["name"]: t for t in json.loads(listed.output)}
    assert names[cfg.kafka.sensor_topic("a")]["partitions"] == cfg.kafka.partitions
    assert not any(name.startswith("__") for name in names)
    every = {t.name for t in list_topics(kafka.admin(), internal=True)}
    assert every >= set(names)
