"""The scorer's Prometheus metrics (``fl_detect_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Scoring is microseconds; the end-to-end figure includes the sensor's MQTT hop.
_SCORING_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)
_ALERT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class DetectMetrics:
    registry: CollectorRegistry
    received: Counter
    scored: Counter
    unscored: Counter
    invalid: Counter
    duplicates: Counter
    detections: Counter
    alerts: Counter
    active_alerts: Gauge
    spool_depth: Gauge
    spool_dropped: Counter
    spool_errors: Counter
    kafka_delivered: Counter
    kafka_delivery_errors: Counter
    model_version: Gauge
    threshold: Gauge
    scoring_latency: Histogram
    alert_latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> DetectMetrics:
        reg = REGISTRY if registry is None else registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"fl_detect_{name}", doc, list(labels), registry=reg)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(f"fl_detect_{name}", doc, registry=reg)

        return cls(
            registry=reg,
            received=counter("received", "MQTT messages received."),
            scored=counter("scored", "Valid readings scored."),
            unscored=counter("unscored", "Valid readings acknowledged before any global model."),
            invalid=counter("invalid", "Invalid payloads (not scored), by reason.", "reason"),
            duplicates=counter("duplicates", "Redelivered readings already scored."),
            detections=counter("detections", "Readings over the threshold."),
            alerts=counter("alerts", "Alert state changes, by state.", "state"),
            active_alerts=gauge("active_alerts", "Devices with an active alert."),
            spool_depth=gauge("spool_depth", "Records in the spool, not yet confirmed by Kafka."),
            spool_dropped=counter("spool_dropped", "Records dropped because the spool was full."),
            spool_errors=counter("spool_errors", "Spool writes that failed (reading not acked)."),
            kafka_delivered=counter("kafka_delivered", "Records Kafka confirmed."),
            kafka_delivery_errors=counter("kafka_delivery_errors", "Kafka writes that failed."),
            model_version=gauge("model_version", "Version of the global model in use (0: none)."),
            threshold=gauge("threshold", "Alert threshold on P(anomaly) in use."),
            scoring_latency=Histogram(
                "fl_detect_scoring_latency_seconds",
                "From a reading's receipt to its decision (scored, records spooled).",
                buckets=_SCORING_BUCKETS,
                registry=reg,
            ),
            alert_latency=Histogram(
                "fl_detect_alert_latency_seconds",
                "From a reading's timestamp to its alert change confirmed by the local broker.",
                buckets=_ALERT_BUCKETS,
                registry=reg,
            ),
        )

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0
