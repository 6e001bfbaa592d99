from pathlib import Path

import numpy as np
from click.testing import CliRunner

from fl_runtime.cli import main
from fl_runtime.core.evaluation import EMPTY, global_metrics
from fl_runtime.core.model import Confusion
from fl_runtime.sim.federation import run_federated
from fl_runtime.sim.partition import simulator_partitions


def test_summed_node_counts_equal_the_pooled_metrics() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=6)
    parts = [(rng.normal(size=(n, 5)), (rng.random(n) < 0.2).astype(np.int8)) for n in (50, 80, 7)]
    per_node = [Confusion.of(w, x, y) for x, y in parts]
    pooled = Confusion.of(
        w, np.vstack([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    )
    metrics = global_metrics(per_node)
    assert metrics.n == pooled.n == 137
    assert metrics.f1 == pooled.f1 and metrics.accuracy == pooled.accuracy
    assert abs((metrics.loss or 0) - pooled.loss) < 1e-12
    assert global_metrics([]) == EMPTY


def test_monitor_prints_a_table_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "agg.jsonl"
    run_federated(simulator_partitions(3, 300, 1), 4, log_path=log, seed=1)
    out = CliRunner().invoke(
        main, ["monitor", "--mode", "offline", "--log", str(log)], env={"FL_CONFIG": "/dev/null"}
    )
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert lines[0].split()[:3] == ["round", "version", "nodes"]
    assert len(lines) == 5 and lines[-1].split()[0] == "4"
    assert "1,2,3" in lines[-1]
    last = CliRunner().invoke(
        main,
        ["monitor", "--log", str(log), "--last", "1", "--json"],
        env={"FL_CONFIG": "/dev/null"},
    )
    assert last.exit_code == 0 and '"round": 4' in last.output
