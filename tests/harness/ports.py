"""Re-exported from :mod:`fl_runtime.bench.stack.ports` (the benchmarks share it)."""

from fl_runtime.bench.stack.ports import LOOPBACK, free_port, free_ports, is_listening, wait_until

__all__ = ["LOOPBACK", "free_port", "free_ports", "is_listening", "wait_until"]
