"""The probe roles run before pip (roles/common/files/dist_installed.py).

It decides whether a re-converge skips pip, so a wrong "ok" would leave a
host without a package its extras need. Each test builds distributions as
real ``*.dist-info`` metadata on a temporary path and runs the script as the
roles do: ``python -c <script> NAME VERSION EXTRAS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "common" / "files" / "dist_installed.py"


def _dist(site: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _probe(site: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(site))
    done = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT.read_text(encoding="utf-8"), *args],
        env=env,
        cwd=site,  # -c puts the working directory on sys.path: keep the repo's metadata out
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    _dist(
        site,
        "fl-runtime",
        "0.3.0",
        (
            "numpy>=1.26",
            'pyspark<4.2.1,>=4.0; extra == "spark"',
            'matplotlib<4,>=3.8; extra == "report"',
            'fl-runtime[report]; extra == "dashboard"',
            'fastapi<1,>=0.135; extra == "dashboard"',
        ),
    )
    _dist(site, "numpy", "2.1.0")
    _dist(site, "pyspark", "4.2.0")
    _dist(site, "fastapi", "0.136.0")
    return site


def test_ok_when_version_and_extras_are_installed(site: Path) -> None:
    assert _probe(site, "fl-runtime", "0.3.0", "spark") == "ok"


def test_names_a_different_version(site: Path) -> None:
    assert (
        _probe(site, "fl-runtime", "0.4.0", "") == "fl-runtime 0.3.0 is installed, 0.4.0 is wanted"
    )


def test_names_a_missing_distribution(site: Path) -> None:
    assert _probe(site, "nothing-here", "1.0", "") == "nothing-here is not installed"


def test_follows_an_extra_that_names_the_distribution_itself(site: Path) -> None:
    # dashboard pulls in fl-runtime[report], whose matplotlib is not installed.
    assert (
        _probe(site, "fl-runtime", "0.3.0", "dashboard") == "matplotlib is missing (extra report)"
    )


def test_ok_once_the_nested_extra_is_installed(site: Path) -> None:
    _dist(site, "matplotlib", "3.9.0")
    assert _probe(site, "fl-runtime", "0.3.0", "dashboard,spark") == "ok"


def test_names_a_missing_base_requirement(site: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    _dist(bare, "fl-runtime", "0.3.0", ("numpy>=1.26",))
    assert _probe(bare, "fl-runtime", "0.3.0", "") == "numpy is missing"
