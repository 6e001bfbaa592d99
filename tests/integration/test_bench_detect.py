"""``fl bench detect`` on the real stack: both options raise alerts, and the JSON has
every figure the issue names. Figures are printed, never asserted against a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fl_runtime.cli import main


@pytest.mark.integration
def test_bench_detect_reports_both_options(artifacts_cache: Path, tmp_path: Path) -> None:
    # Prepare: a short run; the brokers and services start in tmp_path
    args = ["bench", "detect", "--json", "--duration", "20", "--warmup", "10"]
    args += ["--devices", "5", "--workdir", str(tmp_path)]
    # Execute
    out = CliRunner().invoke(main, args, env={"FL_ARTIFACTS_DIR": str(artifacts_cache)})
    # Assert
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    print(json.dumps(doc, indent=2))
    assert doc["alerts"] > 0 and doc["p50_ms"] is not None and doc["p99_ms"] >= doc["p50_ms"]
    assert doc["scorer_rss_mb"] and doc["scorer_rss_mb"] > 0
    spark = doc["spark_option"]
    assert spark["alerts"] > 0 and spark["p99_ms"] is not None
    assert spark["trigger_wait_p50_ms"] is not None and spark["jvm_rss_mb"]
