"""All SQL of the API, the interface its routes read through (`Database`, its `snapshot()`,
`Queries`), and the typed rows its queries return. Two engines implement it, one module each:
api/db_sqlite.py (APSW, a file opened read-only) and api/db_postgres.py (psycopg, a
postgresql:// URL; imported only when one is given). `open_database` picks by the target alone,
as `--db` says it. The SQL both engines accept is written once, here, with `?` placeholders;
what differs (the meta facts, the agents' list, "no limit") each backend's Queries says.
Connections are one per thread that queries: the event loop's, which runs most routes, and the
worker threads of the others, of event streams and of /metrics.

Column names and order live here only: each query returns msgspec Structs of one row kind
(below), built positionally from the cursor's tuples (no per-row dict), and the first run of
each statement checks that its columns are the Struct's fields, so a column added, dropped or
misspelt on one side is an error at its first use rather than a shifted value.

Each response runs its queries inside one read transaction (`Database.snapshot()`), so a page
is one consistent snapshot, and the transaction ends before the response is sent: an open
read snapshot would stop the daemon's WAL checkpoints (SQLite) or hold back vacuum (PostgreSQL).
"""

import contextlib
import itertools
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

from core.dburl import is_url
from core.run_status import Status


class DatabaseUnavailable(Exception):
    """The database does not exist (yet) or cannot be opened or reached. (Its message names a
    file by its name only, a URL without its password: it is shown to clients.)"""


class QueryTimeout(Exception):
    """A query ran past the per-query time limit."""


# ---------------------------------------------------------------------- rows

class Row(msgspec.Struct, gc=False):
    """A row as a query returns it (scalars only, so no GC tracking: cheaper to make)."""


class ExecutionRow(Row):
    """An execution, with its benchmark's step count (0 when the benchmark is unknown)."""
    id: int
    execution_id: str
    recorded_session_id: str | None
    benchmark_id: str | None
    agent_type: str | None
    status: Status
    success: int | None
    score: float | None
    execution_time_ms: int | None
    first_event_at: float | None
    last_event_at: float | None
    created_at: float | None
    updated_at: float | None
    sort_at: float
    event_count: int
    tool_call_count: int
    step_count: int
    stale_reason: str | None
    flow_steps: int


class RunRow(ExecutionRow):
    """An execution with its session file's final_result, as the daemon stored it (JSON text;
    None until a session file gave one), and what its ETag is made of (as execution_version)."""
    result_doc: str | None
    changed_generation: int
    benchmarks_generation: int

    @property
    def version(self) -> tuple[int, int]:
        return self.changed_generation, self.benchmarks_generation


class BenchmarkRow(Row):
    id: str
    description: str
    tags: str                 # a JSON array, as the daemon stored it
    prompt: str
    removed: int


class ResultRow(Row):
    """A finished execution, as agent performance lists it."""
    id: int
    execution_id: str
    benchmark_id: str | None
    score: float | None
    success: int | None
    final_status: str | None
    created_at: float | None
    sort_at: float


class AgentStatsRow(Row):
    """Per agent and benchmark (kept by the daemon as it stores executions)."""
    agent_type: str
    benchmark_id: str
    finished: int
    succeeded: int
    scored: int
    score_sum: float


class EventRow(Row):
    line: int
    byte_offset: int
    kind: str
    event_type: str | None
    ts: float | None
    doc: str | None           # the stored JSON text


class ToolCallRow(Row):
    line: int
    tool_name: str | None
    started_at: float | None
    ended_at: float | None
    duration_ms: float | None
    input: str | None         # stored JSON text
    output: str | None
    success: int | None
    error_message: str | None


class SourceFileRow(Row):
    path: str
    kind: Literal["session", "events"]
    offset: int
    line_no: int
    size: int
    state: str
    ingested_at: float | None


class FileCountRow(Row):
    kind: str
    state: str
    files: int
    pending_bytes: int


class ErrorRow(Row):
    id: int
    path: str
    line: int
    byte_offset: int
    reason: str
    first_seen_at: float | None
    last_seen_at: float | None
    count: int


class ChangeRow(Row):
    """A change of the feed, with what a stream event shows: the state the change led to, and
    the rest of the summary (execution) or the error (ingest-error) as it is now."""
    seq: int
    generation: int
    kind: str
    execution_id: str | None
    benchmark_id: str | None
    agent_type: str | None
    status: Status | None
    score: float | None
    recorded_session_id: str | None
    created_at: float | None
    updated_at: float | None
    last_event_at: float | None
    error_id: int | None      # None: an error cleared since (its file became valid)
    path: str | None
    line: int | None
    byte_offset: int | None
    reason: str | None
    first_seen_at: float | None
    last_seen_at: float | None
    count: int | None


