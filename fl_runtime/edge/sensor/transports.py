"""Where readings go: MQTT at ``MQTT_QOS``, or straight to Kafka."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fl_runtime.config import Config
from fl_runtime.core.messages import SensorReading
from fl_runtime.edge.sensor.tracking import Tracker
from fl_runtime.service.common import event, kafka_producer_conf

TRANSPORTS = ("mqtt", "kafka")
# Called with (device id, payload) for a message on a device's control topic.
ControlHandler = Callable[[str, bytes], None]

_FIRST_CONNECT_WAIT = 10.0  # seconds the MQTT transport waits for its first CONNACK


class Transport(Protocol):
    """Where readings go. Outcomes are reported to the :class:`Tracker`."""

    def send(self, reading: SensorReading, payload: bytes) -> None: ...

    def service(self, timeout: float) -> None: ...

    def close(self) -> None: ...


class MqttTransport:
    """paho-mqtt 2.x at ``MQTT_QOS``; paho reconnects and resends unacknowledged readings.

    With ``control`` it also subscribes (QoS 1, at every connect) to ``control_topics``
    (topic -> device id) and hands each command to ``control``, on paho's thread.
    """

    def __init__(
        self,
        cfg: Config,
        client_id: str,
        tracker: Tracker,
        log: logging.Logger,
        window: int,
        *,
        control: ControlHandler | None = None,
        control_topics: Mapping[str, str] | None = None,
    ) -> None:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self._tracker = tracker
        self._log = log
        self._template = cfg.mqtt.topic_template
        self._qos = int(cfg.mqtt.qos)
        self._lock = threading.Lock()
        self._waiting: dict[int, str] = {}  # mid -> message id
        self._early: dict[int, Any] = {}  # mid -> reason code, acked before publish() returned
        self._control = control
        self._control_topics = dict(control_topics or {}) if control else {}
        client = Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.max_inflight_messages_set(window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._connected = threading.Event()
        self._client = client
        client.connect_async(cfg.mqtt.host, cfg.mqtt.port, keepalive=30)
        client.loop_start()
        # Readings published before the first CONNACK are queued by paho and flushed on
        # connect, racing the ones published meanwhile: per-device order could break.
        # So wait (bounded) for the first connection; an absent broker is then handled
        # like any outage (paho queues, the tracker bounds what is pending).
        self._connected.wait(_FIRST_CONNECT_WAIT)

    def send(self, reading: SensorReading, payload: bytes) -> None:
        from paho.mqtt.enums import MQTTErrorCode

        topic = self._template.format(node_id=reading.node_id, device_id=reading.device_id)
        info = self._client.publish(topic, payload, qos=self._qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._tracker.fail(reading.message_id, f"publish: {info.rc.name}")
            return
        with self._lock:
            reason = self._early.pop(info.mid, None)
            if reason is None:
                self._waiting[info.mid] = reading.message_id
        if reason is not None:
            self._settle(reading.message_id, reason)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._lock:
            message_id = self._waiting.pop(mid, None)
            if message_id is None:
                self._early[mid] = reason
                return
        self._settle(message_id, reason)

    def _settle(self, message_id: str, reason: Any) -> None:
        if reason.is_failure:
            self._tracker.fail(message_id, f"PUBACK {reason}")
        else:
            self._tracker.confirm(message_id)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self._connected.set()
        level = logging.ERROR if reason.is_failure else logging.INFO
        event(self._log, "mqtt connect", level, reason=str(reason))
        if not reason.is_failure and self._control_topics:
            self._client.subscribe([(t, 1) for t in self._control_topics])

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        device = self._control_topics.get(msg.topic)
        if device is not None and self._control is not None:
            self._control(device, bytes(msg.payload))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        event(self._log, "mqtt disconnected", logging.WARNING, reason=str(reason))

    def service(self, timeout: float) -> None:
        if timeout > 0:
            time.sleep(timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class KafkaTransport:
    """Straight to the node's Kafka topic: idempotent, ``acks=all``, key = device id."""

    def __init__(
        self, cfg: Config, client_id: str, tracker: Tracker, log: logging.Logger, window: int
    ) -> None:
        from confluent_kafka import Producer

        self._tracker = tracker
        self._cfg = cfg
        self._producer = Producer(
            kafka_producer_conf(
                cfg,
                client_id,
                **{
                    "queue.buffering.max.messages": window + 100,
                    "logger": logging.getLogger("fl_runtime.sensor.kafka"),
                },
            )
        )

    def send(self, reading: SensorReading, payload: bytes) -> None:
        callback = functools.partial(self._delivered, reading.message_id)
        while True:
            try:
                self._producer.produce(
                    self._cfg.kafka.sensor_topic(reading.node_id),
                    payload,
                    key=reading.device_id.encode(),
                    on_delivery=callback,
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def _delivered(self, message_id: str, err: Any, _record: Any) -> None:
        if err is None:
            self._tracker.confirm(message_id)
        else:
            self._tracker.fail(message_id, str(err))

    def service(self, timeout: float) -> None:
        self._producer.poll(timeout)

    def close(self) -> None:
        self._producer.flush(0)
