"""The Spark step: ``spark-kafka/<pyspark version>/*.jar``, the Kafka connector.

``spark-sql-kafka-0-10_2.13`` at the pyspark version, with its runtime
dependencies (token provider, kafka-clients, commons-pool2) but without any
artifact the pyspark wheel already ships in ``pyspark/jars``.

When the repository does not have the connector for that exact version (Spark
publishes jars to Maven some days after the wheel reaches PyPI), the newest
published release of the same major version below it is used instead, with a
warning; the manifest records which connector version was taken.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from fl_runtime.artifacts._maven import (
    ArtifactNotFoundError,
    Coordinate,
    MavenOptions,
    Resolved,
    resolve,
)
from fl_runtime.artifacts._proc import Progress
from fl_runtime.artifacts._steps import Staged, StepPlan
from fl_runtime.errors import ArtifactError

CONNECTOR = Coordinate("org.apache.spark", "spark-sql-kafka-0-10_2.13", "")
LAYOUT = "1"
_MAX_FALLBACKS = 3
_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def spark_dir(spark_version: str) -> str:
    return f"spark-kafka/{spark_version}"


def installed_pyspark() -> tuple[str, Path] | None:
    """The installed pyspark's version and its ``jars`` directory, if there is one."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    jars = Path(next(iter(spec.submodule_search_locations))) / "jars"
    return importlib.metadata.version("pyspark"), jars


def spark_plan(spark_version: str | None, maven: MavenOptions, progress: Progress) -> StepPlan:
    """The step that fills ``spark-kafka/<version>`` (default: the installed pyspark)."""
    found = installed_pyspark()
    if found is None:
        raise ArtifactError(
            "pyspark is not installed: install fl-runtime[spark] or pass --no-spark"
        )
    version = spark_version or found[0]
    if _RELEASE.match(version) is None:
        raise ArtifactError(f"Spark version {version!r}: expected x.y.z")

    def build(scratch: Path) -> Staged:
        return _build(version, found[1], maven, scratch, progress)

    key = {"spark_version": version, "layout": LAYOUT}
    return StepPlan(spark_dir(version), key, build, owned_dir=spark_dir(version))


def _build(
    version: str, pyspark_jars: Path, maven: MavenOptions, scratch: Path, progress: Progress
) -> Staged:
    resolved, connector = _resolve_connector(version, maven, scratch, progress)
    shipped = [p.name for p in pyspark_jars.glob("*.jar")]
    dest = scratch / spark_dir(version)
    dest.mkdir(parents=True)
    files: dict[str, tuple[Path, str]] = {}
    for item in resolved:
        if _already_shipped(item.coordinate.artifact, shipped):
            continue
        shutil.copyfile(item.path, dest / item.path.name)
        files[f"{spark_dir(version)}/{item.path.name}"] = (
            dest / item.path.name,
            f"maven:{item.coordinate}",
        )
    return Staged(files, {"connector_version": connector, "repo": maven.repo_url})


def _resolve_connector(
    version: str, maven: MavenOptions, scratch: Path, progress: Progress
) -> tuple[list[Resolved], str]:
    progress(f"  resolving {CONNECTOR.artifact} {version} with Maven from {maven.repo_url}")
    try:
        return _resolve_one(version, maven, scratch, progress), version
    except ArtifactNotFoundError as exc:
        first_error = exc
    candidates = _older_releases(version, published_versions(maven.repo_url))[:_MAX_FALLBACKS]
    for candidate in candidates:
        progress(
            f"  WARNING: {CONNECTOR.artifact} {version} is not published in {maven.repo_url}; "
            f"trying {candidate}, the newest older release"
        )
        try:
            return _resolve_one(candidate, maven, scratch, progress), candidate
        except ArtifactNotFoundError:
            continue
    raise ArtifactError(
        f"{first_error}; no older {version.split('.', maxsplit=1)[0]}.x connector resolved either. "
        "Pass --spark-version with a published version, or install that pyspark."
    )


def _resolve_one(
    version: str, maven: MavenOptions, scratch: Path, progress: Progress
) -> list[Resolved]:
    coordinate = Coordinate(CONNECTOR.group, CONNECTOR.artifact, version)
    return resolve([coordinate], maven, scratch / f"resolve-{version}", progress)


def published_versions(repo_url: str) -> list[str]:
    """The connector versions the repository lists in its ``maven-metadata.xml``."""
    group = CONNECTOR.group.replace(".", "/")
    url = f"{repo_url.rstrip('/')}/{group}/{CONNECTOR.artifact}/maven-metadata.xml"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            root = ET.fromstring(response.read())
    except (OSError, ET.ParseError) as exc:
        raise ArtifactError(f"{url}: cannot list published versions ({exc})") from None
    return [v.text for v in root.iter("version") if v.text]


def _older_releases(version: str, published: list[str]) -> list[str]:
    """Final releases of the same major version older than ``version``, newest first."""
    target = _as_tuple(version)
    older = [
        v
        for v in published
        if _RELEASE.match(v) and _as_tuple(v)[0] == target[0] and _as_tuple(v) < target
    ]
    return sorted(older, key=_as_tuple, reverse=True)


def _as_tuple(version: str) -> tuple[int, int, int]:
    match = _RELEASE.match(version)
    if match is None:
        raise ArtifactError(f"not a release version: {version}")
    return int(match[1]), int(match[2]), int(match[3])


def _already_shipped(artifact: str, shipped: list[str]) -> bool:
    pattern = re.compile(re.escape(artifact) + r"-\d")
    return any(pattern.match(name) for name in shipped)
