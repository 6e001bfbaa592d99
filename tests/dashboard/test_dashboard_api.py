"""The JSON API over real HTTP: responses match the published OpenAPI schema,
events arrive live, and a login guards the dashboard when configured."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from fl_runtime.cloud.agglog import AggregationLog, read_log
from fl_runtime.dashboard import (
    Authenticator,
    DashboardSettings,
    StaticKafkaSource,
    create_app,
    hash_password,
    serve_in_thread,
)
from fl_runtime.report.synthetic import synthetic_records
from tests.dashboard.dashboard_helpers import get_json, kafka_ok, read_events


def _validator(openapi: dict[str, Any], model: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{model}", "components": openapi["components"]}
    return Draft202012Validator(schema)


def _response_model(openapi: dict[str, Any], path: str) -> str:
    content = openapi["paths"][path]["get"]["responses"]["200"]["content"]
    ref: str = content["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


def test_openapi_documents_the_api(served: str) -> None:
    openapi = get_json(f"{served}/api/openapi.json")

    assert {"/api/rounds", "/api/nodes", "/api/health", "/api/events"} <= set(openapi["paths"])
    assert openapi["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    assert (
        "text/event-stream" in openapi["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    )


@pytest.mark.parametrize("path", ["/api/rounds", "/api/nodes", "/api/health"])
def test_responses_match_the_schema(served: str, path: str) -> None:
    openapi = get_json(f"{served}/api/openapi.json")

    body = get_json(f"{served}{path}")

    errors = list(_validator(openapi, _response_model(openapi, path)).iter_errors(body))
    assert errors == []


def test_rounds_match_the_log(served: str, log_path: Path) -> None:
    records = read_log(log_path)

    newest = get_json(f"{served}/api/rounds?limit=5")
    after = get_json(f"{served}/api/rounds?after=9&limit=3")

    assert [r["round"] for r in newest["rounds"]] == [r.round for r in records[-5:]]
    assert [r["seq"] for r in after["rounds"]] == [10, 11, 12]
    assert newest["total"] == len(records) == newest["latest_seq"] + 1
    assert newest["rounds"][-1]["n_total"] == records[-1].n_total
    assert [p["node_id"] for p in newest["rounds"][-1]["participants"]] == records[-1].node_ids


def test_nodes_and_health_use_log_and_kafka(served: str) -> None:
    nodes = get_json(f"{served}/api/nodes")
    health = get_json(f"{served}/api/health")

    assert [n["node_id"] for n in nodes["nodes"]] == ["1", "2", "3", "4", "5", "6"]
    assert nodes["nodes"][2]["dead_letters"] == 3 and nodes["dead_letters_unattributed"] == 4
    assert health["kafka"]["status"] == "ok" and health["kafka"]["dead_letters_total"] == 7
    assert {b["node_id"]: b["status"] for b in health["bridges"]}["4"] == "idle"
    assert health["log"]["status"] == "ok" and health["log"]["rounds"] == 30


def test_bad_query_is_rejected(served: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        get_json(f"{served}/api/rounds?limit=0")
    assert err.value.code == 422


def test_a_new_round_is_pushed_within_two_seconds(served: str, log_path: Path) -> None:
    last = read_log(log_path)[-1]
    (new,) = synthetic_records(rounds=1, nodes=6, seed=99, first_round=last.round + 1)
    appended_at: list[float] = []

    def append_once(events: list[tuple[str, Any]]) -> bool:
        if not appended_at and any(name == "status" for name, _ in events):
            AggregationLog(log_path).append(new)
            appended_at.append(time.monotonic())
        return any(name == "rounds" for name, _ in events)

    events = read_events(f"{served}/api/events?after=29", append_once)

    delay = time.monotonic() - appended_at[0]
    rounds = next(data for name, data in events if name == "rounds")["rounds"]
    assert [(r["seq"], r["round"]) for r in rounds] == [(30, new.round)]
    assert delay < 2.0


def test_event_stream_resumes_after_last_event_id(served: str) -> None:
    reconnect = {"Last-Event-ID": "0:27"}  # what EventSource sends after a dropped stream

    events = read_events(
        f"{served}/api/events?after=5",
        lambda evs: any(n == "rounds" for n, _ in evs),
        headers=reconnect,
    )

    rounds = next(data for name, data in events if name == "rounds")["rounds"]
    assert [r["seq"] for r in rounds] == [28, 29]


def test_security_headers_and_page(served: str) -> None:
    with urllib.request.urlopen(f"{served}/", timeout=10) as response:
        page = response.read().decode()
        csp = response.headers["content-security-policy"]
    with urllib.request.urlopen(f"{served}/static/vendor/uPlot.iife.min.js", timeout=10) as js:
        assert js.status == 200

    assert "default-src 'self'" in csp
    assert 'id="chart-convergence"' in page and 'id="heatmap"' in page


def test_login_is_required_when_configured(log_path: Path) -> None:
    auth = Authenticator({"ops": hash_password("s3cret", iterations=2000)})
    app = create_app(
        DashboardSettings(log_path=log_path), StaticKafkaSource(kafka_ok()), authenticator=auth
    )
    good = {"Authorization": "Basic b3BzOnMzY3JldA=="}  # ops:s3cret
    bad = {"Authorization": "Basic b3BzOm5vcGU="}  # ops:nope

    with serve_in_thread(app) as url:
        for headers in ({}, bad):
            with pytest.raises(urllib.error.HTTPError) as err:
                get_json(f"{url}/api/health", headers)
            assert err.value.code == 401
            assert err.value.headers["www-authenticate"].startswith("Basic")
        with pytest.raises(urllib.error.HTTPError):
            get_json(f"{url}/static/app.js", {})
        assert get_json(f"{url}/api/health", good)["log"]["rounds"] == 30


def test_dashboard_starts_before_the_log_exists(tmp_path: Path) -> None:
    path = tmp_path / "later.jsonl"
    settings = DashboardSettings(log_path=path, poll_interval_s=0.1)

    with serve_in_thread(create_app(settings, StaticKafkaSource())) as url:
        before = get_json(f"{url}/api/health")
        AggregationLog(path).append(next(synthetic_records(rounds=1, nodes=2)))
        deadline = time.monotonic() + 5
        while get_json(f"{url}/api/rounds")["total"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        after = get_json(f"{url}/api/health")

    assert (before["log"]["exists"], before["log"]["status"]) == (False, "waiting")
    assert before["kafka"]["status"] == "disabled"
    assert (after["log"]["exists"], after["log"]["rounds"]) == (True, 1)
