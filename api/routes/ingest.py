"""What the daemon is doing: GET /api/v1/ingest/status (files, lag, heartbeat) and
/api/v1/ingest/errors (the bad input it recorded, newest first)."""

import time

from litestar import Controller, Request, Response

from api import models as m
from api.convert import error_of
from api.db import Database
from api.plumbing import (
    DEFAULT_LIMIT,
    Cursor,
    PageLimit,
    RowKey,
    data_response,
    decode_cursor,
    etag_for,
    keyed_response,
    paged,
    read_route,
)
from core import heartbeat
from core.timestamps import iso


class IngestController(Controller):
    path = "/api/v1/ingest"

    @read_route("/status", etag="keyed", in_thread=True)
    def ingest_status(self, request: Request, db: Database) -> Response[m.IngestStatus]:
        with db.snapshot() as q:
            meta = q.meta()
            counts = q.file_counts()
            errors = q.error_count()
        return keyed_response(request, m.IngestStatus(
            files=[m.FileCount(kind=c.kind, state=c.state, files=c.files, pending_bytes=c.pending_bytes)
                   for c in counts],
            pending_bytes=sum(c.pending_bytes for c in counts), error_count=errors,
            data_generation=int(meta.data_generation or 0), last_ingest_at=iso(meta.last_ingest_at),
            heartbeat_at=iso(meta.heartbeat_at),
            heartbeat_age_seconds=heartbeat.age(meta.heartbeat_at, time.time()),
            daemon_started_at=iso(meta.daemon_started_at)),
            (meta.database_id, meta.data_generation, meta.heartbeat_at, errors))

    @read_route("/errors")
    def ingest_errors(self, request: Request, db: Database, limit: PageLimit = DEFAULT_LIMIT,
                      cursor: Cursor = None) -> Response[m.IngestErrorPage]:
        after = decode_cursor(cursor, RowKey)
        with db.snapshot() as q:
            tag = etag_for(q, request)
            rows = q.errors(after[0] if after else None, limit + 1)
        rows, next_cursor = paged(rows, limit, lambda r: (r.id,))
        return data_response(m.IngestErrorPage(items=[error_of(r) for r in rows], next_cursor=next_cursor), tag)
