"""The API's PostgreSQL engine (api/db.py is the interface), for `--db postgresql://...`.

Connections: one per thread that queries (threading.local), in autocommit, made on first use
and again after one breaks. After a failed attempt that thread answers 503 without trying
again for a while (0.5 s, doubling to 5 s while attempts keep failing): the event loop makes
its own connection, and a database that cannot be reached must cost it an attempt now and
then (each at most CONNECT_TIMEOUT), not one per request.
Each session is read-only (`default_transaction_read_only`), so the API works as a role that
may only SELECT and on a hot standby: it never writes, takes no sequence value, makes no
temporary table and does not LISTEN.

A response reads in one `REPEATABLE READ READ ONLY` transaction (one snapshot, as on SQLite);
`lookup()` (the ETag check before a route, the stream's poll of the generation, the status
route) is one statement in autocommit, its own snapshot: a 304 costs one round trip, and so
does a status answer. (Each statement is a round trip: BEGIN and its end cost two more.)

The time limit: `statement_timeout` bounds each statement, and a watchdog thread cancels the
statement of a response past its deadline (the whole response's limit, as SQLite's progress
handler gives). Either way the server answers 57014, which is a 503 here.

Statements are api/db.py's with `?` turned into psycopg's `%s` (once per statement); psycopg
prepares those it runs often on each connection by itself.
"""

import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg
import psycopg.errors

from api.db import Database, DatabaseUnavailable, Meta, Queries, QueryTimeout
from core.dburl import shown

CONNECT_TIMEOUT = 2          # seconds (libpq's least): a connection is made on the event loop
RETRY_FIRST, RETRY_MOST = 0.5, 5.0    # seconds a thread waits after a failed attempt (doubling)
_NO_TABLES = "42P01"         # undefined_table: the daemon has not created the schema yet
# Answered 503 (try again): the server shutting down or starting, a role without the grants,
# and, on a standby, a query cancelled for WAL replay (40001, 40P01).
_UNAVAILABLE = {"57P01", "57P02", "57P03", "42501", "40001", "40P01"}

_translated: dict[str, str] = {}


def _psycopg_sql(sql: str) -> str:
    """A statement of api/db.py with psycopg's placeholders (it has no literal `%`)."""
    found = _translated.get(sql)
    if found is None:
        found = _translated[sql] = sql.replace("?", "%s")
    return found


class PostgresQueries(Queries):
    NO_LIMIT = None              # LIMIT NULL: no limit
    # statements this read may still run (None: any number, in its transaction); a lookup() is
    # one statement outside a transaction, and a second would read another snapshot
    statements_left: int | None = None

    def execute(self, sql: str, params=()) -> psycopg.Cursor:
        if self.statements_left is not None:
            if not self.statements_left:
                raise RuntimeError("a lookup() reads one statement (its own snapshot): use snapshot()")
            self.statements_left -= 1
        return self.conn.execute(_psycopg_sql(sql), params)

    def columns(self, cursor: psycopg.Cursor) -> tuple[str, ...] | None:
        return None if cursor.description is None else tuple(d.name for d in cursor.description)

    # meta is one typed row here; the daemons' starts and heartbeats are per source (the
    # newest of them stands for "the daemon": stale only when every source is)
    def meta(self) -> Meta:
        return self.first(Meta, "SELECT database_id, data_generation, last_ingest_at,"
                                " (SELECT max(heartbeat_at) FROM sources) AS heartbeat_at,"
                                " (SELECT max(started_at) FROM sources) AS daemon_started_at FROM meta") or Meta()

    def stored_database_id(self) -> str | None:
        return self.value("SELECT database_id FROM meta")

    def generation(self) -> int:
        return int(self.value("SELECT data_generation FROM meta") or 0)

    def agents(self, limit: int) -> list[str]:
        # PostgreSQL has no skip scan: DISTINCT would read every entry of executions_by_agent.
        # One index probe per agent instead (a "loose index scan").
        return [name for name, in self.execute(
            "WITH RECURSIVE a(v) AS (SELECT min(agent_type) FROM executions UNION ALL"
            " SELECT (SELECT min(agent_type) FROM executions WHERE agent_type > a.v) FROM a WHERE a.v IS NOT NULL)"
            " SELECT v FROM a WHERE v IS NOT NULL LIMIT ?", (limit,))]

    def ingest_counters(self) -> dict[str, float | None]:
        cursor = self.execute(
            "SELECT sum(lines_ingested_total)::float8 AS lines_ingested_total,"
            " sum(bad_lines_total)::float8 AS bad_lines_total, sum(bytes_read_total)::float8 AS bytes_read_total,"
            " sum(files_read_total)::float8 AS files_read_total, sum(batches_total)::float8 AS batches_total,"
            " sum(batch_seconds_total) AS batch_seconds_total, max(heartbeat_at) AS heartbeat_at,"
            " (SELECT data_generation FROM meta) AS data_generation,"
            " (SELECT last_ingest_at FROM meta) AS last_ingest_at FROM sources")
        # (aggregates without GROUP BY: always one row, one value per column)
        return dict(zip(self.columns(cursor) or (), cursor.fetchone() or (), strict=True))


