"""``fl bench detect``: from a reading published over MQTT to its alert on MQTT.

The bench runs the real stack on loopback: Mosquitto, a single-node KRaft Kafka,
``fl detect`` (the scorer beside the fog job) and, for the comparison, ``fl bridge``
with a Spark Structured Streaming query that scores the same readings from Kafka
with the same model and the same alert rule (the other option issue #11 names:
scoring inside the fog node's streaming job, at the default trigger interval).

Simulated devices publish healthy readings at a steady rate; every few seconds each
device sends a burst of bearing-wear readings long enough to raise an alert. The
latency of an alert is the time from the publication of the reading that completed
``ALERT_K`` of ``ALERT_M`` to the arrival of the alert at an MQTT subscriber, for
both options. For the Spark option the time is also split into the bridge (publish
to the Kafka record's timestamp), the wait for the trigger and Spark's planning (the
record's timestamp to the start of its micro-batch), and the batch itself.

Figures are printed, never asserted against a time: the JSON has ``p50_ms``,
``p99_ms`` and ``alerts`` for the scorer, the same for the Spark option, the share of
the Spark path the trigger takes, and both options' memory (RSS).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fl_runtime.bench.stack import KafkaBroker, ManagedProcess, MosquittoBroker, wait_until
from fl_runtime.config import Config
from fl_runtime.core.detections import (
    RAISED,
    AlertChange,
    decode_anomaly_record,
    encode_anomaly_record,
)
from fl_runtime.core.features import N_FEATURES
from fl_runtime.core.messages import (
    GlobalModel,
    SensorReading,
    decode_reading,
    encode_global,
    encode_reading,
)
from fl_runtime.core.model import init_weights, predict_proba, sgd
from fl_runtime.core.scaling import FeatureStats, Scaler, to_raw
from fl_runtime.core.threshold import choose_threshold, score_histogram
from fl_runtime.edge.machines import NodeSimulator, node_dataset
from fl_runtime.errors import ValidationError
from fl_runtime.fog.detect.alerts import AlertTracker, Scored
from fl_runtime.fog.detect.scoring import FALLBACK_THRESHOLD, Scorer

NODE = "1"
SPARK_ALERT_TEMPLATE = "bench/spark/node-{node_id}/{device_id}/alerts"
TARGET_P99_MS = 2000.0
FAULT = "bearing_wear"


@dataclass(frozen=True)
class DetectBench:
    """What to run: devices x rate readings per second for ``duration_s`` seconds."""

    devices: int = 10
    rate_hz: float = 10.0  # per device
    duration_s: float = 60.0
    warmup_s: float = 10.0
    fault_every_s: float = 4.0  # a burst per device about this often
    spark: bool = True


@dataclass
class _Timeline:
    """Publish times by message id, and alert arrivals by option."""

    published: dict[str, float]
    arrivals: dict[str, list[tuple[str, float]]]  # option -> [(message_id, arrival)]
    lock: threading.Lock
    measuring: threading.Event


def run_detect_bench(
    bench: DetectBench, base: Config, cache_dir: Path, workdir: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Start the stack, run the load, return the figures (see the module docstring)."""
    with ExitStack() as stack:
        say("starting Mosquitto and Kafka on loopback")
        mqtt = stack.enter_context(MosquittoBroker(workdir / "mosquitto"))
        kafka = stack.enter_context(KafkaBroker(cache_dir, workdir / "kafka"))
        cfg = _bench_config(base, mqtt, kafka, workdir)
        _ensure_topics(cfg)
        model = _train_model()
        _publish_global(cfg, model)
        config_path = workdir / "fl.toml"
        config_path.write_text(cfg.to_toml(), encoding="utf-8")
        say(f"model ready (threshold {model.threshold:.3f}); starting fl detect")
        scorer = stack.enter_context(_service("detect", config_path, workdir))
        timeline = _Timeline({}, {"scorer": [], "spark": []}, threading.Lock(), threading.Event())
        stack.enter_context(_alert_listener(cfg, timeline))
        spark_stats: dict[str, Any] = {}
        if bench.spark:
            say("starting fl bridge and a Spark scoring query (the in-job option)")
            stack.enter_context(_service("bridge", config_path, workdir))
            stack.enter_context(_spark_option(cfg, model, spark_stats))
        say(f"warming up {bench.warmup_s:.0f} s, then {bench.duration_s:.0f} s of load")
        cpu0 = _cpu_seconds(scorer.pid)
        _load(cfg, bench, model, timeline, say)
        cpu_s = _cpu_seconds(scorer.pid) - cpu0
        time.sleep(max(3.0, 2.5 * cfg.fog.trigger_seconds))  # late Spark batches
        if bench.spark:
            spark_stats["jvm_rss_mb"] = _child_java_rss_mb()
        return _figures(bench, cfg, timeline, spark_stats, scorer, cpu_s)


