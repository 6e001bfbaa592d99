"""FogTrainer logic without Spark or Kafka: the transport is swapped for a list."""

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fl_runtime.config import Config, load_config
from fl_runtime.core.messages import (
    SCORE_BINS,
    GlobalModel,
    WeightUpdate,
    decode_update,
    encode_reading,
    encode_update,
)
from fl_runtime.core.model import Confusion
from fl_runtime.core.scaling import FeatureStats, Scaler, merge_all, to_raw
from fl_runtime.core.strategy import BatchAggregator, ClientUpdate, fedavg
from fl_runtime.core.threshold import learn_threshold
from fl_runtime.edge.machines import NodeSimulator
from fl_runtime.fog.trainer import UNLABELLED, FogTrainer, Rejected, parse_rows


def batch(
    node: str = "1", n: int = 400, seed: int = 0, start: float = 1.8e9, unlabelled: float = 0.0
) -> list[bytes]:
    sim = NodeSimulator(node, seed=seed, run_id=f"t{seed}-{start}", unlabelled_share=unlabelled)
    return [encode_reading(r) for r in sim.readings(n, start, 100.0)]


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return load_config(
        env={
            "FL_CONFIG": "/dev/null",
            "FL_WEIGHT_PUBLISH_INTERVAL_SECONDS": "3600",
            "FL_CHECKPOINT_DIR": str(tmp_path),
        }
    )


def test_batches_train_hold_out_and_publish(cfg: Config, tmp_path: Path) -> None:
    sent: list[WeightUpdate] = []
    trainer = FogTrainer(cfg, "1", sent.append, tmp_path / "node-1")
    counts = trainer.process_batch(batch(), 0)
    assert counts["valid"] == 400 and counts["invalid"] == 0
    assert 40 < counts["held_out"] < 120  # HOLDOUT_FRACTION 0.2
    assert counts["trained"] + counts["held_out"] == 400
    assert sent == []  # not due yet
    update = trainer.maybe_publish(force=True)
    assert update is not None and sent == [update]
    assert update.n_samples == counts["trained"] and update.base_version == 0
    assert update.feature_stats is not None and update.feature_stats.n == counts["trained"]
    assert update.evaluation is None  # no global model to evaluate yet
    assert np.isfinite(update.weights).all() and len(update.weights) == 6


def test_invalid_rows_are_counted_and_dead_lettered(cfg: Config, tmp_path: Path) -> None:
    dead: list[Rejected] = []
    trainer = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    values = [*batch(n=10), b"not json", b'{"schema": "x"}', *batch(node="2", n=1)]
    counts = trainer.process_batch(values, 0, dead.append)
    assert counts["valid"] == 10 and counts["invalid"] == 3
    assert [d.reason for d in dead] == ["not-json", "schema", "wrong-node"]


def test_replayed_batch_is_skipped_after_restart(cfg: Config, tmp_path: Path) -> None:
    trainer = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    trainer.process_batch(batch(), 0)
    trainer.process_batch(batch(seed=1), 1)
    seen = trainer.stats.n
    again = FogTrainer(cfg, "1", lambda u: None, tmp_path)  # a restart
    assert again.stats.n == seen and again.last_batch_id == 1
    assert np.allclose(again.weights_std, trainer.weights_std)
    assert again.process_batch(batch(seed=1), 1)["skipped"] == 1  # Spark replays batch 1
    assert again.stats.n == seen
    assert again.process_batch(batch(seed=2), 2)["trained"] > 0  # new data is not skipped


def test_new_global_model_restarts_local_training(cfg: Config, tmp_path: Path) -> None:
    sent: list[WeightUpdate] = []
    trainer = FogTrainer(cfg, "1", sent.append, tmp_path)
    trainer.process_batch(batch(), 0)
    scaler = Scaler(np.array([2.0, 2.0, 1.6, 60.0, 6.0]), np.array([0.5, 0.5, 0.4, 3.0, 0.3]))
    raw = to_raw(np.array([0.5, 0.5, 0.5, 1.0, -1.0, -3.0]), scaler)
    model = GlobalModel(
        3,
        3,
        raw.tolist(),
        time.time(),
        "fedavg",
        ["1", "2"],
        800,
        scaler.mean.tolist(),
        scaler.std.tolist(),
    )
    trainer.offer_global(model)
    trainer.offer_global(GlobalModel(2, 2, [0.0] * 6, time.time()))  # older: ignored
    counts = trainer.process_batch(batch(seed=5), 1)
    assert trainer.base_version == 3
    assert np.allclose(trainer.scaler.std, scaler.std)
    update = trainer.maybe_publish(force=True)
    assert update is not None
    assert update.base_version == 3 and update.n_samples == counts["trained"]
    assert update.evaluation is not None and update.evaluation.version == 3
    assert update.evaluation.n == len(trainer.hold_y)


