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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = "inventories/containers"
CLOUD = "cloud"
AGG_LOG = "/var/lib/fl/aggregation.jsonl"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def engine() -> str:
    return "docker" if shutil.which("docker") else "podman"


def ansible(args: list[str], log: Path, label: str) -> tuple[float, dict[str, dict[str, int]]]:
    """Run ansible-playbook, echo its plays, return (seconds, recap per host)."""
    cmd = ["ansible-playbook", *args]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    start = time.monotonic()
    recap: dict[str, dict[str, int]] = {}
    say(f"{label}: {' '.join(cmd)}  (log: {log.relative_to(ROOT)})")
    with (
        log.open("w", encoding="utf-8") as out,
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith("PLAY [") and "RECAP" not in line:
                name = line[6:].split("]")[0]
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
        rc = proc.wait()
    seconds = time.monotonic() - start
    if rc != 0:
        say(f"{label} FAILED (rc {rc}) after {seconds:.0f}s; see {log.relative_to(ROOT)}")
        sys.exit(rc)
    say(f"{label}: done in {seconds:.0f}s")
    return seconds, recap


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


def wait_rounds(want: int, timeout: float) -> tuple[float, list[dict[str, object]]]:
    start = time.monotonic()
    shown = 0
    while True:
        rounds = read_rounds()
        for r in rounds[shown:]:
            nodes = ",".join(str(p["node_id"]) for p in r.get("participants", []))  # type: ignore[union-attr]
            say(
                f"  round {r['round']:>3}: nodes [{nodes}]  "
                f"global loss {fmt(r.get('global_loss'))}  "
                f"F1 {fmt(r.get('global_f1'))}"
            )
        shown = len(rounds)
        if len(rounds) >= want:
            return time.monotonic() - start, rounds
        if time.monotonic() - start > timeout:
            say(f"only {len(rounds)} rounds after {timeout:.0f}s")
            sys.exit(1)
        time.sleep(5)


def fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def remove_lab(log_dir: Path) -> None:
    ansible(
        ["-i", INVENTORY, "lab/lab.yml", "-e", "lab_state=absent"],
        log_dir / "lab-remove.log",
        "remove old lab",
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["demo", "bench"])
    parser.add_argument("--rounds", type=int, default=10, help="rounds to wait for (demo)")
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

    rounds: list[dict[str, object]] = []
    if args.mode == "demo":
        say(f"waiting for {args.rounds} aggregation rounds (the log is {CLOUD}:{AGG_LOG})")
        timings["rounds_s"], rounds = wait_rounds(args.rounds, args.timeout)

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
    }
    if rounds:
        summary["rounds"] = [
            {
                "round": r["round"],
                "nodes": [p["node_id"] for p in r.get("participants", [])],  # type: ignore[union-attr]
                "global_loss": r.get("global_loss"),
                "global_f1": r.get("global_f1"),
            }
            for r in rounds
        ]
        summary["participating_nodes"] = sorted({n for r in summary["rounds"] for n in r["nodes"]})  # type: ignore[index]
    name = "summary.json" if args.mode == "demo" else "deploy.json"
    (out_dir / name).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print()
    print("=" * 72)
    print(
        f"fedge {args.mode}: lab {timings['lab_create_s']:.0f}s, "
        f"first converge {timings['first_converge_s']:.0f}s, "
        f"re-converge {timings['reconverge_s']:.0f}s ({ratio:.0%} of first; target <= 30%)"
    )
    if rounds:
        print(
            f"rounds: {len(rounds)}   "
            f"participating nodes: {', '.join(summary['participating_nodes'])}"
        )  # type: ignore[arg-type]
        print(f"{'round':>5}  {'nodes':<10} {'global loss':>12} {'F1':>8}")
        for r in summary["rounds"]:  # type: ignore[union-attr]
            print(
                f"{r['round']:>5}  {','.join(r['nodes']):<10} "
                f"{fmt(r['global_loss']):>12} {fmt(r['global_f1']):>8}"
            )
    print(f"summary: {(out_dir / name).relative_to(ROOT)}")
    if args.mode == "demo":
        print(
            "dashboard: `fl dashboard --mode live` runs in the cloud container when its"
            " dependencies are installed"
        )
        print(
            "           (role dashboard, dashboard_enabled=auto), on cloud:8050;"
            " health table: make lab-status"
        )
        print("remove the lab: make demo-down")
    print("=" * 72)
    if changed:
        print(f"re-converge changed hosts: {changed}", file=sys.stderr)
    if args.mode == "bench" and ratio > 0.30:
        print(
            f"bench-deploy: re-converge took {ratio:.0%} of the first converge (> 30%)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
