"""``fl artifacts``: what lands in the cache, that it runs, and that a warm cache is offline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fl_runtime import artifacts
from fl_runtime.artifacts._manifest import Manifest, load_manifest, save_manifest
from fl_runtime.artifacts._spark import installed_pyspark
from fl_runtime.cli import main
from fl_runtime.errors import ArtifactError
from tests.harness.kafka import KafkaBroker

pytestmark = pytest.mark.integration

# Runs `fl` with an audit hook that records every subprocess and every socket use.
AUDITED_FL = """
import sys
log = open(sys.argv.pop(1), "a")
WATCHED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "os.fork", "socket.connect", "socket.getaddrinfo", "urllib.Request")
def hook(event, args):
    if event in WATCHED:
        log.write(f"{event} {args!r}\\n")
        log.flush()
sys.addaudithook(hook)
from fl_runtime.cli import main
main()
"""


def quiet(message: str) -> None:
    del message


@pytest.fixture(scope="module")
def full_cache(artifacts_cache: Path) -> Path:
    """The shared cache with the wheels too (built when the sources changed)."""
    artifacts.fetch(artifacts_cache)
    return artifacts_cache


def test_kafka_home_has_the_distribution_layout(artifacts_cache: Path) -> None:
    home = artifacts.kafka_home(artifacts_cache)
    version = home.name
    libs = {p.name for p in (home / "libs").iterdir()}
    scripts = {p.name for p in (home / "bin").iterdir() if os.access(p, os.X_OK)}

    assert {f"kafka_2.13-{version}.jar", f"kafka-tools-{version}.jar"} <= libs
    assert any(n.startswith("log4j-slf4j-impl-2.") for n in libs)
    assert any(n.startswith("slf4j-api-1.7.") for n in libs)
    assert not any(n.startswith(("slf4j-api-2.", "log4j-slf4j2-impl")) for n in libs)
    assert scripts >= {
        "kafka-server-start.sh",
        "kafka-storage.sh",
        "kafka-topics.sh",
        "kafka-configs.sh",
        "kafka-acls.sh",
        "kafka-metadata-quorum.sh",
        "kafka-console-producer.sh",
        "kafka-console-consumer.sh",
        "kafka-run-class.sh",
    }
    assert (home / "config" / "log4j2.yaml").is_file()
    step = load_manifest(artifacts_cache).steps[f"kafka/{version}"]
    assert step.files[f"kafka/{version}/libs/kafka_2.13-{version}.jar"].source.startswith(
        ("maven:org.apache.kafka:kafka_2.13:", "tarball:")
    )
    assert step.files[f"kafka/{version}/bin/kafka-topics.sh"].source.startswith("generated:")


def test_connector_jars_add_only_what_pyspark_lacks(artifacts_cache: Path) -> None:
    found = installed_pyspark()
    assert found is not None
    shipped = {p.name for p in found[1].glob("*.jar")}

    names = [p.name for p in artifacts.spark_kafka_jars(artifacts_cache)]

    for prefix in (
        "spark-sql-kafka-0-10_2.13-",
        "spark-token-provider-kafka-0-10_2.13-",
        "kafka-clients-",
        "commons-pool2-",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    assert not set(names) & shipped
    assert not any(n.startswith(("scala-library", "hadoop-client", "slf4j")) for n in names)


def run_tool(home: Path, script: str, *args: str) -> str:
    env = {**os.environ, "KAFKA_HEAP_OPTS": "-Xmx128m"}
    done = subprocess.run(
        [str(home / "bin" / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_launcher_scripts_work_against_the_broker(
    artifacts_cache: Path, kafka: KafkaBroker
) -> None:
    home = artifacts.kafka_home(artifacts_cache)
    server = ["--bootstrap-server", kafka.bootstrap]

    run_tool(
        home,
        "kafka-topics.sh",
        *server,
        "--create",
        "--topic",
        "via-script",
        "--partitions",
        "2",
        "--config",
        "retention.ms=60000",
    )
    described = run_tool(
        home,
        "kafka-configs.sh",
        *server,
        "--describe",
        "--entity-type",
        "topics",
        "--entity-name",
        "via-script",
    )
    quorum = run_tool(home, "kafka-metadata-quorum.sh", *server, "describe", "--status")

    assert "retention.ms=60000" in described
    assert "LeaderId" in quorum


def test_warm_fetch_runs_nothing_and_opens_no_socket(full_cache: Path, tmp_path: Path) -> None:
    stub_bin = tmp_path / "bin"
    stub_bin.mkdir()
    (stub_bin / "mvn").write_text(f"#!/bin/sh\ntouch {tmp_path / 'mvn-ran'}\nexit 1\n")
    (stub_bin / "mvn").chmod(0o755)
    audit = tmp_path / "audit.log"
    env = {
        **os.environ,
        "PATH": f"{stub_bin}:{os.environ['PATH']}",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    }

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            AUDITED_FL,
            str(audit),
            "artifacts",
            "fetch",
            "--cache",
            str(full_cache),
            "--maven-repo",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "mvn-ran").exists()
    assert audit.read_text() == ""
    assert "fetching" not in done.stderr
    assert done.stderr.count(": up to date (") == 4  # kafka, spark-kafka, fl_runtime, deps


def test_damaged_files_are_detected_and_fetched_again(
    artifacts_cache: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    manifest = load_manifest(artifacts_cache)
    kept = {n: s for n, s in manifest.steps.items() if n.startswith(("kafka/", "spark-kafka/"))}
    for rel in (rel for step in kept.values() for rel in step.files):
        (cache / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(artifacts_cache / rel, cache / rel)
    save_manifest(cache, Manifest(kept))
    version = artifacts.kafka_home(artifacts_cache).name
    broken = cache / f"kafka/{version}/libs/kafka_2.13-{version}.jar"
    broken.write_bytes(broken.read_bytes()[:1000])
    missing = next(p for p in artifacts.spark_kafka_jars(cache) if "commons-pool2" in p.name)
    missing.unlink()
    with pytest.raises(ArtifactError) as caught:
        artifacts.verify(cache)
    assert f"{broken.name}: size 1000" in str(caught.value)
    assert f"{missing.name}: missing" in str(caught.value)
    messages: list[str] = []

    artifacts.fetch(cache, kafka_version=version, wheels=False, progress=messages.append)

    artifacts.verify(cache)
    assert sum("fetching again" in m for m in messages) == 2


def test_a_kafka_tarball_gives_the_same_layout(artifacts_cache: Path, tmp_path: Path) -> None:
    home = artifacts.kafka_home(artifacts_cache)
    version = home.name
    tarball = tmp_path / f"kafka_2.13-{version}.tgz"
    with tarfile.open(tarball, "w") as tar:
        for jar in sorted((home / "libs").iterdir()):
            tar.add(jar, arcname=f"kafka_2.13-{version}/libs/{jar.name}")
    digest = hashlib.sha512(tarball.read_bytes()).hexdigest()
    cache = tmp_path / "cache"

    def fetch(sha512: str) -> None:
        artifacts.fetch(
            cache,
            kafka_version=version,
            kafka_tarball=str(tarball),
            kafka_tarball_sha512=sha512,
            spark=False,
            wheels=False,
            progress=quiet,
        )

    with pytest.raises(ArtifactError, match="sha512"):
        fetch("0" * 128)
    fetch(digest)

    ours = artifacts.kafka_home(cache)
    assert sorted(p.relative_to(ours) for p in ours.rglob("*")) == sorted(
        p.relative_to(home) for p in home.rglob("*")
    )
    sources = {e.source.split(":")[0] for _, e in load_manifest(cache).files()}
    assert sources == {"tarball", "generated"}


def pip_dry_run(wheels: Path, *extra: str) -> list[dict[str, Any]]:
    """What ``pip install`` would install from ``wheels`` alone (its JSON report)."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--no-index",
        "--find-links",
        str(wheels),
        "--report",
        "-",
        *extra,
        "fl-runtime[spark]",
    ]
    env = {**os.environ, "PIP_FIND_LINKS": ""}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return list(report["install"])


