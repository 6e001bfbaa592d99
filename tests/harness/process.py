"""Re-exported from :mod:`fl_runtime.bench.stack.process` (the benchmarks share it)."""

from fl_runtime.bench.stack.process import ManagedProcess, ManagedServer

__all__ = ["ManagedProcess", "ManagedServer"]
