"""Rows (api/db.py) into answers (api/models.py) and into the renderers' facts (api/render.py):
the conversions more than one resource uses. Pure functions, but for `load_run`."""

from typing import Any

from api import models as m
from api import render
from api.db import ChangeRow, ErrorRow, ExecutionRow, Queries, RunRow, ToolCallRow
from api.plumbing import echo, not_found
from core.ids import classify_benchmark_file, classify_session_file
from core.run_status import progress
from core.timestamps import iso


def file_name(path: str) -> str:
    """A tracked file as answers name it: by its name in the watched folder it is directly in
    (with its kind, that says which), never by where that folder is on this machine."""
    return path.rsplit("/", 1)[-1]


def load_run(q: Queries, execution_id: str) -> tuple[RunRow, dict | None]:
    """An execution and its final_result (None until a session file gave one), or a 404."""
    row = q.execution(execution_id)
    if row is None:
        raise not_found(f"no execution with id {echo(execution_id)}")
    return row, m.decode_object(row.result_doc)


def summary_of(row: ExecutionRow | ChangeRow) -> m.SessionSummary:
    return m.SessionSummary(
        execution_id=row.execution_id, recorded_session_id=row.recorded_session_id,  # type: ignore[arg-type]  # a ChangeRow of kind 'execution' has these (StreamFilter.accepts)
        benchmark_id=row.benchmark_id, agent_type=row.agent_type, status=row.status,  # type: ignore[arg-type]  # a ChangeRow of kind 'execution' has these (StreamFilter.accepts)
        created_at=iso(row.created_at), updated_at=iso(row.updated_at),
        last_event_at=iso(row.last_event_at), score=row.score)


def progress_of(row: ExecutionRow) -> float:
    return progress(row.status, row.step_count, row.flow_steps)


def error_message_of(row: ExecutionRow, result: dict | None) -> str | None:
    if row.status == "Timeout":      # the daemon's stale rule says why (core/run_status.py)
        return row.stale_reason
    if row.status != "Failed":
        return None
    for key in ("error", "error_message"):
        if isinstance(result, dict) and isinstance(result.get(key), str):
            return result[key]
    return f"run failed (score {row.score})" if row.score is not None else "run failed"


def state_of(row: ExecutionRow, result: dict | None) -> m.ExecutionState:
    return m.ExecutionState(
        execution_id=row.execution_id, benchmark_id=row.benchmark_id, agent=row.agent_type,
        status=row.status, created_at=iso(row.created_at), updated_at=iso(row.updated_at),
        progress=progress_of(row), error_message=error_message_of(row, result),
        result_data=result if row.success is not None else None,
        metadata=m.ExecutionMetadata(
            recorded_session_id=row.recorded_session_id, event_count=row.event_count,
            tool_call_count=row.tool_call_count, step_count=row.step_count,
            first_event_at=iso(row.first_event_at), last_event_at=iso(row.last_event_at)))


def run_facts(row: ExecutionRow) -> render.RunFacts:
    return render.RunFacts(
        execution_id=row.execution_id, benchmark_id=row.benchmark_id, agent_type=row.agent_type,
        status=row.status, score=row.score, execution_time_ms=row.execution_time_ms,
        created_at=row.created_at, updated_at=row.updated_at)


def ingest_error(row: ErrorRow | ChangeRow, error_id: int) -> m.IngestError:
    name = file_name(row.path)  # type: ignore[arg-type]  # a ChangeRow that reaches here names an error (StreamFilter.accepts)
    known = classify_session_file(name) or classify_benchmark_file(name)
    return m.IngestError(id=error_id, path=name, kind=known.kind if known else None, line=row.line,  # type: ignore[arg-type]  # a ChangeRow that reaches here names an error (StreamFilter.accepts)
                         byte_offset=row.byte_offset, reason=row.reason, first_seen_at=iso(row.first_seen_at),  # type: ignore[arg-type]  # a ChangeRow that reaches here names an error (StreamFilter.accepts)
                         last_seen_at=iso(row.last_seen_at), count=row.count)  # type: ignore[arg-type]  # a ChangeRow that reaches here names an error (StreamFilter.accepts)


def error_of(row: ErrorRow) -> m.IngestError:
    return ingest_error(row, row.id)


def change_error_of(row: ChangeRow) -> m.IngestError:
    """The ingest error a change of the feed names (the stream shows it as it is now)."""
    return ingest_error(row, row.error_id)  # type: ignore[arg-type]  # a ChangeRow that reaches here names an error (StreamFilter.accepts)


def tool_call_of(row: ToolCallRow) -> m.ToolCall:
    return m.ToolCall(
        tool_name=row.tool_name, started_at=iso(row.started_at), ended_at=iso(row.ended_at),
        duration_ms=row.duration_ms, input=m.raw_or_none(row.input), output=m.raw_or_none(row.output),
        success=None if row.success is None else bool(row.success), error_message=row.error_message)


def session_tools(result: dict | None) -> list[m.ToolCall]:
    """The tool records of a session file's final_result (render.tool_records reads them), as
    tool calls: for a run without an event log."""
    calls = []
    for record in render.tool_records(result)[0]:
        if not isinstance(record, dict):
            continue
        start, end = render.finite_number(record.get("start_time")), render.finite_number(record.get("end_time"))
        outcome = record.get("status")
        calls.append(m.ToolCall(
            tool_name=_text(record.get("tool_name")), started_at=iso(start), ended_at=iso(end),
            duration_ms=(end - start) * 1000 if start is not None and end is not None else None,
            input=record.get("params"), output=record.get("result"),
            success=None if not isinstance(outcome, str) else outcome == "success",
            error_message=_text(record.get("error"))))
    return calls


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def facts_of_rows(rows: list[ToolCallRow]) -> list[render.ToolCallFacts]:
    return [render.ToolCallFacts(tool_name=r.tool_name, started_at=r.started_at, ended_at=r.ended_at,
                                 duration_ms=r.duration_ms, success=None if r.success is None else bool(r.success),
                                 error_message=r.error_message) for r in rows]


def facts_of_calls(calls: list[m.ToolCall]) -> list[render.ToolCallFacts]:
    return [render.ToolCallFacts(tool_name=c.tool_name, started_at=None, ended_at=None,
                                 duration_ms=c.duration_ms, success=c.success, error_message=c.error_message)
            for c in calls]
