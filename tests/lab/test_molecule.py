"""The Molecule scenarios as pytest tests (``pytest -m lab tests/lab``).

Each test prepares the container engine itself (``lab/setup-podman.sh start``:
apt packages and Podman's Docker-compatible socket, or a Docker engine that
already answers), builds the lab image when it changed, and runs one scenario
through ``lab/molecule_run.py``. They take minutes, so they are marked ``lab``
(``make test`` runs them after the rest; ``make test-lab`` alone). A machine
that cannot run containers fails them, so a broken engine never passes as a
skip; set FL_TEST_LAB_OPTIONAL=1 to skip instead. ``make molecule`` is the
same with progress output. Timings: reports/molecule/<scenario>.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _no_engine(reason: str) -> NoReturn:
    if os.environ.get("FL_TEST_LAB_OPTIONAL") == "1":
        pytest.skip(reason)
    pytest.fail(f"{reason} (FL_TEST_LAB_OPTIONAL=1 skips the Molecule scenarios)")


@pytest.fixture(scope="module")
def lab_env(engine_env: dict[str, str]) -> dict[str, str]:
    if (
        shutil.which("podman") is None
        and shutil.which("docker") is None
        and shutil.which("apt-get") is None
    ):
        _no_engine("no Podman or Docker, and no apt-get to install Podman")
    started = subprocess.run(
        [str(ROOT / "lab" / "setup-podman.sh"), "start"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if started.returncode != 0:
        _no_engine(f"no container engine: {started.stderr.strip()[-300:]}")
    env = dict(engine_env)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    subprocess.run(
        [str(ROOT / "lab" / "image" / "build.sh")], cwd=ROOT, env=env, check=True, timeout=1800
    )
    return env


@pytest.mark.timeout(40 * 60)
@pytest.mark.parametrize("scenario", ["default", "scale_out"])
def test_molecule_scenario(lab_env: dict[str, str], scenario: str) -> None:
    # Prepare: the lab image and the engine come from the fixture.
    # Execute
    result = subprocess.run(
        [sys.executable, str(ROOT / "lab" / "molecule_run.py"), scenario],
        cwd=ROOT,
        env=lab_env,
        check=False,
    )
    # Assert
    report = json.loads(
        (ROOT / "reports" / "molecule" / f"{scenario}.json").read_text(encoding="utf-8")
    )
    assert result.returncode == 0, f"molecule {scenario} {report['status']}: see {report['log']}"
