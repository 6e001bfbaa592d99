"""The dashboard's web application: the page, its JSON API and a server-sent event stream.

One asyncio task follows the aggregation log every ``poll_interval_s`` and wakes
the event streams, another wakes them when the :class:`AnomalySource`'s book
changed; Kafka facts come from a :class:`KafkaSource` snapshot, so a request never
waits on a broker. The OpenAPI schema is at ``/api/openapi.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Header, Query
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fl_runtime.dashboard import views
from fl_runtime.dashboard.anomalies import AnomalySource, MemoryAnomalySource
from fl_runtime.dashboard.auth import Authenticator
from fl_runtime.dashboard.kafka_source import KafkaSource
from fl_runtime.dashboard.models import AnomaliesOut, HealthOut, NodesOut, RoundsOut, StatusEvent
from fl_runtime.dashboard.state import DashboardSettings, DashboardState, LogFollower

log = logging.getLogger(__name__)
STATIC_DIR = Path(str(files("fl_runtime.dashboard") / "static"))
MAX_EVENT_ROUNDS = 500
MAX_PAGE = 10_000
MAX_ALERTS = 200
ANOMALY_EVENT_GAP_S = 1.0  # at most one ``anomalies`` event a second per stream
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class Hub:
    """Change notification for event streams: a version counter and a wake-up event."""

    def __init__(self) -> None:
        self.version = 0
        self.closing = False
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    def close(self) -> None:
        self.closing = True
        self.notify()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return when the version moved past ``seen`` or after ``timeout`` seconds."""
        if self.version != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class Guard:
    """ASGI middleware: Basic-auth login (when configured) and security headers."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator | None) -> None:
        self.app, self.auth = app, authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.auth is not None:
            header = Headers(scope=scope).get("authorization")
            if await anyio.to_thread.run_sync(self.auth.user, header) is None:
                deny = PlainTextResponse(
                    "login required\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="fedge dashboard", charset="UTF-8"'},
                )
                await deny(scope, receive, send)
                return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_secured)


async def follow_log(state: DashboardState, hub: Hub) -> None:
    """Poll the log forever, waking event streams when rounds arrive or it is replaced.
    An unreadable log (permissions, a flaky mount) is logged once and retried."""
    follower = LogFollower(state.settings.log_path)
    failing = ""
    while True:
        try:
            polled = await asyncio.to_thread(follower.poll)
        except OSError as exc:
            if str(exc) != failing:
                log.warning("cannot read the aggregation log: %s", exc)
            failing = str(exc)
            await asyncio.sleep(state.settings.poll_interval_s)
            continue
        failing = ""
        if polled.reset:
            state.reset()
        if state.ingest(polled.records) or polled.reset:
            hub.notify()
        await asyncio.sleep(state.settings.poll_interval_s)


async def watch_anomalies(source: AnomalySource, hub: Hub, interval_s: float) -> None:
    """Wake event streams when the anomaly book changed (its consumer runs on a thread)."""
    seen = -1
    while True:
        if source.book.version != seen:
            seen = source.book.version
            hub.notify()
        await asyncio.sleep(interval_s)


def create_app(
    settings: DashboardSettings,
    kafka: KafkaSource,
    *,
    anomalies: AnomalySource | None = None,
    authenticator: Authenticator | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """``anomalies`` feeds the anomalies view; without one the view says it is off."""
    state = DashboardState(settings)
    hub = Hub()
    detections = anomalies or MemoryAnomalySource(status="disabled")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        kafka.start()
        detections.start()
        tasks = [
            asyncio.create_task(follow_log(state, hub)),
            asyncio.create_task(watch_anomalies(detections, hub, settings.poll_interval_s)),
        ]
        try:
            yield
        finally:
            hub.close()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(kafka.close)
            await asyncio.to_thread(detections.close)

    app = FastAPI(
        title="fedge dashboard API",
        version="1",
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        description=_DESCRIPTION,
    )
    app.state.hub, app.state.dashboard, app.state.anomalies = hub, state, detections
    app.add_middleware(Guard, authenticator=authenticator)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _routes(app, state, hub, kafka, clock)
    _anomaly_routes(app, detections, clock)
    app.openapi_schema = _with_security(app)
    return app


def _routes(
    app: FastAPI, state: DashboardState, hub: Hub, kafka: KafkaSource, clock: Callable[[], float]
) -> None:
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/api/rounds", tags=["dashboard"])
    async def rounds(
        after: Annotated[int | None, Query(description="only records with a larger seq")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    ) -> RoundsOut:
        """Rounds of the aggregation log, oldest first: the newest ``limit`` records, or
        the first ``limit`` after ``after``."""
        picked = state.newest(limit) if after is None else state.after(after, limit)
        return views.rounds_out(state, picked)

    @app.get("/api/nodes", tags=["dashboard"])
    async def nodes() -> NodesOut:
        """Per-node statistics from the log, with dead-letter counts from Kafka."""
        return views.nodes_out(state, kafka.snapshot(), clock())

    @app.get("/api/health", tags=["dashboard"])
    async def health() -> HealthOut:
        """Health of the aggregation log, Kafka, the MQTT-Kafka bridges and the fog nodes."""
        return _health(state, kafka, clock())

    @app.get("/api/events", tags=["dashboard"], response_class=EventSourceResponse)
    async def events(
        after: Annotated[int, Query(description="seq of the last round the client has")] = -1,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: ``rounds`` (a RoundsOut of new rounds, id ``epoch:seq``),
        ``status`` (a StatusEvent, after each new round and every few seconds),
        ``anomalies`` (an AnomaliesOut, on connecting and when the anomalies topic
        brought something, at most once a second) and ``reset`` (the log was replaced:
        reload everything)."""
        epoch, cursor = _resume(last_event_id, state.epoch, after)
        book, sent, sent_at = app.state.anomalies.book, -1, -math.inf
        status_of, status_at = (-1, -1), -math.inf
        interval = state.settings.status_interval_s
        while not hub.closing:
            seen = hub.version
            if epoch != state.epoch:
                epoch, cursor = state.epoch, -1
                yield ServerSentEvent(event="reset", data={"epoch": epoch})
            fresh = state.after(cursor, MAX_EVENT_ROUNDS)
            if fresh:
                cursor = fresh[-1][0]
                yield ServerSentEvent(
                    event="rounds", id=f"{epoch}:{cursor}", data=views.rounds_out(state, fresh)
                )
                continue
            now, tick = clock(), time.monotonic()
            if book.version != sent and tick - sent_at >= ANOMALY_EVENT_GAP_S:
                snap = book.snapshot()
                sent, sent_at = snap.version, tick
                yield ServerSentEvent(
                    event="anomalies", data=views.anomalies_out(snap, now, alerts=MAX_ALERTS)
                )
            if status_of != (state.epoch, state.total) or tick - status_at >= interval:
                status_of, status_at = (state.epoch, state.total), tick
                yield ServerSentEvent(
                    event="status",
                    data=StatusEvent(
                        nodes=views.nodes_out(state, kafka.snapshot(), now),
                        health=_health(state, kafka, now),
                    ),
                )
            due = [status_at + interval]
            if book.version != sent:
                due.append(sent_at + ANOMALY_EVENT_GAP_S)
            await hub.wait(seen, max(0.01, min(due) - time.monotonic()))


