"""The HTTP contract (docs/http-contract.md) over real HTTP to a real `reev-api` process, on a
database written by the real daemon from fixture files."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import apsw
import pytest

from tests import fixtures as fx
from tests.api_client import Api, read_reply
from tests.conftest import Db, alive, children, clean_env, daemon_command, wait_for

DONE = "run-done"            # session + event log, deterministic, succeeded on 301
FAILED = "run-failed"        # session only, glm-4.6, failed on 301 with a step error
RUNNING = "run-running"      # event log only; its first prompt is 301's prompt; one bad line
FLOW = "run-flow"            # event log only, 302 (two-step flow), one StepComplete
PATHID = "run-pathid"        # session whose benchmark_id is a path to 302
B301, B302, B303 = "301-test-transfer", "302-two-steps", "303-never-run"
FLOW_PROMPT = "Swap, then lend."


def write_corpus(sessions: Path, benchmarks: Path):
    (benchmarks / f"{B301}.yml").write_text(fx.benchmark_yaml(B301))
    (benchmarks / f"{B302}.yml").write_text(fx.benchmark_yaml(
        B302, prompt=FLOW_PROMPT, tags=["flow"], flow=[{"step": 1}, {"step": 2, "depends_on": ["step_1_result"]}]))
    (benchmarks / f"{B303}.yml").write_text(fx.benchmark_yaml(B303, prompt="Never asked."))
    (sessions / f"enhanced_otel_{DONE}.jsonl").write_bytes(fx.jsonl([
        fx.prompt_line("Send 0.3 SOL to the second wallet.", at=0),
        fx.tool_input_line("sol_transfer", {"amount": 300000000}, at=1),
        fx.tool_output_line(True, '[{"program_id":"11111111111111111111111111111111"}]', at=1.25),
    ]))
    (sessions / f"session_{DONE}.json").write_bytes(fx.session_bytes(fx.session_doc(
        "inner-done", benchmark_id=B301, start_time=1_761_795_821, score=1.0)))
    (sessions / f"session_{FAILED}.json").write_bytes(fx.session_bytes(fx.session_doc(
        "inner-failed", benchmark_id=B301, agent_type="glm-4.6", start_time=1_761_795_900, success=False,
        score=0.25, steps=[fx.step(obs=fx.observation("Failure", error="custom program error: 0x1"))])))
    (sessions / f"enhanced_otel_{RUNNING}.jsonl").write_bytes(
        fx.jsonl([fx.prompt_line("Send 0.3 SOL to the second wallet.", at=200)])
        + b'{"timestamp": "oops\n'
        + fx.jsonl([fx.tool_input_line("get_account_balance", at=201)]))
    (sessions / f"enhanced_otel_{FLOW}.jsonl").write_bytes(fx.jsonl([
        fx.prompt_line(FLOW_PROMPT, at=100), fx.tool_input_line("jupiter_swap", at=101),
        fx.tool_output_line(True, {"out": 5}, at=102), fx.step_complete_line("swap", at=103)]))
    (sessions / f"session_{PATHID}.json").write_bytes(fx.session_bytes(fx.session_doc(
        "inner-path", benchmark_id=f"benchmarks/{B302}.yml", agent_type="local", start_time=1_761_795_000,
        score=0.5)))


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    sessions, benchmarks, db = root / "sessions", root / "benchmarks", root / "state" / "reev.db"
    sessions.mkdir()
    benchmarks.mkdir()
    write_corpus(sessions, benchmarks)
    proc = subprocess.run(daemon_command() + ["--sessions-dir", str(sessions), "--benchmarks-dir", str(benchmarks),
                                              "--db", str(db), "--once"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return root, db


@pytest.fixture(scope="module")
def api(populated):
    root, db = populated
    server = Api(db, root / "api.log")
    yield server
    assert server.close() == 0


# ---------------------------------------------------------------------- Part 1

def test_health_reports_the_database(api):
    """The module's database was written by `--once` moments ago: its heartbeat is fresh."""
    health = api.get("/api/v1/health")
    assert health["status"] == "healthy" and health["reasons"] == []
    assert health["database"]["reachable"] is True
    assert health["database"]["data_generation"] >= 1
    assert 0 <= health["database"]["heartbeat_age_seconds"] < 30
    assert health["version"] and health["timestamp"].endswith("Z")


def test_health_is_degraded_when_the_heartbeat_is_stale(workspace, run_once, tmp_path):
    """A daemon that stopped writing its heartbeat (here: one written 31 s and then 29 s ago,
    as a daemon gone since would have left it) makes the API degraded past 30 s, and healthy
    again once it beats."""
    run_once()
    server = Api(workspace.db_path, tmp_path / "api.log")

    def beat(age: float):
        conn = apsw.Connection(str(workspace.db_path))
        try:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'heartbeat_at'", (time.time() - age,))
        finally:
            conn.close()

    try:
        beat(31)
        health = server.get("/api/v1/health")
        assert health["status"] == "degraded" and health["database"]["reachable"] is True
        assert health["database"]["heartbeat_age_seconds"] >= 31
        assert health["reasons"] == ["the daemon's heartbeat is stale: is reev-ingestd running?"]
        # the reasons do not carry the age, so a stuck daemon's health keeps its ETag as the clock runs
        first = server.request("/api/v1/health")
        wait_for(lambda: server.get("/api/v1/health")["database"]["heartbeat_age_seconds"]
                 >= first.json()["database"]["heartbeat_age_seconds"] + 1, timeout=5, what="a second to pass")
        assert server.request("/api/v1/health", headers={"If-None-Match": first.etag}).status == 304
        assert server.get("/api/v1/benchmarks") == [], "the data is still served"
        beat(20)
        health = server.get("/api/v1/health")
        assert health["status"] == "healthy" and health["reasons"] == []
    finally:
        server.close()


def test_benchmarks_sorted_with_shape(api):
    got = api.get("/api/v1/benchmarks")
    assert [b["id"] for b in got] == [B301, B302, B303]
    assert got[1] == {"id": B302, "description": "Move some SOL between two wallets.", "tags": ["flow"],
                      "prompt": FLOW_PROMPT}


