"""The artifact cache's bookkeeping, without network: manifest, checksums, skip/redo."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from fl_runtime import artifacts
from fl_runtime.artifacts._launchers import write_home_files
from fl_runtime.artifacts._manifest import (
    FileEntry,
    Manifest,
    Step,
    entry_for,
    load_manifest,
    save_manifest,
    step_problems,
)
from fl_runtime.artifacts._maven import check_local_sha1, parse_listing
from fl_runtime.artifacts._spark import _already_shipped, _older_releases
from fl_runtime.artifacts._steps import Staged, StepPlan, run_plans
from fl_runtime.artifacts._tarball import Tarball, extract_libs, obtain
from fl_runtime.errors import ArtifactError


class Builder:
    """A fake step that writes files and counts how often it ran."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.runs = 0

    def __call__(self, scratch: Path) -> Staged:
        self.runs += 1
        staged = {}
        for rel, data in self.files.items():
            path = scratch / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            staged[rel] = (path, f"test:{rel}")
        return Staged(staged, {"run": str(self.runs)})


def plan(
    builder: Builder, name: str = "thing/1", version: str = "1", owned: bool = True
) -> StepPlan:
    return StepPlan(name, {"version": version}, builder, owned_dir=name if owned else None)


def quiet(message: str) -> None:
    del message


def test_public_api_is_pinned() -> None:
    assert sorted(artifacts.__all__) == [
        "DEFAULT_KAFKA_VERSION",
        "DEFAULT_MAVEN_REPO",
        "FileEntry",
        "Manifest",
        "Step",
        "default_cache_dir",
        "expand_platform",
        "fetch",
        "kafka_home",
        "spark_kafka_jars",
        "verify",
    ]


def test_manifest_round_trips(tmp_path: Path) -> None:
    files = {"kafka/4.4.0/libs/a.jar": FileEntry("ab", 3, "maven:g:a:1")}
    step = Step("kafka/4.4.0", {"version": "4.4.0"}, files, {"repo": "r"})
    save_manifest(tmp_path, Manifest({step.name: step}))
    assert load_manifest(tmp_path) == Manifest({step.name: step})


def test_missing_manifest_is_empty_and_a_broken_one_is_an_error(tmp_path: Path) -> None:
    assert load_manifest(tmp_path).steps == {}
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not a valid artifact manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": 99, "steps": {}}')
    with pytest.raises(ArtifactError, match="unknown format"):
        load_manifest(tmp_path)


def test_step_problems_names_missing_truncated_and_altered_files(tmp_path: Path) -> None:
    for name in ("ok", "short", "changed"):
        (tmp_path / name).write_bytes(b"12345")
    files = {n: entry_for(tmp_path / n, "test") for n in ("ok", "short", "changed")}
    files["gone"] = FileEntry(hashlib.sha256(b"x").hexdigest(), 1, "test")
    (tmp_path / "short").write_bytes(b"123")
    (tmp_path / "changed").write_bytes(b"54321")

    problems = step_problems(tmp_path, Step("s", {}, files))

    assert problems == ["changed: sha256 mismatch", "gone: missing", "short: size 3, expected 5"]


