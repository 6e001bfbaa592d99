"""What every long-running ``fl`` service shares: logging, shutdown, metrics, Kafka.

* :func:`setup_logging`: one JSON object per line (journald keeps them), or text.
* :class:`Shutdown`: SIGTERM/SIGINT set an event that service loops poll, so a
  service finishes its current batch, flushes and exits 0.
* :func:`start_metrics`: the Prometheus ``/metrics`` endpoint.
* :func:`kafka_producer_conf` / :func:`kafka_consumer_conf`: client settings from
  the config (idempotent ``acks=all`` producers; consumers that commit by hand).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from fl_runtime.config import Config

DEFAULT_METRICS_PORTS = {
    "sensor": 9401,
    "bridge": 9402,
    "fog": 9403,
    "aggregator": 9404,
    "detect": 9405,
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(cfg: Config, service: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.service.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.service.log_level)
    for noisy in ("py4j", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"fl_runtime.{service}")


def event(log: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``msg`` with structured fields (JSON keys in json format)."""
    log.log(
        level,
        msg + ("" if not fields else " " + " ".join(f"{k}={v}" for k, v in fields.items())),
        extra={"fields": fields},
    )


class Shutdown:
    """A stop flag set by SIGTERM or SIGINT (or by ``set()`` in tests)."""

    def __init__(self, install: bool = True) -> None:
        self._event = threading.Event()
        if install and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._event.set()

    def set(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if shutdown was requested meanwhile."""
        return self._event.wait(max(seconds, 0.0))


def start_metrics(cfg: Config, service: str, port: int | None = None) -> int | None:
    """Serve Prometheus metrics; returns the port, or None when disabled (-1)."""
    from prometheus_client import start_http_server

    chosen = cfg.service.metrics_port if port is None else port
    if chosen == -1:
        return None
    if chosen == 0:
        chosen = DEFAULT_METRICS_PORTS.get(service, 9400)
    start_http_server(chosen)
    return int(chosen)


def _security(cfg: Config) -> dict[str, Any]:
    return {"security.protocol": cfg.kafka.security_protocol}


def kafka_producer_conf(cfg: Config, client_id: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.kafka.bootstrap_servers,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
        "message.timeout.ms": 0,  # never give up on a message: back-pressure instead of loss
        **_security(cfg),
    }
    conf.update(extra)
    return conf


def kafka_consumer_conf(cfg: Config, group_id: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.kafka.bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **_security(cfg),
    }
    conf.update(extra)
    return conf


def now() -> float:
    return time.time()


def watermarks(
    consumer: Any, topic: str, partition: int, timeout_s: float = 30.0
) -> tuple[int, int]:
    """``(low, high)`` offsets of a partition, retrying the transient errors of a topic
    that was just created or whose leader is moving (NOT_LEADER, LEADER_NOT_AVAILABLE,
    timeouts) until ``timeout_s``; then the last error is raised."""
    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
            return int(low), int(high)
        except KafkaException as exc:
            retriable = exc.args and getattr(exc.args[0], "retriable", lambda: False)()
            transient = retriable or "leader" in str(exc).lower() or "timed out" in str(exc).lower()
            if not transient or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
