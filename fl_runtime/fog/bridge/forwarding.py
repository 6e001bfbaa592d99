"""The bridge's logic, free of sockets: validate, forward or dead-letter, then ack.

:class:`BridgeCore` gets messages through :meth:`BridgeCore.handle` and acknowledges
through any object with ``ack(mid, qos)``, so tests drive it with fakes.

No payload may stop the bridge (issue #12, poison pills). What Kafka's producer refuses
at once (``KafkaException``: a record over ``message.max.bytes`` is ``oversized``, any
other refusal ``kafka-refused``; ``ValueError``/``TypeError`` likewise) is dead-lettered
instead, and the dead letter itself is bounded (:mod:`fl_runtime.service.deadletter`).
If even the dead-letter topic refuses a record, the message is acked, logged and counted
in ``fl_bridge_dropped``, so it cannot hold a slot of the window for ever. Only a fatal
producer error stops the bridge (``failure``), to be restarted by systemd.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fl_runtime.core.messages import decode_reading
from fl_runtime.errors import ValidationError
from fl_runtime.fog.bridge.metrics import BridgeMetrics
from fl_runtime.fog.bridge.routes import Route, device_pattern
from fl_runtime.service import deadletter
from fl_runtime.service.common import event

_REJECTIONS_LOGGED_PER_REASON = 10
_BUFFER_FULL_SLEEP = 0.05
_ROUTE_CACHE_SIZE = 10_000


class Acker(Protocol):
    def ack(self, mid: int, qos: int) -> Any: ...


class Producer(Protocol):
    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


@dataclass(frozen=True)
class Incoming:
    """One MQTT message as the bridge sees it."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    dup: bool = False


def incoming(message: Any) -> Incoming:
    """A paho message as an :class:`Incoming`; a topic that is not UTF-8 is kept as its
    repr, so the message is still handled (and rejected with a reason)."""
    try:
        topic = message.topic
    except UnicodeDecodeError:
        topic = repr(message._topic)
    return Incoming(message.mid, message.qos, topic, message.payload, bool(message.dup))


@dataclass(frozen=True)
class _Pending:
    generation: int
    mid: int
    qos: int


