"""Resolving jars with Maven: a generated POM and ``dependency:list``.

Maven downloads into its local repository (``~/.m2/repository`` unless told
otherwise), checks each download against the repository's checksums (``-C``),
and ``dependency:list`` names every resolved file with its coordinates, so the
cache can record where each jar came from. All traffic goes to one URL: a
generated ``settings.xml`` mirrors every repository (``mirrorOf *``) to it, so
a Nexus or Artifactory mirror works, and POMs that declare other repositories
cannot send Maven elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from fl_runtime.artifacts._proc import Progress, ToolFailedError, require_tool, run_tool
from fl_runtime.errors import ArtifactError

DEFAULT_MAVEN_REPO = "https://repo.maven.apache.org/maven2"
DEPENDENCY_PLUGIN = "3.8.1"
_LIST_LINE = re.compile(
    r"^\s*(?P<g>[^:\s]+):(?P<a>[^:\s]+):(?P<t>[^:\s]+)(?::(?P<c>[^:\s]+))?:(?P<v>[^:\s]+)"
    r":(?:compile|runtime|provided|system|test):(?P<path>/.+?)(?: -- module .*)?$"
)
_NOT_FOUND = re.compile(r"Could not find artifact (\S+)|(\S+) was not found in")


@dataclass(frozen=True)
class Coordinate:
    """A Maven artifact: ``group:artifact:version`` (jar, no classifier by default)."""

    group: str
    artifact: str
    version: str
    classifier: str = ""

    def __str__(self) -> str:
        tail = f":{self.classifier}" if self.classifier else ""
        return f"{self.group}:{self.artifact}:{self.version}{tail}"


@dataclass(frozen=True)
class Resolved:
    coordinate: Coordinate
    path: Path


@dataclass(frozen=True)
class MavenOptions:
    """Where Maven fetches from and keeps its local repository."""

    repo_url: str = DEFAULT_MAVEN_REPO
    local_repo: Path | None = None  # None: Maven's default, ~/.m2/repository
    settings: Path | None = None  # a user settings.xml to use instead of the generated mirror


class ArtifactNotFoundError(ArtifactError):
    """The repository does not have a requested artifact."""


def resolve(
    deps: Sequence[Coordinate], options: MavenOptions, workdir: Path, progress: Progress
) -> list[Resolved]:
    """Resolve ``deps`` and their runtime dependencies; declaration order decides ties."""
    mvn = require_tool("mvn", "install Maven (Debian: apt-get install maven)")
    workdir.mkdir(parents=True, exist_ok=True)
    pom = workdir / "pom.xml"
    pom.write_text(_pom(deps), encoding="utf-8")
    settings = options.settings or _write_settings(workdir, options.repo_url)
    listing = workdir / "dependencies.txt"
    argv = [mvn, "-B", "-U", "-C", "-s", str(settings), "-f", str(pom)]
    if options.local_repo is not None:
        argv.append(f"-Dmaven.repo.local={options.local_repo}")
    argv += [
        f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN}:list",
        "-DincludeScope=runtime",
        "-DoutputAbsoluteArtifactFilename=true",
        f"-DoutputFile={listing}",
        "-DappendOutput=false",
    ]
    try:
        run_tool(argv, what="mvn dependency:list", progress=progress, show=_show_download)
    except ToolFailedError as exc:
        missing = _NOT_FOUND.search(exc.output)
        if missing:
            name = missing.group(1) or missing.group(2)
            raise ArtifactNotFoundError(f"{name} is not in {options.repo_url}") from None
        raise
    resolved = parse_listing(listing.read_text(encoding="utf-8"))
    for item in resolved:
        check_local_sha1(item.path)
    return resolved


def parse_listing(text: str) -> list[Resolved]:
    """The jars in a ``dependency:list`` output file (absolute file names)."""
    found: list[Resolved] = []
    for line in text.splitlines():
        match = _LIST_LINE.match(line)
        if match is None or match["t"] != "jar":
            continue
        coord = Coordinate(match["g"], match["a"], match["v"], match["c"] or "")
        found.append(Resolved(coord, Path(match["path"])))
    return found


def check_local_sha1(path: Path) -> None:
    """Compare a jar in the local repository with the ``.sha1`` Maven stored beside it.

    A corrupt local copy is deleted, so the next fetch downloads it again.
    """
    sidecar = path.with_name(path.name + ".sha1")
    if not path.is_file():
        raise ArtifactError(f"Maven reported {path}, but it does not exist")
    if not sidecar.is_file():
        return
    expected = sidecar.read_text(encoding="ascii", errors="replace").split()
    if not expected:
        return
    actual = hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()
    if actual != expected[0].lower():
        path.unlink()
        raise ArtifactError(f"{path}: sha1 does not match the repository's; deleted, fetch again")


def _show_download(line: str) -> str | None:
    if line.startswith("[INFO] Downloaded from"):
        url = line.split(": ", 1)[-1].split(" (", 1)[0]
        return f"  downloaded {url.rsplit('/', 1)[-1]}"
    if line.startswith("[ERROR]") and "Help" not in line and line.strip() != "[ERROR]":
        return "  " + line
    return None


def _pom(deps: Sequence[Coordinate]) -> str:
    items = "\n".join(
        "    <dependency>"
        f"<groupId>{escape(d.group)}</groupId>"
        f"<artifactId>{escape(d.artifact)}</artifactId>"
        f"<version>{escape(d.version)}</version>"
        + (f"<classifier>{escape(d.classifier)}</classifier>" if d.classifier else "")
        + "</dependency>"
        for d in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by `fl artifacts fetch`: only used to resolve jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fedge.artifacts</groupId>
  <artifactId>resolve</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{items}
  </dependencies>
</project>
"""


def _write_settings(workdir: Path, repo_url: str) -> Path:
    path = workdir / "settings.xml"
    path.write_text(
        f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by `fl artifacts fetch`: every repository is mirrored to one URL. -->
<settings xmlns="http://maven.apache.org/SETTINGS/1.2.0">
  <mirrors>
    <mirror>
      <id>fl-artifacts</id>
      <mirrorOf>*</mirrorOf>
      <url>{escape(repo_url)}</url>
    </mirror>
  </mirrors>
</settings>
""",
        encoding="utf-8",
    )
    return path
