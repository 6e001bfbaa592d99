import logging

import numpy as np
import pytest

from fl_runtime.core.scaling import Scaler, to_raw
from fl_runtime.core.strategy import (
    BatchAggregator,
    ClientUpdate,
    FedAdam,
    FedAvgM,
    FedBuffAggregator,
    coordinate_median,
    fedavg,
    scaffold_control,
    server_optimizer,
    server_step,
    staleness_weight,
    trimmed_mean,
    validate_weights,
)


def upd(node: str, w: list[float], n: int = 10, base: int = 0, ts: float = 100.0) -> ClientUpdate:
    return ClientUpdate(node, np.array(w, dtype=float), n, base, ts, update_id=f"{node}@{ts}")


def test_fedavg_hand_computed() -> None:
    # n = 1 + 3 = 4; 1/4 * [1, 2] + 3/4 * [5, 6] = [4, 5]
    result = fedavg([(np.array([1.0, 2.0]), 1), (np.array([5, 6], dtype=np.int32), 3)])
    assert result.dtype == np.float64
    assert np.array_equal(result, np.array([4.0, 5.0]))
    # three nodes: (2*[0, 3] + 3*[10, 0] + 5*[1, 1]) / 10 = [3.5, 1.1]
    result = fedavg(
        [(np.array([0.0, 3.0]), 2), (np.array([10.0, 0.0]), 3), (np.array([1.0, 1.0]), 5)]
    )
    assert np.allclose(result, [3.5, 1.1], rtol=0, atol=1e-15)


def test_fedavg_rejects_empty_and_bad_counts() -> None:
    with pytest.raises(ValueError):
        fedavg([])
    with pytest.raises(ValueError):
        fedavg([(np.zeros(2), 0)])


def test_robust_aggregation_resists_one_poisoned_node() -> None:
    honest = [(np.array([1.0, -1.0, 0.5]) + 0.01 * k, 100) for k in range(4)]
    poisoned = (np.array([-50.0, 50.0, 80.0]), 1000)  # large, and claims many samples
    updates = [*honest, poisoned]
    truth = fedavg(honest)
    assert np.abs(fedavg(updates) - truth).max() > 10  # FedAvg is dragged away
    assert np.abs(coordinate_median(updates) - truth).max() < 0.05
    assert np.abs(trimmed_mean(updates, 0.2) - truth).max() < 0.05


def test_trimmed_mean_hand_case() -> None:
    ups = [(np.array([v]), 1) for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    assert trimmed_mean(ups, 0.2)[0] == pytest.approx(3.0)
    assert trimmed_mean(ups, 0.0)[0] == pytest.approx(22.0)


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ([np.nan, 0, 0], "not-finite"),
        ([np.inf, 0, 0], "not-finite"),
        ([0, 0], "wrong-dimension"),
        ([[0, 0, 0]], "wrong-dimension"),
        ([1e6, 0, 0], "absurd-norm"),
    ],
)
def test_validate_weights(weights: list[float], reason: str) -> None:
    problem = validate_weights(np.array(weights, dtype=float), dim=3, max_norm=1e3)
    assert problem is not None and problem.reason == reason
    assert validate_weights(np.zeros(3), dim=3, max_norm=1e3) is None


def test_partial_participation_waits_for_min_nodes() -> None:
    agg = BatchAggregator(dim=2, min_nodes=2, max_age_s=60)
    agg.submit(upd("1", [1, 1]))
    assert not agg.ready(100.0)
    assert agg.aggregate(100.0) is None
    agg.submit(upd("2", [3, 3], n=30))
    outcome = agg.aggregate(101.0)
    assert outcome is not None and outcome.version == 1
    assert [p.update.node_id for p in outcome.participants] == ["1", "2"]
    assert np.allclose(outcome.weights, [2.5, 2.5])
    # of three nodes, two fresh updates are enough; the third simply does not take part
    agg.submit(upd("1", [0, 0], base=1, ts=110))
    agg.submit(upd("3", [2, 2], base=1, ts=110))
    outcome = agg.aggregate(111.0)
    assert outcome is not None and sorted(p.update.node_id for p in outcome.participants) == [
        "1",
        "3",
    ]


