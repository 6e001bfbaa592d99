"""The scorer's MQTT side: the readings session (manual acks) and the alert publisher.

One paho client does both on the fog host's Mosquitto: it subscribes to the node's
readings at QoS 1 and acknowledges a reading only when the core says so (its records
are in the spool), and it publishes alert changes at QoS 1, retained, so a local HMI
that connects later still sees each device's current state.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fl_runtime.fog.bridge.forwarding import incoming
from fl_runtime.fog.detect.core import DetectorCore
from fl_runtime.fog.detect.metrics import DetectMetrics
from fl_runtime.service.common import event

_PENDING_LATENCIES = 10_000


class MqttAlertSink:
    """Publishes alert changes; observes the end-to-end latency when the broker confirms."""

    def __init__(self, client: Any, metrics: DetectMetrics) -> None:
        self._client = client
        self._metrics = metrics
        self._lock = threading.Lock()
        self._reading_times: dict[int, float] = {}
        client.on_publish = self._on_publish

    def publish_alert(self, topic: str, payload: bytes, reading_time: float | None) -> None:
        # paho queues QoS 1 messages while disconnected and sends them on reconnect.
        with self._lock:
            info = self._client.publish(topic, payload, qos=1, retain=True)
            if reading_time is not None and len(self._reading_times) < _PENDING_LATENCIES:
                self._reading_times[info.mid] = reading_time

    def _on_publish(self, _c: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        with self._lock:
            reading_time = self._reading_times.pop(mid, None)
        if reading_time is not None:
            self._metrics.alert_latency.observe(max(time.time() - reading_time, 0.0))


def wire(
    client: Any, core: DetectorCore, topic_filter: str, log: logging.Logger
) -> threading.Event:
    """Connect paho's callbacks to the core; returns an event set while disconnected."""
    disconnected = threading.Event()
    disconnected.set()

    def on_connect(c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            event(log, "mqtt connection refused", logging.ERROR, reason=str(reason))
            return
        disconnected.clear()
        c.subscribe(topic_filter, qos=1)
        event(log, "mqtt connected", session_present=flags.session_present)

    def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            event(log, "mqtt subscription refused", logging.ERROR, reasons=refused)
        else:
            event(log, "mqtt subscribed", topic_filter=topic_filter)

    def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        disconnected.set()
        event(log, "mqtt disconnected", logging.WARNING, reason=str(reason))

    def on_message(c: Any, _u: Any, message: Any) -> None:
        msg = incoming(message)
        try:
            ack = core.handle(msg)
        except Exception as exc:  # never let one message kill the network thread
            event(log, "reading handling failed", logging.ERROR, error=repr(exc)[:300])
            ack = True
        if ack and msg.qos > 0:
            c.ack(msg.mid, msg.qos)

    def on_connect_fail(_c: Any, _u: Any) -> None:
        event(log, "mqtt broker unreachable, retrying", logging.WARNING)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_connect_fail = on_connect_fail
    return disconnected
