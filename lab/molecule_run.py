#!/usr/bin/env python3
"""Run Molecule scenarios one after another and record how long each step took.

    python3 lab/molecule_run.py default scale_out

Both scenarios use the one lab image (lab/image/build.sh builds it only when
it changed) and the shared artifact cache mounted read-only, so nothing is
downloaded inside the containers. The step timings (create, converge,
idempotence, side_effect, verify, destroy) go to reports/molecule/timings.json.
Exit status: non-zero when a scenario failed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from streaming import stream

ROOT = Path(__file__).resolve().parent.parent
REPORT_DIR = ROOT / "reports" / "molecule"
# Molecule prints "INFO     [<scenario> > <action>] Executing" at the start of each step
# (older releases: "INFO  <scenario> ➜ <action>: Executing").
ACTION = re.compile(r"INFO\s+\[?\S+\s+[>➜]\s+(\w+)\]?:?\s+(Executing|Starting)", re.I)
LAB_NAMES = ("cloud", "fog-1", "fog-2", "fog-3", "device-1")


def demo_lab_running() -> list[str]:
    """Containers of `make demo` share the names Molecule uses."""
    try:
        out = subprocess.run(
            ["docker", "ps", "-a", "--filter", "label=fedge.lab=demo", "--format", "{{.Names}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [n for n in out.split() if n in LAB_NAMES]


def run_scenario(name: str, log_dir: Path) -> dict[str, object]:
    log_path = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "molecule", "test", "-s", name]
    steps: dict[str, float] = {}
    current: tuple[str, float] | None = None
    start = time.monotonic()
    print(f"[molecule] {name}: {' '.join(cmd)} (log: {log_path.relative_to(ROOT)})", flush=True)

    def on_line(line: str) -> None:
        nonlocal current
        m = ACTION.search(line)
        if m:
            now = time.monotonic()
            if current:
                steps[current[0]] = steps.get(current[0], 0.0) + now - current[1]
            current = (m.group(1).lower(), now)
            print(f"[molecule] {name}: {current[0]} ... (+{now - start:.0f} s)", flush=True)
        elif line.startswith(("PLAY RECAP", "fatal:", "failed:")) or "ERROR" in line:
            print(f"[molecule] {name}: {line.rstrip()}", flush=True)

    rc = stream(cmd, log_path, on_line, cwd=ROOT, env=dict(os.environ, MOLECULE_NO_LOG="false"))
    if current:
        steps[current[0]] = steps.get(current[0], 0.0) + time.monotonic() - current[1]
    total = time.monotonic() - start
    status = "passed" if rc == 0 else "failed"
    print(f"[molecule] {name}: {status} in {total:.0f} s", flush=True)
    return {
        "scenario": name,
        "status": status,
        "rc": rc,
        "seconds": round(total, 1),
        "steps_seconds": {k: round(v, 1) for k, v in steps.items()},
        "log": str(log_path.relative_to(ROOT)),
    }


def fetch_artifacts() -> int:
    """Fill .artifacts (Kafka, the Spark connector, the wheels), which the scenarios mount.

    `fl artifacts fetch` skips what is already cached and intact, and rebuilds the
    fl-runtime wheel when the source changed, so the lab runs the code under test.
    """
    fl = Path(sys.executable).parent / "fl"
    cmd = [str(fl), "artifacts", "fetch", "--cache", str(ROOT / ".artifacts")]
    log_path = REPORT_DIR / "artifacts.log"
    print(f"[molecule] artifacts: {' '.join(cmd)} (log: {log_path.relative_to(ROOT)})", flush=True)
    rc = stream(
        cmd, log_path, lambda line: print(f"[molecule] {line.rstrip()}", flush=True), cwd=ROOT
    )
    if rc != 0:
        print(f"[molecule] artifacts: fetch failed (rc {rc})", file=sys.stderr)
    return rc


def main(argv: list[str]) -> int:
    scenarios = argv or ["default", "scale_out"]
    clash = demo_lab_running()
    if clash:
        print(
            f"[molecule] the demo lab is running ({', '.join(clash)}): run `make demo-down` first",
            file=sys.stderr,
        )
        return 2
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    if fetch_artifacts() != 0:
        return 2
    start = time.monotonic()
    results = []
    for name in scenarios:
        result = run_scenario(name, REPORT_DIR)
        (REPORT_DIR / f"{name}.json").write_text(
            json.dumps(result, indent=2) + "\n", encoding="utf-8"
        )
        results.append(result)
    summary = {"total_seconds": round(time.monotonic() - start, 1), "scenarios": results}
    (REPORT_DIR / "timings.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    passed = sum(r["status"] == "passed" for r in results)
    print(
        f"[molecule] total {summary['total_seconds']:.0f} s; "
        "timings in reports/molecule/timings.json"
    )
    print(f"molecule: {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
