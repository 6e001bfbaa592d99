"""Re-exported from :mod:`fl_runtime.bench.stack.kafka` (the benchmarks share it)."""

from fl_runtime.bench.stack.kafka import NODE_ID, KafkaBroker

__all__ = ["NODE_ID", "KafkaBroker"]
