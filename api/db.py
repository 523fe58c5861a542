"""All SQL of the API, and its read-only connections (one per thread that queries: the event
loop's, which runs the routes, and the threads that feed event streams and /metrics).

Each response runs its queries inside one read transaction (`Database.snapshot()`), so a page
is one consistent snapshot, and the transaction ends before the response is sent: an open
read snapshot would stop the daemon's WAL checkpoints.
"""

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw

from core.readonly import CannotOpen, open_readonly


class DatabaseUnavailable(Exception):
    """The database file does not exist (yet) or cannot be opened. (Its message names the file
    by its name only: it is shown to clients.)"""


class QueryTimeout(Exception):
    """A query ran past the per-query time limit."""


def _dict_rows(cursor: apsw.Cursor, row: tuple) -> dict:
    return {d[0]: v for d, v in zip(cursor.get_description(), row)}


class Database:
    """Read-only access to the daemon's database; survives the file not existing yet."""

    def __init__(self, path: Path, query_timeout: float = 2.0):
        self.path = path
        self.query_timeout = query_timeout
        self._local = threading.local()

    # ------------------------------------------------------------------ connections

    def _connection(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            ino = None
        if conn is not None and self._local.ino == ino:
            return conn
        self._drop()   # first use, or the file was replaced (or is gone): open it anew
        try:
            conn, st = open_readonly(self.path)
        except CannotOpen as e:
            raise DatabaseUnavailable(str(e)) from None
        conn.row_trace = _dict_rows
        self._local.conn, self._local.ino, self._local.database_id = conn, st.st_ino, None
        return conn

    def _drop(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(apsw.Error):
                conn.close()
        self._local.conn = None
        self._local.ino = None
        self._local.database_id = None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Queries"]:
        """One read transaction with a time limit, closed before the response is sent."""
        conn = self._connection()
        deadline = time.monotonic() + self.query_timeout
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            conn.execute("BEGIN DEFERRED").fetchall()
            try:
                q = Queries(conn, self._local.database_id)
                if q.database_id is None:
                    # Read once per connection; until a daemon has given an older database its
                    # identity (schema.sql, at its start), looked for again each time.
                    q.database_id = self._local.database_id = q.stored_database_id()
                yield q
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT").fetchall()
        except apsw.InterruptError:
            raise QueryTimeout(f"the query took longer than {self.query_timeout:g} s") from None
        except (apsw.CantOpenError, apsw.NotADBError, apsw.CorruptError, apsw.IOError) as e:
            self._drop()
            raise DatabaseUnavailable(f"cannot read the database: {e}") from None
        finally:
            conn.set_progress_handler(None)


class Queries:
    """The statements the routes run, inside one snapshot. `database_id`: the identity the
    daemon gave the database when it created it (None in one older than identities, until a
    daemon has started on it): a database rebuilt or replaced by another has another one, so
    its generations and change numbers are not taken for this one's (ETags, event ids)."""

    def __init__(self, conn: apsw.Connection, database_id: str | None = None):
        self.conn = conn
        self.database_id = database_id

    def all(self, sql: str, params=()) -> list[dict]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params=()) -> dict | None:
        rows = self.conn.execute(sql, params).fetchall()
        return rows[0] if rows else None

    # ------------------------------------------------------------------ meta

    def meta(self) -> dict:
        return {r["key"]: r["value"] for r in self.all("SELECT key, value FROM meta")}

    def stored_database_id(self) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = 'database_id'")
        return row["value"] if row else None

    def generation(self) -> int:
        row = self.one("SELECT value FROM meta WHERE key = 'data_generation'")
        return int(row["value"]) if row and row["value"] is not None else 0

    # ------------------------------------------------------------------ benchmarks

    def execution_version(self, execution_id: str) -> tuple[int, int] | None:
        """What an execution's ETag is made of, in one statement (it runs for every request):
        the data generation that last changed it, and the one that last changed a benchmark."""
        row = self.one("SELECT changed_generation AS g, (SELECT generation FROM scope_generations"
                       " WHERE scope = 'benchmarks') AS b FROM executions WHERE execution_id = ?", (execution_id,))
        return (row["g"], row["b"] or 0) if row else None

    def scope_generation(self, scope: str) -> int:
        row = self.one("SELECT generation AS g FROM scope_generations WHERE scope = ?", (scope,))
        return row["g"] if row else 0

    def benchmarks(self, limit: int) -> list[dict]:
        return self.all("SELECT id, description, tags, prompt FROM benchmarks WHERE removed = 0"
                        " ORDER BY id LIMIT ?", (limit,))

    def benchmark(self, bench_id: str) -> dict | None:
        return self.one("SELECT id, description, tags, prompt, flow_steps, removed FROM benchmarks"
                        " WHERE id = ?", (bench_id,))

    # ------------------------------------------------------------------ executions

    _EXECUTION = (
        "SELECT e.id, e.execution_id, e.recorded_session_id, e.benchmark_id, e.agent_type, e.status,"
        " e.success, e.score, e.final_status, e.execution_time_ms, e.start_time, e.end_time,"
        " e.first_event_at, e.last_event_at, e.created_at, e.updated_at, e.sort_at, e.event_count,"
        " e.tool_call_count, e.step_count, e.stale_reason, coalesce(b.flow_steps, 0) AS flow_steps"
        " FROM executions e LEFT JOIN benchmarks b ON b.id = e.benchmark_id")

    def execution(self, execution_id: str) -> dict | None:
        return self.one(self._EXECUTION + " WHERE e.execution_id = ?", (execution_id,))

    def execution_docs(self, execution_id: str) -> dict | None:
        return self.one("SELECT d.result_doc, d.session_doc FROM executions x"
                        " JOIN session_docs d ON d.exec_id = x.id WHERE x.execution_id = ?",
                        (execution_id,))

    def newest_execution(self, bench_id: str, agent: str | None) -> dict | None:
        if agent is None:
            return self.one(self._EXECUTION + " WHERE e.benchmark_id = ?"
                            " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT 1", (bench_id,))
        return self.one(self._EXECUTION + " WHERE e.benchmark_id = ? AND e.agent_type = ?"
                        " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT 1", (bench_id, agent))

    def recent_executions(self, bench_id: str, limit: int) -> list[dict]:
        return self.all(self._EXECUTION + " WHERE e.benchmark_id = ?"
                        " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT ?", (bench_id, limit))

    def sessions(self, *, benchmark_id: str | None, agent: str | None, status: str | None,
                 after: tuple[float, str] | None, limit: int) -> list[dict]:
        where, params = [], []
        for column, value in (("e.benchmark_id", benchmark_id), ("e.agent_type", agent), ("e.status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            where.append("(e.sort_at, e.execution_id) < (?, ?)")
            params.extend(after)
        sql = self._EXECUTION + (" WHERE " + " AND ".join(where) if where else "")
        return self.all(sql + " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT ?", (*params, limit))

    def agents(self, limit: int) -> list[str]:
        return [r["agent_type"] for r in self.all(
            "SELECT DISTINCT agent_type FROM executions WHERE agent_type IS NOT NULL"
            " ORDER BY agent_type LIMIT ?", (limit,))]

    # ------------------------------------------------------------------ agent performance

    def agent_stats(self) -> list[dict]:
        """Per agent and benchmark: finished, succeeded, scored, score_sum (kept by triggers)."""
        return self.all("SELECT agent_type, benchmark_id, finished, succeeded, scored, score_sum"
                        " FROM agent_benchmark_stats ORDER BY agent_type, benchmark_id")

    def finished_results(self, agent: str, after: tuple[float, str] | None, limit: int) -> list[dict]:
        keyset = " AND (sort_at, execution_id) < (?, ?)" if after else ""
        # `agent_type = ?` (not coalesce(...) = ?) so that executions_finished_by_agent serves it;
        # the summary table files runs without an agent under ''
        who = "agent_type = ?" if agent else "agent_type IS NULL AND ? = ''"
        return self.all(
            "SELECT id, execution_id, benchmark_id, score, success, final_status, created_at, sort_at"
            f" FROM executions WHERE {who} AND success IS NOT NULL" + keyset +
            " ORDER BY sort_at DESC, execution_id DESC LIMIT ?", (agent, *(after or ()), limit))

    # ------------------------------------------------------------------ events and tool calls

    def events(self, exec_id: int, after_line: int, limit: int) -> list[dict]:
        return self.all("SELECT line, byte_offset, kind, event_type, ts, doc FROM events"
                        " WHERE exec_id = ? AND line > ? ORDER BY line LIMIT ?", (exec_id, after_line, limit))

    def tool_calls(self, exec_id: int, after_line: int, limit: int) -> list[dict]:
        return self.all("SELECT line, output_line, tool_name, started_at, ended_at, duration_ms, input, output,"
                        " success, status, error_message FROM tool_calls_io WHERE exec_id = ? AND line > ?"
                        " ORDER BY line LIMIT ?", (exec_id, after_line, limit))

    def source_files(self, execution_id: str) -> list[dict]:
        return self.all("SELECT path, kind, offset, line_no, size, state, ingested_at FROM files"
                        " WHERE kind IN ('session', 'events') AND subject_id = ? ORDER BY kind, path",
                        (execution_id,))

    # ------------------------------------------------------------------ ingest state

    def file_counts(self) -> list[dict]:
        # pending_bytes: the daemon's lag (daemon/store.py lag_bytes): logs it reads (state ok) only
        return self.all("SELECT kind, state, count(*) AS files,"
                        " sum(CASE WHEN kind = 'events' AND state = 'ok' AND size > offset THEN size - offset ELSE 0 END)"
                        " AS pending_bytes"
                        " FROM files GROUP BY kind, state ORDER BY kind, state")

    def error_count(self) -> int:
        return self.one("SELECT count(*) AS n FROM ingest_errors")["n"]

    def errors(self, after_id: int | None, limit: int) -> list[dict]:
        keyset = " WHERE id < ?" if after_id is not None else ""
        return self.all("SELECT id, path, line, byte_offset, reason, first_seen_at, last_seen_at, count"
                        " FROM ingest_errors" + keyset + " ORDER BY id DESC LIMIT ?",
                        (*((after_id,) if after_id is not None else ()), limit))

    # ------------------------------------------------------------------ change feed and metrics

    def last_change(self) -> int:
        row = self.one("SELECT max(seq) AS seq FROM changes")
        return row["seq"] or 0

    def changes_after(self, seq: int, limit: int | None, generation: int | None = None) -> list[dict]:
        """Changes after `seq` in order (only of `generation`, if given), with what a stream event
        shows: the state each change led to, the rest of the summary as it is now."""
        only = " AND c.generation = ?" if generation is not None else ""
        return self.all(
            "SELECT c.seq, c.generation, c.kind, c.execution_id, c.benchmark_id, c.agent_type, c.status, c.score,"
            " x.recorded_session_id, x.created_at, x.updated_at, x.last_event_at,"
            " r.id AS error_id, r.path, r.line, r.byte_offset, r.reason, r.first_seen_at, r.last_seen_at, r.count"
            " FROM changes c LEFT JOIN executions x ON x.execution_id = c.execution_id"
            " LEFT JOIN ingest_errors r ON r.id = c.error_id"
            " WHERE c.seq > ?" + only + " ORDER BY c.seq LIMIT ?",
            (seq, *((generation,) if generation is not None else ()), -1 if limit is None else limit))

    def ingest_counters(self) -> dict:
        return {r["key"]: r["value"] for r in self.all(
            "SELECT key, value FROM meta WHERE key LIKE '%_total' OR key IN"
            " ('data_generation', 'last_ingest_at', 'heartbeat_at')")}
