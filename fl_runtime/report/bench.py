"""The report benchmark: render a synthetic log (200 rounds x 50 nodes by default) and
print how long it took. The budget is 5 s on the project's 2-core machine."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fl_runtime.report import Report, render_report
from fl_runtime.report.synthetic import write_synthetic_log

BUDGET_S = 5.0


@dataclass(frozen=True)
class BenchResult:
    rounds: int
    nodes: int
    seconds: float
    cpu_seconds: float
    report: Report
    kept: bool

    def lines(self) -> list[str]:
        t = self.report.timings
        verdict = "within" if self.seconds < BUDGET_S else "OVER"
        return [
            f"report benchmark: {self.rounds} rounds x {self.nodes} nodes",
            f"  read+stats {t['read_s']:.3f} s, charts {t['charts_s']:.3f} s, "
            f"html {t['html_s']:.3f} s",
            f"  total {self.seconds:.3f} s wall, {self.cpu_seconds:.3f} s CPU ({verdict} the "
            f"{BUDGET_S:.0f} s budget, including the matplotlib import)",
            f"  machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
            "(other work on the machine slows this figure)",
        ] + ([f"  wrote {self.report.html}"] if self.kept else [])


def run_bench(
    *, rounds: int = 200, nodes: int = 50, out_dir: Path | None = None, seed: int = 7
) -> BenchResult:
    """Write the synthetic log first (not timed), then time a full render."""
    with tempfile.TemporaryDirectory(prefix="fl-bench-report-") as tmp:
        log = Path(tmp) / "aggregation.jsonl"
        write_synthetic_log(log, rounds=rounds, nodes=nodes, seed=seed)
        start, cpu = time.perf_counter(), time.process_time()
        report = render_report(log, out_dir or Path(tmp) / "report")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return BenchResult(rounds, nodes, seconds, cpu, report, kept=out_dir is not None)
