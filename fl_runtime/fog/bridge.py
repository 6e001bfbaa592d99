"""The MQTT -> Kafka bridge of one fog node: at least once, bounded, per-device order.

Readings arrive from Mosquitto over a persistent MQTT v5 session (fixed client id,
``clean_start=False``, a session expiry) with manual acknowledgements. Each one is
validated; a valid reading is produced to the node's Kafka topic keyed by its device
id, an invalid one goes to the dead-letter topic with its reason. The MQTT message is
acknowledged only from the Kafka delivery callback, after the write succeeded, so a
bridge that crashes at any point loses nothing: Mosquitto redelivers what it never
saw acknowledged (duplicates are possible, loss is not).

Back-pressure: the bridge announces ``Receive Maximum = MQTT_MAX_INFLIGHT`` when it
connects, so Mosquitto never has more than that many unacknowledged messages out to
it. When Kafka is down the window fills, Mosquitto queues the rest for the session,
and the bridge's memory stays bounded; when Kafka returns the callbacks fire, the
acks go out and the flow resumes.

:class:`BridgeCore` is the logic, free of sockets: it gets messages through
:meth:`BridgeCore.handle` and acknowledges through any object with
``ack(mid, qos)``. :func:`run_bridge` wires it to paho-mqtt and confluent-kafka.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from fl_runtime.config import Config
from fl_runtime.core.messages import decode_reading
from fl_runtime.errors import ConfigError, ServiceError, ValidationError
from fl_runtime.service import deadletter
from fl_runtime.service.common import Shutdown, event, kafka_producer_conf, start_metrics

_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_REJECTIONS_LOGGED_PER_REASON = 10
_BUFFER_FULL_SLEEP = 0.05
_STATS_INTERVAL = 30.0
_ROUTE_CACHE_SIZE = 10_000


# --------------------------------------------------------------------------- routing
@dataclass(frozen=True)
class Route:
    """MQTT topic filter -> Kafka topic."""

    mqtt_filter: str
    kafka_topic: str

    def matches(self, topic: str) -> bool:
        from paho.mqtt.client import topic_matches_sub

        return topic_matches_sub(self.mqtt_filter, topic)


def node_filter(template: str, node_id: str) -> str:
    """The MQTT filter of a node's readings: the template with ``+`` for the device."""
    try:
        topic_filter = template.format(node_id=node_id, device_id="+")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("MQTT_TOPIC_TEMPLATE", f"cannot fill in {template!r}: {exc}") from None
    _check_filter(topic_filter, "MQTT_TOPIC_TEMPLATE")
    return topic_filter


def default_route(cfg: Config, node_id: str) -> Route:
    return Route(node_filter(cfg.mqtt_topic_template, node_id), cfg.sensor_topic(node_id))


def parse_route(spec: str) -> Route:
    """``'factory/+/line2/#=sensor-data-node-7'`` -> :class:`Route`."""
    topic_filter, sep, kafka_topic = spec.rpartition("=")
    if not sep or not topic_filter:
        raise ConfigError("--map", f"expected MQTT_FILTER=KAFKA_TOPIC, got {spec!r}")
    _check_filter(topic_filter, "--map")
    if not _KAFKA_TOPIC.match(kafka_topic):
        raise ConfigError("--map", f"{kafka_topic!r} is not a valid Kafka topic name")
    return Route(topic_filter, kafka_topic)


def _check_filter(topic_filter: str, where: str) -> None:
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        bad_plus = "+" in level and level != "+"
        bad_hash = "#" in level and (level != "#" or i != len(levels) - 1)
        if bad_plus or bad_hash or not topic_filter:
            raise ConfigError(where, f"{topic_filter!r} is not a valid MQTT topic filter")


