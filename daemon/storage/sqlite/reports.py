"""The operators' read-only queries over a SQLite database (`reev-ingestd status` and `dump`),
through a read-only connection (core/readonly.py), and the ingest lag (the daemon's STATUS=
line and `status` alike). They raise StorageError (errors.py), as the store does."""

import apsw

from daemon.storage.sqlite.errors import translating

# ---------------------------------------------------------------------- canonical dump

# What was ingested, in a canonical order, without what depends on when or how often the
# daemon ran (ingest times, counters, generations, row ids): two databases built from the
# same final files dump identically, however their ingestion was interrupted.
DUMP_QUERIES = {
    "benchmark": "SELECT id, path, description, tags, prompt, flow_steps, yaml_text, removed"
                 " FROM benchmarks ORDER BY id",
    "execution": "SELECT execution_id, recorded_session_id, benchmark_id, session_benchmark_id, first_prompt,"
                 " agent_type, status, success, score, final_status, execution_time_ms, start_time, end_time,"
                 " first_event_at, last_event_at, created_at, updated_at, event_count, tool_call_count,"
                 " step_count, stale_reason, d.session_doc, d.result_doc"
                 " FROM executions x LEFT JOIN session_docs d ON d.exec_id = x.id ORDER BY execution_id",
    "event": "SELECT x.execution_id, e.line, e.byte_offset, e.kind, e.event_type, e.ts, e.doc"
             " FROM events e JOIN executions x ON x.id = e.exec_id ORDER BY x.execution_id, e.line",
    "tool_call": "SELECT x.execution_id, t.line, t.source, t.output_line, t.tool_name, t.started_at, t.ended_at,"
                 " t.duration_ms, t.input, t.output, t.success, t.status, t.error_message"
                 " FROM tool_calls_io t JOIN executions x ON x.id = t.exec_id ORDER BY x.execution_id, t.line",
    # score_sum is a running sum kept by the store (rules.py): its last bits depend on the order in which
    # scores were added and taken back (rewritten session files), so it is compared rounded.
    "agent_benchmark_stats": "SELECT agent_type, benchmark_id, finished, succeeded, scored,"
                             " round(score_sum, 9) AS score_sum"
                             " FROM agent_benchmark_stats ORDER BY agent_type, benchmark_id",
    "file": "SELECT path, kind, subject_id, offset, line_no, skipping, state FROM files ORDER BY path",
    "ingest_error": "SELECT path, line, byte_offset, reason FROM ingest_errors ORDER BY path, line",
}


@translating
def canonical_dump(conn: apsw.Connection):
    """Every ingested record as a dict with its `table`, in a canonical order, read through a
    read-only connection (core/readonly.py)."""
    with conn:     # one snapshot for the whole dump
        for table, sql in DUMP_QUERIES.items():
            cursor = conn.execute(sql)
            names = None
            for row in cursor:
                names = names or [d[0] for d in cursor.get_description()]
                yield {"table": table, **dict(zip(names, row, strict=True))}


# ---------------------------------------------------------------------- operator status

def lag_bytes(conn: apsw.Connection) -> int:
    """The lag, for the daemon's STATUS= line and `reev-ingestd status` alike: bytes of the event
    logs the daemon reads (state ok) beyond their checkpoint, as of its last look at each (a
    partial last line, a read the budget cut short). Never a file it does not read: one refused
    (a symlink, not followed), one it cannot read yet, one gone. From the database only, through
    the index of the logs read short (files_behind, whose condition the query repeats so that
    SQLite uses it): a few rows, whatever the number of files."""
    return conn.execute(
        "SELECT coalesce(sum(size - offset), 0) FROM files"
        " WHERE kind = 'events' AND size > offset AND state != 'missing' AND state = 'ok'").get


@translating
def status_report(conn: apsw.Connection) -> dict:
    """What `reev-ingestd status` shows, read in one snapshot of a read-only connection
    (core/readonly.py)."""
    with conn:
        meta: dict[str, object] = dict(conn.execute("SELECT key, value FROM meta"))
        files = conn.execute("SELECT kind, state, count(*) FROM files GROUP BY kind, state"
                             " ORDER BY kind, state").fetchall()
        lag = lag_bytes(conn)
        statuses = conn.execute("SELECT status, count(*) FROM executions GROUP BY status ORDER BY status").fetchall()
        errors = conn.execute("SELECT path, line, byte_offset, reason, last_seen_at FROM ingest_errors"
                              " ORDER BY last_seen_at DESC, id DESC LIMIT 5").fetchall()
        error_count = conn.execute("SELECT count(*) FROM ingest_errors").get
    return {"meta": meta, "files": files, "lag_bytes": lag, "statuses": statuses, "errors": errors,
            "error_count": error_count}
