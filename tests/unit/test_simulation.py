import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fl_runtime.cli import main
from fl_runtime.cloud.agglog import read_log
from fl_runtime.sim.comparison import compare
from fl_runtime.sim.federation import TrainingParams, run_federated
from fl_runtime.sim.partition import (
    dirichlet,
    iid,
    load_dataset,
    load_labelled,
    simulator_partitions,
)


def test_run_federated_python_api() -> None:
    rng = np.random.default_rng(0)
    parts = []
    for k in range(3):
        x = rng.normal(loc=k * 0.2, size=(400, 4))
        parts.append((x, (x[:, 0] + x[:, 1] > 0.5).astype(np.int8)))
    result = run_federated(parts, rounds=5, seed=1)
    assert len(result.history) == 5
    assert [h.round for h in result.history] == [1, 2, 3, 4, 5]
    assert all(h.participants == ["1", "2", "3"] for h in result.history)
    proba = result.model.predict_proba(parts[0][0])
    assert proba.shape == (400,) and ((proba >= 0) & (proba <= 1)).all()
    assert result.history[-1].f1 is not None and result.history[-1].f1 > 0.8


def test_partial_participation_samples_nodes() -> None:
    result = run_federated(simulator_partitions(6, 300, 1), 6, participation=0.5, seed=2)
    assert all(len(h.participants) == 3 for h in result.history)
    assert len({tuple(h.participants) for h in result.history}) > 1


@pytest.mark.parametrize("strategy", ["median", "trimmed-mean", "fedbuff"])
def test_other_strategies_learn(strategy: str) -> None:
    result = run_federated(simulator_partitions(5, 1500, 3), 15, strategy=strategy, seed=3)
    assert len(result.history) == 15
    assert result.history[-1].f1 is not None and result.history[-1].f1 > 0.7
    if strategy == "fedbuff":
        assert all(len(h.participants) == 2 for h in result.history)  # K = 5 // 2


def test_simulate_json_meets_the_bar(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main,
        [
            "simulate",
            "--nodes",
            "5",
            "--rounds",
            "20",
            "--json",
            "--log",
            str(tmp_path / "agg.jsonl"),
        ],
        env={"FL_CONFIG": str(tmp_path / "none.toml")},
        catch_exceptions=False,
    )
    assert out.exit_code == 1, "a missing explicit config must be an error"
    (tmp_path / "fl.toml").write_text("")
    out = CliRunner().invoke(
        main,
        [
            "simulate",
            "--nodes",
            "5",
            "--rounds",
            "20",
            "--json",
            "--log",
            str(tmp_path / "agg.jsonl"),
        ],
        env={"FL_CONFIG": str(tmp_path / "fl.toml")},
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    final = doc["final"]
    fed, central = final["federated"]["f1"], final["centralized"]["f1"]
    assert fed >= 0.97 * central
    assert final["local_only"]["best_f1"] < fed - 0.01
    assert fed < 1.0 and central < 1.0
    assert len(doc["rounds"]) == 20
    assert [r.round for r in read_log(tmp_path / "agg.jsonl")] == list(range(1, 21))


def test_user_data_csv_and_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(900, 3))
    y = (x[:, 0] - x[:, 2] > 0.3).astype(int)
    np.savez(tmp_path / "d.npz", X=x, y=y)
    csv = tmp_path / "d.csv"
    csv.write_text(
        "a,b,anomaly,c\n"
        + "\n".join(f"{r[0]},{r[1]},{lab},{r[2]}" for r, lab in zip(x, y, strict=True))
    )
    assert np.allclose(load_labelled(csv)[0], x)
    for path, partition in ((tmp_path / "d.npz", "iid"), (csv, "dirichlet")):
        out = CliRunner().invoke(
            main,
            [
                "simulate",
                "--nodes",
                "4",
                "--rounds",
                "5",
                "--json",
                "--data",
                str(path),
                "--partition",
                partition,
            ],
            env={"FL_CONFIG": "/dev/null"},
        )
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["final"]["federated"]["f1"] > 0.8


def test_partitioners() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1000, 2)), (rng.random(1000) < 0.3).astype(np.int8)
    parts = iid(x, y, 4, rng)
    assert sum(len(p[1]) for p in parts) == 1000
    skewed = dirichlet(x, y, 4, rng, alpha=0.1)
    assert sum(len(p[1]) for p in skewed) == 1000 and all(len(p[1]) for p in skewed)
    rates = [p[1].mean() for p in skewed]
    assert max(rates) - min(rates) > 0.2  # label skew


def test_bad_data_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,label\n1,2\n")
    out = CliRunner().invoke(main, ["simulate", "--data", str(bad)], env={"FL_CONFIG": "/dev/null"})
    assert out.exit_code == 1
    assert "labels must be 0 or 1" in out.output


def test_comparison_local_only_per_node() -> None:
    result = compare(simulator_partitions(3, 800, 9), 5, seed=9)
    assert set(result.local_only) == {"1", "2", "3"}
    assert 0 < result.centralized["f1"] < 1


@pytest.mark.parametrize("strategy", ["fedprox", "fedavgm", "fedadam", "scaffold"])
def test_new_strategies_learn(strategy: str) -> None:
    result = run_federated(
        simulator_partitions(4, 800, 3), 10, strategy=strategy, participation=0.75, seed=3
    )
    assert len(result.history) == 10
    assert all(len(h.participants) == 3 for h in result.history)  # partial participation
    assert result.history[-1].f1 is not None and result.history[-1].f1 > 0.7


def test_fedprox_and_class_weights_change_training() -> None:
    parts = simulator_partitions(3, 600, 4)
    plain = run_federated(parts, 3, seed=4).model.weights
    prox = run_federated(
        parts, 3, strategy="fedprox", seed=4, params=TrainingParams(fedprox_mu=5.0)
    ).model.weights
    balanced = run_federated(
        parts, 3, seed=4, params=TrainingParams(class_weight="balanced")
    ).model.weights
    assert np.linalg.norm(prox) < np.linalg.norm(plain)  # pulled back toward the start
    assert balanced[-1] > plain[-1]  # rare positives weigh more: the bias rises


def test_bundled_datasets_load_offline() -> None:
    pytest.importorskip("sklearn")
    for name, (rows, positives) in {"breast-cancer": (569, 212), "wine": (178, 48)}.items():
        x, y = load_dataset(name)
        assert x.shape[0] == rows and int(y.sum()) == positives


def test_simulate_sweep_table_and_json() -> None:
    pytest.importorskip("sklearn")
    args = ["simulate", "--dataset", "wine", "--nodes", "3", "--rounds", "3"]
    args += ["--strategy", "fedavg,fedadam", "--strategy", "fedprox", "--seeds", "2"]
    args += ["--alpha", "0.5,5"]
    out = CliRunner().invoke(main, [*args, "--json"], env={"FL_CONFIG": "/dev/null"})
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)  # progress goes to stderr
    assert doc["settings"]["seeds"] == [42, 43]
    assert len(doc["runs"]) == 3 * 2 * 2
    assert [(r["alpha"], r["strategy"]) for r in doc["summary"]][:3] == [
        (0.5, "fedavg"),
        (0.5, "fedadam"),
        (0.5, "fedprox"),
    ]
    assert all(0 <= r["beats_local"] <= 2 for r in doc["summary"])
    table = CliRunner().invoke(main, args, env={"FL_CONFIG": "/dev/null"})
    assert table.exit_code == 0, table.output
    assert "Dirichlet alpha 5," in table.output and "beats local" in table.output
    bad = CliRunner().invoke(main, [*args[:-2], "--strategy", "nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