def test_parse_rows_types() -> None:
    x, y, ids, rejected = parse_rows([*batch(n=3), None], "1")
    assert x.shape == (3, 5) and y.dtype == np.int8 and len(ids) == 3
    assert rejected[0].reason == "not-json"
    _, y, _, _ = parse_rows(batch(n=50, unlabelled=1.0), "1")
    assert (y == UNLABELLED).all()


def test_unlabelled_readings_are_counted_never_trained_or_held_out(
    cfg: Config, tmp_path: Path
) -> None:
    trainer = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    counts = trainer.process_batch(batch(n=2000, unlabelled=0.8), 0)
    assert counts["valid"] == 2000 and 1500 < counts["unlabelled"] < 1700
    assert counts["trained"] + counts["held_out"] + counts["unlabelled"] == 2000
    assert trainer.stats.n == trainer.n_since_base == counts["trained"]
    assert len(trainer.hold_y) == counts["held_out"]
    only = FogTrainer(cfg, "1", lambda u: None, tmp_path / "other")
    counts = only.process_batch(batch(n=100, unlabelled=1.0), 0)
    assert counts["unlabelled"] == 100 and counts["trained"] == counts["held_out"] == 0
    assert only.maybe_publish(force=True) is None  # nothing trained, nothing to send


def test_evaluation_carries_score_histograms_of_the_global_model(
    cfg: Config, tmp_path: Path
) -> None:
    trainer = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    trainer.offer_global(GlobalModel(1, 1, [0.5, 0.5, 0.5, 0.1, -1.0, -4.0], time.time()))
    trainer.process_batch(batch(n=3000, unlabelled=0.5), 0)
    update = trainer.maybe_publish(force=True)
    assert update is not None and update.evaluation is not None
    ev = update.evaluation
    assert ev.score_hist_pos is not None and ev.score_hist_neg is not None
    assert len(ev.score_hist_pos) == len(ev.score_hist_neg) == SCORE_BINS
    assert sum(ev.score_hist_pos) == ev.tp + ev.fn and sum(ev.score_hist_neg) == ev.fp + ev.tn
    assert sum(ev.score_hist_pos[50:]) == ev.tp  # the counts use 0.5, the bins agree
    assert decode_update(encode_update(update)) == update


def test_state_saved_before_histograms_still_loads(cfg: Config, tmp_path: Path) -> None:
    old: dict[str, Any] = {  # the keys of a state.npz written by the trainer before #11
        "weights_std": np.zeros(6),
        "scaler_mean": np.zeros(5),
        "scaler_std": np.ones(5),
        "global_raw": np.zeros(6),
        "base_version": 4,
        "stats_n": 10,
        "stats_mean": np.zeros(5),
        "stats_m2": np.ones(5),
        "n_since_base": 10,
        "last_batch_id": 7,
        "hold_x": np.ones((3, 5)),
        "hold_y": np.array([0, 1, 0], dtype=np.int8),
        "has_global_scaler": True,
    }
    tmp_path.mkdir(exist_ok=True)
    np.savez(tmp_path / "state.npz", **old)
    trainer = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    assert trainer.base_version == 4 and list(trainer.hold_y) == [0, 1, 0]
    assert trainer.global_strategy is None and trainer.label_counts is None
    assert not trainer.control.any() and trainer.control_next is None
    ev = trainer.make_update().evaluation
    assert ev is not None and ev.score_hist_pos is not None and sum(ev.score_hist_pos) == 1


SCALER = Scaler(np.array([2.0, 2.0, 1.6, 60.0, 6.0]), np.array([0.5, 0.5, 0.4, 3.0, 0.3]))


