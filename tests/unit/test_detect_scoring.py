"""Scoring, the threshold in force, alert tracking and score summaries: the pure parts
of ``fl detect``."""

import itertools
import time

import numpy as np
import pytest

from fl_runtime.core.detections import CLEARED, RAISED
from fl_runtime.core.messages import GlobalModel, SensorReading
from fl_runtime.core.model import Confusion, sgd
from fl_runtime.core.scaling import FeatureStats, Scaler, to_raw
from fl_runtime.edge.machines import node_dataset
from fl_runtime.fog.detect.alerts import AlertTracker, Scored
from fl_runtime.fog.detect.scoring import FALLBACK_THRESHOLD, Scorer, choose_threshold
from fl_runtime.fog.detect.summary import SummaryAccumulator

NOW = 1_750_000_000.0


def reading(x: np.ndarray, i: int = 0, label: int | None = None) -> SensorReading:
    return SensorReading(f"m{i}", "dev1", "1", i, NOW + i, *(float(v) for v in x), anomaly=label)


def trained_model(threshold: float | None = None) -> tuple[GlobalModel, np.ndarray, np.ndarray]:
    x, y = node_dataset("1", 4000, seed=3)
    scaler = Scaler.from_stats(FeatureStats.of(x))
    w = sgd(np.zeros(6), scaler.transform(x), y, learning_rate=0.1, batch_size=32, epochs=5)
    raw = to_raw(w, scaler)
    model = GlobalModel(7, 7, raw.tolist(), NOW, threshold=threshold)
    return model, x, y


def test_scores_match_the_fog_nodes_evaluation_of_the_raw_space_model() -> None:
    # Prepare: a model trained on standardised features, published in raw space
    model, x, y = trained_model()
    scorer = Scorer.of(model, -1.0)
    # Execute: score reading by reading, as the service does
    over = np.array([scorer.is_over(scorer.score(reading(row))) for row in x[:500]])
    # Assert: the same decisions as Confusion.of on raw features (trainer._evaluate_base)
    c = Confusion.of(model.weights_array(), x[:500], y[:500], threshold=scorer.threshold)
    assert int(over.sum()) == c.tp + c.fp
    assert c.f1 > 0.5


@pytest.mark.parametrize(
    ("configured", "learned", "expected"),
    [(0.7, 0.3, 0.7), (0.0, 0.3, 0.0), (-1.0, 0.3, 0.3), (-1.0, None, FALLBACK_THRESHOLD)],
)
def test_threshold_config_wins_then_the_learned_one_then_the_fallback(
    configured: float, learned: float | None, expected: float
) -> None:
    assert choose_threshold(configured, learned) == expected
    model = GlobalModel(1, 1, [0.0] * 6, NOW, threshold=learned)
    assert Scorer.of(model, configured).threshold == expected


def tracker(k: int = 3, m: int = 5, clear: float = 10.0) -> AlertTracker:
    ids = (f"a{i}" for i in itertools.count(1))
    return AlertTracker(k=k, m=m, clear_seconds=clear, new_id=lambda: next(ids))


def feed(t: AlertTracker, overs: str, start: float = NOW, step: float = 1.0) -> list[str]:
    """Feed '1'/'0' readings one second apart; the state changes, as 'raised:a1'."""
    out = []
    for i, ch in enumerate(overs):
        when = start + i * step
        change = t.observe(Scored(f"r{i}", 0.9 if ch == "1" else 0.1, ch == "1", when), when)
        if change is not None:
            out.append(f"{change.state}:{change.alert_id}@{i}")
    return out


def test_alert_raised_at_k_of_m_and_not_before() -> None:
    t = tracker()
    assert feed(t, "1010") == []  # 2 of the last 4
    assert feed(t, "1") == [f"{RAISED}:a1@0"]  # 3 of the last 5
    assert t.active and t.over == 3


def test_isolated_over_readings_never_raise() -> None:
    t = tracker()
    assert feed(t, "1000100010001000100010001") == []


def test_clear_after_quiet_period_by_reading_time_reuses_the_alert_id() -> None:
    t = tracker(clear=10.0)
    changes = feed(t, "111" + "0" * 12)
    assert changes == [f"{RAISED}:a1@2", f"{CLEARED}:a1@12"]
    assert not t.active
    assert feed(t, "111", start=NOW + 100) == [f"{RAISED}:a2@2"]


def test_over_readings_keep_the_alert_up() -> None:
    t = tracker(clear=3.0)
    assert feed(t, "111" + "0010010010") == [f"{RAISED}:a1@2"]


def test_silent_device_clears_by_wall_clock_tick() -> None:
    t = tracker(clear=10.0)
    feed(t, "111")
    assert t.tick(NOW + 2 + 9.9) is None
    change = t.tick(NOW + 2 + 10.0)
    assert change is not None and change.state == CLEARED and change.alert_id == "a1"
    assert change.trigger.message_id == "r2"
    assert t.tick(NOW + 100) is None


def test_restored_alert_clears_after_a_quiet_period_from_restart() -> None:
    t = tracker(clear=5.0)
    t.restore("old", Scored("r9", 0.9, True, NOW - 1000), wall=NOW)
    assert t.active and t.tick(NOW + 4) is None
    change = t.tick(NOW + 5)
    assert change is not None and change.alert_id == "old"


def test_k_must_not_exceed_m() -> None:
    with pytest.raises(ValueError, match="k <= m"):
        tracker(k=6, m=5)


def test_summary_counts_scores_and_the_confusion_of_labelled_readings() -> None:
    acc = SummaryAccumulator("dev1", "1", NOW)
    for score, over, label in [(0.9, True, 1), (0.8, True, 0), (0.1, False, None), (0.2, False, 1)]:
        acc.add(score, over, label)
    s = acc.flush(NOW + 5, threshold=0.5, model_version=3, alert_active=True)
    assert s is not None
    assert (s.n, s.over, s.tp, s.fp, s.tn, s.fn) == (4, 2, 1, 1, 0, 1)
    assert s.mean_score == pytest.approx(0.5) and s.max_score == 0.9
    assert (s.window_start, s.window_end, s.alert_active) == (NOW, NOW + 5, True)
    assert acc.flush(NOW + 10, threshold=0.5, model_version=3, alert_active=False) is None
    assert acc.window_start == NOW + 10


def test_scoring_cost_per_reading_is_small() -> None:
    # A micro-benchmark with a loose bound; the figure is printed for the report.
    model, x, _ = trained_model()
    scorer = Scorer.of(model, -1.0)
    readings = [reading(row, i) for i, row in enumerate(x[:2000])]
    start = time.perf_counter()
    for r in readings:
        scorer.is_over(scorer.score(r))
    per = (time.perf_counter() - start) / len(readings)
    print(f"scoring cost: {per * 1e6:.1f} us per reading")
    assert per < 1e-3
