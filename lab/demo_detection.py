"""The detection part of `make demo`: a fault on one lab device, its alert, and figures.

From the controller, as an operator would: subscribe to the device's alert topic on
its fog host's Mosquitto (published on loopback), switch the simulated device into
bearing wear with `fl sensor inject`, wait for the scorer's alert and print it with
its latency, clear the fault, then read the `anomalies` topic through Kafka's external
listener (kcat) for the summary: alerts raised, precision and recall of the detections
against the readings' labels, and the latency from a reading's publication to its
detection.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from fl_runtime.config.settings import KafkaSection, MqttSection

KAFKA = "127.0.0.1:29092"
FAULT = "bearing_wear"
_FROM_START = ("-o", "beginning", "-e", "-q")


def _alert_lines(port: int, topic: str, out: queue.Queue[dict[str, Any]]) -> subprocess.Popen[str]:
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def pump() -> None:
        assert sub.stdout is not None
        for line in sub.stdout:
            try:
                out.put(json.loads(line))
            except ValueError:
                continue

    threading.Thread(target=pump, daemon=True).start()
    return sub


def _wait_state(
    alerts: queue.Queue[dict[str, Any]], device: str, state: str, after: float, timeout: float
) -> dict[str, Any] | None:
    """The first alert record of ``device`` in ``state`` detected after ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = alerts.get(timeout=1.0)
        except queue.Empty:
            continue
        fresh = float(doc.get("detection_time", 0)) >= after
        if doc.get("device_id") == device and doc.get("state") == state and fresh:
            return doc
    return None


def pick_quiet(alerts: queue.Queue[dict[str, Any]], devices: list[str], timeout: float) -> str:
    """The first of ``devices`` with no active alert for 2 s. The retained states come
    first on subscribing; a random fault episode may have raised an alert that a few
    stray over-threshold readings keep up, and an injected fault would only prolong it.
    After ``timeout`` s without a quiet device, the first one."""
    state = dict.fromkeys(devices, "cleared")
    since = dict.fromkeys(devices, time.monotonic())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = alerts.get(timeout=0.5)
            device = str(doc.get("device_id"))
            if device in state:
                state[device], since[device] = str(doc.get("state")), time.monotonic()
        except queue.Empty:
            pass
        for device in devices:
            if state[device] != "raised" and time.monotonic() - since[device] >= 2.0:
                return device
    return devices[0]


def _inject(node: str, device: str, port: int, clear: bool) -> bool:
    env = {**os.environ, "FL_MQTT_HOST": "127.0.0.1", "FL_MQTT_PORT": str(port)}
    argv = ["fl", "sensor", "inject", "--node-id", node, "--device", device]
    argv += ["--clear"] if clear else ["--fault", FAULT]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return done.returncode == 0


def run(node: str, devices: list[str], port: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Inject into a quiet device, wait for raise and clear, then summarise the topic."""
    topic = MqttSection().alert_topic_template.format(node_id=node, device_id="+")
    alerts: queue.Queue[dict[str, Any]] = queue.Queue()
    sub = _alert_lines(port, topic, alerts)
    started = time.time()
    raised = cleared = None
    try:
        device = pick_quiet(alerts, devices, 180)
        say(f"switching {device} (node {node}) into {FAULT}: fl sensor inject")
        injected_at = time.time()
        if not _inject(node, device, port, clear=False):
            say("fl sensor inject failed")
        raised = _wait_state(alerts, device, "raised", injected_at, 120)
        if raised is None:
            say(f"no alert for {device} on {topic} within 120 s")
        else:
            latency = raised["detection_time"] - raised["reading_time"]
            say(
                f"ALERT raised for {device}: score {raised['score']:.3f} > threshold "
                f"{raised['threshold']:.3f} (model v{raised['model_version']}, "
                f"{raised['over']} of the last {raised['window']} readings over); "
                f"reading to alert {latency * 1000:.0f} ms, "
                f"{raised['detection_time'] - injected_at:.1f} s after the fault began"
            )
        _inject(node, device, port, clear=True)
        cleared_from = time.time()
        cleared = _wait_state(alerts, device, "cleared", cleared_from, 90) if raised else None
        if cleared is not None:
            say(f"alert cleared {cleared['detection_time'] - cleared_from:.1f} s after the fault")
    finally:
        sub.terminate()
    summary = summarise(read_anomalies(), since=started)
    summary.update(
        device=device,
        node=node,
        fault=FAULT,
        alert_raised=raised is not None,
        alert_cleared=cleared is not None,
        alert=raised,
        alert_latency_ms=None
        if raised is None
        else round((raised["detection_time"] - raised["reading_time"]) * 1000, 1),
    )
    return summary


def read_anomalies(timeout: float = 60) -> list[dict[str, Any]]:
    """Every record of the anomalies topic, through the lab's external Kafka listener."""
    done = subprocess.run(
        ["kcat", "-b", KAFKA, "-C", "-t", KafkaSection().anomalies_topic, *_FROM_START],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    records = []
    for line in done.stdout.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def summarise(records: list[dict[str, Any]], since: float) -> dict[str, Any]:
    """Alerts raised, precision and recall against labels, detection latency p50/p99."""
    kind = {"fedge.detection.v1": "detection", "fedge.alert.v1": "alert"}
    detections = [r for r in records if kind.get(r.get("schema", "")) == "detection"]
    alerts = [r for r in records if kind.get(r.get("schema", "")) == "alert"]
    summaries = [r for r in records if r.get("schema") == "fedge.score_summary.v1"]
    tp = sum(int(s.get("tp", 0)) for s in summaries)
    fp = sum(int(s.get("fp", 0)) for s in summaries)
    fn = sum(int(s.get("fn", 0)) for s in summaries)
    lat = sorted((d["detection_time"] - d["reading_time"]) * 1000 for d in detections)
    raised = [a for a in alerts if a.get("state") == "raised"]
    per_device: dict[str, int] = {}
    for a in raised:
        per_device[a["device_id"]] = per_device.get(a["device_id"], 0) + 1
    return {
        "records": len(records),
        "detections": len(detections),
        "alerts_raised": len(raised),
        "alerts_raised_during_fault_demo": sum(a["detection_time"] >= since for a in raised),
        "alerts_per_device": per_device,
        "readings_scored": sum(int(s.get("n", 0)) for s in summaries),
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "labelled_counts": {"tp": tp, "fp": fp, "fn": fn},
        "latency_p50_ms": _pct(lat, 50),
        "latency_p99_ms": _pct(lat, 99),
    }


def _pct(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    i = min(len(sorted_ms) - 1, round(q / 100 * (len(sorted_ms) - 1)))
    return round(sorted_ms[i], 1)
