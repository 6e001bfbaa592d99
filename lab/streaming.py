"""Run a long command, keep its whole output in a log, show the lines that matter.

Shared by lab/demo.py (ansible-playbook) and lab/molecule_run.py (molecule):
both echo a few lines of a long run to the console as progress and keep the
rest in reports/.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

PLAIN_OUTPUT = {"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "PY_COLORS": "0"}


def stream(
    cmd: list[str],
    log_path: Path,
    on_line: Callable[[str], None],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> int:
    """Run ``cmd``; write every output line to ``log_path`` and pass it to ``on_line``.

    stderr is merged into stdout so the log keeps the order a person saw.
    Returns the exit status.
    """
    run_env = dict(os.environ if env is None else env, **PLAIN_OUTPUT)
    with (
        log_path.open("w", encoding="utf-8") as log,
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env=run_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            on_line(line)
        return proc.wait()
