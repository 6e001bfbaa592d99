"""The bridge's MQTT side: a persistent MQTT v5 session with manual acks, wired to the core."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from fl_runtime.config import Config
from fl_runtime.fog.bridge.forwarding import BridgeCore, incoming
from fl_runtime.fog.bridge.routes import Route
from fl_runtime.service.common import event


def mqtt_client(
    cfg: Config, *, client_id: str, max_inflight: int, session_expiry: int, keepalive: int
) -> Any:
    """A paho client for a persistent MQTT v5 session, connecting in the background."""
    from paho.mqtt.client import Client
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.manual_ack_set(True)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
    props.ReceiveMaximum = max_inflight
    props.SessionExpiryInterval = session_expiry
    client.connect_async(
        cfg.mqtt.host,
        cfg.mqtt.port,
        keepalive=keepalive,
        clean_start=False,
        properties=props,
    )
    return client


def wire(
    client: Any, core: BridgeCore, routes: Sequence[Route], log: logging.Logger
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
        for route in routes:
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
            core.handle(incoming(message))
        except Exception as exc:  # a bug: stop the bridge, never paho's thread alone
            log.exception("message handling failed")
            core.fail(f"message handling failed: {exc!r}")

    def on_connect_fail(_c: Any, _u: Any) -> None:
        event(log, "mqtt broker unreachable, retrying", logging.WARNING)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_connect_fail = on_connect_fail
    return disconnected
