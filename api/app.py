"""The Litestar application: one handler per resource, typed msgspec responses.

Only reads: the database is opened read-only (api/db.py) and no route writes.
"""

import base64
import hashlib
import logging
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Litestar, Request, Response, get
from litestar.response import Stream
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin

from api import models as m
from api import render
from api.db import Database, DatabaseUnavailable, Queries, QueryTimeout
from api.edge import Edge
from api.metrics import CONTENT_TYPE, ApiMetrics, RequestMetrics
from api.stream import (EVENT_TYPES, GenerationWatcher, StreamFilter, StreamSlots, TooManyStreams, event_stream,
                        parse_event_id, start_of_stream, take_a_stream_slot)
from core import heartbeat
from core.ids import classify_benchmark_file, classify_session_file, normalise_benchmark_id
from core.notify import Notifier
from core.run_status import progress
from core.timestamps import iso

log = logging.getLogger("reev.api")

try:
    VERSION = version("reev-ingest")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0.0.0"

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
READ_ONLY_MESSAGE = ("this API is read-only: runs are started with the reev runner, and "
                     "reev-ingestd picks up what it writes")
SYNC_MESSAGE = ("reev-ingestd follows the files continuously; for a full rescan, "
                "run `systemctl reload reev-ingestd` (SIGHUP)")
ALLOW = "GET, HEAD, OPTIONS"
RESPONSES = {
    304: ResponseSpec(None, description="Not modified: If-None-Match matched the current ETag"),
    400: ResponseSpec(m.ErrorBody, description="A query parameter is invalid; the message names it"),
    404: ResponseSpec(m.ErrorBody, description="No such benchmark, execution or route"),
    503: ResponseSpec(m.ErrorBody, description="The database does not exist yet, or a query ran past its time limit"),
}


def read_route(path: str, *, etag: str = "generation", in_thread: bool = False):
    """A GET handler with the error responses documented, run on the event loop: most answers
    are a few rows found by key (a millisecond or two at a million sessions), and handing each
    request to a worker thread and back cost more than its queries (the status route: 2 680
    requests/s with the handler and the ETag hook in threads, 4 610 with both on the loop).
    `in_thread` is for the answers that grow with what they show (documents, pages of lines,
    rendered logs) or count a whole table: one of those must not hold up the small ones. The
    query timeout bounds both.

    `etag` says what the ETag stands for (see etag_for), checked before the handler runs:
    "generation" (any data), "execution:<param>" (the execution that parameter names),
    "benchmark:<param>" (that benchmark and its executions), "results" (finished executions);
    or "keyed": the handler computes it (responses that show the clock)."""
    return get(path, sync_to_thread=in_thread, opt={"etag": etag}, responses=RESPONSES)


# ---------------------------------------------------------------------- small helpers

class BadParameter(Exception):
    def __init__(self, name: str, problem: str):
        super().__init__(f"query parameter `{name}` {problem}")
        self.name = name


ECHOED = 64     # characters of a client's input that a message repeats


def echo(value: str) -> str:
    """A client's input quoted in a message, cut to ECHOED characters."""
    return repr(value) if len(value) <= ECHOED else repr(value[:ECHOED]) + f"... ({len(value)} characters)"


def int_param(value: str | None, name: str, default: int, low: int = 1, high: int = MAX_LIMIT) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadParameter(name, f"must be an integer, got {echo(value)}") from None
    if not low <= number <= high:
        raise BadParameter(name, f"must be between {low} and {high}, got {number}")
    return number


# What a cursor holds: the key of the last row of a page. A row id or line number is a
# SQLite integer (never negative here); a time is a finite float (msgspec refuses one out of
# range). A decoded cursor is one SQLite can bind as it is.
RowKey = tuple[Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]]
TimeKey = tuple[float, str]


def encode_cursor(*key) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(value: str | None, shape: type[tuple]) -> tuple | None:
    """An opaque cursor back into its key of this shape; a 400 naming `cursor` for anything
    else, before any query runs."""
    if value is None or value == "":
        return None
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), type=shape)
    except (ValueError, msgspec.DecodeError):     # binascii.Error and msgspec.ValidationError among them
        raise BadParameter("cursor", "is not a cursor this API returned") from None


