"""GET /api/v1/stream: Server-Sent Events of the daemon's change feed. The route checks what it
is asked before its 200; the feed itself (the watcher, resuming, the stream slots) is api/stream.py."""

import re

import anyio
from litestar import Controller, Request, get
from litestar.response import Stream

from api.convert import change_error_of, summary_of
from api.db import Database, DatabaseUnavailable, QueryTimeout
from api.plumbing import RESPONSES, BadParameter, echo, parse_integer
from api.stream import EVENT_TYPES, StreamFilter, event_stream, start_of_stream, take_a_stream_slot
from core.ids import normalise_benchmark_id

DATABASE_ID = re.compile(r"[0-9a-f]{16}")     # lower(hex(randomblob(8))) (schema.sql; the PostgreSQL daemon's alike)


def event_id(value: str) -> tuple[str | None, int]:
    """A Last-Event-ID: `<database id>:<seq>` as the stream sends it, or a bare `<seq>` (of this
    database: `0` is everything kept); the seq an integer as every number the API is given."""
    database_id, colon, seq = value.rpartition(":")
    try:
        if colon and not DATABASE_ID.fullmatch(database_id):
            raise ValueError(database_id)
        return database_id or None, parse_integer(seq)
    except (ValueError, OverflowError):
        raise BadParameter("last_event_id", f"(or the Last-Event-ID header) must be an event id, `<database id>:<n>`"
                                            f" as the stream sends them or a whole number from 0 to 2^63-1; got"
                                            f" {echo(value)}") from None


class StreamController(Controller):
    @get("/api/v1/stream", opt={"etag": "none"}, responses=RESPONSES, media_type="text/event-stream",
         middleware=[take_a_stream_slot],
         description="Server-Sent Events: `execution` (its session summary) when an execution appears or changes "
                     "status, score or benchmark; `ingest-error` for new bad input. Resume with Last-Event-ID.")
    async def stream(self, request: Request, db: Database, execution_id: str | None = None,
                     benchmark_id: str | None = None, types: str | None = None,
                     last_event_id: str | None = None) -> Stream:
        """Everything is checked here, before the answer starts: past its 200 a stream can only end."""
        state = request.app.state
        wanted = frozenset(t.strip() for t in types.split(",") if t.strip()) if types else frozenset(EVENT_TYPES)
        if not wanted or not wanted <= set(EVENT_TYPES):
            raise BadParameter("types", f"must be a comma-separated subset of {', '.join(EVENT_TYPES)}")
        resume = request.headers.get("last-event-id") or last_event_id
        given = event_id(resume) if resume is not None else None
        try:
            start = await anyio.to_thread.run_sync(start_of_stream, db, state.watcher, given)
        except (DatabaseUnavailable, QueryTimeout):
            start = None                     # (the stream starts once the database can be read)
        filt = StreamFilter(execution_id or None, normalise_benchmark_id(benchmark_id) if benchmark_id else None,
                            wanted)
        return Stream(event_stream(db, state.watcher, filt, start, given, summary_of, change_error_of,
                                   state.stream_heartbeat),
                      media_type="text/event-stream",
                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
