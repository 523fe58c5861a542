"""Executions as this API lists them (our own routes, beyond reev's UI): GET /api/v1/sessions
(keyset pages, newest first), /api/v1/sessions/{id}, and its /events and /tool-calls pages."""

from litestar import Controller, Request, Response

from api import models as m
from api.convert import file_name, load_run, progress_of, summary_of, tool_call_of
from api.db import Database, Queries
from api.plumbing import (
    DEFAULT_LIMIT,
    BadParameter,
    Cursor,
    PageLimit,
    RowCount,
    RowKey,
    TimeKey,
    by_line,
    by_time,
    data_response,
    decode_cursor,
    etag_for,
    paged,
    read_route,
)
from core.ids import normalise_benchmark_id
from core.run_status import STATUSES
from core.timestamps import iso

LINES_PER_PAGE = RowCount(100)      # events and tool calls of a page, unless `limit` says
_STATUS_BY_LOWER = {s.lower(): s for s in STATUSES}


def status_filter(status: str | None) -> str | None:
    """The status asked for, in any case; a 400 for one that is none."""
    if status is None or status in STATUSES:
        return status
    wanted = _STATUS_BY_LOWER.get(status.lower())
    if wanted is None:
        raise BadParameter("status", f"must be one of {', '.join(STATUSES)}")
    return wanted


def line_page(request: Request, db: Database, execution_id: str, limit: int, cursor: str | None, fetch):
    """A page of an execution's rows keyed by line (events, tool calls): (rows, next cursor, ETag)."""
    after = decode_cursor(cursor, RowKey)
    with db.snapshot() as q:
        tag = etag_for(q, request)
        row, _ = load_run(q, execution_id)
        rows = fetch(q, row.id, after[0] if after else 0, limit + 1)
    return *paged(rows, limit, by_line), tag


class SessionController(Controller):
    path = "/api/v1/sessions"

    @read_route("/")
    def sessions(self, request: Request, db: Database, benchmark_id: str | None = None, agent: str | None = None,
                 status: str | None = None, limit: PageLimit = DEFAULT_LIMIT,
                 cursor: Cursor = None) -> Response[m.SessionPage]:
        after = decode_cursor(cursor, TimeKey)
        status = status_filter(status)
        with db.snapshot() as q:
            tag = etag_for(q, request)
            rows = q.sessions(benchmark_id=normalise_benchmark_id(benchmark_id) if benchmark_id else None,
                              agent=agent, status=status, after=after, limit=limit + 1)
        rows, next_cursor = paged(rows, limit, by_time)
        return data_response(m.SessionPage(items=[summary_of(r) for r in rows], next_cursor=next_cursor), tag)

    @read_route("/{execution_id:str}", in_thread=True)
    def session_detail(self, request: Request, db: Database, execution_id: str) -> Response[m.SessionDetail]:
        with db.snapshot() as q:
            tag = etag_for(q, request)
            row, result = load_run(q, execution_id)
            files = q.source_files(execution_id)
        return data_response(m.SessionDetail(
            summary=summary_of(row), final_result=result, event_count=row.event_count,
            tool_call_count=row.tool_call_count, step_count=row.step_count, progress=progress_of(row),
            files=[m.SourceFile(path=file_name(f.path), kind=f.kind, state=f.state, lines_read=f.line_no,
                                bytes_read=f.offset, size=f.size, ingested_at=iso(f.ingested_at))
                   for f in files]), tag)

    @read_route("/{execution_id:str}/events", etag="execution:execution_id", in_thread=True)
    def session_events(self, request: Request, db: Database, execution_id: str,
                       limit: PageLimit = LINES_PER_PAGE, cursor: Cursor = None) -> Response[m.EventPage]:
        rows, next_cursor, tag = line_page(request, db, execution_id, limit, cursor, Queries.events)
        return data_response(m.EventPage(
            items=[m.Event(line=r.line, byte_offset=r.byte_offset, kind=r.kind, timestamp=iso(r.ts),
                           event_type=r.event_type, data=m.raw_or_none(r.doc)) for r in rows],
            next_cursor=next_cursor), tag)

    @read_route("/{execution_id:str}/tool-calls", etag="execution:execution_id", in_thread=True)
    def session_tool_calls(self, request: Request, db: Database, execution_id: str,
                           limit: PageLimit = LINES_PER_PAGE, cursor: Cursor = None) -> Response[m.ToolCallPage]:
        rows, next_cursor, tag = line_page(request, db, execution_id, limit, cursor, Queries.tool_calls)
        return data_response(m.ToolCallPage(items=[tool_call_of(r) for r in rows], next_cursor=next_cursor), tag)
