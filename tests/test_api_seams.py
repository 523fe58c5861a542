"""The API's internal seams, each defined once: typed rows whose fields are their statements'
columns (api/db.py), typed and bounded query parameters, the run-status vocabulary (core),
the reading of a session file's tool records (api/render.py), and the ingest lag (the
daemon's definition, repeated in the API's SQL)."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from pathlib import Path
from typing import get_args

import pytest

from api import db as rows
from api import edge
from api import models as m
from api import render
from api.db import open_database
from core.run_status import STATUSES
from tests import fixtures as fx
from tests.api_client import Api
from tests.conftest import clean_env, daemon_command

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- typed rows

def test_every_query_returns_rows_whose_fields_are_its_columns(workspace, run_once):
    """Each statement is run once on a database the daemon wrote, with rows to return, so
    the first-use check of its columns against its row kind runs for all of them."""
    workspace.append_events("with-events", [fx.prompt_line("p", at=1), fx.tool_input_line("t", at=2),
                                            fx.tool_output_line(True, {"ok": 1}, at=3)])
    workspace.write_session("with-events", fx.session_doc("inner"))
    workspace.append_raw(workspace.events_path("bad"), b'{"timestamp": "oops\n')
    (workspace.benchmarks / "301-test-transfer.yml").write_text(fx.benchmark_yaml("301-test-transfer"))
    run_once()
    with open_database(workspace.db_path).snapshot() as q:
        run = q.execution("with-events")
        assert isinstance(run, rows.RunRow) and run.execution_id == "with-events" and run.result_doc
        got = {
            "benchmarks": q.benchmarks(10), "benchmark": [q.benchmark("301-test-transfer")],
            "newest": [q.newest_execution("301-test-transfer", None),
                       q.newest_execution("301-test-transfer", "deterministic")],
            "recent": q.recent_executions("301-test-transfer", 10),
            "sessions": q.sessions(benchmark_id=None, agent=None, status=None, after=None, limit=10),
            "stats": q.agent_stats(), "results": q.finished_results("deterministic", None, 10),
            "events": q.events(run.id, 0, 10), "tool_calls": q.tool_calls(run.id, 0, 10),
            "files": q.source_files("with-events"), "counts": q.file_counts(), "errors": q.errors(None, 10),
            "changes": q.changes_after(0, None),
        }
        assert q.meta().data_generation
    for name, found in got.items():
        assert found and all(isinstance(r, rows.Row) for r in found), name


def test_a_row_kind_that_is_not_its_statements_columns_is_an_error_at_first_use(workspace, run_once):
    class Swapped(rows.Row):
        state: str
        kind: str
        files: int
        pending_bytes: int

    workspace.append_events("x", [fx.prompt_line("p")])
    run_once()
    with open_database(workspace.db_path).snapshot() as q:
        with pytest.raises(TypeError, match="Swapped"):
            q.rows(Swapped, "SELECT kind, state, count(*) AS files, 0 AS pending_bytes FROM files GROUP BY kind, state")


# ---------------------------------------------------------------------- typed parameters

def test_limits_are_integers_with_their_bounds_in_the_openapi_document(workspace, run_once, tmp_path):
    for n in range(3):
        workspace.append_events(f"run-{n}", [fx.prompt_line(f"p{n}")])
    run_once()
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        doc = server.get("/schema/openapi.json")
        for path, high in (("/api/v1/benchmarks", 10000), ("/api/v1/sessions", 500),
                           ("/api/v1/sessions/{execution_id}/events", 500), ("/api/v1/ingest/errors", 500),
                           ("/api/v1/agent-performance", 500)):
            limit = next(p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "limit")
            assert limit["schema"]["type"] == "integer", (path, limit)
            assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, high), (path, limit)
        # what a refused limit is told stays what the hand check said
        for query, message in (("limit=banana", "must be an integer, got 'banana'"),
                               ("limit=1.5", "must be an integer, got '1.5'"),
                               ("limit=0", "must be between 1 and 500, got 0"),
                               ("limit=501", "must be between 1 and 500, got 501"),
                               ("limit=" + "9" * 30, "must be between 1 and 500, got " + "9" * 30),
                               ("limit=" + "x" * 100, "must be an integer, got '" + "x" * 64 + "'... (100 characters)")):
            body = server.get(f"/api/v1/sessions?{query}", expect=400)
            assert body == {"error": "bad_request", "message": f"query parameter `limit` {message}"}, query
        assert server.get("/api/v1/benchmarks?limit=10001", expect=400)["message"] == \
            "query parameter `limit` must be between 1 and 10000, got 10001"
        # an integer is ASCII digits, leading zeros and all; not what int() or a lax
        # conversion also reads (fractions, exponents, signs, spaces, other digits, underscores)
        for query in ("1e2", "5.0", "0.5e1", "4.9999999999999999", "5e2", "%205", "5%20", "+5", "%2B5", "-1",
                      "%EF%BC%95", "%D9%A3", "1_0", "0x10", "%E2%81%B5"):
            body = server.get(f"/api/v1/sessions?limit={query}", expect=400)
            given = urllib.parse.unquote_plus(query)
            assert body["message"] == f"query parameter `limit` must be an integer, got {given!r}", query
        assert len(server.get("/api/v1/sessions?limit=02")["items"]) == 2
        assert server.get("/api/v1/benchmarks?limit=0010000") == []
        # a number out of range is repeated as any input is: at most ECHOED (64) characters
        assert server.get("/api/v1/sessions?limit=" + "9" * 4000, expect=400)["message"] == \
            "query parameter `limit` must be between 1 and 500, got " + "9" * 64 + "... (4000 characters)"
        # an empty parameter is an absent one, as the hand check had it: a URL template's blanks
        everything = server.get("/api/v1/sessions")
        assert len(everything["items"]) == 3
        for query in ("limit=", "limit=&cursor=", "status=&limit=&agent=", "benchmark_id=&limit=", "cursor="):
            assert server.get(f"/api/v1/sessions?{query}") == everything, query
        assert server.get("/api/v1/sessions?limit=&limit=1")["items"] == everything["items"][:1]
        assert server.get("/api/v1/sessions?limit&status")["items"] == everything["items"]
        # a value that ends in "=" is a value: a filter, a cursor with base64 padding
        assert server.get("/api/v1/sessions?agent=deterministic=")["items"] == []
        assert server.get("/api/v1/sessions?limit=5=", expect=400)
    finally:
        server.close()


def test_only_parameters_with_an_empty_value_are_dropped():
    assert edge.without_empty_parameters(b"cursor=WzE=&limit=&agent=x=&status&b=1") == b"cursor=WzE=&agent=x=&b=1"
    assert edge.without_empty_parameters(b"limit=5") == b"limit=5"
    assert edge.without_empty_parameters(b"&&limit=&") == b""


# ---------------------------------------------------------------------- one vocabulary

def test_the_run_status_vocabulary_is_core_s_everywhere():
    schema = (ROOT / "schema.sql").read_text()
    check = re.search(r"CHECK \(status IN \(([^)]*)\)\)", schema)
    assert check, "schema.sql: the executions.status CHECK"
    assert tuple(v.strip().strip("'") for v in check[1].split(",")) == STATUSES
    assert get_args(m.SessionSummary.__annotations__["status"]) == STATUSES
    assert set(render._STATUS_ICON) == set(STATUSES)
    assert render._FINAL_IDS == frozenset(STATUSES)


# ---------------------------------------------------------------------- one reading of tool records

def tool_record(name: str, start) -> dict:
    return {"tool_name": name, "start_time": start, "end_time": 1_761_795_830, "status": "success",
            "params": {"n": 1}, "result": "ok"}


def test_the_flow_of_a_run_without_events_shows_the_tool_records_the_trace_shows(workspace, run_once, tmp_path):
    """A session file only: its flow's tool calls are its final_result's tool records, read as
    the trace reads them (tools and data.tools, each record once). The flow read only `tools`,
    and failed on a start_time no float holds."""
    shared, other = tool_record("jupiter_swap", 1_761_795_825), tool_record("sol_transfer", 1_761_795_827)
    huge = tool_record("spl_transfer", 10 ** 400)
    workspace.write_session("tools", fx.session_doc("inner-tools", result_tools=[shared, huge],
                                                    data_tools=[shared, other]))
    run_once()
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        flow = server.get("/api/v1/flows/tools")
        trace = server.get("/api/v1/execution-logs/301-test-transfer?execution_id=tools")["trace"]
    finally:
        server.close()
    names = [c["tool_name"] for c in flow["tool_calls"]]
    assert names == ["jupiter_swap", "spl_transfer", "sol_transfer"] and flow["metadata"]["tool_count"] == 3
    assert "Tools (3)" in trace
    assert flow["tool_calls"][1]["started_at"] is None and flow["tool_calls"][1]["duration_ms"] is None


def test_tool_records_are_read_once_for_both_renderings():
    fr = {"tools": {"tool_name": "lone"}, "data": {"tools": [{"tool_name": "a"}, {"tool_name": "lone"}]}}
    records, warnings = render.tool_records(fr)
    assert [r["tool_name"] for r in records] == ["lone", "a"] and warnings == []
    assert render.tool_records({"tools": 5})[1] == ["⚠️ tools has an unexpected type (number); not shown"]
    assert render.tool_records(None) == ([], [])


# ---------------------------------------------------------------------- one ingest lag

def test_the_api_s_pending_bytes_are_the_daemon_s_lag(workspace, run_once, tmp_path):
    partial = b'{"event_type": "StepComp'
    workspace.append_raw(workspace.events_path("x"), fx.jsonl([fx.prompt_line("p")]) + partial)
    workspace.append_events("y", [fx.prompt_line("q")])
    run_once()
    proc = subprocess.run(daemon_command() + ["status", "--db", str(workspace.db_path), "--json"],
                          capture_output=True, text=True, env=clean_env(), timeout=30)
    lag = json.loads(proc.stdout)["lag_bytes"]
    server = Api(workspace.db_path, tmp_path / "api.log")
    try:
        status = server.get("/api/v1/ingest/status")
    finally:
        server.close()
    assert status["pending_bytes"] == lag == len(partial)
    with open_database(workspace.db_path).snapshot() as q:
        assert sum(c.pending_bytes for c in q.file_counts()) == lag

