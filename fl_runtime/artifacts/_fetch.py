"""The public entry points: fetch, verify, and where the cached pieces are."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fl_runtime.artifacts._kafka import DEFAULT_KAFKA_VERSION, kafka_dir, kafka_plan
from fl_runtime.artifacts._manifest import (
    MANIFEST_NAME,
    Manifest,
    Step,
    load_manifest,
    step_problems,
)
from fl_runtime.artifacts._maven import DEFAULT_MAVEN_REPO, MavenOptions
from fl_runtime.artifacts._proc import Progress
from fl_runtime.artifacts._spark import installed_pyspark, spark_plan
from fl_runtime.artifacts._steps import StepPlan, locked, run_plans
from fl_runtime.artifacts._tarball import Tarball
from fl_runtime.artifacts._wheels import source_root, wheels_plans
from fl_runtime.errors import ArtifactError

CACHE_ENV = "FL_ARTIFACTS_DIR"
DEFAULT_CACHE = Path(".artifacts")


def default_cache_dir() -> Path:
    """``$FL_ARTIFACTS_DIR``, else ``.artifacts`` in the working directory."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fetch(
    cache_dir: str | Path,
    *,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    maven_repo: str = DEFAULT_MAVEN_REPO,
    maven_local_repo: str | Path | None = None,
    maven_settings: str | Path | None = None,
    kafka_tarball: str | None = None,
    kafka_tarball_sha512: str | None = None,
    spark_version: str | None = None,
    spark: bool = True,
    wheels: bool = True,
    extras: str = "spark,dashboard",
    platforms: tuple[str, ...] = (),
    python_version: str | None = None,
    progress: Progress = stderr_progress,
) -> Manifest:
    """Resolve Kafka, the Spark Kafka connector and the wheels into ``cache_dir``.

    Steps whose files are intact are skipped without any network request;
    missing or corrupt files are fetched again. Raises ArtifactError.
    """
    cache = Path(cache_dir).resolve()
    maven = MavenOptions(
        repo_url=maven_repo,
        local_repo=Path(maven_local_repo).resolve() if maven_local_repo else None,
        settings=Path(maven_settings).resolve() if maven_settings else None,
    )
    tarball = _tarball(kafka_tarball, kafka_tarball_sha512)
    plans: list[StepPlan] = [kafka_plan(kafka_version, maven, tarball, progress)]
    if spark:
        plans.append(spark_plan(spark_version, maven, progress))
    if wheels:
        root = source_root()
        plans += wheels_plans(cache, root, extras, platforms, python_version, progress)
    return run_plans(cache, plans, progress)


def verify(cache_dir: str | Path) -> Manifest:
    """Check every file the manifest records; ArtifactError listing what is wrong."""
    cache = Path(cache_dir)
    with _reading(cache):
        manifest = load_manifest(cache)
        problems = [
            f"[{step.name}] {problem}"
            for step in manifest.steps.values()
            for problem in step_problems(cache, step)
        ]
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ArtifactError(
            f"{cache}: {len(problems)} problem(s); `fl artifacts fetch` with the same options"
            f" fetches them again:\n  {shown}"
        )
    return manifest


def kafka_home(cache_dir: str | Path, version: str | None = None) -> Path:
    """``<cache>/kafka/<version>``: ``bin/``, ``libs/``, ``config/``. Default: newest cached."""
    cache = Path(cache_dir).resolve()
    step = _cached_step(cache, "kafka/", version)
    return cache / kafka_dir(step.key["version"])


def spark_kafka_jars(cache_dir: str | Path, spark_version: str | None = None) -> list[Path]:
    """The connector jars for ``spark.jars`` (default: for the installed pyspark)."""
    cache = Path(cache_dir).resolve()
    if spark_version is None:
        found = installed_pyspark()
        spark_version = found[0] if found else None
    step = _cached_step(cache, "spark-kafka/", spark_version)
    return sorted(cache / rel for rel in step.files)


def _cached_step(cache: Path, prefix: str, version: str | None) -> Step:
    with _reading(cache):
        return _intact_step(cache, prefix, version)


@contextmanager
def _reading(cache: Path) -> Iterator[None]:
    """Hold the cache's shared lock, so no fetch rewrites files while they are read."""
    if not (cache / MANIFEST_NAME).is_file():
        raise ArtifactError(f"{cache}: no artifacts fetched yet (run `fl artifacts fetch`)")
    with locked(cache, stderr_progress, shared=True):
        yield


def _intact_step(cache: Path, prefix: str, version: str | None) -> Step:
    steps = load_manifest(cache).steps_named(prefix)
    if version is not None:
        steps = [s for s in steps if s.name == f"{prefix}{version}"]
    if not steps:
        wanted = f"{prefix}{version}" if version else f"{prefix}*"
        raise ArtifactError(f"{cache}: no {wanted} fetched (run `fl artifacts fetch`)")
    step = max(steps, key=lambda s: _version_key(s.name.removeprefix(prefix)))
    problems = step_problems(cache, step)
    if problems:
        raise ArtifactError(f"{cache}: {step.name} is damaged: {problems[0]}; fetch again")
    return step


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def _tarball(location: str | None, sha512: str | None) -> Tarball | None:
    if location is None:
        if sha512 is not None:
            raise ArtifactError("--kafka-tarball-sha512 needs --kafka-tarball")
        return None
    if not sha512:
        raise ArtifactError("--kafka-tarball needs --kafka-tarball-sha512 (from the .sha512 file)")
    return Tarball(location, sha512)
