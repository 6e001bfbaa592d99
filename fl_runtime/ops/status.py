"""What `fl status` reads on a host, and the pure checks over what it read.

``fl status host`` runs on every host and prints one JSON document: its units
(systemd's ActiveState, UnitFileState and NRestarts), and, where asked, the
cluster's topics and the last aggregation round, each read through the host's
own ``fl.toml`` (bootstrap servers, topic prefix, log path), so no port, path or
prefix is repeated in a playbook. ``fl status table`` takes every host's document
and prints the health table; :func:`problems` lists what is wrong.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fl_runtime.cloud.agglog import RoundRecord

# The fedge units are found wherever they are; other units are named per host.
FL_UNITS = "fl-*.service"
_SHOW = ("Id", "ActiveState", "UnitFileState", "NRestarts")
# UnitFileState values of a unit that starts at boot.
ENABLED = frozenset({"enabled", "enabled-runtime", "static", "generated"})


def read_units(expected: Sequence[str]) -> list[dict[str, Any]]:
    """The state of ``expected`` units and of every fl-* unit on this host."""
    listed = subprocess.run(
        ["systemctl", "list-unit-files", "--no-legend", "--plain", FL_UNITS],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    names = sorted(set(expected) | {line.split()[0] for line in listed.splitlines() if line})
    return [_show(name) for name in names]


def _show(name: str) -> dict[str, Any]:
    out = subprocess.run(
        ["systemctl", "show", "--property", ",".join(_SHOW), name],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {
        "name": name,
        "active": props.get("ActiveState", "unknown"),
        "enabled": props.get("UnitFileState", "") or "not-found",
        "restarts": int(props.get("NRestarts", "0") or 0),
    }


def round_summary(record: RoundRecord | None) -> dict[str, Any] | None:
    """The parts of a round the status table shows."""
    if record is None:
        return None
    return {
        "round": record.round,
        "global_version": record.global_version,
        "finished_at": record.finished_at,
        "nodes": record.node_ids,
        "global_loss": record.global_loss,
        "global_f1": record.global_f1,
    }


def rounds_with_nodes(records: Iterable[RoundRecord], nodes: Iterable[str], after: float) -> int:
    """How many rounds finished after ``after`` and included every node of ``nodes``."""
    wanted = {str(n) for n in nodes}
    return sum(1 for r in records if r.finished_at > after and wanted <= set(r.node_ids))


CHECKS = ("units", "topics", "rounds")


def problems(
    statuses: Mapping[str, Mapping[str, Any]],
    fog_nodes: Mapping[str, str],
    checks: Iterable[str] = CHECKS,
) -> list[str]:
    """What is wrong: units down or not enabled, fog nodes without a topic or not in the last round.

    ``statuses`` maps each host to its ``fl status host`` document; ``fog_nodes``
    maps fog hosts to their node ids; ``checks`` picks among :data:`CHECKS`.
    """
    checks = set(checks)
    found = [
        f"{host} could not report: {doc['error']}"
        for host, doc in sorted(statuses.items())
        if "error" in doc
    ]
    if "units" in checks:
        found += _unit_problems(statuses)
    if not checks & {"topics", "rounds"}:
        return found
    cluster = _cluster_view(statuses)
    if cluster is None:
        return [*found, "no host reported the topics (fl status host --topics)"]
    topics = {t["name"] for t in cluster.get("topics", [])}
    prefix = str(cluster["sensor_topic_prefix"])
    last = cluster.get("last_round") or {}
    in_round = {str(n) for n in last.get("nodes", [])}
    for host, node in sorted(fog_nodes.items()):
        if "topics" in checks and f"{prefix}{node}" not in topics:
            found.append(f"fog node {node} ({host}) has no topic {prefix}{node}")
        if "rounds" in checks and str(node) not in in_round:
            found.append(f"fog node {node} ({host}) is not in the last round")
    return found


def _unit_problems(statuses: Mapping[str, Mapping[str, Any]]) -> list[str]:
    units = [
        (host, unit) for host, doc in sorted(statuses.items()) for unit in doc.get("units", [])
    ]
    return [
        f"{host} {u['name']} is {u['active']}" for host, u in units if u["active"] != "active"
    ] + [
        f"{host} {u['name']} is not enabled at boot ({u['enabled']})"
        for host, u in units
        if u["enabled"] not in ENABLED
    ]


def render_table(statuses: Mapping[str, Mapping[str, Any]], fog_nodes: Mapping[str, str]) -> str:
    """The health table: services, topics, fog nodes and the last round."""
    lines = [f"{'HOST':<12} {'SERVICE':<26} {'STATE':<10} {'AT BOOT':<10} RESTARTS"]
    for host, doc in sorted(statuses.items()):
        for u in doc.get("units", []):
            row = f"{host:<12} {u['name']:<26} {u['active']:<10} {u['enabled']:<10} {u['restarts']}"
            lines.append(row)
    cluster = _cluster_view(statuses) or {}
    topics = {t["name"]: t for t in cluster.get("topics", [])}
    lines += ["", f"{'TOPIC':<28} {'PARTITIONS':<10} REPLICATION"]
    lines += [f"{t['name']:<28} {t['partitions']:<10} {t['replication']}" for t in topics.values()]
    last = cluster.get("last_round") or {}
    prefix = str(cluster.get("sensor_topic_prefix", ""))
    lines += ["", f"{'FOG NODE':<10} {'HOST':<12} {'TOPIC':<28} IN LAST ROUND"]
    for host, node in sorted(fog_nodes.items(), key=lambda item: item[1]):
        topic = f"{prefix}{node}" + ("" if f"{prefix}{node}" in topics else " (MISSING)")
        seen = "yes" if str(node) in {str(n) for n in last.get("nodes", [])} else "no"
        lines.append(f"{node:<10} {host:<12} {topic:<28} {seen}")
    lines.append("")
    if last:
        lines.append(
            f"Last round {last['round']} (global version {last['global_version']}) with nodes "
            f"{', '.join(map(str, last['nodes']))}: global loss {last['global_loss']}, "
            f"F1 {last['global_f1']}."
        )
    else:
        lines.append("No aggregation round yet.")
    return "\n".join(lines)


def _cluster_view(statuses: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first host document that carries the topics (the one asked with --topics)."""
    return next((doc for _, doc in sorted(statuses.items()) if "topics" in doc), None)
