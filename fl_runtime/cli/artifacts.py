"""``fl artifacts``: fetch Kafka, the Spark connector and the wheels into a local cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from fl_runtime.artifacts import (
    DEFAULT_KAFKA_VERSION,
    DEFAULT_MAVEN_REPO,
    fetch,
    kafka_home,
    spark_kafka_jars,
    verify,
)
from fl_runtime.artifacts._fetch import CACHE_ENV, DEFAULT_CACHE
from fl_runtime.cli._common import emit_json, friendly_errors, progress

cache_option = click.option(
    "--cache",
    "cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get(CACHE_ENV) or str(DEFAULT_CACHE),
    show_default=f"${CACHE_ENV} or {DEFAULT_CACHE}",
    help="Cache directory.",
)


@click.group("artifacts")
def command() -> None:
    """Resolve Kafka, Spark's Kafka connector and the wheels into a local cache."""


@command.command("fetch")
@cache_option
@click.option(
    "--kafka-version",
    default=DEFAULT_KAFKA_VERSION,
    show_default=True,
    help="Apache Kafka 4.x.y to fetch.",
)
@click.option(
    "--maven-repo",
    default=DEFAULT_MAVEN_REPO,
    show_default=True,
    help="Maven repository or mirror (Nexus, Artifactory) every download goes to.",
)
@click.option(
    "--maven-local-repo",
    type=click.Path(file_okay=False),
    default=None,
    help="Maven's local repository (default ~/.m2/repository).",
)
@click.option(
    "--maven-settings",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A settings.xml to use instead of the generated one (mirror credentials).",
)
@click.option(
    "--kafka-tarball",
    default=None,
    help="Take Kafka from an official tarball (URL or path) instead of Maven.",
)
@click.option("--kafka-tarball-sha512", default=None, help="The tarball's sha512 (hex).")
@click.option(
    "--spark-version",
    default=None,
    help="pyspark version to fetch the connector for (default: the installed one).",
)
@click.option("--no-spark", is_flag=True, help="Skip Spark's Kafka connector.")
@click.option("--no-wheels", is_flag=True, help="Skip the wheels.")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="Wheels for another host, e.g. manylinux_2_36_aarch64 (Raspberry Pi OS 12).",
)
@click.option("--python-version", default=None, help="The other host's Python, e.g. 3.11.")
@friendly_errors
def fetch_cmd(
    cache: Path,
    kafka_version: str,
    maven_repo: str,
    maven_local_repo: str | None,
    maven_settings: str | None,
    kafka_tarball: str | None,
    kafka_tarball_sha512: str | None,
    spark_version: str | None,
    no_spark: bool,
    no_wheels: bool,
    platforms: tuple[str, ...],
    python_version: str | None,
) -> None:
    """Fetch what is missing or damaged; a warm cache needs no network."""
    started = time.monotonic()
    manifest = fetch(
        cache,
        kafka_version=kafka_version,
        maven_repo=maven_repo,
        maven_local_repo=maven_local_repo,
        maven_settings=maven_settings,
        kafka_tarball=kafka_tarball,
        kafka_tarball_sha512=kafka_tarball_sha512,
        spark_version=spark_version,
        spark=not no_spark,
        wheels=not no_wheels,
        platforms=platforms,
        python_version=python_version,
        progress=progress,
    )
    count = sum(1 for _ in manifest.files())
    progress(f"{cache}: {count} files verified in {time.monotonic() - started:.1f} s")


@command.command("verify")
@cache_option
@friendly_errors
def verify_cmd(cache: Path) -> None:
    """Check every cached file against the manifest's sha256; exit 1 on any problem."""
    manifest = verify(cache)
    click.echo(f"{cache}: {sum(1 for _ in manifest.files())} files OK")


@command.command("show")
@cache_option
@friendly_errors
def show_cmd(cache: Path) -> None:
    """Print where things are, as JSON: Kafka home, connector jars, steps."""
    manifest = verify(cache)
    doc: dict[str, object] = {
        "steps": {
            name: {"key": dict(s.key), "info": dict(s.info), "files": len(s.files)}
            for name, s in manifest.steps.items()
        },
    }
    if manifest.steps_named("kafka/"):
        doc["kafka_home"] = str(kafka_home(cache))
    if manifest.steps_named("spark-kafka/"):
        doc["spark_jars"] = ",".join(str(p) for p in spark_kafka_jars(cache))
    emit_json(doc)