def scaffold_model(version: int, control: list[float] | None) -> GlobalModel:
    return GlobalModel(
        version,
        version,
        to_raw(np.array([0.1, 0.1, 0.1, 0.2, -0.2, -1.0]), SCALER).tolist(),
        time.time(),
        "scaffold",
        ["1"],
        100,
        SCALER.mean.tolist(),
        SCALER.std.tolist(),
        control=control,
    )


def test_scaffold_node_corrects_by_the_global_variate_and_stages_its_own(
    cfg: Config, tmp_path: Path
) -> None:
    # Prepare: a global model that asks for SCAFFOLD (the node's own strategy: fedavg)
    c = [0.05, -0.05, 0.02, 0.1, -0.1, 0.2]
    runs = {}
    for name, control in (("plain", None), ("corrected", c)):
        trainer = FogTrainer(cfg, "1", lambda u: None, tmp_path / name)
        trainer.rng = np.random.default_rng(0)
        trainer.offer_global(scaffold_model(1, control))
        trainer.process_batch(batch(), 0)
        runs[name] = trainer
    trainer = runs["corrected"]
    # Assert: the correction c - c_i (c_i = 0) moved the weights, and the node counted
    # the SGD steps it took since the base
    assert trainer.strategy() == "scaffold"
    assert not np.allclose(trainer.weights_std, runs["plain"].weights_std)
    trained = trainer.n_since_base
    assert trainer.steps_since_base == -(-trained // cfg.training.batch_size)
    # Execute: a publish that fails, then one that goes out
    failing = FogTrainer(cfg, "1", lambda u: None, tmp_path / "corrected")

    def broken(update: WeightUpdate) -> None:
        raise RuntimeError("kafka down")

    failing.publish = broken
    with pytest.raises(RuntimeError):
        failing.maybe_publish(force=True)
    assert failing.control_next is None  # not published: nothing staged
    update = trainer.maybe_publish(force=True)
    # Assert: the delta is SCAFFOLD's c_i(new) - c_i, the mean corrected gradient minus c
    assert update is not None and update.control_delta is not None
    start = np.array([0.1, 0.1, 0.1, 0.2, -0.2, -1.0])
    lr = cfg.training.learning_rate
    expected = (start - trainer.weights_std) / (trainer.steps_since_base * lr) - np.array(c)
    np.testing.assert_allclose(update.control_delta, expected, atol=1e-9)
    assert decode_update(encode_update(update)) == update
    # ... staged, and adopted only when the next global model arrives
    assert not trainer.control.any() and trainer.control_next is not None
    trainer.offer_global(scaffold_model(2, c))
    trainer.process_batch(batch(seed=1), 1)
    np.testing.assert_allclose(trainer.control, expected)
    assert trainer.control_next is None
    # ... and dropped under a model of another strategy (the server's c restarts at 0)
    trainer.offer_global(replace(scaffold_model(3, None), strategy="fedavgm"))
    trainer.process_batch(batch(seed=2), 2)
    assert not trainer.control.any() and trainer.maybe_publish(force=True) is not None
    assert trainer.make_update().control_delta is None


def test_scaffold_variates_survive_a_restart(cfg: Config, tmp_path: Path) -> None:
    # Prepare: a node that published under SCAFFOLD, then stopped
    c = [0.05, -0.05, 0.02, 0.1, -0.1, 0.2]
    first = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    first.offer_global(scaffold_model(1, c))
    first.process_batch(batch(), 0)
    update = first.maybe_publish(force=True)
    assert update is not None and update.control_delta is not None
    first.process_batch(batch(seed=1), 1)  # saves the state with the staged variate
    # Execute
    restarted = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    # Assert: strategy, c, c_i, the staged c_i(new) and the step count are back
    assert restarted.strategy() == "scaffold" and restarted.base_version == 1
    np.testing.assert_allclose(restarted.server_control, c)
    assert restarted.steps_since_base == first.steps_since_base > 0
    assert restarted.control_next is not None
    np.testing.assert_allclose(restarted.control_next, update.control_delta)
    restarted.offer_global(scaffold_model(2, c))
    restarted.process_batch(batch(seed=2), 2)
    np.testing.assert_allclose(restarted.control, update.control_delta)


def test_balanced_class_weights_come_from_the_pooled_label_counts(tmp_path: Path) -> None:
    # Prepare
    cfg = load_config(
        env={"FL_CONFIG": "/dev/null", "FL_CLASS_WEIGHT": "balanced", "FL_CHECKPOINT_DIR": "/x"}
    )
    trainer = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    y = np.array([0, 0, 0, 1], dtype=np.int8)
    # Assert: own counts before a global model carries pooled ones
    assert trainer._class_weight(y) == (4 / 6, 4 / 2)
    # Execute: a model with the fleet's counts, then one without (an older aggregator)
    trainer.offer_global(replace(scaffold_model(1, None), label_counts=[1000, 100]))
    trainer.process_batch(batch(n=10), 0)
    trainer.offer_global(replace(scaffold_model(2, None), label_counts=None))
    trainer.process_batch(batch(n=10, seed=1), 1)
    # Assert: the pooled counts, kept across a model without them and a restart
    assert trainer._class_weight(y) == (1000 / 1800, 1000 / 200)
    restarted = FogTrainer(cfg, "1", lambda u: None, tmp_path)
    assert restarted.label_counts == (1000, 100)


def test_restarted_node_never_publishes_from_its_old_base(cfg: Config, tmp_path: Path) -> None:
    sent: list[WeightUpdate] = []
    first = FogTrainer(cfg, "1", sent.append, tmp_path)
    first.offer_global(GlobalModel(2, 2, [0.0] * 6, time.time()))
    first.process_batch(batch(), 0)
    assert first.base_version == 2 and first.n_since_base > 0
    restarted = FogTrainer(cfg, "1", sent.append, tmp_path)  # state says base 2
    restarted.offer_global(GlobalModel(9, 9, [0.0] * 6, time.time()))  # read from Kafka
    assert restarted.maybe_publish(force=True) is None  # base 2 progress is dropped
    assert restarted.base_version == 9
    restarted.process_batch(batch(seed=3), 1)
    update = restarted.maybe_publish(force=True)
    assert update is not None and update.base_version == 9


def test_trainers_learn_with_most_readings_unlabelled_and_the_threshold_helps(
    cfg: Config,
) -> None:
    # Prepare: four nodes' trainers on live-stream batches, 80 % of readings unlabelled
    nodes = ["1", "2", "3", "4"]
    sims = {n: NodeSimulator(n, seed=42, unlabelled_share=0.8) for n in nodes}
    trainers = {n: FogTrainer(cfg, n, lambda u: None) for n in nodes}
    hists: dict[str, tuple[list[int], list[int]]] = {}
    model, learned = None, learn_threshold([])
    # Execute: rounds of local training, FedAvg, the threshold from pooled histograms
    for version in range(1, 7):
        updates = []
        for n in nodes:
            trainers[n].process_batch(
                [encode_reading(r) for r in sims[n].readings(1000, 1.8e9, 20)], version
            )
            update = trainers[n].maybe_publish(force=True)
            assert update is not None
            updates.append(update)
            ev = update.evaluation
            if ev is not None and ev.score_hist_pos is not None and ev.score_hist_neg is not None:
                hists[n] = (ev.score_hist_pos, ev.score_hist_neg)
        learned = learn_threshold(hists.values(), previous=learned.threshold)
        weights = fedavg([(u.weights_array(), u.n_samples) for u in updates])
        stats = merge_all(
            FeatureStats(
                u.feature_stats.n, np.array(u.feature_stats.mean), np.array(u.feature_stats.m2)
            )
            for u in updates
            if u.feature_stats is not None
        )
        scaler = Scaler.from_stats(stats)
        model = GlobalModel(
            version, version, weights.tolist(), time.time(), "fedavg", nodes, 0,
            scaler.mean.tolist(), scaler.std.tolist(), learned.threshold,
        )  # fmt: skip
        for t in trainers.values():
            t.offer_global(model)
    # Assert: a useful model, and the learned threshold does at least as well as 0.5
    assert model is not None and learned.source == "learned" and learned.choice is not None
    assert learned.threshold is not None and 0.05 < learned.threshold < 0.95
    fresh = [r for n in nodes for r in NodeSimulator(n, seed=7).readings(3000, 0, 20)]
    x = np.array([r.features() for r in fresh])
    y = np.array([r.anomaly for r in fresh], dtype=np.int8)
    at_half = Confusion.of(model.weights_array(), x, y).f1
    at_learned = Confusion.of(model.weights_array(), x, y, threshold=learned.threshold).f1
    assert at_half > 0.7 and at_learned >= at_half - 0.01


def client(u: WeightUpdate, timestamp: float) -> ClientUpdate:
    delta = None if u.control_delta is None else np.array(u.control_delta)
    return ClientUpdate(
        u.node_id, u.weights_array(), u.n_samples, u.base_version, timestamp, u.update_id,
        control_delta=delta,
    )  # fmt: skip


@pytest.mark.parametrize("strategy", ["scaffold", "fedavgm"])
def test_streaming_fleet_follows_the_aggregators_strategy_with_late_updates(
    cfg: Config, strategy: str
) -> None:
    # Prepare: two nodes on the lab's cadence (two publishes per round, 80 % of the
    # readings unlabelled); their own AGGREGATION_STRATEGY stays the default, fedavg
    nodes = ["1", "2"]
    sims = {n: NodeSimulator(n, seed=3, run_id="stream", unlabelled_share=0.8) for n in nodes}
    trainers = {n: FogTrainer(cfg, n, lambda u: None) for n in nodes}
    stats: dict[str, FeatureStats] = {}

    def scaler() -> Scaler | None:
        merged = merge_all(stats.values())
        return Scaler.from_stats(merged) if merged.n > 1 else None

    agg = BatchAggregator(dim=6, strategy=strategy, scaler=scaler, max_age_s=1e9)
    ts, batch_id, model = 1.8e9, 0, None
    # Execute: 30 rounds; in every third one node 1 publishes once more from the old
    # base after the round closed (a late update, replaced before the next round)
    for version in range(1, 31):
        for n in nodes:
            for _ in range(2):
                readings = sims[n].readings(200, ts, 40)
                trainers[n].process_batch([encode_reading(r) for r in readings], batch_id)
                batch_id, ts = batch_id + 1, ts + 5
                u = trainers[n].maybe_publish(force=True)
                assert u is not None and u.feature_stats is not None
                fs = u.feature_stats
                stats[n] = FeatureStats(fs.n, np.array(fs.mean), np.array(fs.m2))
                agg.submit(client(u, ts))
        out = agg.aggregate(ts)
        assert out is not None
        sc = scaler()
        assert sc is not None
        model = GlobalModel(
            out.version, out.version, out.weights.tolist(), time.time(), strategy, nodes, 0,
            sc.mean.tolist(), sc.std.tolist(),
            control=agg.control.tolist() if strategy == "scaffold" else None,
        )  # fmt: skip
        if version % 3 == 0 and version < 30:
            readings = sims["1"].readings(100, ts, 40)
            trainers["1"].process_batch([encode_reading(r) for r in readings], batch_id)
            batch_id += 1
            late = trainers["1"].maybe_publish(force=True)
            assert late is not None and late.base_version == version - 1
            agg.submit(client(late, ts + 1))
        for t in trainers.values():
            t.offer_global(model)
            t.process_batch([], batch_id)  # the model is applied at the next batch
        batch_id += 1
    # Assert: the nodes trained as the model asked, a useful model came out, and under
    # SCAFFOLD the server's c is the mean of the nodes' variates (nothing lost or
    # counted twice across repeated and late updates)
    assert model is not None and all(t.strategy() == strategy for t in trainers.values())
    fresh = [r for n in nodes for r in NodeSimulator(n, seed=8).readings(2000, 0, 20)]
    x = np.array([r.features() for r in fresh])
    y = np.array([r.anomaly for r in fresh], dtype=np.int8)
    assert Confusion.of(model.weights_array(), x, y).f1 > 0.85
    mean_control = np.mean([t.control for t in trainers.values()], axis=0)
    np.testing.assert_allclose(agg.control, mean_control, atol=1e-9)
    assert agg.control.any() == (strategy == "scaffold")