def test_stale_updates_are_discarded_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    agg = BatchAggregator(dim=2, min_nodes=1, max_age_s=30)
    agg.submit(upd("1", [1, 1], ts=100))
    agg.submit(upd("2", [5, 5], ts=50))
    with caplog.at_level(logging.WARNING, logger="fl_runtime.core.strategy"):
        outcome = agg.aggregate(now=110.0)
    assert outcome is not None
    assert [p.update.node_id for p in outcome.participants] == ["1"]
    assert [(d.node_id, d.reason) for d in outcome.discarded] == [("2", "stale")]
    assert "MAX_WEIGHT_AGE 30" in outcome.discarded[0].detail
    assert "stale" in caplog.text and "node 2" in caplog.text


def test_latest_update_per_node_replaces_older() -> None:
    agg = BatchAggregator(dim=2, min_nodes=1)
    agg.submit(upd("1", [1, 1], ts=100))
    agg.submit(upd("1", [9, 9], ts=105))
    old = agg.submit(upd("1", [4, 4], ts=101))  # out-of-order older one loses
    assert old is not None and old.reason == "superseded"
    outcome = agg.aggregate(106.0)
    assert outcome is not None and np.allclose(outcome.weights, [9, 9])
    assert len(outcome.participants) == 1


def test_late_arrival_is_folded_into_the_next_round() -> None:
    agg = BatchAggregator(dim=2, min_nodes=1, max_age_s=60)
    agg.submit(upd("1", [1, 1], base=0, ts=100))
    first = agg.aggregate(101.0)
    assert first is not None and first.version == 1
    # node 2 trained from version 0 too, but its update arrives after round 1 closed
    agg.submit(upd("2", [3, 3], base=0, ts=100.5))
    agg.submit(upd("1", [2, 2], base=1, ts=102))
    second = agg.aggregate(103.0)
    assert second is not None and second.version == 2
    late = {p.update.node_id: p for p in second.participants}
    assert late["2"].staleness_versions == 1
    assert late["1"].staleness_versions == 0
    assert np.allclose(second.weights, [2.5, 2.5])


def test_invalid_and_future_updates_are_rejected_with_reasons() -> None:
    agg = BatchAggregator(dim=2, max_norm=100)
    assert agg.submit(upd("1", [np.nan, 0])).reason == "not-finite"  # type: ignore[union-attr]
    assert agg.submit(upd("2", [1, 2, 3])).reason == "wrong-dimension"  # type: ignore[union-attr]
    assert agg.submit(upd("3", [1e3, 0])).reason == "absurd-norm"  # type: ignore[union-attr]
    assert agg.submit(upd("4", [0, 0], base=7)).reason == "future-version"  # type: ignore[union-attr]
    assert agg.aggregate(100.0) is None
    agg.submit(upd("5", [1, 1]))
    outcome = agg.aggregate(100.0)
    assert outcome is not None
    assert sorted(d.reason for d in outcome.discarded) == [
        "absurd-norm",
        "future-version",
        "not-finite",
        "wrong-dimension",
    ]


def test_median_strategy_in_rounds() -> None:
    agg = BatchAggregator(dim=1, strategy="median")
    for node, v in (("1", 1.0), ("2", 2.0), ("3", 90.0)):
        agg.submit(upd(node, [v]))
    outcome = agg.aggregate(100.0)
    assert outcome is not None and outcome.weights[0] == 2.0


def test_staleness_weight() -> None:
    assert staleness_weight(0) == 1.0
    assert staleness_weight(3) == pytest.approx(0.5)
    assert staleness_weight(8, exponent=1.0) == pytest.approx(1 / 9)


