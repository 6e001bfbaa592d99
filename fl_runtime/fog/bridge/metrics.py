"""The bridge's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


@dataclass(frozen=True)
class BridgeMetrics:
    registry: CollectorRegistry
    received: Counter
    forwarded: Counter
    dead_lettered: Counter
    dropped: Counter
    redelivered: Counter
    kafka_delivery_errors: Counter
    inflight: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> BridgeMetrics:
        reg = REGISTRY if registry is None else registry
        return cls(
            registry=reg,
            received=Counter("fl_bridge_received", "MQTT messages received.", registry=reg),
            forwarded=Counter(
                "fl_bridge_forwarded", "Readings written to Kafka (confirmed).", registry=reg
            ),
            dead_lettered=Counter(
                "fl_bridge_dead_lettered",
                "Invalid payloads written to the dead-letter topic (confirmed), by reason.",
                ["reason"],
                registry=reg,
            ),
            dropped=Counter(
                "fl_bridge_dropped",
                "Messages neither Kafka topic would take: acked, logged and lost, by reason.",
                ["reason"],
                registry=reg,
            ),
            redelivered=Counter(
                "fl_bridge_redelivered", "MQTT messages received with the DUP flag.", registry=reg
            ),
            kafka_delivery_errors=Counter(
                "fl_bridge_kafka_delivery_errors", "Kafka writes that failed.", registry=reg
            ),
            inflight=Gauge(
                "fl_bridge_inflight", "MQTT messages received but not yet settled.", registry=reg
            ),
        )

    def value(self, name: str, **labels: str) -> float:
        """The current value of a sample, e.g. ``value("fl_bridge_received_total")``."""
        return self.registry.get_sample_value(name, labels) or 0.0