class Deadlines:
    """Cancels the statement of a response that is past its deadline: a thread that looks at
    the responses under way a few times per limit. (statement_timeout alone would let a response
    of several statements run for several limits.)"""

    def __init__(self, limit: float):
        self.every = min(max(limit / 4, 0.01), 0.25)
        self._changed = threading.Condition()
        self._open: dict[int, tuple[float, psycopg.Connection]] = {}
        self._cancelling: set[int] = set()
        self._thread: threading.Thread | None = None

    def arm(self, conn: psycopg.Connection, deadline: float) -> int:
        token = id(conn)      # (a connection serves one response at a time)
        with self._changed:
            self._open[token] = (deadline, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="reev-api deadlines", daemon=True)
                self._thread.start()
        return token

    def disarm(self, token: int):
        """Before the response's transaction ends: a cancel under way is waited for, so that it
        cannot reach the connection's next statement (another response's)."""
        with self._changed:
            self._open.pop(token, None)
            self._changed.wait_for(lambda: token not in self._cancelling)

    def _watch(self):
        while True:
            time.sleep(self.every)
            now = time.monotonic()
            with self._changed:
                late = [(token, conn) for token, (deadline, conn) in self._open.items() if deadline < now]
                for token, _ in late:
                    del self._open[token]
                    self._cancelling.add(token)
            for token, conn in late:      # (not under the lock: a cancel is a new connection to the server)
                with contextlib.suppress(psycopg.Error):
                    conn.cancel_safe(timeout=CONNECT_TIMEOUT)
                with self._changed:
                    self._cancelling.discard(token)
                    self._changed.notify_all()


class PostgresDatabase(Database):
    """Read-only access to the daemon's PostgreSQL database (a primary or a hot standby)."""

    _CLOSE_ERRORS = psycopg.Error

    def __init__(self, url: str, query_timeout: float = 2.0):
        self.url = url
        self.name = shown(url)
        self.query_timeout = query_timeout
        self._local = threading.local()
        self._deadlines = Deadlines(query_timeout)
        # statement_timeout counts whole milliseconds, and 0 would mean none
        self._session_setup = (f"SET default_transaction_read_only = on;"
                               f" SET statement_timeout = {max(1, round(query_timeout * 1000))}")

    def _connection(self) -> psycopg.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and not conn.broken and not conn.closed:
            return conn
        if time.monotonic() < getattr(local, "retry_at", 0.0):
            raise DatabaseUnavailable(local.failure)
        self._drop()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name="reev-api")
        except psycopg.Error as e:
            local.wait = min(RETRY_MOST, 2 * getattr(local, "wait", RETRY_FIRST / 2))
            local.retry_at = time.monotonic() + local.wait
            local.failure = f"cannot connect to the database {self.name}: {first_line(e)}"
            raise DatabaseUnavailable(local.failure) from None
        local.wait = RETRY_FIRST / 2
        try:
            conn.execute(self._session_setup)
        except psycopg.Error as e:
            conn.close()
            raise DatabaseUnavailable(f"cannot set up a session on {self.name}: {first_line(e)}") from None
        local.conn, local.database_id = conn, None
        return conn

    def snapshot(self) -> contextlib.AbstractContextManager[PostgresQueries]:
        return self._reading(transaction=True)

    def lookup(self) -> contextlib.AbstractContextManager[PostgresQueries]:
        return self._reading(transaction=False)

    @contextlib.contextmanager
    def _reading(self, transaction: bool) -> Iterator[PostgresQueries]:
        conn = self._connection()
        token = self._deadlines.arm(conn, time.monotonic() + self.query_timeout)
        try:
            if transaction:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            q = self._identified(PostgresQueries(conn, self._local.database_id))
            if not transaction:
                q.statements_left = 1
            yield q
        except psycopg.Error as e:
            raise self._failure(conn, e) from None
        finally:
            self._deadlines.disarm(token)
            if conn.broken or conn.closed:
                self._drop()
            elif conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                try:
                    conn.execute("ROLLBACK")      # (read only: nothing to keep)
                except psycopg.Error:
                    self._drop()

    def _failure(self, conn: psycopg.Connection, e: psycopg.Error) -> Exception:
        """What a failed read is answered with."""
        if isinstance(e, psycopg.errors.QueryCanceled):
            return QueryTimeout(f"the query took longer than {self.query_timeout:g} s")
        if e.sqlstate == _NO_TABLES:
            return DatabaseUnavailable(f"{self.name} has no reev-ingest tables yet:"
                                       " reev-ingestd makes them at its start")
        if conn.broken or conn.closed or e.sqlstate in _UNAVAILABLE or e.sqlstate is None \
                or e.sqlstate.startswith("08"):
            return DatabaseUnavailable(f"cannot read the database {self.name}: {first_line(e)}")
        return e


def first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
