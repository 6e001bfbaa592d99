"""The dead-letter path: rejected input is kept with its reason, never dropped.

A record on the dead-letter topic carries the original bytes as its value and
headers ``reason`` (a short code such as ``not-finite``), ``detail`` (prose),
``source`` (the service and topic it came from), ``node_id`` and ``original_bytes``
(the payload's size). Consumers such as the dashboard count them by reason and node.

Any payload can be dead-lettered, however large: the value keeps only the first
:data:`MAX_VALUE_BYTES` (64 KiB: enough to diagnose every reason, sixteen times
the largest valid reading and far below the 1 MB a Kafka record may have), and
``original_bytes`` tells how much there was. ``detail`` and ``source`` are cut at
:data:`MAX_HEADER_CHARS` characters, so a record's size has a bound.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

MAX_VALUE_BYTES = 64 * 1024
MAX_HEADER_CHARS = 1000


def headers(
    reason: str,
    detail: str,
    source: str,
    node_id: str | None,
    original_bytes: int | None = None,
) -> list[tuple[str, str | bytes | None]]:
    out: list[tuple[str, str | bytes | None]] = [
        ("reason", reason[:MAX_HEADER_CHARS].encode()),
        ("detail", detail[:MAX_HEADER_CHARS].encode()),
        ("source", source[:MAX_HEADER_CHARS].encode()),
    ]
    if node_id is not None:
        out.append(("node_id", node_id[:MAX_HEADER_CHARS].encode()))
    if original_bytes is not None:
        out.append(("original_bytes", str(original_bytes).encode()))
    return out


def record(
    payload: bytes | None, *, reason: str, detail: str, source: str, node_id: str | None = None
) -> dict[str, Any]:
    """``value`` (at most :data:`MAX_VALUE_BYTES` of ``payload``) and ``headers``."""
    raw = payload or b""
    return {
        "value": bytes(raw[:MAX_VALUE_BYTES]),
        "headers": headers(reason, detail, source, node_id, original_bytes=len(raw)),
    }


def publish(
    producer: Producer,
    topic: str,
    payload: bytes | None,
    *,
    reason: str,
    detail: str,
    source: str,
    node_id: str | None = None,
    key: bytes | None = None,
    on_delivery: Any = None,
) -> None:
    """Produce ``payload`` (truncated, see :func:`record`) to the dead-letter ``topic``."""
    kwargs = record(payload, reason=reason, detail=detail, source=source, node_id=node_id)
    kwargs["key"] = key
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    producer.produce(topic, **kwargs)


def read_headers(raw: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (raw or [])}
