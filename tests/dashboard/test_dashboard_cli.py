"""``fl report`` and ``fl dashboard`` as a user runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from fl_runtime.cli import main
from fl_runtime.dashboard.auth import verify_password
from tests.dashboard.dashboard_helpers import get_json

# FL_* variables are config overrides: keep the caller's out of these runs.
CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FL_")}


def _runner() -> CliRunner:
    return CliRunner(env=CLEAN_ENV)


def test_report_writes_the_report(log_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"

    result = _runner().invoke(main, ["report", "--log", str(log_path), "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "30 rounds, 6 nodes" in result.output
    assert {p.name for p in out.iterdir()} >= {
        "report.html",
        "convergence.png",
        "participation.png",
        "participants.png",
    }


def test_dashboard_offline_mode_writes_the_same_report(log_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "offline"

    result = _runner().invoke(
        main, ["dashboard", "--mode", "offline", "--log", str(log_path), "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists()


def test_report_of_a_missing_log_fails_cleanly(tmp_path: Path) -> None:
    result = _runner().invoke(
        main, ["report", "--log", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]
    )

    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_report_bench_prints_the_figure() -> None:
    result = _runner().invoke(main, ["report", "--bench", "--rounds", "20", "--nodes", "5"])

    assert result.exit_code == 0, result.output
    assert "report benchmark: 20 rounds x 5 nodes" in result.output
    assert "total " in result.output


def test_non_loopback_address_needs_a_login(log_path: Path) -> None:
    result = _runner().invoke(
        main, ["dashboard", "--host", "0.0.0.0", "--log", str(log_path), "--no-kafka"]
    )

    assert result.exit_code == 2
    assert "requires a login" in result.output and "--auth-file" in result.output


def test_hash_password_prints_a_usable_hash() -> None:
    result = _runner().invoke(main, ["dashboard", "--hash-password"], input="s3cret\n")

    assert result.exit_code == 0, result.output
    assert verify_password("s3cret", result.output.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_live_dashboard_serves_and_stops_with_a_browser_attached(log_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FL_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from fl_runtime.cli import main; main()",
            "dashboard",
            "--log",
            str(log_path),
            "--port",
            str(port),
            "--no-kafka",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                health = get_json(f"{url}/api/health")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        stream = urllib.request.urlopen(f"{url}/api/events", timeout=10)  # an open tab
        threading.Thread(target=stream.read, daemon=True).start()

        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=10)
        output = proc.stdout.read() if proc.stdout else ""
        stream.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert health["log"]["rounds"] == 30
    # uvicorn re-raises SIGTERM after a graceful shutdown; systemd counts that as clean.
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in output
    assert time.monotonic() - started < 5