class Meta(Row):
    """What the daemon records about itself in the meta table (None: not recorded yet)."""
    database_id: str | None = None
    data_generation: int | None = None
    last_ingest_at: float | None = None
    heartbeat_at: float | None = None
    daemon_started_at: float | None = None


R = TypeVar("R", bound=Row)
Q = TypeVar("Q", bound="Queries")
_CHECKED: set[tuple[type, str]] = set()     # (row kind, statement) whose columns matched


class Database:
    """Read-only access to the daemon's database, which need not exist yet (an engine's module
    implements it). `name`: the database as the health route shows it (a file's name; a URL
    without its password). An engine keeps one connection per thread that queries
    (`_local.conn`), and the database's identity as read on it (`_local.database_id`)."""

    name: str
    query_timeout: float
    _local: threading.local
    _CLOSE_ERRORS: ClassVar[type[Exception]]     # what closing the engine's connection may raise

    def snapshot(self) -> contextlib.AbstractContextManager["Queries"]:
        """One read transaction with a time limit, closed before the response is sent."""
        raise NotImplementedError

    def lookup(self) -> contextlib.AbstractContextManager["Queries"]:
        """For a read that is one statement (the ETag check before a route, the stream's poll
        of the generation, a route whose answer is one row): the engine may run it outside a
        transaction, the statement then its own snapshot. The same limits and errors as
        snapshot()."""
        return self.snapshot()

    def _identified(self, q: "Q") -> "Q":
        """`q` with the database's identity, read once per connection: until a daemon has given
        an older database one (at its start), looked for again each time."""
        if q.database_id is None:
            q.database_id = self._local.database_id = q.stored_database_id()
        return q

    def _drop(self):
        """Close and forget this thread's connection (it broke, or the file was replaced)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(self._CLOSE_ERRORS):
                conn.close()
        self._local.conn = None
        self._local.database_id = None


def open_database(target: Path | str, query_timeout: float = 2.0) -> Database:
    """The database `--db` names: a postgresql:// URL, else a SQLite file's path."""
    if is_url(target):
        from api.db_postgres import PostgresDatabase  # (psycopg: the optional extra)
        return PostgresDatabase(str(target), query_timeout)
    from api.db_sqlite import SQLiteDatabase
    return SQLiteDatabase(Path(target), query_timeout)


