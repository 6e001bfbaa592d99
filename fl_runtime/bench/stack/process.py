"""A child process that is always torn down: on stop(), at interpreter exit, on errors."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

_LIVE: set[ManagedProcess] = set()


class ManagedProcess:
    """One server process in its own session, its output in a log file."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
                start_new_session=True,
            )
        _LIVE.add(self)

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it is not gone in ``timeout`` s."""
        self._signal(signal.SIGTERM)
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait(10)
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL, like a crash or a power cut: no clean shutdown."""
        self._signal(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(10)
        _LIVE.discard(self)

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.kill()


class ManagedServer:
    """The lifecycle the harness's brokers share around one :class:`ManagedProcess`.

    Subclasses set ``_process`` and implement ``start`` (spawn, then wait for real
    readiness). ``stop`` is a clean shutdown (SIGTERM), ``kill`` a crash (SIGKILL);
    both keep the server's data, so ``start`` brings the same server back.
    """

    _process: ManagedProcess

    def start(self, timeout: float = 30.0) -> Self:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def running(self) -> bool:
        return self._process.running()

    def stop(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def restart(self, timeout: float | None = None) -> None:
        self.stop()
        if timeout is None:
            self.start()  # each server's own default
        else:
            self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _dead(self) -> bool:
        return self._process.exit_code() is not None
