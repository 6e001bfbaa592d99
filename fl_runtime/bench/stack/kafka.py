"""A real single-node KRaft Kafka (combined broker + controller) for benchmarks and tests.

It runs ``bin/kafka-server-start.sh`` from the artifact cache on free loopback
ports with a small heap, formats its log directory with StorageTool once, and
keeps both across ``kill()``/``start()`` so fault tests can crash and restart
the same broker.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from fl_runtime.artifacts import kafka_home
from fl_runtime.bench.stack.ports import LOOPBACK, free_ports, is_listening, wait_until
from fl_runtime.bench.stack.process import ManagedProcess, ManagedServer

NODE_ID = 1


class KafkaBroker(ManagedServer):
    """``start()``, then use ``bootstrap``; ``stop()``/``kill()`` and ``start()`` again."""

    def __init__(
        self,
        cache_dir: Path,
        workdir: Path,
        *,
        heap: str = "512m",
        auto_create_topics: bool = True,
        extra_properties: dict[str, str] | None = None,
    ) -> None:
        if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
            raise RuntimeError("Kafka needs Java 17+: apt-get install openjdk-17-jre-headless")
        self.home = kafka_home(cache_dir)
        self.workdir = workdir
        self.heap = heap
        self.port, self.controller_port = free_ports(2)
        self.log_dir = workdir / "data"
        self.properties_path = workdir / "server.properties"
        self._auto_create = auto_create_topics
        self._extra = dict(extra_properties or {})
        self._process = ManagedProcess("kafka", workdir / "logs" / "stdout.log")

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        """Start (formatting on first use) and wait until metadata requests are answered."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.properties_path.exists():
            self.properties_path.write_text(self._properties(), encoding="utf-8")
        if not (self.log_dir / "meta.properties").exists():
            self._format()
        env = {
            "KAFKA_HEAP_OPTS": f"-Xmx{self.heap} -Xms{self.heap}",
            "LOG_DIR": str(self.workdir / "logs"),
            "EXTRA_ARGS": "",
            "KAFKA_JMX_OPTS": " ",
        }
        start = self.home / "bin" / "kafka-server-start.sh"
        self._process.spawn([str(start), str(self.properties_path)], env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        listening = wait_until(lambda: self._dead() or is_listening(LOOPBACK, self.port), timeout)
        if self._dead() or not listening or not wait_until(self._answers, timeout, 0.5):
            self._process.kill()
            raise RuntimeError(f"Kafka did not become ready:\n{self._process.log_tail()}")

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})

    def _answers(self) -> bool:
        if self._dead():
            return True
        try:
            return bool(self.admin().list_topics(timeout=2).brokers)
        except Exception:  # KafkaException while the broker is still starting
            return False

    def _format(self) -> None:
        cluster_id = _cluster_id()
        argv = [str(self.home / "bin" / "kafka-storage.sh"), "format", "--standalone"]
        argv += ["-t", cluster_id, "-c", str(self.properties_path), "--ignore-formatted"]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=_tool_env(self.workdir),
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed:\n{done.stdout}\n{done.stderr}")

    def _properties(self) -> str:
        plain = f"PLAINTEXT://{LOOPBACK}:{self.port}"
        controller = f"CONTROLLER://{LOOPBACK}:{self.controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{self.controller_port}",
            "listeners": f"{plain},{controller}",
            "advertised.listeners": f"{plain},{controller}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": str(self._auto_create).lower(),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A killed broker's old registration expires in 3 s, not 9 s, so a
            # restart after kill() is ready sooner.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            **self._extra,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())


def _cluster_id() -> str:
    """A random Kafka cluster id (base64url UUID, like ``kafka-storage random-uuid``)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _tool_env(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_HEAP_OPTS": "-Xmx256m",
        "KAFKA_JMX_OPTS": " ",
        "LOG_DIR": str(workdir / "logs"),
    }
