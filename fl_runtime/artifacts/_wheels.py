"""The wheels steps: ``wheels/*.whl`` to install ``fl-runtime[spark,dashboard]`` offline on a host.

``wheels/fl_runtime`` builds the fl_runtime wheel from a copy of the source
tree (no ``build/`` directory lands in the checkout), reproducibly
(``SOURCE_DATE_EPOCH``), so the same sources always give the same bytes.
``wheels/<target>`` then collects its dependencies: ``pip wheel`` for this
machine (it also builds pyspark, which is published as an sdist only), and for
another host (``--platform manylinux_2_36_aarch64`` for a Raspberry Pi on
Debian 12) ``pip download --only-binary=:all:`` of that platform's binary
wheels, taking the pure-Python ones just built from a local directory. A code
change rebuilds only the first step. A host installs with::

    pip install --no-index --find-links wheels/ 'fl-runtime[spark,dashboard]'
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import sysconfig
from pathlib import Path

from fl_runtime.artifacts._manifest import load_manifest
from fl_runtime.artifacts._proc import Progress, run_tool
from fl_runtime.artifacts._steps import Staged, StepPlan
from fl_runtime.errors import ArtifactError

DIST = "fl-runtime"
OURS_STEP = "wheels/fl_runtime"
LAYOUT = "2"
_SOURCES = ("pyproject.toml", "README.md", "setup.cfg", "setup.py")
_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")
_MANYLINUX = re.compile(r"^manylinux_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>.+)$")
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_EPOCH = "315619200"  # 1980-01-02: zip's earliest date, for reproducible wheels


def source_root() -> Path:
    """The source tree this fl_runtime was imported from (it must have pyproject.toml)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise ArtifactError(f"{root}: no pyproject.toml; wheels are built from a source checkout")
    return root


def wheels_plans(
    cache_dir: Path,
    root: Path,
    extras: str,
    platforms: tuple[str, ...],
    python_version: str | None,
    progress: Progress,
) -> list[StepPlan]:
    """Two steps: the fl_runtime wheel, then its dependencies for one target.

    They are keyed apart, so a code change rebuilds only the fl_runtime wheel,
    and each target's dependency set stays valid until ``pyproject.toml`` changes.
    """
    if platforms and python_version is None:
        raise ArtifactError("--platform needs --python-version (for example 3.11)")
    target = _target_label(platforms, python_version)
    requirement = f"{DIST}[{extras}]" if extras else DIST

    def build_ours(scratch: Path) -> Staged:
        return _build_ours(root, scratch, progress)

    def build_deps(scratch: Path) -> Staged:
        ours = _our_wheel(cache_dir)
        return _build_deps(ours, extras, platforms, python_version, scratch, progress)

    metadata = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    return [
        StepPlan(OURS_STEP, {"source": source_hash(root), "layout": LAYOUT}, build_ours),
        StepPlan(
            f"wheels/{target}",
            {"target": target, "requirement": requirement, "metadata": metadata, "layout": LAYOUT},
            build_deps,
        ),
    ]


def source_hash(root: Path) -> str:
    """A digest of the files the fl_runtime wheel is built from."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _source_files(root: Path) -> list[Path]:
    paths = [root / name for name in _SOURCES if (root / name).is_file()]
    paths += [
        p
        for p in (root / "fl_runtime").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    return sorted(paths)


def _copy_sources(root: Path, dest: Path) -> Path:
    for path in _source_files(root):
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def expand_platform(tag: str) -> list[str]:
    """``manylinux_2_36_aarch64`` and every older manylinux tag a host with it accepts.

    pip's ``--platform`` takes tags literally, so a glibc 2.36 host would
    otherwise miss wheels tagged ``manylinux_2_28`` or ``manylinux2014``.
    """
    for legacy, (major, minor) in _LEGACY.items():
        if tag.startswith(legacy + "_"):
            tag = f"manylinux_{major}_{minor}_{tag[len(legacy) + 1 :]}"
    match = _MANYLINUX.match(tag)
    if match is None:
        return [tag]
    major, minor, arch = int(match["major"]), int(match["minor"]), match["arch"]
    floor = 5 if arch in ("x86_64", "i686") else 17
    tags: list[str] = []
    for glibc in range(minor, floor - 1, -1):
        tags.append(f"manylinux_{major}_{glibc}_{arch}")
        tags += [f"{old}_{arch}" for old, ver in _LEGACY.items() if ver == (major, glibc)]
    return tags


def _target_label(platforms: tuple[str, ...], python_version: str | None) -> str:
    if not platforms:
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        return f"{plat}-cp{sys.version_info.major}{sys.version_info.minor}"
    assert python_version is not None
    return f"{platforms[0]}-cp{python_version.replace('.', '')}"


def _build_ours(root: Path, scratch: Path, progress: Progress) -> Staged:
    src = _copy_sources(root, scratch / "src")
    progress("  pip wheel: building fl_runtime")
    _pip(["wheel", "--no-deps", "--wheel-dir", str(scratch / "out"), str(src)], progress)
    built = sorted((scratch / "out").glob("fl_runtime-*.whl"))
    if len(built) != 1:
        raise ArtifactError(f"pip wheel built {len(built)} fl_runtime wheels, expected 1")
    return Staged({f"wheels/{built[0].name}": (built[0], f"built:{root}")})


def _our_wheel(cache_dir: Path) -> Path:
    step = load_manifest(cache_dir).steps.get(OURS_STEP)
    if step is None or len(step.files) != 1:
        raise ArtifactError(f"{cache_dir}: the fl_runtime wheel has not been built")
    return cache_dir / next(iter(step.files))


def _build_deps(
    ours: Path,
    extras: str,
    platforms: tuple[str, ...],
    python_version: str | None,
    scratch: Path,
    progress: Progress,
) -> Staged:
    host = scratch / "host"
    requirement = f"{ours}[{extras}]" if extras else str(ours)
    progress("  pip wheel: collecting the dependencies for this machine")
    _pip(["wheel", "--wheel-dir", str(host), requirement], progress)
    chosen = host
    if platforms:
        chosen = scratch / "target"
        tags = [t for p in platforms for t in expand_platform(p)]
        progress(f"  pip download: binary wheels for {platforms[0]}, Python {python_version}")
        argv = ["download", "--only-binary=:all:", "--implementation", "cp"]
        argv += ["--python-version", str(python_version), "--dest", str(chosen)]
        argv += [arg for tag in tags for arg in ("--platform", tag)]
        argv += ["--find-links", str(host), requirement]
        _pip(argv, progress)
    files = {
        f"wheels/{wheel.name}": (wheel, _source(wheel))
        for wheel in sorted(chosen.glob("*.whl"))
        if wheel.name != ours.name
    }
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
    return Staged(files, {"index": index, "platforms": " ".join(platforms) or "host"})


def _source(wheel: Path) -> str:
    match = _WHEEL_NAME.match(wheel.name)
    if match is None:
        return f"pypi:{wheel.name}"
    return f"pypi:{match['name']}=={match['version']}"


def _pip(args: list[str], progress: Progress) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.setdefault("SOURCE_DATE_EPOCH", _EPOCH)
    run_tool(
        [sys.executable, "-m", "pip", *args],
        what=f"pip {args[0]}",
        progress=progress,
        show=_show_pip,
        env=env,
    )


def _show_pip(line: str) -> str | None:
    text = line.strip()
    if text.startswith(("Collecting ", "Saved ", "Building wheel", "Created wheel", "ERROR")):
        return "  " + text.split(" (from", 1)[0]
    return None
