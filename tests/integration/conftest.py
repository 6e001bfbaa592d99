"""Fixtures for integration tests: real Kafka and Mosquitto, torn down even on failure.

Session-scoped ``kafka`` and ``mosquitto`` are shared; a test that kills or
restarts a broker takes ``kafka_private`` or ``mosquitto_private`` instead, so
the shared ones stay healthy for everybody else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fl_runtime import artifacts
from tests.harness.kafka import KafkaBroker
from tests.harness.mosquitto import MosquittoBroker

REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """``$FL_ARTIFACTS_DIR``, else the repository's ``.artifacts``."""
    return Path(os.environ.get("FL_ARTIFACTS_DIR") or REPO / ".artifacts")


@pytest.fixture(scope="session")
def artifacts_cache() -> Path:
    """The artifact cache with Kafka and the Spark connector (a no-op when warm)."""
    cache = cache_dir()
    artifacts.fetch(cache, wheels=False)
    return cache


@pytest.fixture(scope="session")
def kafka(artifacts_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One KRaft broker for the whole session; do not stop or kill it."""
    broker = KafkaBroker(artifacts_cache, tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.start()
    finally:
        broker.kill()


@pytest.fixture
def kafka_private(artifacts_cache: Path, tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of the test's own, free to be killed and restarted."""
    broker = KafkaBroker(artifacts_cache, tmp_path / "kafka")
    try:
        yield broker.start()
    finally:
        broker.kill()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One Mosquitto for the whole session; do not stop or kill it."""
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_private(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto of the test's own, free to be killed and restarted."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    try:
        yield broker.start()
    finally:
        broker.stop()