def _bench_config(base: Config, mqtt: MosquittoBroker, kafka: KafkaBroker, workdir: Path) -> Config:
    return base.replace(
        KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap,
        MQTT_HOST=mqtt.host,
        MQTT_PORT=mqtt.port,
        NODE_ID=NODE,
        DETECTION_STATE_DIR=str(workdir / "detect"),
        CHECKPOINT_DIR=str(workdir / "checkpoints"),
        METRICS_PORT=-1,
        LOG_LEVEL="WARNING",
        # Alerts clear quickly, so every device raises many and p99 has samples.
        ALERT_CLEAR_SECONDS=1.0,
        DETECTION_THRESHOLD=-1.0,
    )


def _ensure_topics(cfg: Config) -> None:
    from fl_runtime.service.topics import ensure_topics

    ensure_topics(cfg, [NODE])


def _train_model() -> GlobalModel:
    """A global model trained centrally on the node's simulated data, with the
    threshold that maximises F1 on a held-out part."""
    x, y = node_dataset(NODE, 20_000, seed=7)
    scaler = Scaler.from_stats(FeatureStats.of(x[:15_000]))
    w = sgd(
        init_weights(N_FEATURES),
        scaler.transform(x[:15_000]),
        y[:15_000],
        learning_rate=0.05,
        batch_size=32,
        epochs=3,
        l2=1e-4,
        rng=np.random.default_rng(7),
    )
    raw = to_raw(w, scaler)
    scores = predict_proba(w, scaler.transform(x[15_000:]))
    threshold = _best_f1_threshold(scores, y[15_000:])
    return GlobalModel(
        version=1,
        round=1,
        weights=raw.tolist(),
        timestamp=time.time(),
        participants=[NODE],
        n_total=15_000,
        scaler_mean=scaler.mean.tolist(),
        scaler_std=scaler.std.tolist(),
        threshold=threshold,
    )


def _best_f1_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The threshold the aggregator would learn from these scores' histograms."""
    pos, neg = score_histogram(scores, y)
    choice = choose_threshold(pos, neg)
    return FALLBACK_THRESHOLD if choice is None else choice.threshold


def _publish_global(cfg: Config, model: GlobalModel) -> None:
    from confluent_kafka import Producer

    from fl_runtime.service.common import kafka_producer_conf

    producer = Producer(kafka_producer_conf(cfg, "fl-bench-detect"))
    producer.produce(cfg.kafka.global_model_topic, key=b"global", value=encode_global(model))
    if producer.flush(30):
        raise RuntimeError("the bench's global model was not delivered within 30 s")


@contextmanager
def _service(name: str, config_path: Path, workdir: Path) -> Iterator[ManagedProcess]:
    proc = ManagedProcess(f"fl-{name}", workdir / "logs" / f"{name}.log")
    beside = Path(sys.executable).with_name("fl")  # this environment's own fl
    argv = [str(beside) if beside.exists() else "fl", name, "--node-id", NODE]
    proc.spawn(argv, {"FL_CONFIG": str(config_path)})
    try:
        time.sleep(1.0)
        if not proc.running():
            raise RuntimeError(f"fl {name} exited at start:\n{proc.log_tail()}")
        yield proc
    finally:
        proc.terminate(20)


