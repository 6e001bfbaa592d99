"""The JSON API's response models; FastAPI publishes them as the OpenAPI schema.

Times are unix seconds (float). ``seq`` is a record's 0-based position in the
aggregation log: it survives dashboard restarts and, unlike ``round``, never goes
back when the aggregator restarts its round counter.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

NodeStatus = Literal["active", "late", "silent"]
BridgeStatus = Literal["forwarding", "idle", "missing", "unknown"]
LogStatus = Literal["ok", "stalled", "waiting"]
Overall = Literal["ok", "degraded"]


class ParticipantOut(BaseModel):
    node_id: str
    n_samples: int = Field(description="n_k: samples behind this node's update")
    staleness_s: float
    staleness_versions: int
    base_version: int
    local_loss: float | None
    update_id: str


class DiscardedOut(BaseModel):
    node_id: str
    reason: str = Field(description="machine-friendly rejection code, e.g. 'stale'")
    detail: str
    update_id: str


class RoundOut(BaseModel):
    seq: int = Field(description="0-based position of the record in the log")
    round: int
    global_version: int
    mode: str
    strategy: str
    started_at: float
    finished_at: float
    duration_s: float = Field(description="round wall time (timings.round_wall_s if logged)")
    participants: list[ParticipantOut]
    discarded: list[DiscardedOut]
    n_total: int
    global_loss: float | None
    global_f1: float | None
    global_precision: float | None
    global_recall: float | None
    global_accuracy: float | None
    eval_n: int
    eval_version: int | None
    timings: dict[str, float]


class RoundsOut(BaseModel):
    rounds: list[RoundOut] = Field(description="oldest first")
    total: int = Field(description="records read from the log since it was opened")
    oldest_seq: int | None = Field(description="oldest seq still held in memory")
    latest_seq: int | None
    epoch: int = Field(description="bumps when the log was replaced or truncated")


class NodeOut(BaseModel):
    node_id: str
    status: NodeStatus = Field(
        description="active: seen within MAX_WEIGHT_AGE; late: within 3x; silent: longer"
    )
    last_seen: float | None = Field(description="finish time of the last round it appeared in")
    last_seen_age_s: float | None
    last_round: int | None
    last_outcome: str = Field(description="'accepted' or the last rejection reason")
    samples_this_round: int = Field(description="n_k in the latest round, 0 when absent")
    total_samples: int
    staleness_s: float | None = Field(description="staleness of its last accepted update")
    staleness_versions: int | None
    mean_staleness_s: float | None
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    local_loss: float | None = Field(description="local loss of its last accepted update")
    dead_letters: int | None = Field(
        description="messages in the dead-letter topic naming this "
        "node; null while Kafka is not readable"
    )
    dead_letter_reasons: dict[str, int]


class NodesOut(BaseModel):
    generated_at: float
    max_weight_age_s: float
    latest_round: int | None
    nodes: list[NodeOut]
    dead_letters_unattributed: int | None = Field(
        description="dead-letter messages without a node_id header"
    )


class LogHealth(BaseModel):
    path: str
    exists: bool
    status: LogStatus = Field(
        description="waiting: no round yet; stalled: no round for longer than "
        "max(3 x AGGREGATION_INTERVAL_SECONDS, MAX_WEIGHT_AGE)"
    )
    rounds: int
    last_round: int | None
    last_round_at: float | None
    age_s: float | None


class KafkaHealth(BaseModel):
    status: Literal["ok", "unreachable", "disabled"]
    detail: str
    checked_at: float | None
    brokers: int | None
    topics: int | None
    dead_letter_topic: str
    dead_letters_total: int | None


class BridgeHealth(BaseModel):
    node_id: str
    topic: str
    status: BridgeStatus = Field(
        description="forwarding: the sensor topic grew recently; idle: it did not; missing: "
        "no such topic; unknown: Kafka not readable or not watched long enough"
    )
    end_offset: int | None
    last_growth_at: float | None


class FogHealth(BaseModel):
    active: int
    late: int
    silent: int


class HealthOut(BaseModel):
    status: Overall
    problems: list[str]
    generated_at: float
    log: LogHealth
    kafka: KafkaHealth
    bridges: list[BridgeHealth]
    fog_nodes: FogHealth


class StatusEvent(BaseModel):
    """The ``status`` server-sent event: nodes and health together."""

    nodes: NodesOut
    health: HealthOut


class ScorePointOut(BaseModel):
    t: float = Field(description="end of the summary interval")
    mean: float = Field(description="mean score of the interval's readings")
    max: float = Field(description="highest score of the interval")
    threshold: float
    n: int = Field(description="readings scored in the interval")
    over: int = Field(description="readings over the threshold")


class DeviceAnomalyOut(BaseModel):
    device_id: str
    node_id: str
    alert_active: bool
    since: float | None = Field(
        description="when the alert state last changed; null when only a score "
        "summary told (the change itself was not read)"
    )
    alert_id: str | None = Field(description="id of the active alert")
    last_score: float | None = Field(
        description="newest score seen: a detection's or an alert's, else an interval's max"
    )
    threshold: float | None
    model_version: int | None
    last_seen: float | None
    detections: int
    alerts_raised: int
    sparkline: list[ScorePointOut] = Field(description="score summaries, oldest first")


class AlertOut(BaseModel):
    alert_id: str
    state: Literal["raised", "cleared"]
    device_id: str
    node_id: str
    message_id: str = Field(description="the reading that changed the state")
    score: float
    threshold: float
    model_version: int
    reading_time: float
    detection_time: float
    over: int = Field(description="readings over the threshold among the last `window`")
    window: int


class AnomaliesOut(BaseModel):
    generated_at: float
    topic: str
    status: Literal["ok", "missing", "unreachable", "disabled"] = Field(
        description="ok: following the topic; missing: it does not exist yet; "
        "unreachable: Kafka did not answer; disabled: not followed (--no-kafka)"
    )
    detail: str
    active_alerts: int
    records: dict[str, int] = Field(
        description="valid records read, by kind: detection, alert, score_summary"
    )
    invalid: dict[str, int] = Field(description="records that failed validation, by reason")
    devices: list[DeviceAnomalyOut] = Field(description="active alerts first, then by node")
    devices_dropped: int = Field(description="devices forgotten to keep the state bounded")
    alerts: list[AlertOut] = Field(description="alert changes, newest first")