def device_pattern(template: str, node_id: str) -> re.Pattern[str] | None:
    """A regex that takes the device id out of a topic built from ``template``."""
    if template.count("{device_id}") != 1:
        return None
    head, tail = template.split("{device_id}")
    try:
        head, tail = head.format(node_id=node_id), tail.format(node_id=node_id)
    except (KeyError, IndexError, ValueError):
        return None
    return re.compile(re.escape(head) + r"(?P<device_id>[^/]+)" + re.escape(tail))


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class BridgeMetrics:
    registry: CollectorRegistry
    received: Counter
    forwarded: Counter
    dead_lettered: Counter
    redelivered: Counter
    kafka_delivery_errors: Counter
    inflight: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> BridgeMetrics:
        reg = REGISTRY if registry is None else registry
        return cls(
            registry=reg,
            received=Counter("fl_bridge_received", "MQTT messages received.", registry=reg),
            forwarded=Counter(
                "fl_bridge_forwarded", "Readings written to Kafka (confirmed).", registry=reg
            ),
            dead_lettered=Counter(
                "fl_bridge_dead_lettered",
                "Invalid payloads written to the dead-letter topic (confirmed), by reason.",
                ["reason"],
                registry=reg,
            ),
            redelivered=Counter(
                "fl_bridge_redelivered", "MQTT messages received with the DUP flag.", registry=reg
            ),
            kafka_delivery_errors=Counter(
                "fl_bridge_kafka_delivery_errors", "Kafka writes that failed.", registry=reg
            ),
            inflight=Gauge(
                "fl_bridge_inflight", "MQTT messages received but not yet settled.", registry=reg
            ),
        )

    def value(self, name: str, **labels: str) -> float:
        """The current value of a sample, e.g. ``value("fl_bridge_received_total")``."""
        return self.registry.get_sample_value(name, labels) or 0.0


# --------------------------------------------------------------------------- the logic
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

    # ----------------------------------------------------------------- state
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

    # ----------------------------------------------------------------- input
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
        self._produce(
            token,
            route.kafka_topic,
            value=msg.payload,
            key=reading.device_id.encode(),
            on_delivery=callback,
        )

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
        headers = deadletter.headers(reason, detail, f"bridge:{msg.topic}", self.node_id)
        self._produce(
            token,
            self.dead_letter_topic,
            value=msg.payload,
            key=None,
            headers=headers,
            on_delivery=callback,
        )

    def _track(self, msg: Incoming) -> int:
        with self._lock:
            self._tokens += 1
            token = self._tokens
            self._pending[token] = _Pending(self._generation, msg.mid, msg.qos)
        return token

    def _produce(self, token: int, topic: str, **kwargs: Any) -> None:
        """Hand one record to the producer, waiting while its bounded queue is full."""
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                if not self._accepting:
                    self._forget(token)
                    return
                time.sleep(_BUFFER_FULL_SLEEP)

    def _forget(self, token: int) -> None:
        with self._lock:
            self._pending.pop(token, None)

    # ----------------------------------------------------------------- output
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


# --------------------------------------------------------------------------- the service
@dataclass(frozen=True)
class BridgeSettings:
    node_id: str
    client_id: str
    routes: tuple[Route, ...]
    metrics_port: int | None = None
    drain_timeout: float = 10.0
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30


def run_bridge(
    cfg: Config, settings: BridgeSettings, shutdown: Shutdown, log: logging.Logger
) -> None:
    """Run until SIGTERM (returns) or a Kafka write fails for good (raises ServiceError)."""
    from confluent_kafka import Producer as KafkaProducer

    metrics = BridgeMetrics.create()
    port = _start_metrics(cfg, settings.metrics_port)
    max_inflight = int(cfg.mqtt_max_inflight)
    producer = KafkaProducer(
        kafka_producer_conf(
            cfg,
            settings.client_id,
            **{
                # Room for a full window, a redelivered one after a reconnect, and dead letters.
                "queue.buffering.max.messages": 4 * max_inflight + 1000,
                "error_cb": functools.partial(_kafka_error, log),
                "logger": logging.getLogger("fl_runtime.bridge.kafka"),
            },
        )
    )
    client = _mqtt_client(cfg, settings, max_inflight)
    core = BridgeCore(
        node_id=settings.node_id,
        routes=settings.routes,
        dead_letter_topic=cfg.dead_letter_topic,
        producer=producer,
        acker=client,
        metrics=metrics,
        log=log,
        topic_template=cfg.mqtt_topic_template if _uses_default_route(cfg, settings) else None,
    )
    disconnected = _wire(client, core, settings, log)
    event(
        log,
        "bridge starting",
        node_id=settings.node_id,
        client_id=settings.client_id,
        routes=[f"{r.mqtt_filter}={r.kafka_topic}" for r in settings.routes],
        max_inflight=max_inflight,
        metrics_port=port,
    )
    client.loop_start()
    try:
        _serve(producer, core, metrics, shutdown, log)
    finally:
        core.stop_accepting()
        left = producer.flush(settings.drain_timeout)
        client.disconnect()
        disconnected.wait(5.0)
        client.loop_stop()
        event(log, "bridge stopped", unsettled=left, inflight=core.inflight)
    if core.failure is not None:
        raise ServiceError(core.failure)


