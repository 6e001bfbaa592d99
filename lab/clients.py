#!/usr/bin/env python3
"""Run the README's "Reach the lab" commands against the running lab, as an operator would.

    python3 lab/clients.py            # exit 0 when every command worked

The README owns the commands: this script runs the shell block between the
`lab-clients:begin` and `lab-clients:end` markers unchanged, with `bash -e` (as
a person pasting it would, without pipefail), from the controller. They use
third-party clients only (kcat, mosquitto_sub, mosquitto_pub) on the ports the
lab publishes on loopback, so a pass means the copy-paste example works.
`make demo` and Molecule's `default` verify run it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"<!-- lab-clients:begin -->\s*```bash\n(?P<script>.*?)```\s*<!-- lab-clients:end -->", re.S
)


def readme_commands(readme: Path = ROOT / "README.md") -> str:
    """The shell block of the README's "Reach the lab" section."""
    found = BLOCK.search(readme.read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit(f"{readme}: no lab-clients block")
    return found.group("script")


def main() -> int:
    script = readme_commands()
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    for line in done.stdout.splitlines()[-12:]:
        print(f"[clients] {line[:200]}")
    if done.returncode != 0:
        print(f"[clients] FAILED (rc {done.returncode}): {done.stderr.strip()[-600:]}")
        return 1
    print("[clients] the README's kcat, mosquitto_sub and mosquitto_pub examples work")
    return 0


if __name__ == "__main__":
    sys.exit(main())
