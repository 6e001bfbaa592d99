#!/usr/bin/env python3
"""`make doctor`: a preflight of this machine for `make demo` and `make test`.

    python3 lab/doctor.py                      # every check, one line each
    python3 lab/doctor.py --network NAME --names dns

Each check prints one line: `ok` with what it found, or `FAIL` with what is wrong and
the fix. The exit status is 1 when a check failed. `make demo`, `make test` and
`.ci/run` run it first, after `make setup`, so a broken machine stops in seconds with
a clear message instead of minutes later inside a converge.

Name resolution is checked the way the lab resolves names (`--names hosts`): fixed
addresses and /etc/hosts entries (lab/containers.yml), which need no DNS from the
container engine. `--names dns` checks the engine's own DNS instead, for a network
or engine you mean to rely on it (Podman with CNI needs the `dnsname` plugin).
With FL_TEST_LAB_OPTIONAL=1 the container checks only warn.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "containers"
# The doctor's own scratch network, apart from the lab's so a running lab is untouched.
DOCTOR_SUBNET_PREFIX = "10.213.79"
MIN_FREE_DISK_GIB = 15.0
MIN_AVAILABLE_MEMORY_GIB = 6.0
SETUP = "run `make setup` (lab/setup-machine.sh)"


class CheckError(Exception):
    """A failed check: what is wrong, and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class Options:
    network: str | None
    names: str
    containers_optional: bool


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def lab_vars() -> dict[str, object]:
    """The lab inventory's group_vars/all.yml (lab_image, lab_subnet_prefix, ...)."""
    data = yaml.safe_load((INVENTORY / "group_vars" / "all.yml").read_text(encoding="utf-8"))
    return dict(data)


def loopback_ports() -> dict[int, str]:
    """Every port the lab publishes on the controller's loopback, with its owner."""
    ports: dict[int, str] = {}
    dash = yaml.safe_load((ROOT / "roles/dashboard/defaults/main.yml").read_text("utf-8"))
    ports[int(dash["dashboard_port"])] = "the dashboard"
    for path in sorted((INVENTORY / "group_vars").glob("*.yml")) + sorted(
        (INVENTORY / "host_vars").glob("*.yml")
    ):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if int(data.get("kafka_external_port", 0)) > 0:
            ports[int(data["kafka_external_port"])] = "Kafka's external listener"
        if "lab_mqtt_loopback_port" in data:
            ports[int(data["lab_mqtt_loopback_port"])] = f"Mosquitto of {path.stem}"
    return ports


def check_java() -> str:
    if shutil.which("java") is None:
        raise CheckError("no java on PATH", SETUP)
    out = run(["java", "-version"]).stderr
    m = re.search(r'version "(\d+)', out)
    major = int(m.group(1)) if m else 0
    if major < 17:
        raise CheckError(f"Java {major or '?'} found, 17 or newer needed", SETUP)
    if shutil.which("mvn") is None:
        raise CheckError("no mvn (Maven) on PATH", SETUP)
    maven = re.search(r"Apache Maven (\S+)", run(["mvn", "-B", "-v"]).stdout)
    if maven is None:
        raise CheckError("`mvn -v` does not answer as Apache Maven", SETUP)
    return f"Java {major}, Maven {maven.group(1)}"


def check_artifacts() -> str:
    fl = Path(sys.executable).parent / "fl"
    cache = ROOT / ".artifacts"
    if fl.exists() and run([str(fl), "artifacts", "verify", "--cache", str(cache)]).returncode == 0:
        return f"artifact cache {cache.relative_to(ROOT)} is filled and intact"
    from fl_runtime.artifacts._maven import DEFAULT_MAVEN_REPO

    url = f"{DEFAULT_MAVEN_REPO}/org/apache/kafka/kafka_2.13/maven-metadata.xml"
    try:
        with urllib.request.urlopen(url, timeout=15) as answer:
            status = answer.status
    except (urllib.error.URLError, OSError) as exc:
        raise CheckError(
            f"Maven Central does not answer ({exc}) and .artifacts is not filled",
            "connect this machine, or `fl artifacts fetch --maven-repo URL` from a mirror, "
            "or copy a filled .artifacts here",
        ) from exc
    return f"Maven Central answers (HTTP {status}); .artifacts is filled on first use"


