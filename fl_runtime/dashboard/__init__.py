"""``fl dashboard --mode live``: a web dashboard over the aggregation log and Kafka.

Public API: :func:`create_app` builds the FastAPI application from
:class:`DashboardSettings`, a :class:`KafkaSource` and (for the anomalies view) an
:class:`AnomalySource`; :func:`make_server` wraps it
in uvicorn. The page is under ``static/`` (uPlot vendored), the JSON API under
``/api`` with its OpenAPI schema at ``/api/openapi.json``.
"""

from __future__ import annotations

from fl_runtime.dashboard.anomalies import (
    AnomalyBook,
    AnomalySource,
    KafkaAnomalySource,
    MemoryAnomalySource,
)
from fl_runtime.dashboard.app import create_app
from fl_runtime.dashboard.auth import Authenticator, hash_password, is_loopback, load_credentials
from fl_runtime.dashboard.kafka_source import (
    ConfluentKafkaSource,
    KafkaSnapshot,
    KafkaSource,
    StaticKafkaSource,
)
from fl_runtime.dashboard.server import make_server, serve_in_thread
from fl_runtime.dashboard.state import DashboardSettings

__all__ = [
    "AnomalyBook",
    "AnomalySource",
    "Authenticator",
    "ConfluentKafkaSource",
    "DashboardSettings",
    "KafkaAnomalySource",
    "KafkaSnapshot",
    "KafkaSource",
    "MemoryAnomalySource",
    "StaticKafkaSource",
    "create_app",
    "hash_password",
    "is_loopback",
    "load_credentials",
    "make_server",
    "serve_in_thread",
]
