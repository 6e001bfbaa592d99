"""Shared by the lab tests: the container engine's environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def engine_env() -> dict[str, str]:
    """This environment plus the exports of `lab/setup-podman.sh env` (DOCKER_HOST, ...)."""
    exports = subprocess.run(
        [str(ROOT / "lab" / "setup-podman.sh"), "env"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    env = dict(os.environ)
    for line in exports.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env