def paged(rows: list[dict], limit: int, key) -> tuple[list[dict], str | None]:
    """Rows fetched with limit + 1: the page, and the cursor after its last row if more follow."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*key(rows[-1]))


def by_time(row: dict) -> tuple:
    return row["sort_at"], row["execution_id"]


def etag_of(q: Queries, version: str) -> str:
    """A data route's ETag: what the answer shows is at `version` (see etag_for) of this
    database (its identity: another database counts its generations from 0 too), as this
    release of the API renders it."""
    return f'W/"{version}-{q.database_id or ""}-{VERSION}"'


def etag_for(q: Queries, request: Request) -> str:
    """The ETag of a data route's answer: the generation of just what it shows when the route
    names a scope, so a poller of one execution gets 304 while others are being ingested;
    else the data generation. Read in the snapshot the answer is read in."""
    kind, _, param = request.route_handler.opt["etag"].partition(":")
    if kind == "execution":
        execution_id = request.path_params.get(param) or request.query_params.get(param)
        version = q.execution_version(execution_id) if execution_id else None
        if version is not None:    # (an unknown one is a 404 anyway)
            return etag_of(q, f"e{version[0]}.{version[1]}")
    elif kind == "benchmark":
        scope = "benchmark:" + normalise_benchmark_id(request.path_params[param])
        return etag_of(q, f"b{q.scope_generation(scope)}")
    elif kind == "results":
        return etag_of(q, f"r{q.scope_generation('results')}")
    return etag_of(q, f"g{q.generation()}")


def matches(request: Request, tag: str) -> bool:
    given = request.headers.get("if-none-match")
    return bool(given) and (given.strip() == "*" or tag in [t.strip() for t in given.split(",")])


def data_response(body: Any, tag: str) -> Response:
    return Response(content=body, headers={"ETag": tag})


def keyed_response(request: Request, body: Any, key: tuple) -> Response:
    """For responses that show the clock (health, ingest status): the ETag covers what a poller
    acts on (`key`: the database's identity and generation, heartbeat, state), not the timestamp
    that differs every call."""
    tag = 'W/"' + hashlib.blake2b(msgspec.json.encode(key), digest_size=12).hexdigest() + '"'
    if matches(request, tag):
        return Response(content=None, status_code=304, headers={"ETag": tag})
    return Response(content=body, headers={"ETag": tag})


def db_of(request: Request) -> Database:
    return request.app.state.db


def tags_of(text: str) -> list[str]:
    value = msgspec.json.decode(text)
    return [str(t) for t in value] if isinstance(value, list) else []


def not_found(message: str) -> NotFoundException:
    return NotFoundException(detail=message)


def file_name(path: str) -> str:
    """A tracked file as answers name it: by its name in the watched folder it is directly in
    (with its kind, that says which), never by where that folder is on this machine."""
    return path.rsplit("/", 1)[-1]


# ---------------------------------------------------------------------- converters

def summary_of(row: dict) -> m.SessionSummary:
    return m.SessionSummary(
        execution_id=row["execution_id"], recorded_session_id=row["recorded_session_id"],
        benchmark_id=row["benchmark_id"], agent_type=row["agent_type"], status=row["status"],
        created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]),
        last_event_at=iso(row["last_event_at"]), score=row["score"])


def progress_of(row: dict) -> float:
    return progress(row["status"], row["step_count"], row["flow_steps"])


def error_message_of(row: dict, result: dict | None) -> str | None:
    if row["status"] == "Timeout":      # the daemon's stale rule says why (core/run_status.py)
        return row["stale_reason"]
    if row["status"] != "Failed":
        return None
    for key in ("error", "error_message"):
        if isinstance(result, dict) and isinstance(result.get(key), str):
            return result[key]
    return f"run failed (score {row['score']})" if row["score"] is not None else "run failed"


def state_of(row: dict, result: dict | None) -> m.ExecutionState:
    return m.ExecutionState(
        execution_id=row["execution_id"], benchmark_id=row["benchmark_id"], agent=row["agent_type"],
        status=row["status"], created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]),
        progress=progress_of(row), error_message=error_message_of(row, result),
        result_data=result if row["success"] is not None else None,
        metadata=m.ExecutionMetadata(
            recorded_session_id=row["recorded_session_id"], event_count=row["event_count"],
            tool_call_count=row["tool_call_count"], step_count=row["step_count"],
            first_event_at=iso(row["first_event_at"]), last_event_at=iso(row["last_event_at"])))


def run_facts(row: dict) -> render.RunFacts:
    return render.RunFacts(
        execution_id=row["execution_id"], benchmark_id=row["benchmark_id"], agent_type=row["agent_type"],
        status=row["status"], score=row["score"], execution_time_ms=row["execution_time_ms"],
        created_at=row["created_at"], updated_at=row["updated_at"])


def ingest_error(r: dict, error_id: int) -> m.IngestError:
    name = file_name(r["path"])
    known = classify_session_file(name) or classify_benchmark_file(name)
    return m.IngestError(id=error_id, path=name, kind=known.kind if known else None, line=r["line"],
                         byte_offset=r["byte_offset"], reason=r["reason"], first_seen_at=iso(r["first_seen_at"]),
                         last_seen_at=iso(r["last_seen_at"]), count=r["count"])


def tool_call_of(row: dict) -> m.ToolCall:
    return m.ToolCall(
        tool_name=row["tool_name"], started_at=iso(row["started_at"]), ended_at=iso(row["ended_at"]),
        duration_ms=row["duration_ms"], input=m.raw_or_none(row["input"]), output=m.raw_or_none(row["output"]),
        success=None if row["success"] is None else bool(row["success"]), error_message=row["error_message"])


def session_tools(result: dict | None) -> list[m.ToolCall]:
    """Tool records of a session file (final_result.tools or .data.tools), for runs without events."""
    if not isinstance(result, dict):
        return []
    data = result.get("data") if isinstance(result.get("data"), dict) else {}
    tools = result.get("tools") if isinstance(result.get("tools"), list) else data.get("tools")
    calls = []
    for t in tools if isinstance(tools, list) else []:
        if not isinstance(t, dict):
            continue
        start, end = _number(t.get("start_time")), _number(t.get("end_time"))
        status = t.get("status")
        calls.append(m.ToolCall(
            tool_name=t.get("tool_name") if isinstance(t.get("tool_name"), str) else None,
            started_at=iso(start), ended_at=iso(end),
            duration_ms=(end - start) * 1000 if start is not None and end is not None else None,
            input=t.get("params"), output=t.get("result"),
            success=None if not isinstance(status, str) else status == "success",
            error_message=t.get("error") if isinstance(t.get("error"), str) else None))
    return calls


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def facts_of_calls(calls: list[m.ToolCall], rows: list[dict] | None) -> list[render.ToolCallFacts]:
    if rows is not None:
        return [render.ToolCallFacts(tool_name=r["tool_name"], started_at=r["started_at"], ended_at=r["ended_at"],
                                     duration_ms=r["duration_ms"],
                                     success=None if r["success"] is None else bool(r["success"]),
                                     error_message=r["error_message"]) for r in rows]
    return [render.ToolCallFacts(tool_name=c.tool_name, started_at=None, ended_at=None,
                                 duration_ms=c.duration_ms, success=c.success, error_message=c.error_message)
            for c in calls]


def load_run(q: Queries, execution_id: str) -> tuple[dict, dict | None]:
    row = q.execution(execution_id)
    if row is None:
        raise not_found(f"no execution with id {echo(execution_id)}")
    docs = q.execution_docs(execution_id)
    return row, m.decode_object(docs["result_doc"]) if docs else None


# ---------------------------------------------------------------------- Part 1: reev's UI

@read_route("/api/v1/health", etag="keyed")
def health(request: Request) -> Response[m.Health]:
    db = db_of(request)
    reasons, meta, reachable = [], {}, False
    try:
        with db.snapshot() as q:
            meta = q.meta()
        reachable = True
    except (DatabaseUnavailable, QueryTimeout) as e:
        reasons.append(str(e))
    now = time.time()
    beat = meta.get("heartbeat_at")
    age = heartbeat.age(beat, now)
    stale = heartbeat.problem(age) if reachable else None
    if stale:
        reasons.append(f"{stale}: is reev-ingestd running?" if age is not None else stale)
    body = m.Health(
        status="degraded" if reasons else "healthy", timestamp=iso(now), version=VERSION, reasons=reasons,
        database=m.DatabaseHealth(
            name=db.path.name, reachable=reachable, data_generation=meta.get("data_generation"),
            last_ingest_at=iso(meta.get("last_ingest_at")), heartbeat_at=iso(beat), heartbeat_age_seconds=age))
    return keyed_response(request, body, (body.status, reasons, meta.get("database_id"), meta.get("data_generation"),
                                          beat))


@read_route("/api/v1/benchmarks")
def list_benchmarks(request: Request, limit: str | None = None) -> Response[list[m.Benchmark]]:
    n = int_param(limit, "limit", 1000, high=10000)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        rows = q.benchmarks(n)
    return data_response([m.Benchmark(id=r["id"], description=r["description"], tags=tags_of(r["tags"]),
                                      prompt=r["prompt"]) for r in rows], tag)


@read_route("/api/v1/benchmarks/{benchmark_id:str}", etag="benchmark:benchmark_id")
def benchmark_detail(request: Request, benchmark_id: str) -> Response[m.BenchmarkDetail]:
    bench_id = normalise_benchmark_id(benchmark_id)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        bench = q.benchmark(bench_id)
        runs = q.recent_executions(bench_id, 10)
    if bench is None and not runs:
        raise not_found(f"no benchmark or execution with benchmark id {echo(bench_id)}")
    recent = [m.RecentExecution(execution_id=r["execution_id"], agent_type=r["agent_type"],
                                status=r["status"].lower(), created_at=iso(r["created_at"]), score=r["score"])
              for r in runs]
    return data_response(m.BenchmarkDetail(
        id=bench_id, description=bench["description"] if bench else "", tags=tags_of(bench["tags"]) if bench else [],
        prompt=bench["prompt"] if bench else "", removed=bool(bench["removed"]) if bench else False,
        recent_executions=recent, latest_execution_id=recent[0].execution_id if recent else None), tag)


@read_route("/api/v1/benchmarks/{benchmark_id:str}/status/{execution_id:str}", etag="execution:execution_id")
def execution_status(request: Request, benchmark_id: str, execution_id: str) -> Response[m.ExecutionState]:
    # The execution id alone identifies the run: the UI may pass a stale benchmark segment.
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        row, result = load_run(q, execution_id)
    return data_response(state_of(row, result), tag)


@read_route("/api/v1/benchmarks/{benchmark_id:str}/status")
def newest_status(request: Request, benchmark_id: str, agent: str | None = None) -> Response[m.ExecutionState]:
    bench_id = normalise_benchmark_id(benchmark_id)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        row = q.newest_execution(bench_id, agent or None)
        if row is None:
            by_agent = f" by agent {echo(agent)}" if agent else ""
            raise not_found(f"no execution of benchmark {echo(bench_id)}{by_agent}")
        _, result = load_run(q, row["execution_id"])
    return data_response(state_of(row, result), tag)


def agent_result(r: dict) -> m.AgentResult:
    succeeded = r["final_status"] == "Succeeded" if r["final_status"] in ("Succeeded", "Failed") else bool(r["success"])
    return m.AgentResult(id=r["id"], session_id=r["execution_id"], benchmark_id=r["benchmark_id"], score=r["score"],
                         final_status="Succeeded" if succeeded else "Failed", timestamp=iso(r["created_at"]))


@read_route("/api/v1/agent-performance", etag="results")
def agent_performance(request: Request, limit: str | None = None) -> Response[list[m.AgentPerformanceSummary]]:
    n = int_param(limit, "limit", DEFAULT_LIMIT)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        per_agent: dict[str, list[dict]] = {}
        for row in q.agent_stats():
            per_agent.setdefault(row["agent_type"], []).append(row)
        summaries = []
        for agent, stats in per_agent.items():
            finished = sum(s["finished"] for s in stats)
            scored = sum(s["scored"] for s in stats)
            by_mean = sorted(((s["score_sum"] / s["scored"], s["benchmark_id"]) for s in stats
                              if s["scored"] and s["benchmark_id"]), key=lambda x: (x[0], x[1]))
            best = [b for _, b in sorted(by_mean, key=lambda x: (-x[0], x[1]))[:3]]
            worst = [b for _, b in by_mean[:3]]
            summaries.append(m.AgentPerformanceSummary(
                agent_type=agent, total_benchmarks=finished,
                average_score=round(sum(s["score_sum"] for s in stats) / scored, 6) if scored else 0.0,
                success_rate=round(sum(s["succeeded"] for s in stats) / finished, 6) if finished else 0.0,
                best_benchmarks=best, worst_benchmarks=worst,
                results=[agent_result(r) for r in q.finished_results(agent, None, n)]))
    return data_response(summaries, tag)


@read_route("/api/v1/agent-performance/{agent_type:str}/results", etag="results")
def agent_results(request: Request, agent_type: str, limit: str | None = None,
                  cursor: str | None = None) -> Response[m.AgentResultPage]:
    n = int_param(limit, "limit", DEFAULT_LIMIT)
    after = decode_cursor(cursor, TimeKey)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        rows = q.finished_results(agent_type, after, n + 1)
    rows, next_cursor = paged(rows, n, by_time)
    return data_response(m.AgentResultPage(
        items=[agent_result(r) for r in rows],
        next_cursor=next_cursor), tag)


@read_route("/api/v1/agents")
def agents(request: Request) -> Response[list[str]]:
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        names = q.agents(1000)
    return data_response(names, tag)


@read_route("/api/v1/agents/config/{agent_type:str}", etag="keyed")
def agent_config(agent_type: str) -> None:
    raise not_found(f"no configuration for agent {echo(agent_type)}: this service holds no agent configuration"
                    " (agents are configured in the reev runner)")


def logs_context(q: Queries, bench_id: str, execution_id: str | None):
    if execution_id:
        return load_run(q, execution_id)
    row = q.newest_execution(bench_id, None)
    if row is None:
        return None, None
    return load_run(q, row["execution_id"])


@read_route("/api/v1/execution-logs/{benchmark_id:str}", etag="execution:execution_id", in_thread=True)
def execution_logs(request: Request, benchmark_id: str, execution_id: str | None = None) -> Response[m.ExecutionLogs]:
    if not execution_id:
        raise BadParameter("execution_id", "is required")
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        row, result = load_run(q, execution_id)
        calls = q.tool_calls(row["id"], 0, 1000)
    text = render.trace_text(run_facts(row), result, facts_of_calls([], calls))
    return data_response(m.ExecutionLogs(
        benchmark_id=normalise_benchmark_id(benchmark_id), execution_id=row["execution_id"],
        agent_type=row["agent_type"], interface="web", status=row["status"].lower(), final_status=row["status"],
        trace=text, is_running=row["status"] == "Running", progress=progress_of(row), result=result or {}), tag)


@read_route("/api/v1/transaction-logs/{benchmark_id:str}", in_thread=True)
def transaction_logs(request: Request, benchmark_id: str,
                     execution_id: str | None = None) -> Response[m.TransactionLogs]:
    bench_id = normalise_benchmark_id(benchmark_id)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        row, result = logs_context(q, bench_id, execution_id or None)
    if row is None:
        return data_response(m.TransactionLogs(
            benchmark_id=bench_id, execution_id=None, agent_type=None, interface="web", status="unknown",
            final_status=None, transaction_logs="", is_running=False, progress=0.0, result={},
            message=f"no executions of benchmark {echo(bench_id)} yet"), tag)
    return data_response(m.TransactionLogs(
        benchmark_id=bench_id, execution_id=row["execution_id"], agent_type=row["agent_type"], interface="web",
        status=row["status"].lower(), final_status=row["status"],
        transaction_logs=render.transaction_logs_text(run_facts(row), result),
        is_running=row["status"] == "Running", progress=progress_of(row), result=result or {}), tag)


@read_route("/api/v1/flows/{session_id:str}", etag="execution:session_id", in_thread=True)
def flow(request: Request, session_id: str) -> Response[m.Flow]:
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        row, result = load_run(q, session_id)
        rows = q.tool_calls(row["id"], 0, 1000)
    calls = [tool_call_of(r) for r in rows] if rows else session_tools(result)
    facts = facts_of_calls(calls, rows or None)
    return data_response(m.Flow(
        session_id=row["execution_id"], diagram=render.flow_diagram(run_facts(row), facts),
        metadata=m.FlowMetadata(state_count=render.flow_state_count(facts), tool_count=len(calls),
                                execution_time_ms=row["execution_time_ms"], benchmark_id=row["benchmark_id"],
                                session_id=row["execution_id"]),
        tool_calls=calls), tag)


# ---------------------------------------------------------------------- Part 2: our own routes

@read_route("/api/v1/sessions")
def sessions(request: Request, benchmark_id: str | None = None, agent: str | None = None,
             status: str | None = None, limit: str | None = None, cursor: str | None = None) -> Response[m.SessionPage]:
    n = int_param(limit, "limit", DEFAULT_LIMIT)
    after = decode_cursor(cursor, TimeKey)
    if status is not None and status not in m.Status.__args__:
        wanted = {s.lower(): s for s in m.Status.__args__}.get(status.lower())
        if wanted is None:
            raise BadParameter("status", f"must be one of {', '.join(m.Status.__args__)}")
        status = wanted
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        rows = q.sessions(benchmark_id=normalise_benchmark_id(benchmark_id) if benchmark_id else None,
                          agent=agent, status=status, after=after, limit=n + 1)
    rows, next_cursor = paged(rows, n, by_time)
    return data_response(m.SessionPage(
        items=[summary_of(r) for r in rows],
        next_cursor=next_cursor), tag)


@read_route("/api/v1/sessions/{execution_id:str}", in_thread=True)
def session_detail(request: Request, execution_id: str) -> Response[m.SessionDetail]:
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        row, result = load_run(q, execution_id)
        files = q.source_files(execution_id)
    return data_response(m.SessionDetail(
        summary=summary_of(row), final_result=result, event_count=row["event_count"],
        tool_call_count=row["tool_call_count"], step_count=row["step_count"], progress=progress_of(row),
        files=[m.SourceFile(path=file_name(f["path"]), kind=f["kind"], state=f["state"], lines_read=f["line_no"],
                            bytes_read=f["offset"], size=f["size"], ingested_at=iso(f["ingested_at"]))
               for f in files]), tag)


def run_lines(request: Request, execution_id: str, limit: str | None, cursor: str | None, fetch):
    """A page of an execution's rows keyed by line (events, tool calls): (rows, next cursor, ETag)."""
    n = int_param(limit, "limit", 100)
    after = decode_cursor(cursor, RowKey)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        row, _ = load_run(q, execution_id)
        rows = fetch(q, row["id"], after[0] if after else 0, n + 1)
    return *paged(rows, n, lambda r: (r["line"],)), tag


@read_route("/api/v1/sessions/{execution_id:str}/events", etag="execution:execution_id", in_thread=True)
def session_events(request: Request, execution_id: str, limit: str | None = None,
                   cursor: str | None = None) -> Response[m.EventPage]:
    rows, next_cursor, tag = run_lines(request, execution_id, limit, cursor, Queries.events)
    return data_response(m.EventPage(
        items=[m.Event(line=r["line"], byte_offset=r["byte_offset"], kind=r["kind"], timestamp=iso(r["ts"]),
                       event_type=r["event_type"], data=m.raw_or_none(r["doc"])) for r in rows],
        next_cursor=next_cursor), tag)


@read_route("/api/v1/sessions/{execution_id:str}/tool-calls", etag="execution:execution_id", in_thread=True)
def session_tool_calls(request: Request, execution_id: str, limit: str | None = None,
                       cursor: str | None = None) -> Response[m.ToolCallPage]:
    rows, next_cursor, tag = run_lines(request, execution_id, limit, cursor, Queries.tool_calls)
    return data_response(m.ToolCallPage(items=[tool_call_of(r) for r in rows], next_cursor=next_cursor), tag)


@read_route("/api/v1/ingest/status", etag="keyed", in_thread=True)
def ingest_status(request: Request) -> Response[m.IngestStatus]:
    with db_of(request).snapshot() as q:
        meta = q.meta()
        counts = q.file_counts()
        errors = q.error_count()
    beat = meta.get("heartbeat_at")
    return keyed_response(request, m.IngestStatus(
        files=[m.FileCount(kind=c["kind"], state=c["state"], files=c["files"], pending_bytes=c["pending_bytes"] or 0)
               for c in counts],
        pending_bytes=sum(c["pending_bytes"] or 0 for c in counts), error_count=errors,
        data_generation=int(meta.get("data_generation") or 0), last_ingest_at=iso(meta.get("last_ingest_at")),
        heartbeat_at=iso(beat),
        heartbeat_age_seconds=heartbeat.age(beat, time.time()),
        daemon_started_at=iso(meta.get("daemon_started_at"))),
        (meta.get("database_id"), meta.get("data_generation"), beat, errors))


@read_route("/api/v1/ingest/errors")
def ingest_errors(request: Request, limit: str | None = None, cursor: str | None = None) -> Response[m.IngestErrorPage]:
    n = int_param(limit, "limit", DEFAULT_LIMIT)
    after = decode_cursor(cursor, RowKey)
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
        rows = q.errors(after[0] if after else None, n + 1)
    rows, next_cursor = paged(rows, n, lambda r: (r["id"],))
    return data_response(m.IngestErrorPage(
        items=[ingest_error(r, r["id"]) for r in rows], next_cursor=next_cursor), tag)


# ---------------------------------------------------------------------- live: stream and metrics

def error_of(r: dict) -> m.IngestError:
    return ingest_error(r, r["error_id"])


def event_id(value: str) -> tuple[str | None, int]:
    """A Last-Event-ID: `<database id>:<seq>`, or a bare seq (see parse_event_id)."""
    try:
        return parse_event_id(value)
    except ValueError:
        raise BadParameter("last_event_id", f"(or the Last-Event-ID header) must be an event id, `<database id>:<n>`"
                                            f" as the stream sends them or a whole number from 0 to 2^63-1; got"
                                            f" {echo(value)}") from None


@get("/api/v1/stream", opt={"etag": "none"}, responses=RESPONSES, media_type="text/event-stream",
     middleware=[take_a_stream_slot],
     description="Server-Sent Events: `execution` (its session summary) when an execution appears or changes "
                 "status, score or benchmark; `ingest-error` for new bad input. Resume with Last-Event-ID.")
async def stream(request: Request, execution_id: str | None = None, benchmark_id: str | None = None,
                 types: str | None = None, last_event_id: str | None = None) -> Stream:
    """Everything is checked here, before the answer starts: past its 200 a stream can only end."""
    state = request.app.state
    wanted = frozenset(t.strip() for t in types.split(",") if t.strip()) if types else frozenset(EVENT_TYPES)
    if not wanted or not wanted <= set(EVENT_TYPES):
        raise BadParameter("types", f"must be a comma-separated subset of {', '.join(EVENT_TYPES)}")
    resume = request.headers.get("last-event-id") or last_event_id
    given = event_id(resume) if resume is not None else None
    try:
        start = await anyio.to_thread.run_sync(start_of_stream, state.db, state.watcher, given)
    except (DatabaseUnavailable, QueryTimeout):
        start = None                     # (the stream starts once the database can be read)
    filt = StreamFilter(execution_id or None, normalise_benchmark_id(benchmark_id) if benchmark_id else None, wanted)
    return Stream(event_stream(state.db, state.watcher, filt, start, given, summary_of, error_of,
                               state.stream_heartbeat),
                  media_type="text/event-stream",
                  headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@get("/metrics", sync_to_thread=True, opt={"etag": "none"}, media_type=CONTENT_TYPE,
     description="Prometheus text format: the daemon's ingest counters and gauges, and the API's own.")
def metrics(request: Request) -> Response[str]:
    return Response(content=request.app.state.metrics.render(), media_type=CONTENT_TYPE)


# ---------------------------------------------------------------------- hooks and errors

async def not_modified(request: Request) -> Response | None:
    """Answer a matching If-None-Match with 304 before the handler runs any of its queries.
    Async, so that it runs on the loop (a key lookup or two): Litestar runs a sync hook in a
    worker thread, for every request."""
    if request.route_handler.opt.get("etag") in (None, "keyed", "none") or "if-none-match" not in request.headers:
        return None
    with db_of(request).snapshot() as q:
        tag = etag_for(q, request)
    if matches(request, tag):
        return Response(content=None, status_code=304, headers={"ETag": tag})
    return None


def error(status: int, message: str, headers: dict | None = None) -> Response[m.ErrorBody]:
    return Response(content=m.ErrorBody(error=m.error_kind(status), message=message), status_code=status,
                    headers=headers)


def on_http_error(request: Request, exc: HTTPException) -> Response:
    writes = request.method not in ("GET", "HEAD", "OPTIONS")
    if writes and (isinstance(exc, (NotFoundException, MethodNotAllowedException))):
        sync = request.url.path.rstrip("/") == "/api/v1/sync"
        return error(405, SYNC_MESSAGE if sync else READ_ONLY_MESSAGE, {"Allow": ALLOW})
    if isinstance(exc, MethodNotAllowedException):
        return error(405, f"{echo(request.method)} is not allowed here", {"Allow": ALLOW})
    if isinstance(exc, NotFoundException):
        detail = exc.detail if exc.detail and exc.detail != "Not Found" else f"no route {echo(request.url.path)}"
        return error(404, detail)
    return error(exc.status_code, str(exc.detail))


def on_bad_parameter(_request: Request, exc: BadParameter) -> Response:
    return error(400, str(exc))


def on_unavailable(_request: Request, exc: Exception) -> Response:
    return error(503, str(exc), {"Retry-After": "1"})


def on_too_many_streams(_request: Request, exc: TooManyStreams) -> Response:
    # closed after the answer: a client turned away does not keep a connection for nothing
    return error(503, str(exc), {"Retry-After": "1", "Connection": "close"})


def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return error(500, "the server failed to answer this request; see its log")


def create_app(db_path: Path, cors_origins: list[str] | None = None, query_timeout: float = 2.0,
               max_streams: int = 100, stream_heartbeat: float = 15.0) -> Litestar:
    app = Litestar(
        route_handlers=[health, list_benchmarks, benchmark_detail, execution_status, newest_status,
                        agent_performance, agent_results, agents, agent_config, execution_logs,
                        transaction_logs, flow, sessions, session_detail, session_events, session_tool_calls,
                        ingest_status, ingest_errors, stream, metrics],
        before_request=not_modified,
        on_startup=[start_watching, tell_systemd_ready],
        on_shutdown=[stop_watching, tell_systemd_stopping],
        exception_handlers={
            HTTPException: on_http_error, BadParameter: on_bad_parameter, TooManyStreams: on_too_many_streams,
            DatabaseUnavailable: on_unavailable, QueryTimeout: on_unavailable, Exception: on_unexpected},
        cors_config=CORSConfig(allow_origins=cors_origins or ["*"], allow_methods=["GET", "HEAD", "OPTIONS"],
                               allow_headers=["*"], expose_headers=["ETag"], max_age=600),
        openapi_config=OpenAPIConfig(title="reev-ingest API", version=VERSION, path="/schema",
                                     render_plugins=[JsonRenderPlugin()]),
        logging_config=None,    # the programs' own (core/logs.py); Litestar's would replace it
    )
    db = Database(db_path, query_timeout=query_timeout)
    app.state.db = db
    app.state.watcher = GenerationWatcher(db)
    app.state.stream_slots = StreamSlots(max_streams)
    app.state.stream_heartbeat = stream_heartbeat
    app.state.metrics = ApiMetrics(db)
    app.state.metrics.open_streams.set_function(lambda: app.state.stream_slots.taken)
    return app


def serve(app: Litestar):
    """The ASGI callable the server runs: request metrics around the HTTP edge around the app."""
    return RequestMetrics(Edge(app), app.state.metrics)


def start_watching(app: Litestar):
    app.state.watcher.start()


async def stop_watching(app: Litestar):
    await app.state.watcher.stop()


def tell_systemd_ready():
    """READY=1 from each worker once its app has started. The server process listened before it
    started the workers (api/serving.py), so a connection made when systemd hears it waits in
    the kernel's queue for a worker that is about to take it. (With several workers each says
    it: systemd acts on the first. NotifyAccess=all: it comes from a worker.)"""
    Notifier().ready(f"serving, pid {os.getpid()}")


def tell_systemd_stopping():
    Notifier().stopping()
