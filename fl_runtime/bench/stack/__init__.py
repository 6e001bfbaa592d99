"""Real brokers on loopback for ``fl bench`` and the integration tests: a single-node
KRaft Kafka from the artifact cache and Mosquitto from Debian, each in a working
directory, on free ports, waiting for real readiness, torn down at exit."""

from fl_runtime.bench.stack.kafka import KafkaBroker
from fl_runtime.bench.stack.mosquitto import MosquittoBroker
from fl_runtime.bench.stack.ports import LOOPBACK, free_port, free_ports, wait_until
from fl_runtime.bench.stack.process import ManagedProcess, ManagedServer

__all__ = [
    "LOOPBACK",
    "KafkaBroker",
    "ManagedProcess",
    "ManagedServer",
    "MosquittoBroker",
    "free_port",
    "free_ports",
    "wait_until",
]
