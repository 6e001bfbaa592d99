#!/usr/bin/env python3
"""`make demo` and `make bench-deploy`: the containerized fedge lab end to end.

    python3 lab/demo.py demo    # lab, artifacts, site.yml, >= 10 rounds, summary
    python3 lab/demo.py bench   # fresh lab, first converge, re-converge, ratio check

Run through the Makefile, which starts Podman's Docker-compatible socket (or
uses Docker) and builds the lab image first. Ansible output goes to
reports/<demo|bench>/*.log; the console shows one line per phase and round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import demo_detection
from streaming import stream

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = "inventories/containers"
CLOUD = "cloud"
AGG_LOG = "/var/lib/fl/aggregation.jsonl"
# The cloud container's dashboard, published on the host's loopback by lab/lab.yml.
DASHBOARD_URL = "http://127.0.0.1:8050"
DASHBOARD_LOGIN = "fedge / fedge-lab"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def engine() -> str:
    return "docker" if shutil.which("docker") else "podman"


def ansible(args: list[str], log: Path, label: str) -> tuple[float, dict[str, dict[str, int]]]:
    """Run ansible-playbook, echo its plays, return (seconds, recap per host)."""
    cmd = ["ansible-playbook", *args]
    start = time.monotonic()
    recap: dict[str, dict[str, int]] = {}
    say(f"{label}: {' '.join(cmd)}  (log: {log.relative_to(ROOT)})")

    def on_line(line: str) -> None:
        if line.startswith("PLAY [") and "RECAP" not in line:
            name = line[6:].split("]", maxsplit=1)[0]
            say(f"  {label} +{time.monotonic() - start:4.0f}s  {name}")
        elif line.startswith(("fatal:", "failed:")):
            say(f"  {line.rstrip()[:300]}")
        m = RECAP.match(line)
        if m:
            recap[m.group(1)] = {
                "ok": int(m.group(2)),
                "changed": int(m.group(3)),
                "unreachable": int(m.group(4)),
                "failed": int(m.group(5)),
            }

    rc = stream(cmd, log, on_line, cwd=ROOT)
    seconds = time.monotonic() - start
    if rc != 0:
        say(f"{label} FAILED (rc {rc}) after {seconds:.0f}s; see {log.relative_to(ROOT)}")
        sys.exit(rc)
    say(f"{label}: done in {seconds:.0f}s")
    return seconds, recap


def fog_hosts() -> dict[str, dict[str, Any]]:
    """Host vars of the lab inventory's fog hosts, by fog node id."""
    out = subprocess.run(
        ["ansible-inventory", "-i", INVENTORY, "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inv = json.loads(out)
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    return {str(hostvars[h]["fog_node_id"]): hostvars[h] for h in inv["fog"]["hosts"]}


def fog_node_ids() -> list[str]:
    """The fog node ids of the lab inventory (host_vars fog_node_id of group fog)."""
    return sorted(fog_hosts())


def demo_fault(node: str) -> dict[str, Any]:
    """Bearing wear on one of node ``node``'s simulated devices, and the alert it raises."""
    port = int(fog_hosts()[node]["lab_mqtt_loopback_port"])
    return demo_detection.run(node, [f"node{node}-dev1", f"node{node}-dev2"], port, say)


def nodes_of(record: dict[str, Any]) -> list[str]:
    """The node ids that took part in one aggregation-log record."""
    return [str(p["node_id"]) for p in record.get("participants") or []]


def read_rounds() -> list[dict[str, object]]:
    out = subprocess.run(
        [engine(), "exec", CLOUD, "cat", AGG_LOG], capture_output=True, text=True, check=False
    )
    rounds = []
    for line in out.stdout.splitlines():
        try:
            rounds.append(json.loads(line))
        except ValueError:
            continue
    return rounds


def wait_rounds(
    want: int, every: list[str], timeout: float
) -> tuple[float, list[dict[str, object]]]:
    """Wait until ``want`` rounds include every node of ``every``; show each round."""
    start = time.monotonic()
    shown = 0
    while True:
        rounds = read_rounds()
        for r in rounds[shown:]:
            mark = "all nodes" if set(every) <= set(nodes_of(r)) else "partial"
            say(
                f"  round {r['round']:>3}: nodes [{','.join(nodes_of(r))}] {mark:<9}  "
                f"global loss {fmt(r.get('global_loss'))}  "
                f"F1 {fmt(r.get('global_f1'))}"
            )
        shown = len(rounds)
        complete = sum(set(every) <= set(nodes_of(r)) for r in rounds)
        if complete >= want:
            return time.monotonic() - start, rounds
        if time.monotonic() - start > timeout:
            say(f"only {complete} rounds with nodes {','.join(every)} after {timeout:.0f}s")
            sys.exit(1)
        time.sleep(5)


def run_clients() -> bool:
    """Run the README's "Reach the lab" block (lab/clients.py) against the running lab."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "lab" / "clients.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        say(f"  {line}")
    return done.returncode == 0


def fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def fmt_ms(value: object) -> str:
    return f"{value:.0f} ms" if isinstance(value, float | int) else "-"


def remove_lab(log_dir: Path) -> None:
    ansible(
        ["-i", INVENTORY, "lab/lab.yml", "-e", "lab_state=absent"],
        log_dir / "lab-remove.log",
        "remove old lab",
    )


def dashboard_answers(url: str) -> bool:
    """True when the lab's dashboard answers (401 without a login is an answer)."""
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
    return True


def write_report(out_dir: Path) -> str | None:
    """Copy the aggregation log out of the cloud container and render `fl report` from it."""
    log = out_dir / "aggregation.jsonl"
    got = subprocess.run(
        [engine(), "exec", CLOUD, "cat", AGG_LOG], capture_output=True, text=True, check=False
    )
    if got.returncode != 0:
        say(f"could not read {CLOUD}:{AGG_LOG}: {got.stderr.strip()[:200]}")
        return None
    log.write_text(got.stdout, encoding="utf-8")
    fl = shutil.which("fl")
    if fl is None:
        say("`fl` is not on PATH (run through `make demo`): no offline report")
        return None
    anomalies = out_dir / "anomalies.jsonl"
    exported = subprocess.run(
        [fl, "anomalies", "export", "--out", str(anomalies)],
        env={**os.environ, "FL_KAFKA_BOOTSTRAP_SERVERS": demo_detection.KAFKA},
        capture_output=True,
        text=True,
        check=False,
    )
    extra = ["--anomalies", str(anomalies)] if exported.returncode == 0 else []
    if exported.returncode != 0:
        say(f"fl anomalies export failed: {exported.stderr.strip()[-300:]}")
    done = subprocess.run(
        [fl, "report", "--log", str(log), "--out", str(out_dir), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        say(f"fl report failed: {done.stderr.strip()[-300:]}")
        return None
    return str((out_dir / "report.html").relative_to(ROOT))


def print_summary(mode: str, summary: dict[str, Any], path: Path) -> None:
    timings = summary["timings"]
    rows: list[dict[str, Any]] = summary.get("rounds", [])
    print()
    print("=" * 72)
    print(
        f"fedge {mode}: lab {timings['lab_create_s']:.0f}s, "
        f"first converge {timings['first_converge_s']:.0f}s, "
        f"re-converge {timings['reconverge_s']:.0f}s "
        f"({summary['reconverge_ratio']:.0%} of first; target <= 30%)"
    )
    if rows:
        print(
            f"rounds: {len(rows)}, {summary['rounds_with_all_nodes']} with every fog node"
            f" ({', '.join(summary['fog_nodes'])}), strategy {summary.get('strategy')}"
        )
        print(f"{'round':>5}  {'nodes':<10} {'global loss':>12} {'F1':>8} {'threshold':>10}")
        for r in rows:
            print(
                f"{r['round']:>5}  {','.join(r['nodes']):<10} "
                f"{fmt(r['global_loss']):>12} {fmt(r['global_f1']):>8} "
                f"{fmt(r.get('threshold')):>10}"
            )
    detection = summary.get("detection")
    if detection:
        raised = "raised" if detection["alert_raised"] else "NOT raised"
        print(
            f"detection: alert {raised} for {detection['device']} ({detection['fault']}), "
            f"reading to alert {fmt_ms(detection['alert_latency_ms'])}; "
            f"{detection['alerts_raised']} alerts in all, "
            f"precision {fmt(detection['precision'])}, recall {fmt(detection['recall'])}, "
            f"detection latency p50 {fmt_ms(detection['latency_p50_ms'])}, "
            f"p99 {fmt_ms(detection['latency_p99_ms'])}"
        )
    print(f"summary: {path.relative_to(ROOT)}")
    if mode == "demo":
        if summary.get("report"):
            print(
                f"report:  {summary['report']} (convergence, participation, per-node table,"
                " detection quality)"
            )
        dashboard = summary.get("dashboard", {"url": DASHBOARD_URL, "answers": False})
        state = "up" if dashboard["answers"] else "not answering yet"
        print(f"dashboard: {dashboard['url']} ({state}; lab login {DASHBOARD_LOGIN})")
        print("health table: make lab-status    remove the lab: make demo-down")
    print("=" * 72)


def demo_phase(
    want: int, timeout: float, fog_ids: list[str], timings: dict[str, float]
) -> tuple[list[dict[str, object]], dict[str, Any], bool]:
    """Rounds, a fault and its alert, then the README's clients; fills ``timings``."""
    say(
        f"waiting for {want} aggregation rounds with nodes {', '.join(fog_ids)}"
        f" (the log is {CLOUD}:{AGG_LOG})"
    )
    timings["rounds_s"], rounds = wait_rounds(want, fog_ids, timeout)
    say("detection: a fault on one device, its alert on MQTT and in the anomalies topic")
    t_detect = time.monotonic()
    detection = demo_fault(fog_ids[0])
    timings["detection_s"] = time.monotonic() - t_detect
    say("the README's operator clients (kcat, mosquitto_sub, mosquitto_pub) from this machine")
    return rounds, detection, run_clients()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["demo", "bench"])
    parser.add_argument(
        "--rounds", type=int, default=10, help="rounds with every fog node to wait for (demo)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the rounds")
    parser.add_argument(
        "--keep", action="store_true", help="reuse a running lab instead of a fresh one"
    )
    args = parser.parse_args()

    out_dir = ROOT / "reports" / args.mode
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    if args.mode == "demo":
        timings["artifacts_s"], _ = ansible(
            ["playbooks/artifacts.yml"], out_dir / "artifacts.log", "artifacts"
        )
    if not args.keep:
        remove_lab(out_dir)
    timings["lab_create_s"], _ = ansible(
        ["-i", INVENTORY, "lab/lab.yml"], out_dir / "lab.log", "lab creation"
    )
    timings["first_converge_s"], first = ansible(
        ["-i", INVENTORY, "playbooks/site.yml"], out_dir / "converge-1.log", "first converge"
    )

    fog_ids = fog_node_ids()
    rounds: list[dict[str, object]] = []
    detection: dict[str, Any] = {}
    clients_ok = False
    if args.mode == "demo":
        rounds, detection, clients_ok = demo_phase(args.rounds, args.timeout, fog_ids, timings)

    timings["reconverge_s"], second = ansible(
        ["-i", INVENTORY, "playbooks/site.yml"], out_dir / "converge-2.log", "re-converge"
    )
    ratio = timings["reconverge_s"] / timings["first_converge_s"]
    changed = {h: s["changed"] for h, s in second.items() if s["changed"]}
    timings["total_s"] = time.monotonic() - t0

    summary: dict[str, object] = {
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "reconverge_ratio": round(ratio, 3),
        "reconverge_within_30_percent": ratio <= 0.30,
        "reconverge_changed_hosts": changed,
        "first_converge_recap": first,
        "reconverge_recap": second,
        "fog_nodes": fog_ids,
    }
    if rounds:
        rows = [
            {
                "round": r["round"],
                "nodes": nodes_of(r),
                "all_nodes": set(fog_ids) <= set(nodes_of(r)),
                "global_loss": r.get("global_loss"),
                "global_f1": r.get("global_f1"),
                "strategy": r.get("strategy"),
                "threshold": r.get("threshold"),
            }
            for r in rounds
        ]
        summary["strategy"] = rows[-1]["strategy"] if rows else None
        summary["rounds"] = rows
        summary["rounds_with_all_nodes"] = sum(bool(r["all_nodes"]) for r in rows)
        summary["participating_nodes"] = sorted({n for r in rounds for n in nodes_of(r)})
        summary["report"] = write_report(out_dir)
        summary["readme_clients_work"] = clients_ok
        summary["detection"] = detection
        summary["dashboard"] = {
            "url": DASHBOARD_URL,
            "answers": dashboard_answers(DASHBOARD_URL + "/api/health"),
        }
    name = "summary.json" if args.mode == "demo" else "deploy.json"
    (out_dir / name).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print_summary(args.mode, summary, out_dir / name)
    if changed:
        print(f"re-converge changed hosts: {changed}", file=sys.stderr)
    if rounds and not detection.get("alert_raised"):
        print("demo: the injected fault raised no alert", file=sys.stderr)
        return 1
    if rounds and not summary["readme_clients_work"]:
        print("demo: the README's kcat/mosquitto examples failed against the lab", file=sys.stderr)
        return 1
    if args.mode == "bench" and ratio > 0.30:
        print(
            f"bench-deploy: re-converge took {ratio:.0%} of the first converge (> 30%)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