def test_fedbuff_aggregates_every_k_with_staleness_discount() -> None:
    agg = FedBuffAggregator(dim=1, k=2, server_lr=1.0, initial=np.array([0.0]))
    assert agg.submit(upd("1", [2.0], n=10, base=0), now=100) is None  # buffered
    first = agg.submit(upd("2", [4.0], n=10, base=0), now=100)
    assert first is not None and first.version == 1
    assert first.weights[0] == pytest.approx(3.0)  # mean delta of +2 and +4
    # node 3 is one version behind (delta 6 - 0 = 6, weight 1/sqrt(2)), node 1 is fresh
    agg.submit(upd("3", [6.0], n=10, base=0), now=101)
    second = agg.submit(upd("1", [5.0], n=10, base=1), now=101)
    assert second is not None and second.version == 2
    a = staleness_weight(1)
    expected = 3.0 + (a * 6.0 + 1.0 * 2.0) / (a + 1.0)
    assert second.weights[0] == pytest.approx(expected)
    assert {p.update.node_id: p.staleness_versions for p in second.participants} == {"3": 1, "1": 0}


def test_fedbuff_discards_too_stale() -> None:
    agg = FedBuffAggregator(dim=1, k=1, max_staleness=1)
    for v in range(3):
        assert agg.submit(upd("1", [float(v)], base=agg.version), now=100) is not None
    assert agg.submit(upd("2", [1.0], base=0), now=100) is None
    agg.submit(upd("1", [0.0], base=agg.version), now=100)
    assert agg.version == 4


def test_fedavgm_hand_computed() -> None:
    opt = FedAvgM(learning_rate=0.5, momentum=0.9)
    w = opt.step(np.zeros(2), np.array([1.0, -2.0]))  # v = d; w = 0.5 * v
    assert np.allclose(w, [0.5, -1.0])
    w = opt.step(w, np.array([1.0, 0.0]))  # v = 0.9 * [1, -2] + [1, 0] = [1.9, -1.8]
    assert np.allclose(w, [0.5 + 0.95, -1.0 - 0.9])
    with pytest.raises(ValueError):
        FedAvgM(momentum=1.0)


def test_fedadam_first_step_is_bias_corrected_sign_step() -> None:
    # After one step m = (1-b1) d and v = (1-b2) d^2: the corrected step is lr * d / (|d| + eps')
    opt = FedAdam(learning_rate=0.1, beta1=0.9, beta2=0.99, epsilon=1e-9)
    w = opt.step(np.ones(3), np.array([4.0, -0.01, 0.0]))
    assert np.allclose(w, [1.1, 0.9, 1.0], atol=1e-6)
    assert opt.t == 1
    with pytest.raises(ValueError):
        FedAdam(beta2=1.0)


def test_server_optimizer_runs_inside_batch_rounds() -> None:
    # Prepare: momentum 0.5, lr 1; two rounds toward the same mean [2, 2]
    agg = BatchAggregator(dim=2, strategy="fedavgm", optimizer=FedAvgM(momentum=0.5))
    agg.submit(upd("1", [2, 2], ts=100.0))
    # Execute
    first = agg.aggregate(100.0)
    agg.submit(upd("1", [2, 2], ts=101.0))
    second = agg.aggregate(101.0)
    # Assert: FedAvg would stop at [2, 2]; momentum overshoots: 2 + 0.5 * 2 + 0 = 3
    assert first is not None and np.allclose(first.weights, [2, 2])
    assert second is not None and np.allclose(second.weights, [3, 3])
    assert isinstance(BatchAggregator(dim=2, strategy="fedadam").optimizer, FedAdam)
    assert BatchAggregator(dim=2, strategy="fedprox").optimizer is None


def test_scaffold_server_control_moves_by_participants_over_nodes_seen() -> None:
    agg = BatchAggregator(dim=2, strategy="scaffold")
    for node in ("1", "2", "3", "4"):
        agg.seen.add(node)
    agg.submit(ClientUpdate("1", np.ones(2), 10, 0, 100.0, control_delta=np.array([4.0, 0.0])))
    agg.submit(ClientUpdate("2", np.ones(2), 10, 0, 100.0, control_delta=np.array([0.0, 8.0])))
    outcome = agg.aggregate(100.0)
    assert outcome is not None
    assert np.allclose(agg.control, [1.0, 2.0])  # (1/N) * sum of deltas, N = 4