@contextmanager
def _alert_listener(cfg: Config, timeline: _Timeline) -> Iterator[None]:
    """One MQTT subscriber for both options' alert topics, timing each raise."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    scorer_filter = cfg.mqtt.alert_topic_template.format(node_id=NODE, device_id="+")
    spark_filter = SPARK_ALERT_TEMPLATE.format(node_id=NODE, device_id="+")

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        arrival = time.time()
        if not msg.payload or not timeline.measuring.is_set():
            return
        try:
            record = decode_anomaly_record(msg.payload)
        except ValidationError:  # not an alert record: a bench subscriber skips it
            return
        if isinstance(record, AlertChange) and record.state == RAISED:
            option = "spark" if msg.topic.startswith("bench/") else "scorer"
            with timeline.lock:
                timeline.arrivals[option].append((record.message_id, arrival))

    client = Client(CallbackAPIVersion.VERSION2, client_id="fl-bench-alerts")
    client.on_message = on_message
    client.connect(cfg.mqtt.host, cfg.mqtt.port)
    client.subscribe([(scorer_filter, 1), (spark_filter, 1)])
    client.loop_start()
    try:
        yield
    finally:
        client.loop_stop()
        client.disconnect()


def _load(
    cfg: Config,
    bench: DetectBench,
    model: GlobalModel,
    timeline: _Timeline,
    say: Callable[[str], None],
) -> None:
    """Publish healthy readings, with a bearing-wear burst per device now and then."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    client = Client(CallbackAPIVersion.VERSION2, client_id="fl-bench-devices")
    client.max_inflight_messages_set(1000)
    client.connect(cfg.mqtt.host, cfg.mqtt.port)
    client.loop_start()
    source = _ReadingSource(bench.devices, cfg.detection.alert_m, bench.fault_every_s)
    interval = 1.0 / (bench.rate_hz * bench.devices)
    start = time.monotonic()
    end = start + bench.warmup_s + bench.duration_s
    next_due, next_say, i = start, start + 10, 0
    while (now := time.monotonic()) < end:
        if now >= start + bench.warmup_s and not timeline.measuring.is_set():
            timeline.measuring.set()
        i += 1
        reading = source.next(bench.rate_hz * bench.devices)
        device = reading.device_id
        stamp = time.time()
        reading = replace(reading, timestamp=round(stamp, 3))
        with timeline.lock:
            timeline.published[reading.message_id] = stamp
        topic = cfg.mqtt.topic_template.format(node_id=NODE, device_id=device)
        client.publish(topic, encode_reading(reading), qos=1)
        next_due += interval
        if now >= next_say:
            next_say = now + 10
            say(f"  {now - start:4.0f} s: {i} readings published")
        if next_due > time.monotonic():
            time.sleep(next_due - time.monotonic())
    client.loop_stop()
    client.disconnect()


class _ReadingSource:
    """Node 1's simulated machine (``NodeSimulator``), healthy but for bursts: every
    ``every`` seconds or so each device gets ``burst_len`` readings of bearing wear at
    full severity, injected and cleared as ``fl sensor inject`` does."""

    def __init__(self, devices: int, burst_len: int, every: float) -> None:
        self.sim = NodeSimulator(NODE, devices=devices, seed=7, anomaly_rate=0.0, run_id="bench")
        self.burst_len, self.every = burst_len, every
        self.rng = np.random.default_rng(11)
        now = time.time()
        self.next_burst = {d: now + self.rng.uniform(1, every) for d in self.sim.device_ids}
        self.left: dict[str, int] = {}

    def next(self, rate_hz: float) -> SensorReading:
        reading = next(self.sim.readings(1, time.time(), rate_hz))
        device = reading.device_id
        if device in self.left:
            self.left[device] -= 1
            if self.left[device] <= 0:
                del self.left[device]
                self.sim.clear_fault(device)
        elif time.time() >= self.next_burst[device]:
            # from this device's next reading on, burst_len readings of wear
            self.next_burst[device] = time.time() + self.rng.uniform(0.75, 1.25) * self.every
            self.sim.inject_fault(device, FAULT, ramp_readings=0)
            self.left[device] = self.burst_len
        return reading