def test_second_run_skips_an_intact_step(tmp_path: Path) -> None:
    builder = Builder({"thing/1/a.jar": b"a", "thing/1/b.jar": b"b"})
    messages: list[str] = []

    run_plans(tmp_path, [plan(builder)], quiet)
    manifest = run_plans(tmp_path, [plan(builder)], messages.append)

    assert builder.runs == 1
    assert messages == ["thing/1: up to date (2 files)"]
    assert (tmp_path / "thing/1/a.jar").read_bytes() == b"a"
    assert manifest.steps["thing/1"].files["thing/1/a.jar"].source == "test:thing/1/a.jar"
    assert (tmp_path / ".gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.parametrize("damage", ["truncate", "alter", "delete"])
def test_a_damaged_file_makes_the_step_run_again(tmp_path: Path, damage: str) -> None:
    builder = Builder({"thing/1/a.jar": b"abcdef"})
    run_plans(tmp_path, [plan(builder)], quiet)
    target = tmp_path / "thing/1/a.jar"
    if damage == "truncate":
        target.write_bytes(b"abc")
    elif damage == "alter":
        target.write_bytes(b"fedcba")
    else:
        target.unlink()
    messages: list[str] = []

    run_plans(tmp_path, [plan(builder)], messages.append)

    assert builder.runs == 2
    assert "fetching again" in messages[0]
    assert target.read_bytes() == b"abcdef"
    artifacts.verify(tmp_path)


def test_another_key_runs_the_step_and_a_subset_key_does_not(tmp_path: Path) -> None:
    builder = Builder({"thing/1/a.jar": b"a"})
    run_plans(tmp_path, [plan(builder, version="1")], quiet)
    run_plans(tmp_path, [plan(builder, version="2")], quiet)
    assert builder.runs == 2
    subset = StepPlan("thing/1", {}, builder, owned_dir="thing/1")
    run_plans(tmp_path, [subset], quiet)
    assert builder.runs == 2


def test_an_owned_directory_is_emptied_before_install(tmp_path: Path) -> None:
    builder = Builder({"thing/1/a.jar": b"a"})
    run_plans(tmp_path, [plan(builder)], quiet)
    stray = tmp_path / "thing/1/stray.jar"
    stray.write_bytes(b"left over from an interrupted fetch")
    (tmp_path / "thing/1/a.jar").unlink()

    run_plans(tmp_path, [plan(builder)], quiet)

    assert not stray.exists()


def test_shared_directory_keeps_files_other_steps_still_record(tmp_path: Path) -> None:
    first = Builder({"wheels/common.whl": b"c", "wheels/x86.whl": b"x"})
    second = Builder({"wheels/common.whl": b"c", "wheels/arm.whl": b"a"})
    run_plans(tmp_path, [plan(first, "wheels/x86", owned=False)], quiet)
    run_plans(tmp_path, [plan(second, "wheels/arm", owned=False)], quiet)
    first.files = {"wheels/x86-new.whl": b"n"}

    run_plans(tmp_path, [plan(first, "wheels/x86", version="2", owned=False)], quiet)

    names = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert names == ["arm.whl", "common.whl", "x86-new.whl"]


def test_a_failing_build_leaves_the_cache_as_it_was(tmp_path: Path) -> None:
    good = Builder({"thing/1/a.jar": b"a"})
    run_plans(tmp_path, [plan(good)], quiet)

    def broken(scratch: Path) -> Staged:
        raise ArtifactError("repository unreachable")

    with pytest.raises(ArtifactError, match="unreachable"):
        run_plans(tmp_path, [StepPlan("thing/1", {"version": "2"}, broken, "thing/1")], quiet)

    assert artifacts.verify(tmp_path).steps["thing/1"].key == {"version": "1"}
    assert not (tmp_path / ".tmp").exists()


def test_verify_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no artifacts fetched yet"):
        artifacts.verify(tmp_path)
    run_plans(tmp_path, [plan(Builder({"thing/1/a.jar": b"a", "thing/1/b.jar": b"b"}))], quiet)
    (tmp_path / "thing/1/a.jar").unlink()
    (tmp_path / "thing/1/b.jar").write_bytes(b"B")

    with pytest.raises(ArtifactError) as caught:
        artifacts.verify(tmp_path)

    assert "thing/1/a.jar: missing" in str(caught.value)
    assert "thing/1/b.jar: sha256 mismatch" in str(caught.value)


def test_kafka_home_and_connector_jars_come_from_the_manifest(tmp_path: Path) -> None:
    run_plans(
        tmp_path,
        [
            plan(Builder({"kafka/4.1.1/libs/k.jar": b"1"}), "kafka/4.1.1"),
            plan(Builder({"kafka/4.4.0/libs/k.jar": b"2"}), "kafka/4.4.0"),
            plan(Builder({"spark-kafka/4.3.0/c.jar": b"3"}), "spark-kafka/4.3.0"),
        ],
        quiet,
    )
    save_manifest(
        tmp_path,
        Manifest(
            {
                name: Step(name, {"version": name.split("/")[1]}, s.files, s.info)
                for name, s in load_manifest(tmp_path).steps.items()
            }
        ),
    )

    assert artifacts.kafka_home(tmp_path) == (tmp_path / "kafka/4.4.0").resolve()
    assert artifacts.kafka_home(tmp_path, "4.1.1") == (tmp_path / "kafka/4.1.1").resolve()
    jar = (tmp_path / "spark-kafka/4.3.0/c.jar").resolve()
    assert artifacts.spark_kafka_jars(tmp_path, "4.3.0") == [jar]
    with pytest.raises(ArtifactError, match=r"no spark-kafka/9\.9\.9"):
        artifacts.spark_kafka_jars(tmp_path, "9.9.9")
    (tmp_path / "kafka/4.4.0/libs/k.jar").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="damaged"):
        artifacts.kafka_home(tmp_path)


