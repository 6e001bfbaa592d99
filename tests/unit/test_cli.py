import json
from pathlib import Path

from click.testing import CliRunner

from fl_runtime.cli import main


def test_help_lists_subcommands() -> None:
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    for name in ("simulate", "bench", "config"):
        assert name in out.output


def test_config_show_check_docs(tmp_path: Path) -> None:
    cfg = tmp_path / "fl.toml"
    cfg.write_text("[training]\nlearning_rate = 0.3\n")
    runner = CliRunner()
    out = runner.invoke(
        main, ["config", "show", "--sources", "--config", str(cfg)], env={"FL_BATCH_SIZE": "7"}
    )
    assert out.exit_code == 0
    assert f"learning_rate = 0.3  # {cfg}" in out.output
    assert "batch_size = 7  # env" in out.output
    assert runner.invoke(main, ["config", "check", "--config", str(cfg)]).exit_code == 0
    cfg.write_text("[aggregation]\nmin_nodes = 0\n")
    bad = runner.invoke(main, ["config", "check", "--config", str(cfg)])
    assert bad.exit_code == 1
    assert "aggregation.min_nodes" in bad.output and "int in [1, 100000]" in bad.output
    assert "`MAX_WEIGHT_AGE`" in runner.invoke(main, ["config", "docs"]).output


def test_bench_sgd_prints_both_figures() -> None:
    out = CliRunner().invoke(
        main, ["bench", "sgd", "--json", "--samples", "5000", "--repeats", "1"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["fl_runtime_samples_per_s"] > 0
    assert doc["sklearn_samples_per_s"] > 0
    assert doc["ratio_vs_sklearn"] > 0


def test_sensor_run_id_is_new_at_every_systemd_start() -> None:
    # Prepare: two starts of one unit get two INVOCATION_IDs from systemd.
    from fl_runtime.cli.sensor import run_id_from_environment
    from fl_runtime.edge.machines import NodeSimulator

    first = run_id_from_environment({"INVOCATION_ID": "0123456789abcdef0123456789abcdef"})
    second = run_id_from_environment({"INVOCATION_ID": "fedcba9876543210fedcba9876543210"})
    # Execute
    ids = [
        {r.message_id for r in NodeSimulator("1", seed=42, run_id=run).readings(20, 0.0, 10.0)}
        for run in (first, second)
    ]
    # Assert: distinct message ids across restarts; outside systemd the default stays.
    assert first == "i0123456789abcdef"
    assert ids[0].isdisjoint(ids[1])
    assert run_id_from_environment({}) is None
    assert run_id_from_environment({"INVOCATION_ID": "not-a-systemd-id"}) is None
