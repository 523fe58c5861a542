"""The operators' read-only queries over a PostgreSQL database (`reev-ingestd status` and
`dump`), each in one REPEATABLE READ READ ONLY snapshot, and the ingest lag. They raise
StorageError, as the store does."""

import psycopg

from daemon.storage.dump import dump_queries, status_counts
from daemon.storage.postgres.connection import one_row, one_value, running_sources, translating

# The same records, columns and order as SQLite's (the source is not dumped: a file's records
# are the same whichever host read it; with several sources their rows interleave by path).
DUMP_QUERIES = dump_queries(offset='"offset"', score_sum="round(score_sum::numeric, 9)::double precision",
                            tie=", source")


def open_reader(url: str) -> psycopg.Connection:
    """A connection for the operators' commands (it writes nothing)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name="reev-ingestd (operator)")


@translating
def canonical_dump(conn: psycopg.Connection):
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for table, sql in DUMP_QUERIES.items():
            with conn.cursor(name=f"dump_{table}") as cursor:      # (server-side: rows as read)
                cursor.execute(sql)
                names = None
                for row in cursor:
                    names = names or [d.name for d in cursor.description or ()]
                    yield {"table": table, **dict(zip(names, row, strict=True))}      # (names: this cursor's)


def lag_bytes(conn: psycopg.Connection, source: str | None = None) -> int:
    """As SQLite's (sqlite/reports.py): bytes of the event logs read (state ok) beyond their
    checkpoints; one source's, or every source's (None)."""
    return one_value(conn.execute(
        "SELECT coalesce(sum(size - \"offset\"), 0)::bigint FROM files WHERE kind = 'events'"
        " AND size > \"offset\" AND state != 'missing' AND state = 'ok'"
        " AND (%(source)s::text IS NULL OR source = %(source)s::text)", {"source": source}))


@translating
def status_report(conn: psycopg.Connection) -> dict:
    """What `reev-ingestd status` shows, in one snapshot: as SQLite's, the meta facts summed over
    the sources, and each source's heartbeat and whether a daemon holds its lock now (None on a
    hot standby, `standby`: the primary's advisory locks are not replicated)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        generation, last_ingest = one_row(conn.execute("SELECT data_generation, last_ingest_at FROM meta"))
        sources = conn.execute("SELECT source, started_at, heartbeat_at, lines_ingested_total, retried_batches_total"
                               " FROM sources ORDER BY source").fetchall()
        lag = lag_bytes(conn)
        counts = status_counts(lambda sql: conn.execute(sql).fetchall())
        size = one_value(conn.execute("SELECT pg_database_size(current_database())"))
        standby = one_value(conn.execute("SELECT pg_is_in_recovery()"))
    running = None if standby else running_sources(conn, [s[0] for s in sources])
    beats = [s[2] for s in sources if s[2] is not None]
    meta = {"data_generation": generation, "last_ingest_at": last_ingest,
            "heartbeat_at": max(beats) if beats else None,
            "lines_ingested_total": sum(s[3] for s in sources), "retried_batches_total": sum(s[4] for s in sources)}
    return {"meta": meta, "lag_bytes": lag, **counts, "database_bytes": size, "standby": standby,
            "sources": [{"source": s, "started_at": started, "heartbeat_at": beat,
                         "running": None if running is None else s in running,
                         "retried_batches_total": retried} for s, started, beat, _, retried in sources]}