@contextmanager
def _spark_option(cfg: Config, model: GlobalModel, stats: dict[str, Any]) -> Iterator[None]:
    """Score inside a Spark Structured Streaming query at the fog job's trigger interval,
    with the same model and the same k-of-m rule, alerting on MQTT."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion

    from fl_runtime.fog.spark_driver import build_session

    spark = build_session(cfg, "bench-detect")
    scorer = Scorer.of(model, cfg.detection.threshold)
    rules = cfg.detection
    trackers: dict[str, AlertTracker] = {}
    client = Client(CallbackAPIVersion.VERSION2, client_id="fl-bench-spark-alerts")
    client.connect(cfg.mqtt.host, cfg.mqtt.port)
    client.loop_start()
    stats.update(trigger_wait_s=[], batch_s=[], bridge_s=[])

    def tracker(device: str) -> AlertTracker:
        if device not in trackers:
            trackers[device] = AlertTracker(
                k=rules.alert_k,
                m=rules.alert_m,
                clear_seconds=rules.alert_clear_seconds,
                new_id=lambda: f"spark-{time.time_ns()}",
            )
        return trackers[device]

    def on_batch(df: Any, _batch_id: int) -> None:
        started = time.time()
        for row in df.select("value", "timestamp").collect():
            reading = decode_reading(row["value"])
            score = scorer.score(reading)
            kafka_ts = row["timestamp"].timestamp()
            stats["trigger_wait_s"].append(started - kafka_ts)
            stats["bridge_s"].append(kafka_ts - reading.timestamp)
            seen = Scored(reading.message_id, score, scorer.is_over(score), reading.timestamp)
            change = tracker(reading.device_id).observe(seen, time.time())
            if change is not None and change.state == RAISED:
                _publish_spark_alert(client, reading, change, scorer)
        for t in trackers.values():
            t.tick(time.time())
        stats["batch_s"].append(time.time() - started)

    query = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", cfg.kafka.bootstrap_servers)
        .option("subscribe", cfg.kafka.sensor_topic(NODE))
        .option("startingOffsets", "latest")
        .load()
        .writeStream.foreachBatch(on_batch)
        .trigger(processingTime=f"{cfg.fog.trigger_seconds} seconds")
        .start()
    )
    try:
        wait_until(lambda: query.lastProgress is not None, 60, 0.5)
        yield
    finally:
        query.stop()
        spark.stop()
        client.loop_stop()
        client.disconnect()


def _publish_spark_alert(client: Any, reading: SensorReading, change: Any, scorer: Scorer) -> None:
    alert = AlertChange(
        alert_id=change.alert_id,
        state=RAISED,
        device_id=reading.device_id,
        node_id=NODE,
        message_id=reading.message_id,
        score=change.trigger.score,
        threshold=scorer.threshold,
        model_version=scorer.version,
        reading_time=reading.timestamp,
        detection_time=time.time(),
        over=change.over,
        window=change.window,
    )
    topic = SPARK_ALERT_TEMPLATE.format(node_id=NODE, device_id=reading.device_id)
    client.publish(topic, encode_anomaly_record(alert), qos=1)


def _figures(
    bench: DetectBench,
    cfg: Config,
    timeline: _Timeline,
    spark: dict[str, Any],
    scorer: ManagedProcess,
    scorer_cpu_s: float,
) -> dict[str, Any]:
    scorer_ms = _latencies(timeline, "scorer")
    p99 = _percentiles(scorer_ms)["p99_ms"]
    doc: dict[str, Any] = {
        "benchmark": "detect",
        "devices": bench.devices,
        "readings_per_s": bench.devices * bench.rate_hz,
        "duration_s": bench.duration_s,
        "alert_rule": {"k": cfg.detection.alert_k, "m": cfg.detection.alert_m},
        "alerts": len(scorer_ms),
        **_percentiles(scorer_ms),
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p99 is not None and p99 < TARGET_P99_MS,
        "trigger_seconds": cfg.fog.trigger_seconds,
        "trigger_share_of_scorer_path": 0.0,
        "scorer_rss_mb": _rss_mb(scorer.pid),
        "scorer_cpu_percent": round(100 * scorer_cpu_s / (bench.duration_s + bench.warmup_s), 1),
    }
    if bench.spark:
        spark_ms = _latencies(timeline, "spark")
        parts = [float(np.mean(spark.get(k) or [0.0])) for k in ("bridge_s", "trigger_wait_s")]
        path_s = sum(parts) + float(np.mean(spark.get("batch_s") or [0.0]))
        doc["spark_option"] = {
            "alerts": len(spark_ms),
            **_percentiles(spark_ms),
            "bridge_p50_ms": _p(spark.get("bridge_s"), 50),
            "trigger_wait_p50_ms": _p(spark.get("trigger_wait_s"), 50),
            "batch_p50_ms": _p(spark.get("batch_s"), 50),
            # the mean wait for the trigger, as a share of the mean reading's path
            "trigger_share": round(parts[1] / path_s, 3) if path_s > 0 else None,
            "jvm_rss_mb": spark.get("jvm_rss_mb"),
        }
    return doc


def _latencies(timeline: _Timeline, option: str) -> list[float]:
    with timeline.lock:
        pairs = list(timeline.arrivals[option])
        published = dict(timeline.published)
    return [(t - published[mid]) * 1000 for mid, t in pairs if mid in published]


def _percentiles(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
    }


def _p(values: list[float] | None, q: float) -> float | None:
    return None if not values else round(float(np.percentile(values, q)) * 1000, 1)


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_java_rss_mb() -> float | None:
    """RSS of the Spark JVM this process started (pyspark's gateway, through spark-submit)."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        if _name_and_parent(pid)[0] == "java" and _descends_from(pid, me):
            return _rss_mb(pid)
    return None


def _name_and_parent(pid: int) -> tuple[str, int]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0
    return text[text.find("(") + 1 : text.rfind(")")], int(text.rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, ancestor: int, depth: int = 4) -> bool:
    for _ in range(depth):
        pid = _name_and_parent(pid)[1]
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False
