"""The dead-letter path: rejected input is kept with its reason, never dropped.

A record on the dead-letter topic carries the original bytes as its value and
headers ``reason`` (a short code such as ``not-finite``), ``detail`` (prose),
``source`` (the service and topic it came from) and ``node_id``. Consumers such
as the dashboard count them by reason and node.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer


def headers(
    reason: str, detail: str, source: str, node_id: str | None
) -> list[tuple[str, str | bytes | None]]:
    out: list[tuple[str, str | bytes | None]] = [
        ("reason", reason.encode()),
        ("detail", detail[:1000].encode()),
        ("source", source.encode()),
    ]
    if node_id is not None:
        out.append(("node_id", node_id.encode()))
    return out


def publish(
    producer: Producer,
    topic: str,
    payload: bytes,
    *,
    reason: str,
    detail: str,
    source: str,
    node_id: str | None = None,
    key: bytes | None = None,
    on_delivery: Any = None,
) -> None:
    """Produce ``payload`` to the dead-letter ``topic`` with the reason in headers."""
    kwargs: dict[str, Any] = {
        "value": payload,
        "key": key,
        "headers": headers(reason, detail, source, node_id),
    }
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    producer.produce(topic, **kwargs)


def read_headers(raw: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (raw or [])}
