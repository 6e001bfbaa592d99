"""The Kafka step: ``kafka/<version>/{libs,bin,config}`` from Maven or a tarball.

From Maven: ``kafka_2.13`` first (so nearest-wins keeps slf4j-api at 1.7.x),
then ``kafka-tools``, then ``log4j-slf4j-impl``, the SLF4J 1.x binding the
published POMs leave out. The binding's version must equal the log4j-core that
Kafka itself brings (4.0.x brings none: the binding's own is used). It is
guessed from the Kafka line, and when the resolution shows another log4j-core
the resolution runs again with that version. An SLF4J 2.x jar is refused.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from fl_runtime.artifacts._launchers import write_home_files
from fl_runtime.artifacts._maven import Coordinate, MavenOptions, Resolved, resolve
from fl_runtime.artifacts._proc import Progress
from fl_runtime.artifacts._steps import Staged, StepPlan
from fl_runtime.artifacts._tarball import Tarball, extract_libs, obtain
from fl_runtime.errors import ArtifactError

DEFAULT_KAFKA_VERSION = "4.4.0"
SCALA_BINARY = "2.13"
# log4j-core each Kafka line brings, checked after resolving (a guess saves a Maven run).
LOG4J_GUESS = {"4.0": "2.24.3", "4.1": "2.24.3", "4.2": "2.25.3", "4.3": "2.25.4", "4.4": "2.25.5"}
FALLBACK_LOG4J = "2.25.5"
LAYOUT = "1"
_GENERATED = "generated:fl_runtime"
_SLF4J2 = re.compile(r"^(slf4j-api-2\.|log4j-slf4j2-impl-)")


def kafka_dir(version: str) -> str:
    return f"kafka/{version}"


def kafka_plan(
    version: str, maven: MavenOptions, tarball: Tarball | None, progress: Progress
) -> StepPlan:
    """The step that fills ``kafka/<version>``."""
    if not re.fullmatch(r"4\.\d+\.\d+", version):
        raise ArtifactError(f"Kafka version {version!r}: expected 4.x.y")
    key = {"version": version, "layout": LAYOUT}
    if tarball is not None:
        key["tarball_sha512"] = tarball.sha512.strip().lower()

        def build(scratch: Path) -> Staged:
            return _from_tarball(version, tarball, scratch, progress)
    else:

        def build(scratch: Path) -> Staged:
            return _from_maven(version, maven, scratch, progress)

    return StepPlan(kafka_dir(version), key, build, owned_dir=kafka_dir(version))


def _from_maven(version: str, maven: MavenOptions, scratch: Path, progress: Progress) -> Staged:
    kafka = [
        Coordinate("org.apache.kafka", f"kafka_{SCALA_BINARY}", version),
        Coordinate("org.apache.kafka", "kafka-tools", version),
    ]
    log4j = LOG4J_GUESS.get(version.rsplit(".", 1)[0], FALLBACK_LOG4J)
    progress(f"  resolving Kafka {version} + log4j-slf4j-impl {log4j} from {maven.repo_url}")
    resolved = _resolve_with_binding(kafka, log4j, maven, scratch / "pass1", progress)
    core = _version_of(resolved, "log4j-core")
    if core != log4j:
        log4j = core
        progress(f"  Kafka {version} brings log4j-core {core}: resolving again with that binding")
        resolved = _resolve_with_binding(kafka, log4j, maven, scratch / "pass2", progress)
    home = scratch / kafka_dir(version)
    files = _copy_jars(resolved, home / "libs", version)
    files.update(_home_files(home, version))
    return Staged(files, {"source": "maven", "repo": maven.repo_url, "log4j": log4j})


def _resolve_with_binding(
    kafka: list[Coordinate], log4j: str, maven: MavenOptions, workdir: Path, progress: Progress
) -> list[Resolved]:
    binding = Coordinate("org.apache.logging.log4j", "log4j-slf4j-impl", log4j)
    return resolve([*kafka, binding], maven, workdir, progress)


def _version_of(resolved: list[Resolved], artifact: str) -> str:
    for item in resolved:
        if item.coordinate.artifact == artifact:
            return item.coordinate.version
    raise ArtifactError(f"Maven resolved no {artifact}")


def _from_tarball(version: str, tarball: Tarball, scratch: Path, progress: Progress) -> Staged:
    named = tarball.version()
    if named is not None and named != version:
        raise ArtifactError(f"{tarball.location} is Kafka {named}, not {version}")
    path = obtain(tarball, scratch, progress)
    home = scratch / kafka_dir(version)
    jars = extract_libs(path, home / "libs")
    if not (home / "libs" / f"kafka_{SCALA_BINARY}-{version}.jar").is_file():
        raise ArtifactError(f"{tarball.location}: has no kafka_{SCALA_BINARY}-{version}.jar")
    origin = f"tarball:{tarball.location}#libs"
    files = {f"{kafka_dir(version)}/libs/{jar.name}": (jar, f"{origin}/{jar.name}") for jar in jars}
    files.update(_home_files(home, version))
    return Staged(files, {"source": "tarball", "tarball": tarball.location})


def _copy_jars(resolved: list[Resolved], libs: Path, version: str) -> dict[str, tuple[Path, str]]:
    libs.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, str]] = {}
    for item in resolved:
        name = item.path.name
        if _SLF4J2.match(name):
            raise ArtifactError(f"{item.coordinate} would break Kafka's logging (SLF4J 2.x)")
        rel = f"{kafka_dir(version)}/libs/{name}"
        if rel in files:
            raise ArtifactError(f"two resolved jars are both named {name}")
        shutil.copyfile(item.path, libs / name)
        files[rel] = (libs / name, f"maven:{item.coordinate}")
    return files


def _home_files(home: Path, version: str) -> dict[str, tuple[Path, str]]:
    jars = sorted((home / "libs").glob("kafka*.jar"))
    written = write_home_files(home, jars)
    return {
        f"{kafka_dir(version)}/{p.relative_to(home).as_posix()}": (p, _GENERATED) for p in written
    }
