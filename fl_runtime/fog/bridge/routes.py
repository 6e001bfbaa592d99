"""Routes: which MQTT topics the bridge reads, and the Kafka topic each one feeds."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fl_runtime.config import Config
from fl_runtime.errors import ConfigError

_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class Route:
    """MQTT topic filter -> Kafka topic."""

    mqtt_filter: str
    kafka_topic: str

    def matches(self, topic: str) -> bool:
        from paho.mqtt.client import topic_matches_sub

        return topic_matches_sub(self.mqtt_filter, topic)


def node_filter(template: str, node_id: str) -> str:
    """The MQTT filter of a node's readings: the template with ``+`` for the device."""
    try:
        topic_filter = template.format(node_id=node_id, device_id="+")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("MQTT_TOPIC_TEMPLATE", f"cannot fill in {template!r}: {exc}") from None
    _check_filter(topic_filter, "MQTT_TOPIC_TEMPLATE")
    return topic_filter


def default_route(cfg: Config, node_id: str) -> Route:
    return Route(node_filter(cfg.mqtt.topic_template, node_id), cfg.kafka.sensor_topic(node_id))


def parse_route(spec: str) -> Route:
    """``'factory/+/line2/#=sensor-data-node-7'`` -> :class:`Route`."""
    topic_filter, sep, kafka_topic = spec.rpartition("=")
    if not sep or not topic_filter:
        raise ConfigError("--map", f"expected MQTT_FILTER=KAFKA_TOPIC, got {spec!r}")
    _check_filter(topic_filter, "--map")
    if not _KAFKA_TOPIC.match(kafka_topic):
        raise ConfigError("--map", f"{kafka_topic!r} is not a valid Kafka topic name")
    return Route(topic_filter, kafka_topic)


def _check_filter(topic_filter: str, where: str) -> None:
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        bad_plus = "+" in level and level != "+"
        bad_hash = "#" in level and (level != "#" or i != len(levels) - 1)
        if bad_plus or bad_hash or not topic_filter:
            raise ConfigError(where, f"{topic_filter!r} is not a valid MQTT topic filter")


def device_pattern(template: str, node_id: str) -> re.Pattern[str] | None:
    """A regex that takes the device id out of a topic built from ``template``."""
    if template.count("{device_id}") != 1:
        return None
    head, tail = template.split("{device_id}")
    try:
        head, tail = head.format(node_id=node_id), tail.format(node_id=node_id)
    except (KeyError, IndexError, ValueError):
        return None
    return re.compile(re.escape(head) + r"(?P<device_id>[^/]+)" + re.escape(tail))