def installed_names(report: list[dict[str, Any]]) -> set[str]:
    return {str(item["metadata"]["name"]).lower() for item in report}


def test_wheels_install_offline(full_cache: Path) -> None:
    report = pip_dry_run(full_cache / "wheels")

    wanted = {"fl-runtime", "pyspark", "confluent-kafka", "paho-mqtt"}
    assert wanted <= installed_names(report)


def test_cli_verify_and_show(full_cache: Path) -> None:
    runner = CliRunner()

    verified = runner.invoke(main, ["artifacts", "verify", "--cache", str(full_cache)])
    shown = runner.invoke(main, ["artifacts", "show", "--cache", str(full_cache)])

    assert verified.exit_code == 0, verified.output
    doc = json.loads(shown.output)
    assert Path(doc["kafka_home"]) == artifacts.kafka_home(full_cache)
    assert "spark-sql-kafka" in doc["spark_jars"]


@pytest.mark.slow
def test_wheels_for_a_raspberry_pi(full_cache: Path, tmp_path: Path) -> None:
    target = "manylinux_2_36_aarch64"
    artifacts.fetch(full_cache, spark=False, platforms=(target,), python_version="3.11")
    platforms = [arg for tag in artifacts.expand_platform(target) for arg in ("--platform", tag)]

    report = pip_dry_run(
        full_cache / "wheels",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--target",
        str(tmp_path / "t"),
        *platforms,
    )

    assert "numpy" in installed_names(report)
    urls = [str(item["download_info"]["url"]) for item in report]
    assert any("numpy" in url and "aarch64" in url for url in urls)