def test_benchmark_detail_lists_runs_newest_first_including_running(api):
    got = api.get(f"/api/v1/benchmarks/{B301}")
    runs = got["recent_executions"]
    assert [r["execution_id"] for r in runs] == [RUNNING, FAILED, DONE]
    assert [r["status"] for r in runs] == ["running", "failed", "completed"]
    assert runs[0]["score"] is None and runs[1]["score"] == 0.25
    assert got["latest_execution_id"] == RUNNING
    assert api.get(f"/api/v1/benchmarks/{B301}.yml")["id"] == B301
    assert api.get(f"/api/v1/benchmarks/{B303}")["recent_executions"] == []
    assert api.get(f"/api/v1/benchmarks/{B303}")["latest_execution_id"] is None


def test_benchmark_path_id_is_normalised(api):
    runs = api.get(f"/api/v1/benchmarks/{B302}")["recent_executions"]
    assert {r["execution_id"] for r in runs} == {FLOW, PATHID}


def test_unknown_benchmark_is_json_404(api):
    body = api.get("/api/v1/benchmarks/999-nothing", expect=404)
    assert body["error"] == "not_found" and "999-nothing" in body["message"]


def test_execution_state_of_each_kind(api):
    done = api.get(f"/api/v1/benchmarks/stale-benchmark/status/{DONE}")
    assert done["status"] == "Completed" and done["progress"] == 1.0 and done["error_message"] is None
    assert done["result_data"]["success"] is True and done["result_data"]["execution_time_ms"] == 37000
    assert done["agent"] == "deterministic" and done["benchmark_id"] == B301
    assert done["metadata"]["recorded_session_id"] == "inner-done"
    assert done["metadata"]["event_count"] == 3 and done["metadata"]["tool_call_count"] == 1
    failed = api.get(f"/api/v1/benchmarks/{B301}/status/{FAILED}")
    assert failed["status"] == "Failed" and failed["error_message"] and failed["result_data"]["score"] == 0.25
    running = api.get(f"/api/v1/benchmarks/x/status/{RUNNING}")
    assert running["status"] == "Running" and running["result_data"] is None and running["progress"] == 0.0
    assert running["benchmark_id"] == B301, "linked by its first prompt"
    flow = api.get(f"/api/v1/benchmarks/x/status/{FLOW}")
    assert flow["benchmark_id"] == B302 and flow["progress"] == 0.5, "one of two flow steps done"
    assert api.get("/api/v1/benchmarks/x/status/nope", expect=404)["message"]


def test_newest_status_of_a_benchmark_and_agent(api):
    assert api.get(f"/api/v1/benchmarks/{B301}/status")["execution_id"] == RUNNING
    assert api.get(f"/api/v1/benchmarks/{B301}/status?agent=deterministic")["execution_id"] == DONE
    assert api.get(f"/api/v1/benchmarks/{B301}/status?agent=nobody", expect=404)["message"]
    assert api.get(f"/api/v1/benchmarks/{B303}/status", expect=404)["message"]


def test_agent_performance_one_result_per_finished_run(api):
    perf = api.get("/api/v1/agent-performance")
    assert [a["agent_type"] for a in perf] == ["deterministic", "glm-4.6", "local"]
    det, glm, local = perf
    assert det["total_benchmarks"] == 1 and det["success_rate"] == 1.0 and det["average_score"] == 1.0
    assert [r["session_id"] for r in det["results"]] == [DONE]
    r = det["results"][0]
    assert r["final_status"] == "Succeeded" and r["benchmark_id"] == B301 and isinstance(r["id"], int)
    assert glm["success_rate"] == 0.0 and glm["average_score"] == 0.25
    assert glm["results"][0]["final_status"] == "Failed"
    assert local["best_benchmarks"] == [B302] and local["worst_benchmarks"] == [B302]
    assert api.get("/api/v1/agent-performance?limit=0", expect=400)["message"].find("limit") >= 0


def test_agent_results_pages(api):
    page = api.get("/api/v1/agent-performance/deterministic/results?limit=1")
    assert [r["session_id"] for r in page["items"]] == [DONE] and page["next_cursor"] is None


def test_an_agent_whose_name_holds_a_slash_has_its_results_route(workspace, run_once, tmp_path):
    """An agent type is free text from a session file: one with `/` (sent as %2F in its path
    segment), `%` or spaces is reachable as agent-performance lists it, and %2F is no `/`."""
    names = ["weird/agent name", "50%/x", "/lead", "a%2Fb"]
    for n, agent in enumerate(names):
        workspace.write_session(f"odd-{n}", fx.session_doc(f"odd-{n}", agent_type=agent))
    workspace.write_session("plain", fx.session_doc("plain", agent_type="weird"))
    run_once()
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        listed = {a["agent_type"] for a in server.get("/api/v1/agent-performance")}
        assert listed == {*names, "weird"}
        for n, agent in enumerate(names):
            page = server.get(f"/api/v1/agent-performance/{urllib.parse.quote(agent, safe='')}/results")
            assert [r["session_id"] for r in page["items"]] == [f"odd-{n}"], agent
        assert server.get("/api/v1/agent-performance/weird%2fagent%20name/results")["items"]   # lower-case hex
        # a `/` itself still separates segments: that is another route (none)
        assert server.get("/api/v1/agent-performance/weird/agent%20name/results", expect=404)["message"] == \
            "no route '/api/v1/agent-performance/weird/agent name/results'"
        assert [r["session_id"] for r in server.get("/api/v1/agent-performance/weird/results")["items"]] == ["plain"]
    finally:
        server.close()


