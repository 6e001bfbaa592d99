"""A real Mosquitto broker on a free loopback port, with persistence (benchmarks, tests)."""

from __future__ import annotations

import getpass
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fl_runtime.bench.stack.ports import LOOPBACK, free_port, is_listening, wait_until
from fl_runtime.bench.stack.process import ManagedProcess, ManagedServer

MOSQUITTO = "/usr/sbin/mosquitto"

# The ``mosquitto`` role's defaults that the harness can take, and its keyword for each.
ROLE_OPTIONS = {
    "mosquitto_max_inflight_messages": "max_inflight",
    "mosquitto_max_queued_messages": "max_queued",
    "mosquitto_autosave_interval": "autosave_interval",
    "mosquitto_autosave_on_changes": "autosave_on_changes",
    "mosquitto_message_size_limit": "message_size_limit",
}


class MosquittoBroker(ManagedServer):
    """``start()``, then connect to ``host``:``port``; ``kill()``/``start()`` keep the data."""

    def __init__(
        self,
        workdir: Path,
        *,
        binary: str = MOSQUITTO,
        max_inflight: int = 1000,
        max_queued: int = 1_000_000,
        autosave_interval: int = 1,
        autosave_on_changes: bool = False,
        message_size_limit: int = 0,
    ) -> None:
        """``autosave_on_changes`` and ``message_size_limit`` as in mosquitto.conf(5);
        tests pass the ``mosquitto`` role's defaults to run the production settings."""
        found = shutil.which(binary)
        if found is None:
            raise RuntimeError(f"{binary} not found: apt-get install mosquitto")
        self.binary = found
        self.workdir = workdir
        self.host = LOOPBACK
        self.port = free_port()
        self.conf_path = workdir / "mosquitto.conf"
        self._settings = (max_inflight, max_queued, autosave_interval)
        self._autosave_on_changes = autosave_on_changes
        self._message_size_limit = message_size_limit
        self._process = ManagedProcess("mosquitto", workdir / "mosquitto.log")

    @classmethod
    def from_role(cls, workdir: Path, role_defaults: Mapping[str, Any]) -> MosquittoBroker:
        """A broker with the settings of the ``mosquitto`` role's defaults (parsed YAML),
        so that tests run what the hosts run."""
        return cls(workdir, **{kw: role_defaults[var] for var, kw in ROLE_OPTIONS.items()})

    def start(self, timeout: float = 20.0) -> MosquittoBroker:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self._conf(), encoding="utf-8")
        self._process.spawn([self.binary, "-c", str(self.conf_path)])
        ready = wait_until(lambda: self._dead() or is_listening(self.host, self.port), timeout)
        if self._dead() or not ready or not self._client_connects(timeout):
            self._process.kill()
            raise RuntimeError(f"Mosquitto did not become ready:\n{self._process.log_tail()}")
        return self

    def _client_connects(self, timeout: float) -> bool:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="harness-ready")
        try:
            client.connect(self.host, self.port, keepalive=5)
            ok = wait_until(lambda: _loop_connected(client), timeout, 0.05)
            client.disconnect()
            return ok
        except OSError:
            return False

    def _conf(self) -> str:
        max_inflight, max_queued, autosave = self._settings
        return "\n".join(
            [
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {self.workdir / 'data'}/",
                f"autosave_interval {autosave}",
                f"autosave_on_changes {str(self._autosave_on_changes).lower()}",
                f"message_size_limit {self._message_size_limit}",
                f"max_inflight_messages {max_inflight}",
                f"max_queued_messages {max_queued}",
                "log_dest stdout",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                f"user {getpass.getuser()}",
                "",
            ]
        )


def _loop_connected(client: mqtt.Client) -> bool:
    client.loop(timeout=0.05)
    return bool(client.is_connected())