def check_disk() -> str:
    found = []
    for path in (ROOT, Path("/var/lib/containers")):
        probe = path if path.exists() else path.parent
        free = shutil.disk_usage(probe).free / 2**30
        if free < MIN_FREE_DISK_GIB:
            raise CheckError(
                f"{free:.1f} GiB free under {path}, {MIN_FREE_DISK_GIB:.0f} GiB needed",
                f"free disk space under {probe} (`make demo-down`, `podman image prune`)",
            )
        found.append(f"{free:.0f} GiB free under {path}")
    return ", ".join(found)


def check_memory() -> str:
    info = Path("/proc/meminfo").read_text(encoding="utf-8")
    m = re.search(r"^MemAvailable:\s+(\d+) kB", info, re.M)
    available = int(m.group(1)) / 2**20 if m else 0.0
    if available < MIN_AVAILABLE_MEMORY_GIB:
        raise CheckError(
            f"{available:.1f} GiB memory available, {MIN_AVAILABLE_MEMORY_GIB:.0f} GiB needed",
            "stop other programs or labs (`make demo-down`)",
        )
    return f"{available:.0f} GiB memory available"


def check_ports() -> str:
    held = []
    for port, owner in sorted(loopback_ports().items()):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                held.append(f"{port} ({owner})")
    if held:
        raise CheckError(
            f"loopback ports in use: {', '.join(held)}",
            "`make demo-down` if the demo lab holds them, else stop what listens there",
        )
    return f"loopback ports free: {', '.join(str(p) for p in sorted(loopback_ports()))}"


def engine_cli() -> str:
    return "docker" if shutil.which("docker") else "podman"


def check_engine() -> str:
    cli = engine_cli()
    if shutil.which(cli) is None:
        raise CheckError("no docker or podman CLI", SETUP)
    out = run([cli, "version", "--format", "{{.Server.Version}}"], timeout=20)
    if out.returncode != 0:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise CheckError(
            f"the container engine does not answer at {where}: {out.stderr.strip()[:160]}",
            "run `lab/setup-podman.sh start` (make setup does) to start Podman's API socket",
        )
    return f"{cli} CLI, engine {out.stdout.strip()} at {os.environ.get('DOCKER_HOST', 'default')}"


class Scratch:
    """Containers and a network the doctor creates, removed whatever happens."""

    def __init__(self, cli: str, image: str) -> None:
        self.cli = cli
        self.image = image
        self.tag = uuid.uuid4().hex[:6]
        self.containers: list[str] = []
        self.network: str | None = None

    def create_network(self) -> str:
        name = f"fedge-doctor-{self.tag}"
        made = run(
            [self.cli, "network", "create", "--subnet", f"{DOCTOR_SUBNET_PREFIX}.0/24", name]
        )
        if made.returncode != 0:
            raise CheckError(
                f"cannot create a network: {made.stderr.strip()[:200]}",
                f"remove networks using {DOCTOR_SUBNET_PREFIX}.0/24 (`{self.cli} network ls`)",
            )
        self.network = name
        return name

    def start(self, role: str, network: str, extra: list[str], command: list[str]) -> str:
        name = f"fedge-doctor-{role}-{self.tag}"
        argv = [self.cli, "run", "-d", "--name", name, "--hostname", name, "--network", network]
        started = run([*argv, *extra, self.image, *command], timeout=120)
        if started.returncode != 0:
            raise CheckError(
                f"cannot start a container from {self.image}: {started.stderr.strip()[:200]}",
                "run `make lab-image` to build the lab image",
            )
        self.containers.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.containers:
            run([self.cli, "rm", "-f", name], timeout=60)
        if self.network:
            run([self.cli, "network", "rm", self.network], timeout=60)


SYSTEMD_FLAGS = [
    *("--privileged", "--cgroupns=host", "--tmpfs", "/run", "--tmpfs", "/run/lock"),
    *("-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"),
]


