"""Running the external tools (mvn, pip) with progress on stderr."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fl_runtime.errors import ArtifactError

Progress = Callable[[str], None]
LineFilter = Callable[[str], str | None]
_TAIL = 25


class ToolFailedError(ArtifactError):
    """An external tool exited non-zero; ``output`` holds what it printed."""

    def __init__(self, what: str, returncode: int, output: str) -> None:
        tail = "\n".join(output.splitlines()[-_TAIL:])
        super().__init__(f"{what} failed (exit {returncode}):\n{tail}")
        self.output = output


def require_tool(name: str, hint: str) -> str:
    """The absolute path of a program on PATH, or an ArtifactError saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise ArtifactError(f"{name} is not on PATH; {hint}")
    return found


def run_tool(
    argv: Sequence[str],
    *,
    what: str,
    progress: Progress,
    show: LineFilter,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``argv``, pass the lines ``show`` picks to ``progress``; return all output."""
    lines: list[str] = []
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            message = show(line)
            if message:
                progress(message)
        returncode = proc.wait()
    output = "\n".join(lines)
    if returncode != 0:
        raise ToolFailedError(what, returncode, output)
    return output
