"""Re-exported from :mod:`fl_runtime.bench.stack.mosquitto` (the benchmarks share it)."""

from fl_runtime.bench.stack.mosquitto import MOSQUITTO, MosquittoBroker

__all__ = ["MOSQUITTO", "MosquittoBroker"]
