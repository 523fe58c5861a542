"""One execution rendered for reev's UI: its trace (GET /api/v1/execution-logs/{benchmark}), its
transactions (/api/v1/transaction-logs/{benchmark}) and its flow diagram (/api/v1/flows/{id}).
The renderings themselves are api/render.py."""

from litestar import Controller, Request, Response

from api import models as m
from api import render
from api.convert import facts_of_calls, facts_of_rows, load_run, progress_of, run_facts, session_tools, tool_call_of
from api.db import Database, ExecutionRow, Queries
from api.plumbing import data_response, echo, etag_for, read_route
from core.ids import normalise_benchmark_id

MAX_TOOL_CALLS = 1000     # tool calls a rendering shows


def logs_context(q: Queries, bench_id: str, execution_id: str | None) -> tuple[ExecutionRow | None, dict | None]:
    """The execution named, else the benchmark's newest (None, None: it has none)."""
    if execution_id:
        return load_run(q, execution_id)
    row = q.newest_execution(bench_id, None)
    if row is None:
        return None, None
    return load_run(q, row.execution_id)


class RunViewController(Controller):
    path = "/api/v1"

    @read_route("/execution-logs/{benchmark_id:str}", etag="execution:execution_id", in_thread=True)
    def execution_logs(self, request: Request, db: Database, benchmark_id: str,
                       execution_id: str) -> Response[m.ExecutionLogs]:
        with db.snapshot() as q:
            tag = etag_for(q, request)
            row, result = load_run(q, execution_id)
            calls = q.tool_calls(row.id, 0, MAX_TOOL_CALLS)
        text = render.trace_text(run_facts(row), result, facts_of_rows(calls))
        return data_response(m.ExecutionLogs(
            benchmark_id=normalise_benchmark_id(benchmark_id), execution_id=row.execution_id,
            agent_type=row.agent_type, interface="web", status=row.status.lower(), final_status=row.status,
            trace=text, is_running=row.status == "Running", progress=progress_of(row), result=result or {}), tag)

    @read_route("/transaction-logs/{benchmark_id:str}", in_thread=True)
    def transaction_logs(self, request: Request, db: Database, benchmark_id: str,
                         execution_id: str | None = None) -> Response[m.TransactionLogs]:
        bench_id = normalise_benchmark_id(benchmark_id)
        with db.snapshot() as q:
            tag = etag_for(q, request)
            row, result = logs_context(q, bench_id, execution_id or None)
        if row is None:
            return data_response(m.TransactionLogs(
                benchmark_id=bench_id, execution_id=None, agent_type=None, interface="web", status="unknown",
                final_status=None, transaction_logs="", is_running=False, progress=0.0, result={},
                message=f"no executions of benchmark {echo(bench_id)} yet"), tag)
        return data_response(m.TransactionLogs(
            benchmark_id=bench_id, execution_id=row.execution_id, agent_type=row.agent_type, interface="web",
            status=row.status.lower(), final_status=row.status,
            transaction_logs=render.transaction_logs_text(run_facts(row), result),
            is_running=row.status == "Running", progress=progress_of(row), result=result or {}), tag)

    @read_route("/flows/{session_id:str}", etag="execution:session_id", in_thread=True)
    def flow(self, request: Request, db: Database, session_id: str) -> Response[m.Flow]:
        with db.snapshot() as q:
            tag = etag_for(q, request)
            row, result = load_run(q, session_id)
            rows = q.tool_calls(row.id, 0, MAX_TOOL_CALLS)
        # the event log's tool calls; a run without one: its session file's tool records
        calls = [tool_call_of(r) for r in rows] if rows else session_tools(result)
        facts = facts_of_rows(rows) if rows else facts_of_calls(calls)
        return data_response(m.Flow(
            session_id=row.execution_id, diagram=render.flow_diagram(run_facts(row), facts),
            metadata=m.FlowMetadata(state_count=render.flow_state_count(facts), tool_count=len(calls),
                                    execution_time_ms=row.execution_time_ms, benchmark_id=row.benchmark_id,
                                    session_id=row.execution_id),
            tool_calls=calls), tag)
