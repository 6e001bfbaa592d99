"""Can a host run its fedge tiers? A pure check over Ansible's facts.

``playbooks/validate_hosts.yml`` gathers facts and free disk on every host
before a deployment and asks the ``fedge_host_problems`` filter
(``plugins/filter/fedge.py``) for the problems of each; the filter calls
:func:`host_problems`. The requirements below are the one place they are set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SUPPORTED = {"Debian": 12, "Ubuntu": 22}  # distribution -> oldest major version
ARCHITECTURES = ("x86_64", "aarch64")
# Minimum memory (MiB) and free disk on / (GiB) by inventory group; a host needs the
# largest of its groups' figures.
REQUIREMENTS: dict[str, tuple[int, float]] = {
    "cloud": (3500, 10),
    "kafka_broker": (2000, 10),
    "fog": (1800, 6),
    "spark_worker": (1800, 6),
    "devices": (400, 2),
    "all": (400, 2),
}


def needs(groups: Iterable[str]) -> tuple[int, float]:
    """The memory (MiB) and free disk (GiB) a host of these groups needs."""
    mine = [REQUIREMENTS[g] for g in {*groups, "all"} if g in REQUIREMENTS]
    return max(m for m, _ in mine), max(d for _, d in mine)


def host_problems(
    facts: Mapping[str, Any], groups: Iterable[str], root_free_bytes: int
) -> list[str]:
    """Everything that keeps this host from running its groups' tiers, at once."""
    groups = list(groups)
    memory_mb, disk_gb = needs(groups)
    found = []
    distro = str(facts.get("distribution", "?"))
    major = int(str(facts.get("distribution_major_version", "0")).split(".")[0] or 0)
    if distro not in SUPPORTED:
        found.append(
            f"OS {distro} is not supported (use Debian 12+, Raspberry Pi OS bookworm or "
            "Ubuntu 22.04+)"
        )
    elif major < SUPPORTED[distro]:
        version = facts.get("distribution_version", major)
        found.append(f"{distro} {version} is too old (need {SUPPORTED[distro]}+)")
    arch = str(facts.get("architecture", "?"))
    if arch not in ARCHITECTURES:
        found.append(
            f"CPU architecture {arch} is not supported (need 64-bit: "
            f"{' or '.join(ARCHITECTURES)}; 32-bit Raspberry Pi OS will not do)"
        )
    memtotal = int(facts.get("memtotal_mb", 0))
    if memtotal < memory_mb:
        found.append(
            f"memory {memtotal} MiB is below the {memory_mb} MiB its groups "
            f"({', '.join(groups)}) need"
        )
    free_gb = round(root_free_bytes / 2**30, 1)
    if free_gb < disk_gb:
        found.append(f"free disk on / is {free_gb} GiB, below the {disk_gb:g} GiB needed")
    if facts.get("service_mgr") != "systemd":
        found.append(f"service manager is {facts.get('service_mgr')}, fedge needs systemd")
    return found
