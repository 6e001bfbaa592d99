"""Benchmark: render the offline report from a synthetic log and print how long it took.

    .venv/bin/python benchmarks/bench_report.py [--rounds 200] [--nodes 50] [--out DIR]

The same figure is printed by ``fl report --bench``. The budget is 5 s for 200 rounds
and 50 nodes on the project's 2-core machine; this script reports, it does not fail.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fl_runtime.report.bench import run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="keep the report here")
    args = parser.parse_args()
    result = run_bench(rounds=args.rounds, nodes=args.nodes, out_dir=args.out)
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