class BridgeCore:
    """Validate, forward or dead-letter, and acknowledge only after Kafka confirmed.

    Thread model: :meth:`handle` runs on the MQTT network thread, the delivery
    callbacks on the thread that polls the producer. A *generation* counts MQTT
    connections: an ack is sent only on the connection the message came in on,
    because after a reconnect Mosquitto redelivers it (and may reuse its id).
    """

    def __init__(
        self,
        *,
        node_id: str,
        routes: Sequence[Route],
        dead_letter_topic: str,
        producer: Producer,
        acker: Acker,
        metrics: BridgeMetrics,
        log: logging.Logger,
        topic_template: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.routes = tuple(routes)
        self.dead_letter_topic = dead_letter_topic
        self._producer = producer
        self._acker = acker
        self._metrics = metrics
        self._log = log
        self._device_re = (
            None if topic_template is None else device_pattern(topic_template, node_id)
        )
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._tokens = 0
        self._generation = 0
        self._connected = False
        self._accepting = True
        self._failure: str | None = None
        self._rejections: dict[str, int] = {}
        self._route_cache: dict[str, Route | None] = {}
        metrics.inflight.set_function(lambda: self.inflight)

    @property
    def inflight(self) -> int:
        """Messages received but not yet settled (written, or given up on)."""
        return len(self._pending)

    @property
    def failure(self) -> str | None:
        """Why the bridge must stop (a Kafka write failed for good), or None."""
        return self._failure

    def connection_up(self) -> None:
        with self._lock:
            self._generation += 1
            self._connected = True

    def connection_down(self) -> None:
        with self._lock:
            self._generation += 1
            self._connected = False

    def stop_accepting(self) -> None:
        """Ignore new messages from now on; unacknowledged, Mosquitto keeps them."""
        self._accepting = False

    def handle(self, msg: Incoming) -> None:
        if not self._accepting:
            return
        self._metrics.received.inc()
        if msg.dup:
            self._metrics.redelivered.inc()
        route = self._route(msg.topic)
        if route is None:
            self._reject(msg, "unrouted", f"no --map route matches topic {msg.topic!r}")
            return
        try:
            reading = decode_reading(msg.payload)
        except ValidationError as exc:
            self._reject(msg, exc.reason, exc.detail)
            return
        if reading.node_id != self.node_id:
            detail = f"node_id {reading.node_id!r} arrived at the bridge of node {self.node_id!r}"
            self._reject(msg, "node-mismatch", detail)
            return
        topic_device = self._topic_device(msg.topic)
        if topic_device is not None and topic_device != reading.device_id:
            detail = f"device_id {reading.device_id!r} published on topic {msg.topic!r}"
            self._reject(msg, "device-mismatch", detail)
            return
        token = self._track(msg)
        callback = functools.partial(self._delivered, token, None)
        refused = self._produce(
            token,
            route.kafka_topic,
            value=msg.payload,
            key=reading.device_id.encode(),
            on_delivery=callback,
        )
        if refused is not None:
            self._reject(msg, *refused)

    def _route(self, topic: str) -> Route | None:
        """The first route matching ``topic``, remembered (a node has few topics)."""
        try:
            return self._route_cache[topic]
        except KeyError:
            pass
        if len(self._route_cache) >= _ROUTE_CACHE_SIZE:
            self._route_cache.clear()
        route = next((r for r in self.routes if r.matches(topic)), None)
        self._route_cache[topic] = route
        return route

    def _topic_device(self, topic: str) -> str | None:
        if self._device_re is None:
            return None
        found = self._device_re.fullmatch(topic)
        return None if found is None else found["device_id"]

    def _reject(self, msg: Incoming, reason: str, detail: str) -> None:
        seen = self._rejections.get(reason, 0) + 1
        self._rejections[reason] = seen
        level = logging.WARNING if seen <= _REJECTIONS_LOGGED_PER_REASON else logging.DEBUG
        event(
            self._log,
            "payload rejected",
            level,
            reason=reason,
            topic=msg.topic,
            detail=detail[:200],
            count=seen,
        )
        token = self._track(msg)
        callback = functools.partial(self._delivered, token, reason)
        dead = deadletter.record(
            msg.payload,
            reason=reason,
            detail=detail,
            source=f"bridge:{msg.topic}",
            node_id=self.node_id,
        )
        refused = self._produce(
            token, self.dead_letter_topic, key=None, on_delivery=callback, **dead
        )
        if refused is not None:
            self._drop(msg, reason, refused)

    def _drop(self, msg: Incoming, reason: str, refused: tuple[str, str]) -> None:
        """Even the dead-letter topic refused it: ack it, so it cannot block the window."""
        self._metrics.dropped.labels(reason=reason).inc()
        event(
            self._log,
            "message dropped: the dead-letter topic refused it",
            logging.ERROR,
            reason=reason,
            refusal=refused[0],
            detail=refused[1][:200],
            topic=msg.topic[:200],
            bytes=len(msg.payload),
        )
        with self._lock:
            current = self._connected
        if current and msg.qos > 0:
            self._acker.ack(msg.mid, msg.qos)

    def _track(self, msg: Incoming) -> int:
        with self._lock:
            self._tokens += 1
            token = self._tokens
            self._pending[token] = _Pending(self._generation, msg.mid, msg.qos)
        return token

    def _produce(self, token: int, topic: str, **kwargs: Any) -> tuple[str, str] | None:
        """Hand one record to the producer, waiting while its bounded queue is full.

        Returns ``(reason, detail)`` if the producer refused the record (it is then
        forgotten); a fatal producer error sets :attr:`failure` and returns None.
        """
        from confluent_kafka import KafkaError, KafkaException

        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return None
            except BufferError:
                if not self._accepting:
                    self._forget(token)
                    return None
                time.sleep(_BUFFER_FULL_SLEEP)
            except KafkaException as exc:
                self._forget(token)
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.fatal():
                    self.fail(f"the Kafka producer failed for good: {error.str()}")
                    return None
                size = len(kwargs.get("value") or b"")
                if isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    return "oversized", f"Kafka refused a {size}-byte record for {topic}: {exc}"
                return "kafka-refused", f"Kafka refused a {size}-byte record for {topic}: {exc}"
            except (ValueError, TypeError) as exc:
                self._forget(token)
                return "kafka-refused", f"Kafka refused a record for {topic}: {exc!r}"

    def fail(self, reason: str) -> None:
        """Stop the bridge (``run_bridge`` raises) without killing the calling thread."""
        if self._failure is None:
            self._failure = reason
        event(self._log, "bridge failing", logging.ERROR, reason=reason[:300])

    def _forget(self, token: int) -> None:
        with self._lock:
            self._pending.pop(token, None)

    def _delivered(self, token: int, reason: str | None, err: Any, _record: Any) -> None:
        """Kafka delivery callback: ack the MQTT message if the write succeeded."""
        with self._lock:
            pending = self._pending.pop(token, None)
            if pending is None:
                return
            current = self._connected and pending.generation == self._generation
            if err is None and current and pending.qos > 0:
                self._acker.ack(pending.mid, pending.qos)
        if err is not None:
            self._metrics.kafka_delivery_errors.inc()
            self._failure = f"a Kafka write failed: {err}"
            event(self._log, "kafka delivery failed", logging.ERROR, error=str(err))
        elif reason is None:
            self._metrics.forwarded.inc()
        else:
            self._metrics.dead_lettered.labels(reason=reason).inc()
