import numpy as np
import pytest

from fl_runtime.core.messages import decode_reading, encode_reading
from fl_runtime.core.model import LogisticRegressionModel
from fl_runtime.core.scaling import FeatureStats, Scaler
from fl_runtime.edge.machines import MachineProfile, NodeSimulator, node_dataset
from fl_runtime.sim.federation import TrainingParams, run_federated
from fl_runtime.sim.partition import simulator_partitions


def test_deterministic_for_a_seed() -> None:
    a = node_dataset("1", 500, seed=3)
    b = node_dataset("1", 500, seed=3)
    c = node_dataset("1", 500, seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_about_ten_percent_anomalies_by_default_and_configurable() -> None:
    rates = [node_dataset(str(k), 20_000, seed=1)[1].mean() for k in range(1, 9)]
    assert 0.08 < float(np.mean(rates)) < 0.12
    assert abs(node_dataset("1", 20_000, seed=1, anomaly_rate=0.3)[1].mean() - 0.3) < 0.02


def test_nodes_are_non_iid() -> None:
    p1, p2 = MachineProfile.for_node("1", 0), MachineProfile.for_node("2", 0)
    assert np.argmax(p1.fault_mix) != np.argmax(p2.fault_mix)
    assert not np.allclose(p1.baseline, p2.baseline)
    assert p1.anomaly_rate != p2.anomaly_rate


def test_bearing_wear_raises_vibration_and_heat() -> None:
    x, y = node_dataset("1", 20_000, seed=0)  # node 1's dominant fault is bearing wear
    normal, faulty = x[y == 0].mean(axis=0), x[y == 1].mean(axis=0)
    assert (faulty[:3] > normal[:3] + 1.0).all()
    assert faulty[3] > normal[3] + 5.0


def test_readings_are_valid_unique_and_carry_ids() -> None:
    sim = NodeSimulator("2", devices=3, seed=5, run_id="r1")
    readings = list(sim.readings(300, start_ts=1.8e9, rate_hz=10))
    assert len({r.message_id for r in readings}) == 300
    assert {r.device_id for r in readings} == {"node2-dev1", "node2-dev2", "node2-dev3"}
    assert all(r.node_id == "2" for r in readings)
    assert readings[10].timestamp == 1.8e9 + 1.0
    for r in readings:
        assert decode_reading(encode_reading(r)) == r
    again = list(NodeSimulator("2", devices=3, seed=5, run_id="r1").readings(300, 1.8e9, 10))
    assert again == readings


def test_not_trivially_separable_and_fl_matters() -> None:
    both = simulator_partitions(5, 4500, seed=42)  # same machines: train on 2500, test on 2000
    parts = [(x[:2500], y[:2500]) for x, y in both]
    test = [(x[2500:], y[2500:]) for x, y in both]
    params = TrainingParams()
    fed = run_federated(parts, 20, params=params, seed=1).model
    px, py = np.vstack([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    from fl_runtime.core.model import init_weights, sgd

    scaler = Scaler.from_stats(FeatureStats.of(px))
    central = LogisticRegressionModel(
        sgd(
            init_weights(5),
            scaler.transform(px),
            py,
            learning_rate=0.05,
            batch_size=32,
            epochs=20,
            rng=np.random.default_rng(0),
        ),
        scaler,
    )
    tx, ty = np.vstack([x for x, _ in test]), np.concatenate([y for _, y in test])
    assert central.evaluate(tx, ty)["f1"] < 0.95  # clearly below a perfect 1.0
    # A model trained on one node alone scores worse on the *other* nodes' data.
    for k, (x, y) in enumerate(parts):
        s = Scaler.from_stats(FeatureStats.of(x))
        local = LogisticRegressionModel(
            sgd(
                init_weights(5),
                s.transform(x),
                y,
                learning_rate=0.05,
                batch_size=32,
                epochs=20,
                rng=np.random.default_rng(0),
            ),
            s,
        )
        ox = np.vstack([t[0] for j, t in enumerate(test) if j != k])
        oy = np.concatenate([t[1] for j, t in enumerate(test) if j != k])
        assert local.evaluate(ox, oy)["f1"] < fed.evaluate(ox, oy)["f1"] - 0.01


def _labels_by_device(sim: NodeSimulator, n: int) -> dict[str, list[int | None]]:
    out: dict[str, list[int | None]] = {d: [] for d in sim.device_ids}
    for r in sim.readings(n, 0.0, 10.0):
        out[r.device_id].append(r.anomaly)
    return out


def test_unlabelled_share_is_deterministic_and_leaves_the_field_out() -> None:
    sim = NodeSimulator("1", seed=3, unlabelled_share=0.8)
    readings = list(sim.readings(5000, 1.8e9, 10.0))
    unlabelled = [r for r in readings if r.anomaly is None]
    assert 0.77 < len(unlabelled) / len(readings) < 0.83
    assert b'"anomaly"' not in encode_reading(unlabelled[0])
    assert decode_reading(encode_reading(unlabelled[0])) == unlabelled[0]
    again = list(NodeSimulator("1", seed=3, unlabelled_share=0.8).readings(5000, 1.8e9, 10.0))
    assert again == readings
    labelled = list(NodeSimulator("1", seed=3).readings(5000, 1.8e9, 10.0))
    assert [r.features() for r in labelled] == [r.features() for r in readings]  # same machine


def test_live_faults_come_in_episodes_at_the_profile_rate() -> None:
    sim = NodeSimulator("2", devices=2, seed=1, episode_readings=20)
    labels = _labels_by_device(sim, 200_000)
    for series in labels.values():
        y = np.array(series, dtype=np.int8)
        assert abs(y.mean() - sim.profile.anomaly_rate) < 0.02
        starts = int(np.sum((y[1:] == 1) & (y[:-1] == 0)))
        assert 14 < y.sum() / starts < 26  # mean episode ~20 readings, not ~1
    short = NodeSimulator("2", devices=1, seed=1, episode_readings=1)
    y = np.array(_labels_by_device(short, 50_000)["node2-dev1"], dtype=np.int8)
    assert y.sum() / np.sum((y[1:] == 1) & (y[:-1] == 0)) < 1.5


def test_injected_bearing_wear_ramps_up_and_is_labelled_until_cleared() -> None:
    sim = NodeSimulator("3", devices=2, seed=2, anomaly_rate=0.0, unlabelled_share=0.5)
    before = list(sim.readings(200, 0.0, 10.0))
    sim.inject_fault("node3-dev1", "bearing_wear", ramp_readings=40)
    assert sim.injected_faults == {"node3-dev1": "bearing_wear"}
    during = list(sim.readings(400, 0.0, 10.0))
    sim.clear_fault("node3-dev1")
    after = list(sim.readings(200, 0.0, 10.0))
    dev1 = [r for r in during if r.device_id == "node3-dev1"]
    healthy = [r for r in during if r.device_id == "node3-dev2"]
    assert all(r.anomaly in (1, None) for r in dev1) and any(r.anomaly is None for r in dev1)
    assert all(r.anomaly in (0, None) for r in [*before, *healthy, *after])
    vib = np.array([r.vibration_x for r in dev1])
    base = np.mean([r.vibration_x for r in before])
    assert vib[:5].mean() < vib[60:].mean() - 2.0  # wear progresses over the ramp
    assert vib[60:].mean() > base + 2.5 and np.mean([r.temperature for r in dev1[60:]]) > 70
    assert np.mean([r.vibration_x for r in after]) < base + 0.5


@pytest.mark.parametrize(
    ("device", "fault"), [("node1-dev9", "bearing_wear"), ("node1-dev1", "rust")]
)
def test_injecting_an_unknown_fault_or_device_fails(device: str, fault: str) -> None:
    with pytest.raises(ValueError):
        NodeSimulator("1").inject_fault(device, fault)
