"""Turn the dashboard state and a Kafka snapshot into API models. Pure: ``now`` is passed in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

from fl_runtime.cloud.agglog import RoundRecord
from fl_runtime.dashboard.anomalies import AnomalySnapshot, DeviceView
from fl_runtime.dashboard.kafka_source import UNKNOWN_NODE, KafkaSnapshot
from fl_runtime.dashboard.models import (
    AlertOut,
    AnomaliesOut,
    BridgeHealth,
    BridgeStatus,
    DeviceAnomalyOut,
    DiscardedOut,
    FogHealth,
    HealthOut,
    KafkaHealth,
    LogHealth,
    LogStatus,
    NodeOut,
    NodesOut,
    NodeStatus,
    ParticipantOut,
    RoundOut,
    RoundsOut,
    ScorePointOut,
)
from fl_runtime.dashboard.state import DashboardState
from fl_runtime.report.stats import NodeTally, natural_key, round_duration, sorted_nodes


def round_out(seq: int, r: RoundRecord) -> RoundOut:
    return RoundOut(
        seq=seq,
        round=r.round,
        global_version=r.global_version,
        mode=r.mode,
        strategy=r.strategy,
        started_at=r.started_at,
        finished_at=r.finished_at,
        duration_s=round_duration(r),
        participants=[ParticipantOut(**asdict(p)) for p in r.participants],
        discarded=[DiscardedOut(**asdict(d)) for d in r.discarded],
        n_total=r.n_total,
        global_loss=r.global_loss,
        global_f1=r.global_f1,
        global_precision=r.global_precision,
        global_recall=r.global_recall,
        global_accuracy=r.global_accuracy,
        eval_n=r.eval_n,
        eval_version=r.eval_version,
        timings=dict(r.timings),
    )


def rounds_out(state: DashboardState, records: Sequence[tuple[int, RoundRecord]]) -> RoundsOut:
    return RoundsOut(
        rounds=[round_out(seq, r) for seq, r in records],
        total=state.total,
        oldest_seq=state.records[0][0] if state.records else None,
        latest_seq=state.records[-1][0] if state.records else None,
        epoch=state.epoch,
    )


def node_status(age_s: float | None, max_weight_age_s: float) -> NodeStatus:
    if age_s is not None and age_s <= max_weight_age_s:
        return "active"
    if age_s is not None and age_s <= 3 * max_weight_age_s:
        return "late"
    return "silent"


def nodes_out(state: DashboardState, kafka: KafkaSnapshot, now: float) -> NodesOut:
    latest = state.latest
    this_round = {p.node_id: p.n_samples for p in latest.participants} if latest else {}
    dead = kafka.dead_letters if kafka.status == "ok" else None
    prefix = state.settings.sensor_topic_prefix
    from_kafka = [t[len(prefix) :] for t in kafka.topics if t.startswith(prefix)]
    node_ids = sorted_nodes(
        [*state.tallies, *from_kafka, *(n for n in (dead or {}) if n != UNKNOWN_NODE)]
    )
    nodes = [
        _node_out(
            state.tallies.get(n) or NodeTally(n),
            this_round.get(n, 0),
            None if dead is None else dead.get(n, {}),
            state.settings.max_weight_age_s,
            now,
        )
        for n in node_ids
    ]
    return NodesOut(
        generated_at=now,
        max_weight_age_s=state.settings.max_weight_age_s,
        latest_round=latest.round if latest else None,
        nodes=nodes,
        dead_letters_unattributed=None
        if dead is None
        else sum(dead.get(UNKNOWN_NODE, {}).values()),
    )


def _node_out(
    t: NodeTally,
    samples_this_round: int,
    dead: Mapping[str, int] | None,
    max_age: float,
    now: float,
) -> NodeOut:
    age = None if t.last_seen is None else max(0.0, now - t.last_seen)
    return NodeOut(
        node_id=t.node_id,
        status=node_status(age, max_age),
        last_seen=t.last_seen,
        last_seen_age_s=age,
        last_round=t.last_round,
        last_outcome=t.last_outcome,
        samples_this_round=samples_this_round,
        total_samples=t.total_samples,
        staleness_s=t.last_staleness_s,
        staleness_versions=t.last_staleness_versions,
        mean_staleness_s=t.mean_staleness_s,
        accepted=t.accepted,
        rejected=t.rejected,
        rejected_by_reason=dict(t.rejected_by_reason),
        local_loss=t.last_local_loss,
        dead_letters=None if dead is None else sum(dead.values()),
        dead_letter_reasons=dict(dead or {}),
    )


def health_out(
    state: DashboardState, kafka: KafkaSnapshot, now: float, *, log_exists: bool
) -> HealthOut:
    s = state.settings
    log = _log_health(state, now, log_exists)
    nodes = nodes_out(state, kafka, now).nodes
    fog = FogHealth(
        active=sum(n.status == "active" for n in nodes),
        late=sum(n.status == "late" for n in nodes),
        silent=sum(n.status == "silent" for n in nodes),
    )
    bridges = [
        _bridge(n.node_id, kafka, s.sensor_topic_prefix, s.bridge_idle_s, now) for n in nodes
    ]
    problems = []
    if kafka.status == "unreachable":
        problems.append(f"Kafka unreachable: {kafka.detail}")
    if log.status != "ok":
        problems.append(f"aggregation log {log.status}")
    problems += [
        f"{k} fog node(s) {name}" for name, k in (("late", fog.late), ("silent", fog.silent)) if k
    ]
    problems += [
        f"bridge of node {b.node_id} {b.status}" for b in bridges if b.status in ("idle", "missing")
    ]
    return HealthOut(
        status="degraded" if problems else "ok",
        problems=problems,
        generated_at=now,
        log=log,
        kafka=_kafka_health(kafka),
        bridges=bridges,
        fog_nodes=fog,
    )


def _log_health(state: DashboardState, now: float, exists: bool) -> LogHealth:
    latest = state.latest
    age = None if latest is None else max(0.0, now - latest.finished_at)
    status: LogStatus = (
        "waiting" if age is None else "stalled" if age > state.settings.stall_after_s else "ok"
    )
    return LogHealth(
        path=str(state.settings.log_path),
        exists=exists,
        status=status,
        rounds=state.total,
        last_round=latest.round if latest else None,
        last_round_at=latest.finished_at if latest else None,
        age_s=age,
    )


def _kafka_health(k: KafkaSnapshot) -> KafkaHealth:
    ok = k.status == "ok"
    return KafkaHealth(
        status=k.status,
        detail=k.detail,
        checked_at=k.checked_at,
        brokers=k.brokers,
        topics=len(k.topics) if ok else None,
        dead_letter_topic=k.dead_letter_topic,
        dead_letters_total=sum(sum(r.values()) for r in k.dead_letters.values()) if ok else None,
    )


def _bridge(node_id: str, k: KafkaSnapshot, prefix: str, idle_s: float, now: float) -> BridgeHealth:
    topic = f"{prefix}{node_id}"
    grew = k.last_growth.get(topic)
    status: BridgeStatus
    if k.status != "ok":
        status = "unknown"
    elif topic not in k.topics:
        status = "missing"
    elif grew is not None and now - grew <= idle_s:
        status = "forwarding"
    elif now - k.first_seen.get(topic, now) >= idle_s:
        status = "idle"
    else:
        status = "unknown"
    return BridgeHealth(
        node_id=node_id,
        topic=topic,
        status=status,
        end_offset=k.end_offsets.get(topic),
        last_growth_at=grew,
    )


def anomalies_out(snap: AnomalySnapshot, now: float, *, alerts: int) -> AnomaliesOut:
    """The anomalies view: devices with an active alert first, then by node and device;
    the newest ``alerts`` alert changes."""
    devices = sorted(
        snap.devices,
        key=lambda d: (not d.active, natural_key(d.node_id), natural_key(d.device_id)),
    )
    return AnomaliesOut(
        generated_at=now,
        topic=snap.topic,
        status=snap.status,
        detail=snap.detail,
        active_alerts=sum(d.active for d in snap.devices),
        records=dict(snap.records),
        invalid=dict(snap.invalid),
        devices=[_device_out(d) for d in devices],
        devices_dropped=snap.devices_dropped,
        alerts=[AlertOut(**asdict(a)) for a in snap.alerts[:alerts]],
    )


def _device_out(d: DeviceView) -> DeviceAnomalyOut:
    return DeviceAnomalyOut(
        device_id=d.device_id,
        node_id=d.node_id,
        alert_active=d.active,
        since=d.since,
        alert_id=d.alert_id,
        last_score=d.last_score,
        threshold=d.threshold,
        model_version=d.model_version,
        last_seen=d.last_seen,
        detections=d.detections,
        alerts_raised=d.raised,
        sparkline=[ScorePointOut(**asdict(p)) for p in d.points],
    )