def _serve(
    producer: Any, core: BridgeCore, metrics: BridgeMetrics, shutdown: Shutdown, log: logging.Logger
) -> None:
    next_stats = time.monotonic() + _STATS_INTERVAL
    while not shutdown.requested and core.failure is None:
        producer.poll(0.1)
        if time.monotonic() >= next_stats:
            next_stats += _STATS_INTERVAL
            event(
                log,
                "bridge stats",
                received=int(metrics.value("fl_bridge_received_total")),
                forwarded=int(metrics.value("fl_bridge_forwarded_total")),
                inflight=core.inflight,
                kafka_queue=len(producer),
            )


def _uses_default_route(cfg: Config, settings: BridgeSettings) -> bool:
    return settings.routes == (default_route(cfg, settings.node_id),)


def _start_metrics(cfg: Config, port: int | None) -> int | None:
    try:
        return start_metrics(cfg, "bridge", port)
    except OSError as exc:
        raise ServiceError(f"cannot serve metrics on port {port}: {exc}") from None


def _kafka_error(log: logging.Logger, err: Any) -> None:
    """Client-wide Kafka errors; each failed connection is already in librdkafka's log."""
    from confluent_kafka import KafkaError

    if err.fatal() or err.code() == KafkaError._ALL_BROKERS_DOWN:
        level = logging.ERROR if err.fatal() else logging.WARNING
        event(log, "kafka client error", level, error=str(err), fatal=err.fatal())


def _mqtt_client(cfg: Config, settings: BridgeSettings, max_inflight: int) -> Any:
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.manual_ack_set(True)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
    props.ReceiveMaximum = max_inflight
    props.SessionExpiryInterval = settings.session_expiry
    client.connect_async(
        cfg.mqtt_host,
        cfg.mqtt_port,
        keepalive=settings.keepalive,
        clean_start=False,
        properties=props,
    )
    return client


def _wire(
    client: Any, core: BridgeCore, settings: BridgeSettings, log: logging.Logger
) -> threading.Event:
    """Connect paho's callbacks to the core; returns an event set on disconnect."""
    disconnected = threading.Event()
    disconnected.set()  # not connected yet

    def on_connect(c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            event(log, "mqtt connection refused", logging.ERROR, reason=str(reason))
            return
        core.connection_up()
        disconnected.clear()
        for route in settings.routes:
            c.subscribe(route.mqtt_filter, qos=1)
        event(log, "mqtt connected", session_present=flags.session_present)

    def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            event(log, "mqtt subscription refused", logging.ERROR, reasons=refused)
        else:
            event(log, "mqtt subscribed", granted=[int(r.value) for r in reasons])

    def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        core.connection_down()
        disconnected.set()
        event(log, "mqtt disconnected", logging.WARNING, reason=str(reason))

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)
        core.handle(Incoming(message.mid, message.qos, topic, message.payload, bool(message.dup)))

    def on_connect_fail(_c: Any, _u: Any) -> None:
        event(log, "mqtt broker unreachable, retrying", logging.WARNING)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_connect_fail = on_connect_fail
    return disconnected