def test_expand_platform_adds_every_older_manylinux_tag() -> None:
    tags = artifacts.expand_platform("manylinux_2_28_aarch64")
    assert tags[0] == "manylinux_2_28_aarch64"
    assert tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    legacy = artifacts.expand_platform("manylinux2014_aarch64")
    assert legacy == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    x86 = artifacts.expand_platform("manylinux_2_17_x86_64")
    assert "manylinux2010_x86_64" in x86 and x86[-1] == "manylinux1_x86_64"
    assert artifacts.expand_platform("macosx_11_0_arm64") == ["macosx_11_0_arm64"]


def test_parse_listing_reads_coordinates_and_paths() -> None:
    text = """
The following files have been resolved:
   org.apache.kafka:kafka_2.13:jar:4.4.0:compile:/m2/kafka_2.13-4.4.0.jar -- module kafka.core
   at.yawk.lz4:lz4-java:jar:1.11.2:runtime:/m2/lz4-java-1.11.2.jar -- module org.lz4.java [auto]
   io.netty:netty-x:jar:linux-x86_64:4.1.1:runtime:/m2/netty-x-4.1.1-linux-x86_64.jar
   org.example:parent:pom:1:compile:/m2/parent-1.pom
"""
    found = parse_listing(text)
    assert [str(r.coordinate) for r in found] == [
        "org.apache.kafka:kafka_2.13:4.4.0",
        "at.yawk.lz4:lz4-java:1.11.2",
        "io.netty:netty-x:4.1.1:linux-x86_64",
    ]
    assert found[1].path == Path("/m2/lz4-java-1.11.2.jar")


def test_a_local_maven_jar_with_a_wrong_sha1_is_deleted(tmp_path: Path) -> None:
    jar = tmp_path / "a-1.jar"
    jar.write_bytes(b"good")
    (tmp_path / "a-1.jar.sha1").write_text(hashlib.sha1(b"good").hexdigest() + "  a-1.jar\n")
    check_local_sha1(jar)
    jar.write_bytes(b"evil")
    with pytest.raises(ArtifactError, match="sha1 does not match"):
        check_local_sha1(jar)
    assert not jar.exists()


def test_connector_fallback_prefers_the_newest_older_release() -> None:
    published = ["3.5.1", "4.0.0", "4.1.3", "4.2.0-preview5", "4.2.0", "4.10.0", "5.0.0"]
    assert _older_releases("4.3.0", published) == ["4.2.0", "4.1.3", "4.0.0"]
    assert _already_shipped("kafka-clients", ["kafka-clients-3.9.2.jar"])
    assert not _already_shipped("spark-sql-kafka-0-10_2.13", ["spark-sql_2.13-4.3.0.jar"])


def test_tarball_checks_sha512_and_extracts_only_libs(tmp_path: Path) -> None:
    archive = tmp_path / "kafka_2.13-4.1.1.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in [
            ("kafka_2.13-4.1.1/libs/kafka_2.13-4.1.1.jar", b"jar"),
            ("kafka_2.13-4.1.1/bin/kafka-server-start.sh", b"#!"),
            ("kafka_2.13-4.1.1/libs/sub/nested.jar", b"no"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha512(archive.read_bytes()).hexdigest()
    assert Tarball(str(archive), digest).version() == "4.1.1"

    with pytest.raises(ArtifactError, match="sha512"):
        obtain(Tarball(str(archive), "0" * 128), tmp_path, quiet)
    jars = extract_libs(obtain(Tarball(str(archive), digest), tmp_path, quiet), tmp_path / "libs")

    assert [j.name for j in jars] == ["kafka_2.13-4.1.1.jar"]


def test_launchers_name_the_class_the_jars_have(tmp_path: Path) -> None:
    jar = tmp_path / "kafka-all.jar"
    classes = [
        "kafka/Kafka",
        "kafka/tools/StorageTool",
        "kafka/admin/ConfigCommand",
        "org/apache/kafka/tools/TopicCommand",
        "org/apache/kafka/tools/AclCommand",
        "org/apache/kafka/tools/MetadataQuorumCommand",
        "org/apache/kafka/tools/ConsoleProducer",
        "org/apache/kafka/tools/consumer/ConsoleConsumer",
    ]
    with zipfile.ZipFile(jar, "w") as zf:
        for name in classes:
            zf.writestr(name + ".class", b"")

    written = write_home_files(tmp_path / "home", [jar])

    configs = (tmp_path / "home/bin/kafka-configs.sh").read_text()
    assert "kafka.admin.ConfigCommand" in configs
    assert (tmp_path / "home/bin/kafka-server-start.sh").stat().st_mode & 0o111
    assert {p.name for p in written} >= {"log4j2.yaml", "kafka-run-class.sh", "kafka-topics.sh"}
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("kafka/Kafka.class", b"")
    with pytest.raises(ArtifactError, match=r"kafka-storage\.sh"):
        write_home_files(tmp_path / "other", [jar])
