"""The operators' read-only queries over a SQLite database (`reev-ingestd status` and `dump`),
through a read-only connection (core/readonly.py), and the ingest lag (the daemon's STATUS=
line and `status` alike). They raise StorageError (errors.py), as the store does."""

import apsw

from daemon.storage.dump import dump_queries, status_counts
from daemon.storage.sqlite.errors import translating

# ---------------------------------------------------------------------- canonical dump

DUMP_QUERIES = dump_queries(offset="offset", score_sum="round(score_sum, 9)", tie="")


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
        lag = lag_bytes(conn)
        counts = status_counts(lambda sql: conn.execute(sql).fetchall())
    return {"meta": meta, "lag_bytes": lag, **counts}
