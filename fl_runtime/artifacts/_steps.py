"""Running fetch steps against a cache: skip what is intact, redo what is not.

A step is skipped, with no network request and no subprocess, when the
manifest records it for a key that satisfies the request and every one of its
files still has the recorded size and sha256. Otherwise the step builds its
files in a scratch directory inside the cache and they are moved into place;
the manifest is rewritten after each step, so an interrupted fetch never
leaves a manifest that vouches for files it does not have.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fl_runtime.artifacts._manifest import (
    Manifest,
    Step,
    entry_for,
    load_manifest,
    save_manifest,
    step_problems,
)
from fl_runtime.artifacts._proc import Progress
from fl_runtime.errors import ArtifactError

SCRATCH = ".tmp"
LOCK = ".lock"


@dataclass(frozen=True)
class Staged:
    """What a step built: cache-relative path -> (file in scratch, source)."""

    files: Mapping[str, tuple[Path, str]]
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepPlan:
    """One step of a fetch: its name, the key it must satisfy and how to build it."""

    name: str
    key: Mapping[str, str]
    build: Callable[[Path], Staged]
    owned_dir: str | None = None  # a directory only this step writes; emptied first


def run_plans(cache_dir: Path, plans: Sequence[StepPlan], progress: Progress) -> Manifest:
    """Bring every step up to date in ``cache_dir``; return the final manifest."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    _ignore_in_git(cache_dir)
    with locked(cache_dir, progress):
        manifest = load_manifest(cache_dir)
        try:
            for plan in plans:
                manifest = _run_one(cache_dir, manifest, plan, progress)
        finally:
            with contextlib.suppress(OSError):
                (cache_dir / SCRATCH).rmdir()  # only if empty: another fetch may use it
        return manifest


def _run_one(cache_dir: Path, manifest: Manifest, plan: StepPlan, progress: Progress) -> Manifest:
    current = manifest.steps.get(plan.name)
    if current is not None and current.satisfies(plan.key):
        problems = step_problems(cache_dir, current)
        if not problems:
            progress(f"{plan.name}: up to date ({len(current.files)} files)")
            return manifest
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        progress(f"{plan.name}: {problems[0]}{more}; fetching again")
    else:
        progress(f"{plan.name}: fetching")
    scratch_root = cache_dir / SCRATCH
    scratch_root.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="step-", dir=scratch_root))
    try:
        staged = plan.build(scratch)
        manifest = manifest.without_step(plan.name)
        save_manifest(cache_dir, manifest)
        step = _install(cache_dir, manifest, plan, staged, current)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    manifest = manifest.with_step(step)
    save_manifest(cache_dir, manifest)
    progress(f"{plan.name}: done ({len(step.files)} files)")
    return manifest


def _install(
    cache_dir: Path, others: Manifest, plan: StepPlan, staged: Staged, old: Step | None
) -> Step:
    if not staged.files:
        raise ArtifactError(f"{plan.name}: the step produced no files")
    if plan.owned_dir is not None:
        shutil.rmtree(cache_dir / plan.owned_dir, ignore_errors=True)
    elif old is not None:
        kept = {rel for rel, _ in others.files()} | set(staged.files)
        for rel in set(old.files) - kept:
            (cache_dir / rel).unlink(missing_ok=True)
    entries = {}
    for rel, (path, source) in sorted(staged.files.items()):
        entries[rel] = entry_for(path, source)
        dest = cache_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    return Step(plan.name, dict(plan.key), entries, dict(staged.info))


@contextmanager
def locked(cache_dir: Path, progress: Progress, *, shared: bool = False) -> Iterator[None]:
    """One fetch at a time per cache, across processes; readers (``shared``) wait for it."""
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with (cache_dir / LOCK).open("a") as fh:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"{cache_dir}: a fetch is running; waiting for it")
            fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ignore_in_git(cache_dir: Path) -> None:
    marker = cache_dir / ".gitignore"
    if not marker.exists():
        marker.write_text("# Downloaded artifacts: never commit them.\n*\n", encoding="utf-8")
