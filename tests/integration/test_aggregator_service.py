"""The aggregator process on a real Kafka broker, fed with hand-made weight updates."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from fl_runtime.cloud.agglog import RoundRecord, read_log
from fl_runtime.cloud.aggregator import load_latest_global
from fl_runtime.config import load_config
from fl_runtime.core.messages import (
    SCORE_BINS,
    EvalCounts,
    FeatureStatsMsg,
    WeightUpdate,
    encode_update,
)
from tests.harness.kafka import KafkaBroker
from tests.harness.ports import free_port, wait_until

pytestmark = pytest.mark.integration
FL = [sys.executable, "-c", "from fl_runtime.cli import main; main()"]


class Aggregator:
    def __init__(self, tmp: Path, kafka: KafkaBroker, mode: str, **settings: str) -> None:
        self.tmp = tmp
        self.kafka = kafka
        self.mode = mode
        self.log_path = tmp / "aggregation.jsonl"
        self.metrics_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FL_")}
        topic_prefix = f"t{uuid.uuid4().hex[:6]}-"
        self.env.update(
            {
                "FL_CONFIG": "/dev/null",
                "FL_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
                "FL_WEIGHTS_TOPIC": f"{topic_prefix}weights",
                "FL_GLOBAL_MODEL_TOPIC": f"{topic_prefix}global",
                "FL_DEAD_LETTER_TOPIC": f"{topic_prefix}dead",
                "FL_SENSOR_TOPIC_PREFIX": f"{topic_prefix}sensor-",
                "FL_AGGREGATION_LOG": str(self.log_path),
                "FL_AGGREGATION_INTERVAL_SECONDS": "1.0",
                "FL_LOG_FORMAT": "text",
                **{f"FL_{k}": v for k, v in settings.items()},
            }
        )
        self.cfg = load_config(env=self.env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.producer = Producer({"bootstrap.servers": kafka.bootstrap})

    def start(self) -> None:
        out = (self.tmp / "aggregator.log").open("ab")
        self.proc = subprocess.Popen(
            [*FL, "aggregate", "--mode", self.mode, "--metrics-port", str(self.metrics_port)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        assert wait_until(
            lambda: (
                b"aggregator started" in (self.tmp / "aggregator.log").read_bytes()
                or self.proc.poll() is not None
            ),
            60,
        )  # type: ignore[union-attr]
        assert self.proc.poll() is None, (self.tmp / "aggregator.log").read_text()

    def stop(self, kill: bool = False) -> int:
        assert self.proc is not None
        self.proc.kill() if kill else self.proc.terminate()
        return self.proc.wait(30)

    def send(
        self,
        node: str,
        base: int,
        weights: list[float],
        n: int = 100,
        hists: tuple[list[int], list[int]] | None = None,
        control_delta: list[float] | None = None,
    ) -> None:
        pos, neg = hists if hists is not None else (None, None)
        update = WeightUpdate(
            f"{node}-{uuid.uuid4().hex[:8]}",
            node,
            base,
            weights,
            n,
            time.time(),
            0.5,
            EvalCounts(base, 5, 1, 90, 4, 20.0, 100, pos, neg),
            FeatureStatsMsg(n, [2.0, 2.0, 1.6, 60.0, 6.0], [25.0] * 5),
            control_delta=control_delta,
        )
        self.producer.produce(
            self.cfg.kafka.weights_topic, key=node.encode(), value=encode_update(update)
        )
        assert self.producer.flush(10) == 0

    def rounds(self, count: int, timeout: float = 60) -> list[RoundRecord]:
        assert wait_until(lambda: len(read_log(self.log_path)) >= count, timeout), (
            self.tmp / "aggregator.log"
        ).read_text()[-3000:]
        return read_log(self.log_path)


@pytest.fixture
def make_aggregator(kafka: KafkaBroker, tmp_path: Path) -> Iterator[object]:
    made: list[Aggregator] = []

    def make(mode: str, **settings: str) -> Aggregator:
        agg = Aggregator(tmp_path, kafka, mode, **settings)
        made.append(agg)
        return agg

    yield make
    for agg in made:
        if agg.proc is not None and agg.proc.poll() is None:
            agg.stop(kill=True)


def test_batch_rounds_restart_continuity_and_a_new_node(make_aggregator) -> None:  # type: ignore[no-untyped-def]
    agg = make_aggregator("batch", MIN_NODES_FOR_AGGREGATION="2")
    agg.start()
    agg.send("1", 0, [1.0] * 6, n=100)
    agg.send("2", 0, [3.0] * 6, n=300)
    first = agg.rounds(1)[0]
    assert first.node_ids == ["1", "2"] and first.global_version == 1
    assert first.global_f1 is not None and first.eval_n == 200
    model = load_latest_global(agg.cfg)
    assert model is not None and model.version == 1 and model.weights == [2.5] * 6
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{agg.metrics_port}/metrics").read()
    assert b"fl_aggregator_rounds_total 1.0" in metrics
    # A crash and a restart: it continues from version 1 read back from Kafka.
    agg.stop(kill=True)
    agg.start()
    agg.send("1", 1, [2.0] * 6)
    agg.send("3", 1, [2.0] * 6)  # a node the aggregator has never seen joins
    second = agg.rounds(2)[1]
    assert second.global_version == 2 and second.round == 2
    assert second.node_ids == ["1", "3"]
    assert agg.stop() == 0  # SIGTERM is a clean exit


def test_async_fedbuff_mode(make_aggregator) -> None:  # type: ignore[no-untyped-def]
    agg = make_aggregator("async", FEDBUFF_K="2")
    agg.start()
    agg.send("1", 0, [1.0] * 6)
    agg.send("2", 0, [3.0] * 6)
    agg.send("3", 0, [5.0] * 6)  # one version behind by the time it is buffered
    agg.send("1", 1, [4.0] * 6)
    rounds = agg.rounds(2)
    assert [r.mode for r in rounds] == ["async", "async"]
    assert [r.strategy for r in rounds] == ["fedbuff", "fedbuff"]
    stale = {p.node_id: p.staleness_versions for p in rounds[1].participants}
    assert stale == {"3": 1, "1": 0}


def _hists(pos_bins: dict[int, int], neg_bins: dict[int, int]) -> tuple[list[int], list[int]]:
    pos, neg = [0] * SCORE_BINS, [0] * SCORE_BINS
    for b, count in pos_bins.items():
        pos[b] = count
    for b, count in neg_bins.items():
        neg[b] = count
    return pos, neg


def test_threshold_learned_from_pooled_histograms_carried_and_resumed(make_aggregator) -> None:  # type: ignore[no-untyped-def]
    agg = make_aggregator("batch", MIN_NODES_FOR_AGGREGATION="2", DETECTION_THRESHOLD="0.9")
    agg.start()
    # Alone, node 1 would pick 0.51 and node 2 0.61; pooled, 0.61 has the best F1.
    agg.send("1", 0, [1.0] * 6, hists=_hists({30: 1, 80: 10}, {10: 80, 50: 3}))
    agg.send("2", 0, [1.0] * 6, hists=_hists({70: 5}, {10: 50, 40: 1, 60: 2}))
    first = agg.rounds(1)[0]
    assert first.threshold == 0.61 and first.threshold_source == "learned"
    assert first.threshold_recall == 15 / 16 and first.threshold_precision == 1.0
    assert first.pr_auc is not None and first.fixed_threshold == 0.9
    model = load_latest_global(agg.cfg)
    assert model is not None and model.threshold == 0.61
    # A restart, then a round without histograms: the threshold is carried forward.
    agg.stop(kill=True)
    agg.start()
    agg.send("1", 1, [2.0] * 6)
    agg.send("2", 1, [2.0] * 6)
    second = agg.rounds(2)[1]
    assert second.threshold == 0.61 and second.threshold_source == "carried"
    assert second.threshold_f1 is None
    model = load_latest_global(agg.cfg)
    assert model is not None and model.version == 2 and model.threshold == 0.61


def test_scaffold_variate_published_and_resumed_with_label_counts(make_aggregator) -> None:  # type: ignore[no-untyped-def]
    agg = make_aggregator("batch", MIN_NODES_FOR_AGGREGATION="2", AGGREGATION_STRATEGY="scaffold")
    agg.start()
    agg.send("1", 0, [1.0] * 6, control_delta=[0.2] * 6)
    agg.send("2", 0, [1.0] * 6, control_delta=[-0.1] * 6)
    agg.rounds(1)
    model = load_latest_global(agg.cfg)
    assert model is not None and model.strategy == "scaffold"
    assert model.control == pytest.approx([0.05] * 6)  # (0.2 - 0.1) / 2 nodes
    assert model.label_counts == [200, 18]  # held-out tp + fn = 9 of 100, per node
    assert model.fedprox_mu is None
    # A crash and a restart: c and the two nodes seen come back with the model.
    agg.stop(kill=True)
    agg.start()
    agg.send("1", 1, [1.0] * 6, control_delta=[0.4] * 6)
    agg.send("2", 1, [1.0] * 6, control_delta=[0.0] * 6)
    agg.rounds(2)
    model = load_latest_global(agg.cfg)
    assert model is not None and model.version == 2
    assert model.control == pytest.approx([0.25] * 6)  # 0.05 + 0.4 / 2
