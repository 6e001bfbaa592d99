"""``manifest.json``: every cached file with its sha256, size and source.

The manifest groups files by *step* (``kafka/4.4.0``, ``spark-kafka/4.3.0``,
``wheels/linux_x86_64-cp311``). A step also records the *key* it was fetched
for; a later fetch whose request is satisfied by that key, and whose files all
still match their checksums, skips the step without touching the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fl_runtime.errors import ArtifactError

MANIFEST_NAME = "manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One cached file: its checksum, its size and where it came from."""

    sha256: str
    size: int
    source: str


@dataclass(frozen=True)
class Step:
    """The files one fetch step put into the cache, and what it was asked for."""

    name: str
    key: Mapping[str, str]
    files: Mapping[str, FileEntry]
    info: Mapping[str, str] = field(default_factory=dict)

    def satisfies(self, wanted: Mapping[str, str]) -> bool:
        """True if every requested key value matches what this step recorded."""
        return all(self.key.get(k) == v for k, v in wanted.items())


@dataclass(frozen=True)
class Manifest:
    """All steps in a cache directory. Paths are relative to the cache root."""

    steps: Mapping[str, Step] = field(default_factory=dict)

    def with_step(self, step: Step) -> Manifest:
        return Manifest({**self.steps, step.name: step})

    def without_step(self, name: str) -> Manifest:
        return Manifest({k: v for k, v in self.steps.items() if k != name})

    def files(self) -> Iterator[tuple[str, FileEntry]]:
        for step in self.steps.values():
            yield from step.files.items()

    def steps_named(self, prefix: str) -> list[Step]:
        """Steps whose name starts with ``prefix`` (``"kafka/"``), in name order."""
        return [s for n, s in sorted(self.steps.items()) if n.startswith(prefix)]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def entry_for(path: Path, source: str) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), size=path.stat().st_size, source=source)


def step_problems(cache_dir: Path, step: Step) -> list[str]:
    """What is wrong with a step's files on disk: missing, truncated or altered."""
    problems: list[str] = []
    if not step.files:
        problems.append(f"{step.name}: records no files")
    for rel, entry in sorted(step.files.items()):
        path = cache_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != entry.size:
            problems.append(f"{rel}: size {path.stat().st_size}, expected {entry.size}")
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{rel}: sha256 mismatch")
    return problems


def load_manifest(cache_dir: Path) -> Manifest:
    """The cache's manifest; an empty one if there is none yet."""
    path = cache_dir / MANIFEST_NAME
    if not path.exists():
        return Manifest()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return _from_doc(doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: not a valid artifact manifest ({exc})") from None


def save_manifest(cache_dir: Path, manifest: Manifest) -> None:
    """Write the manifest atomically (temporary file, then rename)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_to_doc(manifest), indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, path)


def _to_doc(manifest: Manifest) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "steps": {
            name: {
                "key": dict(step.key),
                "info": dict(step.info),
                "files": {
                    rel: {"sha256": e.sha256, "size": e.size, "source": e.source}
                    for rel, e in sorted(step.files.items())
                },
            }
            for name, step in sorted(manifest.steps.items())
        },
    }


def _from_doc(doc: Any) -> Manifest:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"unknown format {doc.get('format') if isinstance(doc, dict) else doc!r}")
    steps: dict[str, Step] = {}
    for name, raw in doc["steps"].items():
        files = {
            str(rel): FileEntry(str(e["sha256"]), int(e["size"]), str(e["source"]))
            for rel, e in raw["files"].items()
        }
        key = {str(k): str(v) for k, v in raw["key"].items()}
        info = {str(k): str(v) for k, v in raw.get("info", {}).items()}
        steps[str(name)] = Step(str(name), key, files, info)
    return Manifest(steps)