def test_scaffold_control_counts_each_admitted_delta_once_per_base() -> None:
    # Prepare: a restored variate and the nodes seen, as the service gives them
    agg = BatchAggregator(dim=2, strategy="scaffold", control=np.array([1.0, 1.0]), seen=["1", "2"])
    agg.submit(ClientUpdate("1", np.ones(2), 10, 0, 100.0, control_delta=np.array([2.0, 0.0])))
    assert agg.aggregate(100.0) is not None
    assert np.allclose(agg.control, [2.0, 1.0])  # + [2, 0] / 2
    # Execute: a later update from the same base (a late arrival), then one from a new base
    agg.submit(ClientUpdate("1", np.ones(2), 10, 0, 101.0, control_delta=np.array([4.0, 0.0])))
    assert agg.aggregate(101.0) is not None
    # Assert: only [4, 0] - [2, 0] counts
    assert np.allclose(agg.control, [3.0, 1.0])
    # Execute: a late one from the old base, replaced by one from the new base
    agg.submit(ClientUpdate("1", np.ones(2), 10, 0, 102.0, control_delta=np.array([6.0, 0.0])))
    agg.submit(ClientUpdate("1", np.ones(2), 10, 2, 103.0, control_delta=np.array([0.0, 2.0])))
    assert agg.aggregate(103.0) is not None
    # Assert: both count (the node adopted the late one's variate): + ([2, 0] + [0, 2]) / 2
    assert np.allclose(agg.control, [4.0, 2.0])


def test_absurd_control_delta_is_rejected() -> None:
    agg = BatchAggregator(dim=2, strategy="scaffold", max_norm=10.0)
    rejection = agg.submit(
        ClientUpdate("1", np.ones(2), 10, 0, 100.0, control_delta=np.array([1e6, 0.0]))
    )
    assert rejection is not None and rejection.reason == "absurd-norm"


def test_scaffold_control_is_the_mean_corrected_gradient() -> None:
    # x - y = K * lr * g for a constant gradient g: the new control is g - c + c_i + ...
    g = np.array([0.2, -0.4])
    new = scaffold_control(
        np.zeros(2), np.zeros(2), np.zeros(2), -4 * 0.5 * g, steps=4, learning_rate=0.5
    )
    assert np.allclose(new, g)
    with pytest.raises(ValueError):
        scaffold_control(
            np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), steps=0, learning_rate=0.1
        )


def test_fedbuff_runs_server_optimizers_but_not_scaffold() -> None:
    agg = FedBuffAggregator(dim=2, k=1, strategy="fedavgm", optimizer=FedAvgM(momentum=0.5))
    agg.submit(upd("1", [2, 2], base=0), now=100.0)
    out = agg.submit(upd("1", [4, 4], base=1), now=100.0)  # delta [2, 2] on top of v = [2, 2]
    assert out is not None and np.allclose(out.weights, [5, 5])
    with pytest.raises(ValueError, match="async"):
        FedBuffAggregator(dim=2, strategy="scaffold")
    assert server_optimizer("median") is None


def test_server_step_on_raw_weights_steps_in_standardised_space() -> None:
    # Prepare: a scaler with very different feature scales, as temperature and vibration have
    scaler = Scaler(np.array([60.0, 0.5]), np.array([3.0, 0.05]))
    w_std, target_std = np.array([0.2, -0.1, 0.3]), np.array([0.5, 0.1, 0.0])
    # Execute: the same Adam step, once on standardised weights, once on their raw form
    on_std = server_step(FedAdam(learning_rate=0.1), w_std, target_std)
    on_raw = server_step(
        FedAdam(learning_rate=0.1),
        to_raw(w_std, scaler),
        to_raw(target_std, scaler),
        scaler,
    )
    # Assert: identical models; without the scaler the raw step is a different model
    assert np.allclose(on_raw, to_raw(on_std, scaler))
    naive = server_step(
        FedAdam(learning_rate=0.1), to_raw(w_std, scaler), to_raw(target_std, scaler)
    )
    assert not np.allclose(naive, to_raw(on_std, scaler), atol=1e-3)