def _anomaly_routes(app: FastAPI, source: AnomalySource, clock: Callable[[], float]) -> None:
    @app.get("/api/anomalies", tags=["dashboard"])
    async def anomalies(
        alerts: Annotated[int, Query(ge=0, le=MAX_ALERTS, description="newest alert changes")] = 50,
    ) -> AnomaliesOut:
        """Each device's alert state and score sparkline, and the newest alert changes,
        from the anomalies topic (detections, alert changes, score summaries)."""
        return views.anomalies_out(source.book.snapshot(), clock(), alerts=alerts)


def _health(state: DashboardState, kafka: KafkaSource, now: float) -> HealthOut:
    return views.health_out(
        state, kafka.snapshot(), now, log_exists=state.settings.log_path.exists()
    )


def _resume(last_event_id: str | None, epoch: int, after: int) -> tuple[int, int]:
    """Where an event stream starts: after ``Last-Event-ID`` on a reconnect, else ``after``."""
    if last_event_id:
        sent_epoch, _, seq = last_event_id.partition(":")
        if sent_epoch.isdigit() and seq.lstrip("-").isdigit():
            return int(sent_epoch), int(seq)
    return epoch, after


def _with_security(app: FastAPI) -> dict[str, Any]:
    schema = app.openapi()
    schema.setdefault("components", {})["securitySchemes"] = {
        "basicAuth": {
            "type": "http",
            "scheme": "basic",
            "description": "Required when the dashboard listens on a non-loopback address.",
        }
    }
    schema["security"] = [{"basicAuth": []}, {}]
    return schema


_DESCRIPTION = """JSON behind the fedge dashboard's charts, for other tools too.
Times are unix seconds. `seq` is a record's 0-based position in the aggregation log.
Live updates: `GET /api/events` (text/event-stream)."""