class Queries:
    """The statements the routes run, inside one snapshot. `database_id`: the identity the
    daemon gave the database when it created it (None in one older than identities, until a
    daemon has started on it): a database rebuilt or replaced by another has another one, so
    its generations and change numbers are not taken for this one's (ETags, event ids).

    An engine's subclass says how a statement runs (`execute`, `columns`) and holds the
    statements that differ between engines."""

    NO_LIMIT: ClassVar[Any]       # what `LIMIT ?` takes for "no limit"

    def __init__(self, conn, database_id: str | None = None):
        self.conn = conn
        self.database_id = database_id

    def execute(self, sql: str, params=()) -> Any:
        """A cursor over the rows of `sql` (with `?` placeholders), as tuples."""
        raise NotImplementedError

    def columns(self, cursor) -> tuple[str, ...] | None:
        """The names of the columns a cursor returns (None: no rows to tell)."""
        raise NotImplementedError

    def rows(self, row: type[R], sql: str, params=()) -> list[R]:
        cursor = self.execute(sql, params)
        if (row, sql) not in _CHECKED:
            self._columns_match(row, sql, cursor)
        return list(itertools.starmap(row, cursor))

    def _columns_match(self, row: type[Row], sql: str, cursor):
        """The first time a statement returns rows: its columns are the row kind's fields, in order."""
        names = self.columns(cursor)
        if names is None:
            return
        if names != row.__struct_fields__:
            raise TypeError(f"{row.__name__} has fields {row.__struct_fields__}, the statement returns {names}")
        _CHECKED.add((row, sql))

    def first(self, row: type[R], sql: str, params=()) -> R | None:
        found = self.rows(row, sql, params)
        return found[0] if found else None

    def value(self, sql: str, params=()):
        """The first column of the first row (None if there is none)."""
        found = self.execute(sql, params).fetchone()
        return found[0] if found else None

    # ------------------------------------------------------------------ meta

    def meta(self) -> Meta:
        raise NotImplementedError

    def stored_database_id(self) -> str | None:
        raise NotImplementedError

    def generation(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ benchmarks

    # what an execution's ETag is made of: the data generation that last changed it, and the
    # one that last changed a benchmark
    _VERSION = ("e.changed_generation, coalesce((SELECT generation FROM scope_generations"
                " WHERE scope = 'benchmarks'), 0) AS benchmarks_generation")
    _VERSION_OF = "SELECT " + _VERSION + " FROM executions e WHERE e.execution_id = ?"

    def execution_version(self, execution_id: str) -> tuple[int, int] | None:
        """An execution's version, in one statement (it runs for every conditional request)."""
        row = self.execute(self._VERSION_OF, (execution_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def scope_generation(self, scope: str) -> int:
        return self.value("SELECT generation FROM scope_generations WHERE scope = ?", (scope,)) or 0

    _BENCHMARK = "SELECT id, description, tags, prompt, removed FROM benchmarks"

    def benchmarks(self, limit: int) -> list[BenchmarkRow]:
        return self.rows(BenchmarkRow, self._BENCHMARK + " WHERE removed = 0 ORDER BY id LIMIT ?", (limit,))

    def benchmark(self, bench_id: str) -> BenchmarkRow | None:
        return self.first(BenchmarkRow, self._BENCHMARK + " WHERE id = ?", (bench_id,))

    # ------------------------------------------------------------------ executions

    _EXECUTION_COLUMNS = (
        "SELECT e.id, e.execution_id, e.recorded_session_id, e.benchmark_id, e.agent_type, e.status,"
        " e.success, e.score, e.execution_time_ms, e.first_event_at, e.last_event_at, e.created_at,"
        " e.updated_at, e.sort_at, e.event_count, e.tool_call_count, e.step_count, e.stale_reason,"
        " coalesce(b.flow_steps, 0) AS flow_steps")
    _EXECUTION_FROM = " FROM executions e LEFT JOIN benchmarks b ON b.id = e.benchmark_id"
    _EXECUTION = _EXECUTION_COLUMNS + _EXECUTION_FROM

    def execution(self, execution_id: str) -> RunRow | None:
        """One execution with its session file's final_result and its version, in one statement
        (every view of one run reads both, and the status route nothing else: one round trip on
        PostgreSQL, without a transaction around it)."""
        return self.first(RunRow, self._EXECUTION_COLUMNS + ", d.result_doc, " + self._VERSION + self._EXECUTION_FROM +
                          " LEFT JOIN session_docs d ON d.exec_id = e.id WHERE e.execution_id = ?", (execution_id,))

    def newest_execution(self, bench_id: str, agent: str | None) -> ExecutionRow | None:
        if agent is None:
            return self.first(ExecutionRow, self._EXECUTION + " WHERE e.benchmark_id = ?"
                              " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT 1", (bench_id,))
        return self.first(ExecutionRow, self._EXECUTION + " WHERE e.benchmark_id = ? AND e.agent_type = ?"
                          " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT 1", (bench_id, agent))

    def recent_executions(self, bench_id: str, limit: int) -> list[ExecutionRow]:
        return self.rows(ExecutionRow, self._EXECUTION + " WHERE e.benchmark_id = ?"
                         " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT ?", (bench_id, limit))

    def sessions(self, *, benchmark_id: str | None, agent: str | None, status: str | None,
                 after: tuple[float, str] | None, limit: int) -> list[ExecutionRow]:
        where: list[str] = []
        params: list[str | float] = []
        for column, value in (("e.benchmark_id", benchmark_id), ("e.agent_type", agent), ("e.status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            where.append("(e.sort_at, e.execution_id) < (?, ?)")
            params.extend(after)
        sql = self._EXECUTION + (" WHERE " + " AND ".join(where) if where else "")
        return self.rows(ExecutionRow, sql + " ORDER BY e.sort_at DESC, e.execution_id DESC LIMIT ?",
                         (*params, limit))

    def agents(self, limit: int) -> list[str]:
        """The agents that have executions, in order (at most `limit`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ agent performance

    def agent_stats(self) -> list[AgentStatsRow]:
        return self.rows(AgentStatsRow, "SELECT agent_type, benchmark_id, finished, succeeded, scored, score_sum"
                                        " FROM agent_benchmark_stats ORDER BY agent_type, benchmark_id")

    def finished_results(self, agent: str, after: tuple[float, str] | None, limit: int) -> list[ResultRow]:
        keyset = " AND (sort_at, execution_id) < (?, ?)" if after else ""
        # `agent_type = ?` (not coalesce(...) = ?) so that executions_finished_by_agent serves it;
        # the summary table files runs without an agent under ''
        who = "agent_type = ?" if agent else "agent_type IS NULL AND ? = ''"
        return self.rows(
            ResultRow, "SELECT id, execution_id, benchmark_id, score, success, final_status, created_at, sort_at"
            f" FROM executions WHERE {who} AND success IS NOT NULL" + keyset +
            " ORDER BY sort_at DESC, execution_id DESC LIMIT ?", (agent, *(after or ()), limit))

    # ------------------------------------------------------------------ events and tool calls

    def events(self, exec_id: int, after_line: int, limit: int) -> list[EventRow]:
        return self.rows(EventRow, "SELECT line, byte_offset, kind, event_type, ts, doc FROM events"
                         " WHERE exec_id = ? AND line > ? ORDER BY line LIMIT ?", (exec_id, after_line, limit))

    def tool_calls(self, exec_id: int, after_line: int, limit: int) -> list[ToolCallRow]:
        return self.rows(ToolCallRow, "SELECT line, tool_name, started_at, ended_at, duration_ms, input, output,"
                         " success, error_message FROM tool_calls_io WHERE exec_id = ? AND line > ?"
                         " ORDER BY line LIMIT ?", (exec_id, after_line, limit))

    def source_files(self, execution_id: str) -> list[SourceFileRow]:
        return self.rows(SourceFileRow, "SELECT path, kind, \"offset\", line_no, size, state, ingested_at FROM files"
                         " WHERE kind IN ('session', 'events') AND subject_id = ? ORDER BY kind, path",
                         (execution_id,))

    # ------------------------------------------------------------------ ingest state

    def file_counts(self) -> list[FileCountRow]:
        """Files by kind and state, with their pending bytes: the ingest lag, defined as the
        daemon defines it for its STATUS= line and `reev-ingestd status` (`lag_bytes` in the
        daemon's storage, daemon/storage/sqlite/reports.py; the API does not import the daemon,
        so the rule is written here again, and tests/test_api_seams.py holds the two equal): bytes of the event
        logs the daemon reads (state ok) beyond their checkpoint, size minus offset."""
        return self.rows(FileCountRow, "SELECT kind, state, count(*) AS files,"
                         " CAST(coalesce(sum(CASE WHEN kind = 'events' AND state = 'ok' AND size > \"offset\""
                         " THEN size - \"offset\" ELSE 0 END), 0) AS bigint) AS pending_bytes"
                         " FROM files GROUP BY kind, state ORDER BY kind, state")

    def error_count(self) -> int:
        return self.value("SELECT count(*) FROM ingest_errors")

    def errors(self, after_id: int | None, limit: int) -> list[ErrorRow]:
        keyset = " WHERE id < ?" if after_id is not None else ""
        return self.rows(ErrorRow, "SELECT id, path, line, byte_offset, reason, first_seen_at, last_seen_at, count"
                         " FROM ingest_errors" + keyset + " ORDER BY id DESC LIMIT ?",
                         (*((after_id,) if after_id is not None else ()), limit))

    # ------------------------------------------------------------------ change feed and metrics

    def last_change(self) -> int:
        return self.value("SELECT max(seq) FROM changes") or 0

    def changes_after(self, seq: int, limit: int | None, generation: int | None = None) -> list[ChangeRow]:
        """Changes after `seq` in order (only of `generation`, if given)."""
        only = " AND c.generation = ?" if generation is not None else ""
        return self.rows(
            ChangeRow,
            "SELECT c.seq, c.generation, c.kind, c.execution_id, c.benchmark_id, c.agent_type, c.status, c.score,"
            " x.recorded_session_id, x.created_at, x.updated_at, x.last_event_at,"
            " r.id AS error_id, r.path, r.line, r.byte_offset, r.reason, r.first_seen_at, r.last_seen_at, r.count"
            " FROM changes c LEFT JOIN executions x ON x.execution_id = c.execution_id"
            " LEFT JOIN ingest_errors r ON r.id = c.error_id"
            " WHERE c.seq > ?" + only + " ORDER BY c.seq LIMIT ?",
            (seq, *((generation,) if generation is not None else ()), self.NO_LIMIT if limit is None else limit))

    def ingest_counters(self) -> dict[str, float | None]:
        """The daemon's counters (`*_total`, as the daemon names them) and the gauges /metrics
        shows (data_generation, last_ingest_at, heartbeat_at)."""
        raise NotImplementedError