def test_agent_results_pages_follow_their_cursor_to_the_end(workspace, run_once, tmp_path):
    """Newest first (then by execution id, from the last), one page after the other, each run
    once; runs still going and other agents' runs are not results."""
    start = 1_761_000_000
    for eid, at in [("r-a", start), ("r-b", start + 100), ("r-c", start + 100), ("r-d", start + 200),
                    ("r-e", start + 50)]:
        workspace.write_session(eid, fx.session_doc(eid, start_time=at, success=eid != "r-c", score=0.5))
    workspace.write_session("other", fx.session_doc("other", agent_type="local", start_time=start + 300))
    workspace.append_events("going", [fx.prompt_line("p", at=0)])
    run_once()
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        seen, cursors, cursor = [], [], None
        while True:
            page = server.get("/api/v1/agent-performance/deterministic/results?limit=2"
                              + (f"&cursor={cursor}" if cursor else ""))
            assert len(page["items"]) <= 2
            seen += [(r["session_id"], r["final_status"]) for r in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
            cursors.append(cursor)
        assert seen == [("r-d", "Succeeded"), ("r-c", "Failed"), ("r-b", "Succeeded"), ("r-e", "Succeeded"),
                        ("r-a", "Succeeded")]
        assert len(cursors) == 2 and len(set(cursors)) == 2
    finally:
        server.close()


def test_agents_sorted(api):
    assert api.get("/api/v1/agents") == ["deterministic", "glm-4.6", "local"]


def test_agent_config_is_404_with_message(api):
    assert "configuration" in api.get("/api/v1/agents/config/deterministic", expect=404)["message"]


def test_execution_logs_trace(api):
    got = api.get(f"/api/v1/execution-logs/{B301}?execution_id={DONE}")
    assert got["status"] == "completed" and got["final_status"] == "Completed" and got["interface"] == "web"
    assert got["is_running"] is False and got["progress"] == 1.0 and got["result"]["success"] is True
    assert "✅" in got["trace"] and "Step 1" in got["trace"] and "Program" in got["trace"]
    failed = api.get(f"/api/v1/execution-logs/{B301}?execution_id={FAILED}")
    assert "❌" in failed["trace"] and "Error: custom program error: 0x1" in failed["trace"]
    for query in ("", "?execution_id=", "?other=" + "x" * 300):
        assert api.get(f"/api/v1/execution-logs/{B301}{query}", expect=400) == \
            {"error": "bad_request", "message": "query parameter `execution_id` is required"}, query
    assert api.get(f"/api/v1/execution-logs/{B301}?execution_id=nope", expect=404)["message"]


def test_the_openapi_document_says_which_execution_id_is_required(api):
    """As the routes answer: execution-logs refuses a request without one (400), transaction-logs
    shows the newest execution (docs/http-contract.md)."""
    paths = api.get("/schema/openapi.json")["paths"]
    for path, required in (("/api/v1/execution-logs/{benchmark_id}", True),
                           ("/api/v1/transaction-logs/{benchmark_id}", False)):
        execution_id = next(p for p in paths[path]["get"]["parameters"] if p["name"] == "execution_id")
        assert execution_id["required"] is required, (path, execution_id)


def test_transaction_logs(api):
    got = api.get(f"/api/v1/transaction-logs/{B301}?execution_id={DONE}")
    assert "11111111111111111111111111111111" in got["transaction_logs"]
    assert api.get(f"/api/v1/transaction-logs/{B301}")["execution_id"] == RUNNING, "newest by default"
    none = api.get(f"/api/v1/transaction-logs/{B303}")
    assert none["execution_id"] is None and none["message"]
    assert api.get(f"/api/v1/transaction-logs/{B301}?execution_id=nope", expect=404)["message"]


def test_flow_diagram(api):
    got = api.get(f"/api/v1/flows/{DONE}")
    assert got["diagram"].startswith("stateDiagram") and "sol_transfer" in got["diagram"]
    assert got["metadata"]["tool_count"] == 1 and got["metadata"]["session_id"] == DONE
    assert got["tool_calls"][0]["tool_name"] == "sol_transfer"
    assert api.get("/api/v1/flows/nope", expect=404)["message"]


# ---------------------------------------------------------------------- Part 2

def test_sessions_pages_cover_everything_once(api):
    seen, cursor = [], None
    while True:
        page = api.get("/api/v1/sessions?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["items"]) <= 2
        seen += [s["execution_id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [RUNNING, FLOW, FAILED, DONE, PATHID]


def test_sessions_filters(api):
    ids = lambda q: [s["execution_id"] for s in api.get("/api/v1/sessions?" + q)["items"]]  # noqa: E731
    assert ids(f"benchmark_id={B302}.yml") == [FLOW, PATHID]
    assert ids("agent=glm-4.6") == [FAILED]
    assert ids("status=running") == [RUNNING, FLOW]
    item = api.get("/api/v1/sessions?status=Completed&limit=1")["items"][0]
    assert set(item) >= {"execution_id", "recorded_session_id", "benchmark_id", "agent_type", "status",
                         "created_at", "updated_at", "last_event_at", "score"}


@pytest.mark.parametrize("query, parameter", [
    ("limit=banana", "limit"), ("limit=0", "limit"), ("limit=100000", "limit"),
    ("cursor=not-a-cursor", "cursor"), ("cursor=WzFd", "cursor"), ("status=Exploded", "status")])
def test_bad_parameters_are_400_naming_them(api, query, parameter):
    body = api.get(f"/api/v1/sessions?{query}", expect=400)
    assert body["error"] == "bad_request" and f"`{parameter}`" in body["message"]


def cursor(*key) -> str:
    """A cursor as a client could craft it: any JSON, base64url without padding."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


LINE_ROUTES = ["/api/v1/ingest/errors", f"/api/v1/sessions/{DONE}/events", f"/api/v1/sessions/{DONE}/tool-calls"]
TIME_ROUTES = ["/api/v1/sessions", "/api/v1/agent-performance/deterministic/results"]


@pytest.mark.parametrize("path, crafted", [
    *[(p, "WzkyMjMzNzIwMzY4NTQ3NzU4MDhd") for p in LINE_ROUTES],          # [9223372036854775808]: past 64 bits
    *[(p, c) for p in LINE_ROUTES for c in (cursor(-1), cursor(True), cursor(1.5), cursor("1"), cursor(1, 2),
                                            cursor(10 ** 400))],
    *[(p, cursor(10 ** 400, "x")) for p in TIME_ROUTES],                 # no float holds it
    *[(p, c) for p in TIME_ROUTES for c in ("WzFlNDAwLCJ4Il0", cursor(1.0, 5), cursor(1.0), cursor(None, "x"),
                                            cursor(True, "x"), cursor([1], "x"), cursor(9.0, "x", 1))],   # [1e400,"x"]
    *[(p, c) for p in LINE_ROUTES + TIME_ROUTES for c in ("bnVsbA", "e30", "", "%%%", "W10")]])   # null, {}, []
def test_crafted_cursors_are_400_naming_the_cursor(api, path, crafted):
    reply = api.request(f"{path}?cursor={crafted}")
    if crafted == "":
        assert reply.status == 200           # no cursor: the first page
        return
    assert reply.status == 400, (reply.status, reply.body[:300])
    body = reply.json()
    assert body["error"] == "bad_request" and "`cursor`" in body["message"]


def test_cursors_at_the_edges_of_their_range_are_pages(api):
    assert api.get(f"/api/v1/ingest/errors?cursor={cursor(2 ** 63 - 1)}")["items"]
    assert api.get(f"/api/v1/sessions/{DONE}/events?cursor={cursor(0)}")["items"]
    assert api.get(f"/api/v1/sessions?cursor={cursor(1.7e308, 'x')}")["items"]
    assert api.get(f"/api/v1/sessions?cursor={cursor(-1.7e308, 'x')}")["items"] == []


def test_session_detail(api):
    got = api.get(f"/api/v1/sessions/{DONE}")
    assert got["summary"]["status"] == "Completed" and got["final_result"]["score"] == 1.0
    assert got["event_count"] == 3 and got["tool_call_count"] == 1
    kinds = {f["kind"]: f for f in got["files"]}
    assert set(kinds) == {"session", "events"} and kinds["events"]["lines_read"] == 3
    assert kinds["events"]["path"] == f"enhanced_otel_{DONE}.jsonl"
    assert kinds["session"]["path"] == f"session_{DONE}.json"
    assert api.get("/api/v1/sessions/nope", expect=404)["message"]


def test_events_in_file_order_with_pages(api):
    first = api.get(f"/api/v1/sessions/{DONE}/events?limit=2")
    rest = api.get(f"/api/v1/sessions/{DONE}/events?limit=2&cursor={first['next_cursor']}")
    items = first["items"] + rest["items"]
    assert rest["next_cursor"] is None
    assert [e["line"] for e in items] == [1, 2, 3]
    assert [e["event_type"] for e in items] == ["Prompt", "ToolInput", "ToolOutput"]
    assert items[1]["data"]["tool_input"]["tool_name"] == "sol_transfer"
    assert items[0]["timestamp"] == "2025-10-30T03:44:17.796472Z"       # as the line has it (fixtures.BASE_TIME)


def test_tool_calls_paired_with_duration(api):
    calls = api.get(f"/api/v1/sessions/{DONE}/tool-calls")["items"]
    assert len(calls) == 1
    call = calls[0]
    assert call["tool_name"] == "sol_transfer" and call["success"] is True
    assert call["input"] == {"amount": 300000000} and call["output"]
    assert call["duration_ms"] == pytest.approx(250, abs=0.01)
    open_call = api.get(f"/api/v1/sessions/{RUNNING}/tool-calls")["items"]
    assert open_call[0]["output"] is None and open_call[0]["ended_at"] is None


def test_ingest_status_and_errors(api):
    status = api.get("/api/v1/ingest/status")
    assert status["error_count"] == 1 and status["data_generation"] >= 1
    assert sum(f["files"] for f in status["files"]) == 9     # 3 benchmarks, 3 session files, 3 event logs
    errors = api.get("/api/v1/ingest/errors")["items"]
    assert len(errors) == 1
    e = errors[0]
    assert e["path"] == f"enhanced_otel_{RUNNING}.jsonl" and e["kind"] == "events" and e["line"] == 2
    assert e["byte_offset"] == len(fx.jsonl([fx.prompt_line("Send 0.3 SOL to the second wallet.", at=200)]))
    assert "JSON" in e["reason"]


# ---------------------------------------------------------------------- Part 3

@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", [f"/api/v1/benchmarks/{B301}/run", f"/api/v1/benchmarks/{B301}/stop/{DONE}",
                                  "/api/v1/agents/config", "/api/v1/agents/test", "/api/v1/benchmarks"])
def test_writes_are_405_read_only(api, method, path):
    reply = api.request(path, method=method, headers={"Content-Type": "application/json"}, body=b"{}")
    assert reply.status == 405 and "GET" in reply.headers["allow"]
    assert "read-only" in reply.json()["message"]


def test_sync_is_405_pointing_at_sighup(api):
    reply = api.request("/api/v1/sync", method="POST")
    assert reply.status == 405 and "SIGHUP" in reply.json()["message"]


def test_head_answers_like_get_without_body(api):
    get, head = api.request("/api/v1/benchmarks"), api.request("/api/v1/benchmarks", method="HEAD")
    assert head.status == 200 and head.body == b"" and head.etag == get.etag
    assert int(head.headers["content-length"]) == len(get.body)


def test_unknown_route_is_json_404(api):
    reply = api.request("/api/v1/nothing-here")
    assert reply.status == 404 and reply.json()["error"] == "not_found"


def test_no_answer_shows_where_files_are_on_this_machine(api, populated):
    """Files are named within their watched folder (with their kind), the database by its name."""
    root, _ = populated
    paths = ["/api/v1/health", "/api/v1/ingest/status", "/api/v1/ingest/errors", "/metrics",
             *[f"/api/v1/sessions/{x}" for x in (DONE, FAILED, RUNNING, FLOW, PATHID)]]
    for path in paths:
        reply = api.request(path)
        assert reply.status == 200, path
        assert str(root) not in reply.body.decode(), path
    assert api.get("/api/v1/health")["database"]["name"] == "reev.db"


def test_oversized_requests_are_json_414_and_431(api):
    cases = [(f"/api/v1/sessions/{'x' * 9000}", {}, 414, "uri_too_long"),
             (f"/api/v1/sessions?agent={'x' * 9000}", {}, 414, "uri_too_long"),
             ("/api/v1/health", {f"X-Field-{i}": "1" for i in range(70)}, 431, "headers_too_large"),
             ("/api/v1/health", {"X-Big": "x" * 40000}, 431, "headers_too_large")]
    for path, headers, status, kind in cases:
        reply = api.request(path, headers=headers)
        assert reply.status == status and reply.headers["content-type"] == "application/json", reply
        assert reply.json()["error"] == kind and reply.json()["message"]


# What Granian's HTTP layer (hyper) refuses before the app sees it, which docs/api.md lists as
# answered with no body and the connection closed: its limits are hyper's own, which Granian 2.8
# does not expose, so the app's are set below them.
REFUSED_BY_THE_HTTP_LAYER = {
    "negative Content-Length": (400, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    "HTTP/0.9": (400, b"GET /api/v1/health\r\n\r\n"),
    "folded header": (400, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
    "header without a colon": (400, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n"),
    "NUL in the target": (400, b"GET /api/v1/he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n"),
    "TLS handshake": (400, bytes.fromhex("16030100a5010000a10303") + bytes(100)),
    "target of 65 536 bytes": (414, b"GET /" + b"a" * 65535 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    "101 header fields": (431, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100))
                          + b"\r\n"),
}


@pytest.mark.parametrize("case", REFUSED_BY_THE_HTTP_LAYER)
def test_what_the_http_layer_refuses_has_no_body_and_closes_the_connection(api, case):
    status, request = REFUSED_BY_THE_HTTP_LAYER[case]
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(request)
        reply = read_reply(s)
        assert (reply.status, reply.headers.get("content-length"), reply.headers.get("connection"),
                reply.body) == (status, "0", "close", b""), reply
        assert s.recv(1) == b"", "the connection is closed"


def test_just_inside_the_http_layers_limits_the_answer_is_json(api):
    """The app's limits are below hyper's: a target a byte short of its limit, and 100 fields
    (Host and 99 more), reach the app and get its JSON 414 and 431."""
    for request, status in ((b"GET /" + b"a" * 65500 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
                            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(99))
                             + b"\r\n", 431)):
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
            s.sendall(request)
            reply = read_reply(s)
        assert reply.status == status and reply.headers["content-type"] == "application/json", reply
        assert json.loads(reply.body)["message"]


def test_a_404_does_not_echo_a_long_id_back(api):
    long_id = "a" * 8000
    for path in (f"/api/v1/sessions/{long_id}", f"/api/v1/benchmarks/{long_id}", f"/api/v1/nothing/{long_id}",
                 f"/api/v1/agents/config/{long_id}", f"/api/v1/benchmarks/x/status?agent={long_id}"):
        reply = api.request(path)
        assert reply.status == 404 and len(reply.body) < 300, (path, reply.body[:400])
        assert " characters)" in reply.json()["message"]


def test_options_and_405_name_the_same_methods(api):
    options = api.request("/api/v1/benchmarks", method="OPTIONS")
    assert options.status == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS"
    post = api.request("/api/v1/benchmarks", method="POST")
    assert post.status == 405 and post.headers["allow"] == "GET, HEAD, OPTIONS"


def test_errors_to_head_have_no_body(api):
    for path, status in (("/api/v1/sessions/nope", 404), (f"/api/v1/sessions/{'x' * 9000}", 414)):
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
            s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            reply = read_reply(s, body=False)
            s.settimeout(0.5)
            try:
                extra = s.recv(100)
            except TimeoutError:
                extra = b""
        assert reply.status == status and reply.body == b"" and extra == b"", (path, reply, extra)


def test_cors_preflight_and_simple_request(api):
    reply = api.request("/api/v1/benchmarks", method="OPTIONS", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "content-type"})
    assert reply.status in (200, 204)
    assert reply.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")
    assert "content-type" in reply.headers["access-control-allow-headers"].lower()
    reply = api.request("/api/v1/benchmarks", headers={"Origin": "http://localhost:5173"})
    assert reply.status == 200 and reply.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")


def test_cors_origins_can_be_restricted(populated, tmp_path):
    _, db = populated
    server = Api(db, tmp_path / "api.log", "--cors-origin", "http://ui.example")
    try:
        ok = server.request("/api/v1/benchmarks", method="OPTIONS", headers={
            "Origin": "http://ui.example", "Access-Control-Request-Method": "GET"})
        assert ok.status in (200, 204) and ok.headers["access-control-allow-origin"] == "http://ui.example"
        other = server.request("/api/v1/benchmarks", method="OPTIONS", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
        assert other.headers.get("access-control-allow-origin") != "http://evil.example"
        assert other.status == 400 and other.headers["content-type"] == "application/json"
        assert other.json()["error"] == "bad_request" and "CORS" in other.json()["message"]
    finally:
        server.close()


def test_if_none_match_on_a_route_without_an_etag_is_ignored(api):
    """Litestar's own routes (the OpenAPI document) carry no ETag: a conditional request is a
    plain GET, not a 500."""
    assert api.request("/schema/openapi.json", headers={"If-None-Match": "*"}).status == 200
    assert api.request("/schema/openapi.json", headers={"If-None-Match": 'W/"g1-0.1.0"'}).status == 200


@pytest.mark.parametrize("path", ["/api/v1/benchmarks", f"/api/v1/benchmarks/{B301}", "/api/v1/agent-performance",
                                  f"/api/v1/benchmarks/x/status/{DONE}", f"/api/v1/sessions/{DONE}/events",
                                  "/api/v1/health", "/api/v1/ingest/status"])
def test_etag_then_304_without_body(api, path):
    first = api.request(path)
    assert first.status == 200 and first.etag
    again = api.request(path, headers={"If-None-Match": first.etag})
    assert again.status == 304 and again.body == b"" and again.etag == first.etag
    assert api.request(path, headers={"If-None-Match": 'W/"other"'}).status == 200


def test_openapi_describes_every_route(api):
    doc = api.get("/schema/openapi.json")
    for path in ("/api/v1/health", "/api/v1/benchmarks", "/api/v1/benchmarks/{benchmark_id}",
                 "/api/v1/benchmarks/{benchmark_id}/status/{execution_id}", "/api/v1/agent-performance",
                 "/api/v1/agents", "/api/v1/execution-logs/{benchmark_id}", "/api/v1/transaction-logs/{benchmark_id}",
                 "/api/v1/flows/{session_id}", "/api/v1/sessions", "/api/v1/sessions/{execution_id}/events",
                 "/api/v1/sessions/{execution_id}/tool-calls", "/api/v1/ingest/status", "/api/v1/ingest/errors"):
        assert path in doc["paths"], path
    state = doc["components"]["schemas"]["ExecutionState"]
    assert set(state["required"]) >= {"execution_id", "status", "progress", "result_data"}


def test_schemathesis_finds_no_server_error_or_schema_violation(api, tmp_path):
    """Property-based: every operation, generated inputs, responses checked against the schema."""
    exe = Path(sys.executable).parent / "schemathesis"
    proc = subprocess.run(
        [str(exe), "run", f"{api.base}/schema/openapi.json", "--checks",
         "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
         "--max-examples", "25", "--phases", "coverage,fuzzing", "--seed", "1", "--workers", "2",
         "--exclude-path", "/api/v1/stream"],     # endless by design: tests/test_live_feed.py
        capture_output=True, text=True, timeout=300, env=clean_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_query_past_its_time_limit_is_503(workspace, run_once, tmp_path):
    workspace.append_events("long", [fx.tool_input_line(f"tool_{i}", at=i) for i in range(3000)])
    run_once()
    server = Api(workspace.db_path, tmp_path / "api.log", "--query-timeout", "0.000001")
    try:
        reply = server.request("/api/v1/sessions/long/events?limit=500")
        assert reply.status == 503 and "longer than" in reply.json()["message"]
        assert server.request("/api/v1/health").status == 200, "the worker is still there"
    finally:
        server.close()


def test_the_api_never_creates_the_wal_and_shm_files(workspace, run_once, tmp_path):
    """A database without its -wal and -shm (copied, or restored from a backup, in a folder the
    API could write): the API answers 503 until the daemon has opened it, and creates nothing."""
    workspace.write_benchmark(B301, fx.benchmark_yaml(B301))
    run_once()
    state = workspace.db_path.parent
    for suffix in ("-wal", "-shm"):
        os.unlink(f"{workspace.db_path}{suffix}")     # after a clean stop, the WAL holds nothing
    before = sorted(os.listdir(state))
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        body = server.get("/api/v1/benchmarks", expect=503)
        assert "reev-ingestd has not opened" in body["message"] and str(state) not in body["message"]
        health = server.get("/api/v1/health")
        assert health["status"] == "degraded" and health["database"]["reachable"] is False
        assert sorted(os.listdir(state)) == before
        run_once()
        wait_for(lambda: server.request("/api/v1/benchmarks").status == 200,
                 what="the database once the daemon opened it")
        assert [b["id"] for b in server.get("/api/v1/benchmarks")] == [B301]
    finally:
        server.close()


@pytest.mark.parametrize("make", ["fifo", "fifo beside"])
def test_the_api_answers_503_for_what_is_not_a_database_file(workspace, run_once, tmp_path, make):
    """A FIFO as --db (or where its -wal should be) made every request wait for ever: SQLite's
    open() of a FIFO waits for a writer. It is refused at once, saying what it is."""
    if make == "fifo":
        db = tmp_path / "fifo.db"
        os.mkfifo(db)
    else:
        run_once()
        db = workspace.db_path
        os.unlink(f"{db}-shm")
        os.mkfifo(f"{db}-shm")
    what = "fifo.db is a FIFO" if make == "fifo" else "reev.db-shm is a FIFO"
    server = Api(db, tmp_path / "api.log", "--query-timeout", "1")
    try:
        health = server.get("/api/v1/health")
        assert health["status"] == "degraded" and any(what in r for r in health["reasons"]), health
        body = server.get("/api/v1/benchmarks", expect=503, timeout=5)
        assert what in body["message"] and str(tmp_path) not in body["message"], body
    finally:
        server.close()


def replace_database(db: Path, other: Path):
    """Put the database `other` where `db` is, as an operator restoring one would (the daemon
    stopped): its -wal and -shm first, then the file, whose new inode the API reopens."""
    for suffix in ("-wal", "-shm", ""):
        os.replace(f"{other}{suffix}", f"{db}{suffix}")


def test_an_etag_is_of_one_database(workspace, run_once, tmp_path):
    """Generations count from 0 in every database: an ETag made of the generation alone matched
    another database at the same generation, and its If-None-Match got 304 for another body.
    The ETag carries the database's identity (meta.database_id, random, made with it)."""
    workspace.write_benchmark(B301, fx.benchmark_yaml(B301))
    run_once()
    other = tmp_path / "other"
    (other / "benchmarks").mkdir(parents=True)
    (other / "sessions").mkdir()
    (other / "benchmarks" / f"{B302}.yml").write_text(fx.benchmark_yaml(B302))
    run_once(base_args=["--sessions-dir", str(other / "sessions"), "--benchmarks-dir", str(other / "benchmarks"),
                        "--db", str(other / "reev.db")])
    assert workspace.db.generation() == Db(other / "reev.db").generation(), "two databases at one generation"
    assert workspace.db.meta("database_id") != Db(other / "reev.db").meta("database_id")
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        paths = ["/api/v1/benchmarks", "/api/v1/agents", "/api/v1/agent-performance", "/api/v1/health"]
        before = {path: server.request(path) for path in paths}
        assert [b["id"] for b in before["/api/v1/benchmarks"].json()] == [B301]
        replace_database(workspace.db_path, other / "reev.db")
        for path in paths:
            reply = server.request(path, headers={"If-None-Match": before[path].etag})
            assert reply.status == 200 and reply.etag != before[path].etag, (path, reply.status, reply.etag)
        assert [b["id"] for b in server.get("/api/v1/benchmarks")] == [B302]
    finally:
        server.close()


# ---------------------------------------------------------------------- with the live daemon

def test_missing_database_then_recovery_without_restart(workspace, live_daemon, tmp_path):
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        health = server.get("/api/v1/health")
        assert health["status"] == "degraded" and health["database"]["reachable"] is False
        body = server.get("/api/v1/benchmarks", expect=503)
        assert body["error"] == "unavailable" and "reev-ingestd" in body["message"]
        assert str(tmp_path) not in body["message"] and str(tmp_path) not in json.dumps(health)
        workspace.write_benchmark(B301, fx.benchmark_yaml(B301))
        live_daemon()
        wait_for(lambda: server.request("/api/v1/benchmarks").status == 200 and server.get("/api/v1/benchmarks"),
                 timeout=15, what="benchmarks after the daemon created the database")
        assert server.get("/api/v1/health")["status"] == "healthy"
    finally:
        server.close()


def test_a_database_file_replaced_under_the_api_is_read_from_then_on(tmp_path):
    """Another database put in place of the one the API reads (the daemon stopped, the file and
    its -wal and -shm replaced by rename, as a restore from a backup does): the API answers from
    the new file, without a restart."""
    def database(name: str) -> Path:
        root = tmp_path / name
        (root / "sessions").mkdir(parents=True)
        (root / "benchmarks").mkdir()
        (root / "sessions" / f"enhanced_otel_{name}-run.jsonl").write_bytes(fx.jsonl([fx.prompt_line("p", at=0)]))
        proc = subprocess.run(daemon_command() + ["--sessions-dir", str(root / "sessions"), "--benchmarks-dir",
                                                  str(root / "benchmarks"), "--db", str(root / "reev.db"), "--once"],
                              capture_output=True, text=True, env=clean_env(), timeout=60)
        assert proc.returncode == 0, proc.stderr
        return root / "reev.db"

    def put(source: Path, target: Path):
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{source}{suffix}").exists():
                os.replace(f"{source}{suffix}", f"{target}{suffix}")
            else:
                Path(f"{target}{suffix}").unlink(missing_ok=True)

    served = tmp_path / "state" / "reev.db"
    served.parent.mkdir()
    put(database("old"), served)
    new = database("new")
    server = Api(served, tmp_path / "api.log")
    try:
        def ids():
            return [x["execution_id"] for x in server.get("/api/v1/sessions")["items"]]

        assert ids() == ["old-run"]
        put(new, served)
        wait_for(lambda: ids() == ["new-run"], timeout=10, what="the API to read the new file")
        assert server.get("/api/v1/sessions/old-run", expect=404)
        assert server.get("/api/v1/health")["database"]["reachable"] is True
    finally:
        server.close()


def test_scoped_etags_hold_while_other_executions_change(workspace, live_daemon, db, tmp_path):
    """A poller of one execution, one benchmark or the agents' results gets 304 while the daemon
    ingests other executions, and a new ETag as soon as what it shows changes."""
    workspace.write_benchmark(B301, fx.benchmark_yaml(B301))
    workspace.write_benchmark(B302, fx.benchmark_yaml(B302, prompt=FLOW_PROMPT))
    workspace.append_events("x", [fx.prompt_line("Send 0.3 SOL to the second wallet.", at=0)])
    workspace.write_session("x", fx.session_doc("inner-x", benchmark_id=B301, score=1.0))
    workspace.append_events("y", [fx.prompt_line(FLOW_PROMPT, at=10)])
    daemon = live_daemon()
    server = Api(workspace.db_path, tmp_path / "api.log")
    scoped = {"status": f"/api/v1/benchmarks/{B301}/status/x", "logs": f"/api/v1/execution-logs/{B301}?execution_id=x",
              "events": "/api/v1/sessions/x/events", "tool-calls": "/api/v1/sessions/x/tool-calls",
              "flow": "/api/v1/flows/x", "benchmark": f"/api/v1/benchmarks/{B301}",
              "performance": "/api/v1/agent-performance", "results": "/api/v1/agent-performance/deterministic/results"}
    try:
        daemon.wait_for(lambda: db.event_count("y") == 1 and db.execution("x")["status"] == "Completed",
                        what="x and y ingested")
        tags = {name: server.request(path).etag for name, path in scoped.items()}
        everything = server.request("/api/v1/sessions").etag

        def changed() -> set[str]:
            return {name for name, path in scoped.items()
                    if server.request(path, headers={"If-None-Match": tags[name]}).status != 304}

        def ingest(what: str, write, done):
            generation = db.generation()
            write()
            daemon.wait_for(lambda: done() and db.generation() > generation, what=what)

        # y (another benchmark, still running) grows: none of x's, 301's or the results' answers change
        ingest("y's new line", lambda: workspace.append_events("y", [fx.tool_input_line("jupiter_swap", at=11)]),
               lambda: db.event_count("y") == 2)
        assert server.request("/api/v1/sessions", headers={"If-None-Match": everything}).status == 200
        assert changed() == set()
        # y finishes: the results change, x's and 301's answers do not
        ingest("y finished", lambda: workspace.write_session("y", fx.session_doc("inner-y", benchmark_id=B302)),
               lambda: db.execution("y")["status"] == "Completed")
        assert changed() == {"performance", "results"}
        tags.update({name: server.request(scoped[name]).etag for name in ("performance", "results")})
        # x grows: x's own answers change; its benchmark's list (status, time, score) does not
        ingest("x's new line", lambda: workspace.append_events("x", [fx.tool_input_line("sol_transfer", at=1)]),
               lambda: db.event_count("x") == 2)
        assert changed() == {"status", "logs", "events", "tool-calls", "flow"}
        tags.update({name: server.request(path).etag for name, path in scoped.items()})
        # x's score changes: everything that shows it
        ingest("x's new score", lambda: workspace.write_session("x", fx.session_doc("inner-x", benchmark_id=B301,
                                                                                     score=0.5)),
               lambda: db.execution("x")["score"] == 0.5)
        assert changed() == set(scoped)
        # a benchmark definition changes: the answers that show it (x's progress counts its flow)
        tags.update({name: server.request(path).etag for name, path in scoped.items()})
        ingest("301 redefined", lambda: workspace.write_benchmark(B301, fx.benchmark_yaml(B301, description="new")),
               lambda: db.scalar("SELECT description FROM benchmarks WHERE id = ?", (B301,)) == "new")
        assert {"benchmark", "status", "logs"} <= changed()
    finally:
        server.close()

def test_new_etag_when_data_arrives(workspace, live_daemon, tmp_path):
    workspace.append_events(DONE, [fx.prompt_line("hello", at=0)])
    daemon = live_daemon()
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        path = f"/api/v1/sessions/{DONE}/events"
        daemon.wait_for(lambda: server.request(path).status == 200, what="the execution")
        tag = server.request(path).etag
        workspace.append_events(DONE, [fx.tool_input_line("sol_transfer", at=1)])
        daemon.wait_for(lambda: server.request(path, headers={"If-None-Match": tag}).status == 200,
                        what="a new ETag")
        assert len(server.get(path)["items"]) == 2
    finally:
        server.close()


def test_pagination_stays_stable_while_new_sessions_arrive(workspace, live_daemon, tmp_path):
    def write(i: int):
        workspace.write_session(f"page-{i:03d}", fx.session_doc(f"s{i}", start_time=1_761_000_000 + i * 10))

    for i in range(30):
        write(i)
    daemon = live_daemon()
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        daemon.wait_for(lambda: server.request("/api/v1/sessions?limit=100").status == 200
                        and len(server.get("/api/v1/sessions?limit=100")["items"]) == 30, what="30 sessions")
        page = server.get("/api/v1/sessions?limit=10")
        seen = [s["execution_id"] for s in page["items"]]
        for i in range(30, 50):          # newer runs arrive between page requests
            write(i)
        daemon.wait_for(lambda: len(server.get("/api/v1/sessions?limit=100")["items"]) == 50, what="50 sessions")
        cursor = page["next_cursor"]
        while cursor:
            page = server.get(f"/api/v1/sessions?limit=10&cursor={cursor}")
            seen += [s["execution_id"] for s in page["items"]]
            cursor = page["next_cursor"]
        assert seen == [f"page-{i:03d}" for i in range(29, -1, -1)]
    finally:
        server.close()


def test_reading_while_the_daemon_writes(workspace, live_daemon, tmp_path):
    """The UI's polling from several clients while the daemon back-fills and tails: no 5xx."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from perf.corpus import write_corpus as generate

    daemon = live_daemon(log_level="info")
    server = Api(workspace.db_path, tmp_path / "api.log")
    statuses: dict[int, int] = {}
    failures: list[str] = []          # resets, timeouts, anything but an answer: each one counts
    stop = threading.Event()

    def poll():
        paths = ["/api/v1/agent-performance", "/api/v1/sessions?limit=20", "/api/v1/ingest/status",
                 "/api/v1/benchmarks", "/api/v1/health"]
        while not stop.is_set():
            for p in paths:
                try:
                    s = server.request(p).status
                except Exception as e:      # noqa: BLE001 - a poller that dies silently proves nothing
                    failures.append(f"{p}: {type(e).__name__}: {e}")
                    continue
                statuses[s] = statuses.get(s, 0) + 1

    pollers = [threading.Thread(target=poll) for _ in range(6)]
    try:
        for t in pollers:
            t.start()
        generate(workspace.sessions, workspace.benchmarks, 300, seed=7)
        daemon.wait_for(lambda: server.get("/api/v1/sessions?limit=500") and
                        len(server.get("/api/v1/sessions?limit=500")["items"]) == 300,
                        timeout=60, what="300 sessions ingested")
    finally:
        stop.set()
        for t in pollers:
            t.join(15)
        server.close()
    assert not any(t.is_alive() for t in pollers), "a poller never came back from its request"
    assert failures == [], f"{len(failures)} requests failed: {failures[:10]}"
    assert sum(statuses.values()) > 100
    assert set(statuses) <= {200}, statuses
    assert "BusyError" not in daemon.stderr() and "database error" not in daemon.stderr()


def test_a_worker_goes_when_its_server_is_gone_whatever_handler_it_inherited():
    """Granian forks its workers, and a worker runs the server's own SIGTERM handler until its
    event loop takes the signal over: the signal that tells it its server is gone (or the one it
    sends itself when the server went before it asked for that signal) must not land there."""
    script = ("import os, signal\n"
              "signal.signal(signal.SIGTERM, lambda *_: None)      # as inherited from the server\n"
              "from core.parentage import die_with_parent\n"
              "die_with_parent(os.getppid() + 1)                 # a server other than its parent: gone\n"
              "print('still running', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          env=clean_env())
    assert proc.returncode == -signal.SIGKILL and "still running" not in proc.stdout, (proc.returncode, proc.stdout)


def test_a_worker_does_not_outlive_a_killed_server(tmp_path):
    """SIGKILL leaves reev-api no time to stop its worker process; the worker must not go on
    serving the port alone (it asks Linux for SIGKILL when its parent dies)."""
    server = Api(tmp_path / "reev.db", tmp_path / "api.log")
    try:
        workers = server.workers()
        assert workers, "reev-api runs its server in worker processes"
        server.proc.kill()
        server.proc.wait()
        wait_for(lambda: not any(alive(w) for w in workers), timeout=10, what="the worker to exit")
        with pytest.raises(OSError):
            server.request("/api/v1/health", timeout=2)
    finally:
        server.close()
