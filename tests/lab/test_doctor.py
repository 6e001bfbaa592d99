"""`make doctor` on a network whose containers cannot resolve names through DNS.

Podman with CNI and no `dnsname` plugin creates networks with DNS off. The lab
does not need it (/etc/hosts entries), so the doctor passes its name check there
in its default mode; asked to rely on the engine's DNS (`--names dns`), it must
fail with one line that names the fix. Marked `lab`: it needs a container engine.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module")
def no_dns_network(engine_env: dict[str, str]) -> Iterator[str]:
    if shutil.which("podman") is None:
        pytest.skip("a network without DNS needs Podman (Docker's user networks always have it)")
    env = engine_env
    name = f"fedge-nodns-{uuid.uuid4().hex[:6]}"
    # DNS off whether or not the dnsname plugin is installed; a subnet of its own,
    # apart from the lab's and the doctor's scratch network.
    subprocess.run(
        ["podman", "network", "create", "--disable-dns", "--subnet", "10.213.77.0/24", name],
        env=env,
        check=True,
        capture_output=True,
    )
    yield name
    subprocess.run(
        ["docker", "network", "rm", "-f", name], env=env, check=False, capture_output=True
    )


def _doctor(network: str, names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "doctor",
            f"DOCTOR_ARGS=--network {network} --names {names}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _line(output: str, check: str) -> str:
    lines = [line for line in output.splitlines() if check in line]
    assert lines, f"no {check!r} line in:\n{output[-2000:]}"
    return lines[0]


@pytest.mark.timeout(900)
def test_doctor_fails_naming_the_fix_when_names_need_dns_that_is_off(no_dns_network: str) -> None:
    # Execute
    result = _doctor(no_dns_network, "dns")
    # Assert
    line = _line(result.stdout, "container names")
    assert result.returncode != 0
    assert line.startswith("FAIL")
    assert f"containers on network {no_dns_network} cannot resolve each other by name" in line
    assert "fix:" in line and "golang-github-containernetworking-plugin-dnsname" in line


@pytest.mark.timeout(900)
def test_doctor_passes_names_on_the_same_network_the_way_the_lab_resolves(
    no_dns_network: str,
) -> None:
    # Execute
    result = _doctor(no_dns_network, "hosts")
    # Assert
    line = _line(result.stdout, "container names")
    assert line.startswith("ok"), line
    assert "systemd container" in result.stdout
    assert _line(result.stdout, "systemd container").startswith("ok")
