"""``fl anomalies``: read the anomalies topic (detections, alert changes, score summaries).

``export`` reads the topic from its beginning to the end it had when the command
started and writes the valid records as JSON lines (the input of ``fl report
--anomalies``); ``tail`` follows it and prints a line per record. Records that fail
validation are counted by reason on stderr, never written.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click

from fl_runtime.cli._common import config_option, friendly_errors, load, progress
from fl_runtime.core.detections import (
    AlertChange,
    AnomalyRecord,
    Detection,
    ScoreSummary,
    decode_anomaly_record,
    encode_anomaly_record,
)
from fl_runtime.errors import ServiceError, ValidationError

_KIND = {Detection: "detection", AlertChange: "alert", ScoreSummary: "score_summary"}
ConsumerFactory = Callable[[Mapping[str, Any]], Any]


def _confluent_consumer(conf: Mapping[str, Any]) -> Any:
    from confluent_kafka import Consumer

    return Consumer(dict(conf))


# Tests swap this for a fake; the command itself always uses confluent_kafka.
consumer_factory: ConsumerFactory = _confluent_consumer


@dataclass
class Tally:
    """Records read: valid ones by kind, invalid ones by reason."""

    valid: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)

    def decode(self, payload: bytes | None) -> AnomalyRecord | None:
        try:
            record = decode_anomaly_record(payload if payload is not None else b"")
        except ValidationError as exc:
            self.invalid[exc.reason] += 1
            return None
        self.valid[_KIND[type(record)]] += 1
        return record

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.valid.items())) or "none"
        out = [f"valid records: {sum(self.valid.values())} ({kinds})"]
        if self.invalid:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.invalid.items()))
            out.append(f"invalid records skipped: {sum(self.invalid.values())} ({reasons})")
        return out


def partitions(consumer: Any, topic: str, timeout_s: float) -> int:
    """How many partitions ``topic`` has; 0 when it does not exist."""
    from confluent_kafka import KafkaException

    try:
        metadata = consumer.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceError(f"Kafka did not answer: {exc}") from None
    found = metadata.topics.get(topic)
    return 0 if found is None or found.error is not None else len(found.partitions)


def read_to_end(
    consumer: Any,
    topic: str,
    on_record: Callable[[AnomalyRecord], None],
    *,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Tally, bool]:
    """Read ``topic`` from each partition's beginning to the end offset it had on entry;
    returns the tally and whether the end was reached within ``timeout_s``."""
    from confluent_kafka import TopicPartition

    from fl_runtime.service.common import watermarks

    deadline = clock() + timeout_s
    count = partitions(consumer, topic, min(timeout_s, 10.0))
    if not count:
        raise ServiceError(f"topic {topic} does not exist (no scorer has written to it yet?)")
    ends: dict[int, int] = {}
    starts: dict[int, int] = {}
    for p in range(count):
        low, high = watermarks(consumer, topic, p, timeout_s=max(0.1, deadline - clock()))
        if high > low:
            starts[p], ends[p] = low, high
    tally = Tally()
    if not ends:
        return tally, True
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
    behind = dict(ends)
    while behind and clock() < deadline:
        for message in consumer.consume(num_messages=500, timeout=0.5):
            if message.error() is not None or message.partition() not in behind:
                continue
            if message.offset() < ends[message.partition()]:
                record = tally.decode(message.value())
                if record is not None:
                    on_record(record)
            if message.offset() + 1 >= ends[message.partition()]:
                behind.pop(message.partition(), None)
    return tally, not behind


def human_line(record: AnomalyRecord) -> str:
    """One line for people: time, node, device, then state or score."""
    if isinstance(record, AlertChange):
        at, what = (
            record.detection_time,
            (
                f"alert {record.state.upper()} score {record.score:.3f} (threshold "
                f"{record.threshold:.3f}, {record.over}/{record.window} over, model "
                f"v{record.model_version}) id {record.alert_id}"
            ),
        )
    elif isinstance(record, Detection):
        at, what = (
            record.detection_time,
            (
                f"detection score {record.score:.3f} > {record.threshold:.3f} (model "
                f"v{record.model_version}) reading {record.message_id}"
            ),
        )
    else:
        at, what = (
            record.window_end,
            (
                f"summary n={record.n} mean {record.mean_score:.3f} max {record.max_score:.3f} "
                f"over {record.over}" + (" [alert active]" if record.alert_active else "")
            ),
        )
    seconds, ms = divmod(round(at * 1000), 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
    return f"{stamp} node {record.node_id} {record.device_id} {what}"


def follow(
    consumer: Any,
    topic: str,
    emit: Callable[[AnomalyRecord], None],
    stopped: Callable[[], bool],
    *,
    recheck_s: float = 5.0,
    warn: Callable[[str], None] = progress,
) -> Tally:
    """Follow ``topic`` from its current end until ``stopped()``; new partitions and a
    topic created later are picked up every ``recheck_s``."""
    from confluent_kafka import OFFSET_END, TopicPartition

    tally, assigned, next_check, waiting = Tally(), 0, 0.0, False
    while not stopped():
        if time.monotonic() >= next_check:
            count = partitions(consumer, topic, 5.0)
            if count > assigned:
                consumer.incremental_assign(
                    [TopicPartition(topic, p, OFFSET_END) for p in range(assigned, count)]
                )
                assigned = count
            elif not count and not waiting:
                warn(f"waiting for topic {topic} to exist")
            waiting = not count
            next_check = time.monotonic() + recheck_s
        if not assigned:
            time.sleep(0.2)
            continue
        for message in consumer.consume(num_messages=500, timeout=0.5):
            if message.error() is not None:
                continue
            record = tally.decode(message.value())
            if record is None:
                warn(f"invalid record at {topic}/{message.partition()}@{message.offset()}")
            else:
                emit(record)
    return tally


@click.group(name="anomalies")
def command() -> None:
    """Read the anomalies topic: detections, alert changes and score summaries."""


@command.command(name="export")
@config_option
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="JSON-lines file to write ('-' for stdout); the input of `fl report --anomalies`.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.1, 86400),
    default=60.0,
    show_default=True,
    help="Seconds to reach the topic's end; exit 1 if it was not reached.",
)
@friendly_errors
def export(config_path: str | None, out: Path, timeout_s: float) -> None:
    """Write every valid record of the anomalies topic, from its beginning to its
    current end, one JSON object per line."""
    from fl_runtime.service.common import kafka_consumer_conf

    cfg = load(config_path)
    topic = cfg.kafka.anomalies_topic
    consumer = consumer_factory(kafka_consumer_conf(cfg, "fl-anomalies-export"))
    with contextlib.ExitStack() as stack:
        stack.callback(consumer.close)
        sink: IO[bytes] = (
            sys.stdout.buffer if str(out) == "-" else stack.enter_context(open(out, "wb"))
        )

        def write(record: AnomalyRecord) -> None:
            sink.write(encode_anomaly_record(record) + b"\n")

        tally, complete = read_to_end(consumer, topic, write, timeout_s=timeout_s)
    for line in tally.lines():
        progress(line)
    if not complete:
        raise click.ClickException(
            f"the end of {topic} was not reached within {timeout_s:g} s; {out} holds what was read"
        )
    progress(f"wrote {out} from {topic}")


@command.command(name="tail")
@config_option
@click.option("--alerts-only", is_flag=True, help="Print alert changes only.")
@click.option("--json", "as_json", is_flag=True, help="Print each record as one JSON object.")
@friendly_errors
def tail(config_path: str | None, alerts_only: bool, as_json: bool) -> None:
    """Follow the anomalies topic from now on, one line per record, until Ctrl-C."""
    from fl_runtime.service.common import Shutdown, kafka_consumer_conf

    cfg = load(config_path)
    consumer = consumer_factory(kafka_consumer_conf(cfg, "fl-anomalies-tail"))
    shutdown = Shutdown()

    def emit(record: AnomalyRecord) -> None:
        if alerts_only and not isinstance(record, AlertChange):
            return
        text = encode_anomaly_record(record).decode() if as_json else human_line(record)
        click.echo(text)

    try:
        tally = follow(consumer, cfg.kafka.anomalies_topic, emit, lambda: shutdown.requested)
    finally:
        consumer.close()
    for line in tally.lines():
        progress(line)
