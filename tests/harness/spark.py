"""Spark for tests: the cached Kafka connector jars and a small local session."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fl_runtime import artifacts
from tests.harness.ports import LOOPBACK

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[2]"


def spark_kafka_jars(cache_dir: Path) -> list[Path]:
    """The connector jars for the installed pyspark, checked against the manifest."""
    return artifacts.spark_kafka_jars(cache_dir)


def spark_jars_setting(cache_dir: Path) -> str:
    """The same jars as one comma-separated value (``spark.jars``, ``FL_SPARK_JARS``)."""
    return ",".join(str(p) for p in spark_kafka_jars(cache_dir))


def spark_conf(cache_dir: Path, master: str = DEFAULT_MASTER) -> dict[str, str]:
    """Settings for a small session that talks to loopback only."""
    return {
        "spark.master": master,
        "spark.jars": spark_jars_setting(cache_dir),
        "spark.driver.memory": "512m",
        "spark.driver.host": LOOPBACK,
        "spark.driver.bindAddress": LOOPBACK,
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
    }


@contextmanager
def spark_session(
    cache_dir: Path,
    *,
    app_name: str = "fedge-test",
    master: str = DEFAULT_MASTER,
    conf: Mapping[str, str] | None = None,
) -> Iterator[SparkSession]:
    """A SparkSession with the Kafka connector; always stopped afterwards."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    builder = SparkSession.builder.appName(app_name)
    for key, value in {**spark_conf(cache_dir, master), **(conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    try:
        yield session
    finally:
        session.stop()