def check_systemd(scratch: Scratch, opts: Options) -> str:
    """Start the two scratch containers; the first must boot systemd."""
    if run([scratch.cli, "image", "inspect", scratch.image]).returncode != 0:
        raise CheckError(f"no lab image {scratch.image}", "run `make lab-image`")
    network = opts.network or scratch.create_network()
    fixed = opts.network is None
    a = scratch.start(
        "a",
        network,
        (["--ip", f"{DOCTOR_SUBNET_PREFIX}.11"] if fixed else []) + SYSTEMD_FLAGS,
        ["/lib/systemd/systemd"],
    )
    scratch.start(
        "b", network, ["--ip", f"{DOCTOR_SUBNET_PREFIX}.12"] if fixed else [], ["sleep", "600"]
    )
    up = run(
        [scratch.cli, "exec", a, "timeout", "90", "systemctl", "is-system-running", "--wait"],
        timeout=120,
    )
    status = up.stdout.strip()
    if status not in {"running", "degraded"}:
        raise CheckError(
            f"systemd in a privileged container reports {status or up.stderr.strip()[:120]!r}",
            "use runc and cgroupns=host (lab/podman/containers.conf), a writable /sys/fs/cgroup",
        )
    return f"a privileged container runs systemd as PID 1 ({status})"


def check_names(scratch: Scratch, opts: Options) -> str:
    """The two scratch containers resolve each other by name."""
    if len(scratch.containers) < 2:
        raise CheckError("no containers to test names with", "fix the checks above first")
    network = opts.network or str(scratch.network)
    a, b = scratch.containers[:2]
    addr = {n: container_address(scratch.cli, n) for n in (a, b)}
    if opts.names == "hosts":
        # What lab/containers.yml does: every peer's name in each host's /etc/hosts.
        for me, peer in ((a, b), (b, a)):
            line = f"{addr[peer]} {peer}"
            run([scratch.cli, "exec", me, "sh", "-c", f"echo '{line}' >> /etc/hosts"])
    for me, peer in ((a, b), (b, a)):
        got = run([scratch.cli, "exec", me, "getent", "ahostsv4", peer]).stdout.split()
        if got[:1] == [addr[peer]]:
            continue
        if opts.names == "dns":
            how, fix = (
                "the engine's DNS (off on this network)",
                "the lab itself needs no engine DNS (`make doctor` without --names dns); to rely "
                "on it, install golang-github-containernetworking-plugin-dnsname and recreate "
                f"network {network}",
            )
        else:
            how, fix = (
                "/etc/hosts entries",
                "remove stale lab host names from this machine's /etc/hosts (Podman copies "
                "them into every container)",
            )
        raise CheckError(
            f"containers on network {network} cannot resolve each other by name through {how} "
            f"({me} -> {peer}: {got[0] if got else 'not found'}, expected {addr[peer]})",
            fix,
        )
    how = "through the engine's DNS" if opts.names == "dns" else "through /etc/hosts, as the lab"
    return f"containers on network {network} resolve each other by name {how}"


def container_address(cli: str, name: str) -> str:
    out = run([cli, "inspect", "--format", "{{json .NetworkSettings.Networks}}", name]).stdout
    m = re.search(r'"IPAddress":\s*"([0-9.]+)"', out)
    return m.group(1) if m else "?"


def report(name: str, check: Callable[[], str], optional: bool = False) -> bool:
    """Run one check and print its one line; True when it passed."""
    try:
        found = check()
    except CheckError as failed:
        word = "warn" if optional else "FAIL"
        print(f"{word:<5}{name:<18} {failed.problem}; fix: {failed.fix}", flush=True)
        return optional
    except (OSError, subprocess.SubprocessError) as exc:
        word = "warn" if optional else "FAIL"
        print(f"{word:<5}{name:<18} {exc}; fix: {SETUP}", flush=True)
        return optional
    print(f"{'ok':<5}{name:<18} {found}", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--network", help="test names on this existing network, not a new one")
    parser.add_argument(
        "--names",
        choices=["hosts", "dns"],
        default="hosts",
        help="how containers resolve each other: /etc/hosts as the lab does (default), "
        "or the engine's DNS",
    )
    args = parser.parse_args(argv)
    opts = Options(
        network=args.network,
        names=args.names,
        containers_optional=os.environ.get("FL_TEST_LAB_OPTIONAL") == "1",
    )
    results = [
        report("java and maven", check_java),
        report("artifacts", check_artifacts),
        report("disk", check_disk),
        report("memory", check_memory),
        report("loopback ports", check_ports),
    ]
    optional = opts.containers_optional
    if report("container engine", check_engine, optional):
        scratch = Scratch(engine_cli(), str(lab_vars()["lab_image"]))
        try:
            results.append(
                report("systemd container", lambda: check_systemd(scratch, opts), optional)
            )
            results.append(report("container names", lambda: check_names(scratch, opts), optional))
        finally:
            scratch.cleanup()
    else:
        results.append(optional)
    failed = results.count(False)
    print(f"doctor: {'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
