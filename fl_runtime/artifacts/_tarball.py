"""The official Kafka tarball as an alternative source, checked against its sha512."""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fl_runtime.artifacts._proc import Progress
from fl_runtime.errors import ArtifactError

_NAME = re.compile(r"kafka_(?P<scala>\d+\.\d+)-(?P<version>\d+\.\d+\.\d+)\.(?:tgz|tar\.gz)$")
_CHUNK = 1 << 20
_REPORT_EVERY = 32 << 20


@dataclass(frozen=True)
class Tarball:
    """Where the tarball is (URL or local path) and the sha512 it must have."""

    location: str
    sha512: str

    def version(self) -> str | None:
        """The Kafka version in the file name (``kafka_2.13-4.1.1.tgz``), if it has one."""
        match = _NAME.search(self.location.rstrip("/").rsplit("/", 1)[-1])
        return match["version"] if match else None


def obtain(tarball: Tarball, scratch: Path, progress: Progress) -> Path:
    """A local copy of the tarball whose sha512 matches; ArtifactError otherwise."""
    expected = tarball.sha512.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{128}", expected):
        raise ArtifactError("--kafka-tarball-sha512 must be 128 hex digits")
    if re.match(r"^(https?|file)://", tarball.location):
        path = scratch / "kafka.tgz"
        _download(tarball.location, path, progress)
    else:
        path = Path(tarball.location).expanduser()
        if not path.is_file():
            raise ArtifactError(f"{path}: no such Kafka tarball")
    actual = _sha512(path)
    if actual != expected:
        raise ArtifactError(
            f"{tarball.location}: sha512 {actual[:16]}..., expected {expected[:16]}..."
        )
    return path


def extract_libs(path: Path, dest: Path) -> list[Path]:
    """Extract the tarball's ``libs/*.jar`` into ``dest``; return them."""
    dest.mkdir(parents=True, exist_ok=True)
    jars: list[Path] = []
    with tarfile.open(path, "r:*") as archive:
        for member in archive.getmembers():
            parts = member.name.split("/")
            if len(parts) == 3 and parts[1] == "libs" and parts[2].endswith(".jar"):
                if not member.isfile():
                    continue
                source = archive.extractfile(member)
                if source is None:
                    continue
                target = dest / parts[2]
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                jars.append(target)
    if not jars:
        raise ArtifactError(f"{path}: no <top>/libs/*.jar inside; is it a Kafka binary tarball?")
    return sorted(jars)


def _download(url: str, path: Path, progress: Progress) -> None:
    progress(f"  downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as out:
            done, reported = 0, 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if done - reported >= _REPORT_EVERY:
                    progress(f"  {done >> 20} MiB")
                    reported = done
    except OSError as exc:
        raise ArtifactError(f"{url}: download failed ({exc})") from None


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
