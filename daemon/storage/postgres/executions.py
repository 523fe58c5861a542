"""The executions (with session_docs), events and tool_calls tables of one source: as SQLite's
(daemon/storage/sqlite/executions.py, events.py, the derived columns of derived.py), save that
a run belongs to the source whose files created it, ids come from the table's sequence, and the
domain rules run in the commit tail (unit_of_work.py)."""

from typing import NamedTuple

import msgspec
import psycopg

from daemon.storage import rules
from daemon.storage.derived import POSTGRES as DERIVED
from daemon.storage.derived import of_stored_columns
from daemon.storage.errors import Busy, NotOwned
from daemon.storage.postgres.connection import one_row
from daemon.storage.postgres.kept import Kept
from daemon.storage.postgres.open_inputs import OpenInputs
from daemon.storage.postgres.unit_of_work import GENERATION, UnitOfWork, pg_sql
from daemon.storage.records import EventRow, Run, StaleCandidate, ToolCall, ToolCallEnd
from daemon.storage.rules import TRACKED_COLUMNS, ExecutionState
from daemon.storage.runs import Runs

CREATED_AT, UPDATED_AT, BENCHMARK, DURATION = DERIVED
ID_BLOCK = 100          # execution ids taken from the sequence at a time
CACHED_RUNS = 100_000   # this source's runs kept in memory (ExecutionRepository._runs) at most


def _p(name: str, cast: str = "") -> str:
    """A named parameter (with a cast where PostgreSQL cannot tell the type of a NULL)."""
    return f"%({name})s{cast}"


_F8 = "::double precision"
_INSERT_NEW = (
    "INSERT INTO executions (id, execution_id, source, recorded_session_id, session_benchmark_id, first_prompt,"
    " agent_type, status, success, score, final_status, execution_time_ms, start_time, end_time, first_event_at,"
    " last_event_at, created_at, updated_at, benchmark_id, finished_at, event_count, tool_call_count, step_count,"
    " changed_generation)"
    " VALUES (%(id)s, %(execution_id)s, %(source)s, coalesce(%(sid)s::text, %(events_sid)s::text), %(bench)s::text,"
    " %(prompt)s::text, %(agent)s::text, %(status)s, %(success)s::smallint, %(score)s::double precision,"
    " %(final_status)s::text, %(ms)s::bigint, %(start)s::double precision, %(end)s::double precision,"
    " %(first)s::double precision, %(last)s::double precision,"
    f" {CREATED_AT.format(start=_p('start', _F8), first=_p('first', _F8))},"
    " CASE WHEN %(given)s THEN"
    f" {UPDATED_AT.format(last=_p('last', _F8), end=_p('end', _F8), start=_p('start', _F8))} END,"
    f" {BENCHMARK.format(session_benchmark=_p('bench', '::text'), prompt=_p('prompt', '::text'))},"
    " %(finished_at)s::double precision, %(lines)s, %(calls)s, %(steps)s, %(gen)s)"
    f" ON CONFLICT (execution_id) DO NOTHING RETURNING {TRACKED_COLUMNS}")

_UPDATE_SESSION = (
    "UPDATE executions SET recorded_session_id = coalesce(%(sid)s::text, recorded_session_id),"
    " session_benchmark_id = %(bench)s::text, agent_type = coalesce(%(agent)s::text, agent_type), status = %(status)s,"
    " success = CASE WHEN %(keep)s THEN success ELSE %(success)s::smallint END,"
    " score = CASE WHEN %(keep)s THEN score ELSE %(score)s::double precision END,"
    " final_status = CASE WHEN %(keep)s THEN final_status ELSE %(final_status)s::text END,"
    " execution_time_ms = CASE WHEN %(keep)s THEN execution_time_ms ELSE %(ms)s::bigint END,"
    " start_time = %(start)s::double precision, end_time = %(end)s::double precision, stale_reason = NULL,"
    " finished_at = CASE WHEN %(finished)s THEN coalesce(finished_at, %(now)s) ELSE finished_at END,"
    f" created_at = {CREATED_AT.format(start=_p('start', _F8), first='first_event_at')},"
    f" updated_at = {UPDATED_AT.format(last='last_event_at', end=_p('end', _F8), start=_p('start', _F8))},"
    f" benchmark_id = {BENCHMARK.format(session_benchmark=_p('bench', '::text'), prompt='first_prompt')},"
    f" changed_generation = %(gen)s WHERE id = %(id)s RETURNING {TRACKED_COLUMNS}")


def _first_event_at(p) -> str:
    return (f"CASE WHEN first_event_at IS NULL OR {p('first', _F8)} < first_event_at"
            f" THEN {p('first', _F8)} ELSE first_event_at END")


def _aggregates(p) -> str:
    """What lines appended to a run's event log add to its row; `p(name, cast)` names a value."""
    return (
        f"UPDATE executions SET event_count = event_count + {p('lines')},"
        f" tool_call_count = tool_call_count + {p('calls')}, step_count = step_count + {p('steps')},"
        f" first_event_at = {_first_event_at(p)},"
        f" last_event_at = CASE WHEN last_event_at IS NULL OR {p('last', _F8)} > last_event_at"
        f" THEN {p('last', _F8)} ELSE last_event_at END,"
        f" recorded_session_id = coalesce(recorded_session_id, {p('sid', '::text')}), changed_generation = {p('gen')},"
        f" updated_at = greatest(coalesce(updated_at, 0), coalesce({p('last', _F8)}, 0))")


_ADD_AGGREGATES_DERIVING = (
    _aggregates(_p) + ", first_prompt = coalesce(first_prompt, %(prompt)s::text),"
    f" created_at = {CREATED_AT.format(start='start_time', first=_first_event_at(_p))},"
    " benchmark_id = "
    + BENCHMARK.format(session_benchmark="session_benchmark_id", prompt="coalesce(first_prompt, %(prompt)s::text)")
    + f" WHERE id = %(id)s RETURNING {TRACKED_COLUMNS}")
# The batch's appends to runs stored before it (nearly all of a live batch's), one statement at
# its end: a row per run (what several reads of one log add, summed: _merged). Whether an
# earlier timestamp came later (created_at to derive again) is in what it returns.
_APPENDED = ("id", "lines", "calls", "steps", "first", "last", "sid", "gen")
_ADD_APPENDED = (
    _aggregates(lambda name, cast="": f"u.{name}")
    + " FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::double precision[],"
    f" %b::double precision[], %b::text[], %b::bigint[]) AS u ({', '.join(_APPENDED)}) WHERE executions.id = u.id"
    " RETURNING executions.id, created_at IS NOT DISTINCT FROM "
    + CREATED_AT.format(start="start_time", first="first_event_at"))


def _merged(before: dict, after: dict) -> dict:
    """Two appends to one run as one (as the UPDATE applied twice would leave it)."""
    def least(a, b):
        return b if a is None else a if b is None else min(a, b)

    def most(a, b):
        return b if a is None else a if b is None else max(a, b)
    return {**after, "lines": before["lines"] + after["lines"], "calls": before["calls"] + after["calls"],
            "steps": before["steps"] + after["steps"], "first": least(before["first"], after["first"]),
            "last": most(before["last"], after["last"]),
            "sid": before["sid"] if before["sid"] is not None else after["sid"]}


_SET_STATUS, _SET_DERIVED, _TRACKED = (pg_sql(rules.SET_STATUS), pg_sql(rules.SET_DERIVED),
                                        pg_sql(rules.SELECT_TRACKED))
_DERIVED = of_stored_columns(DERIVED)
_LOOK_UP = "SELECT id, status, stale_reason IS NOT NULL, source FROM executions WHERE execution_id = %s"
_LOOK_UP_ALL = ("SELECT id, status, stale_reason IS NOT NULL, source, execution_id FROM executions"
                " WHERE execution_id = ANY(%s)")

# The batch's event lines and tool calls are copied into these (n: the order they were read
# in, so that the last read of a line wins), then upserted, a statement per table.
_STAGE_EVENTS = ("CREATE TEMP TABLE IF NOT EXISTS stage_events (n bigint GENERATED ALWAYS AS IDENTITY, exec_id bigint,"
                 " line bigint, byte_offset bigint, kind text, event_type text, ts double precision, doc text)"
                 " ON COMMIT DELETE ROWS")
_EVENT_COLUMNS = "exec_id, line, byte_offset, kind, event_type, ts, doc"
_EVENT_TYPES = ["int8", "int8", "int8", "text", "text", "float8", "text"]
_UPSERT_STAGED_EVENTS = (
    f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT DISTINCT ON (exec_id, line) {_EVENT_COLUMNS} FROM stage_events"
    " ORDER BY exec_id, line, n DESC"
    " ON CONFLICT (exec_id, line) DO UPDATE SET byte_offset = excluded.byte_offset, kind = excluded.kind,"
    " event_type = excluded.event_type, ts = excluded.ts, doc = excluded.doc")
_STAGE_CALLS = ("CREATE TEMP TABLE IF NOT EXISTS stage_calls (n bigint GENERATED ALWAYS AS IDENTITY, exec_id bigint,"
                " line bigint, source text, output_line bigint, tool_name text, started_at double precision,"
                " ended_at double precision, given double precision, success smallint, status text,"
                " error_message text) ON COMMIT DELETE ROWS")
_CALL_COLUMNS = ("exec_id, line, source, output_line, tool_name, started_at, ended_at, given, success, status,"
                 " error_message")
_CALL_TYPES = ["int8", "int8", "text", "int8", "text", "float8", "float8", "float8", "int2", "text", "text"]
_UPSERT_STAGED_CALLS = (
    "INSERT INTO tool_calls (exec_id, line, source, output_line, tool_name, started_at, ended_at, duration_ms,"
    " success, status, error_message)"
    " SELECT DISTINCT ON (exec_id, line) exec_id, line, source, output_line, tool_name, started_at, ended_at,"
    f" {DURATION.format(given='given', started='started_at', ended='ended_at')}, success, status, error_message"
    " FROM stage_calls ORDER BY exec_id, line, n DESC"
    " ON CONFLICT (exec_id, line) DO UPDATE SET source = excluded.source, output_line = excluded.output_line,"
    " tool_name = excluded.tool_name, started_at = excluded.started_at, ended_at = excluded.ended_at,"
    " duration_ms = excluded.duration_ms, success = excluded.success, status = excluded.status,"
    " error_message = excluded.error_message")


class _Staged(NamedTuple):
    """A table's rows kept by the batch, put in a temporary table, then upserted."""
    table: str
    create: str
    columns: str
    types: list[str]
    upsert: str

    @property
    def upsert_given(self) -> str:
        """The upsert of rows given as parameters (one array per column), not staged. (Sent in
        binary, %b: in text, psycopg escapes a text array element by element, slowly.)"""
        arrays = ", ".join(f"%b::{_ARRAY[t]}[]" for t in self.types)
        return self.upsert.replace(f"FROM {self.table} ",
                                   f"FROM unnest({arrays}) WITH ORDINALITY AS r ({self.columns}, n) ")


_ARRAY = {"int8": "bigint", "int2": "smallint", "float8": "double precision", "text": "text"}
_EVENTS_STAGED = _Staged("stage_events", _STAGE_EVENTS, _EVENT_COLUMNS, _EVENT_TYPES, _UPSERT_STAGED_EVENTS)
_CALLS_STAGED = _Staged("stage_calls", _STAGE_CALLS, _CALL_COLUMNS, _CALL_TYPES, _UPSERT_STAGED_CALLS)
# Fewer rows than this are upserted from arrays, one statement queued in the batch's pipeline (a
# live batch's few lines: no round trip); more are copied into the staging table (a back-fill's).
COPY_FROM = 500
# The batch's ends of tool calls opened by earlier reads, one statement (a call once: _completions).
_COMPLETE_KEPT = (
    "UPDATE tool_calls SET output_line = u.output_line, ended_at = coalesce(u.ended, tool_calls.ended_at),"
    f" duration_ms = coalesce({DURATION.format(given='u.given', started='tool_calls.started_at', ended='u.ended')},"
    " tool_calls.duration_ms), success = u.success, status = u.status, error_message = u.error_message"
    " FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::double precision[], %b::double precision[],"
    " %b::smallint[], %b::text[], %b::text[]) AS u (exec_id, line, output_line, ended, given, success, status,"
    " error_message) WHERE tool_calls.exec_id = u.exec_id AND tool_calls.line = u.line")


# The batch's session documents, one statement: a run's last read (_session_docs); the result
# document stays the stored one when the file has no final_result yet (keep).
_WRITE_DOCS = (
    "WITH u AS (SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::boolean[])"
    " AS u (exec_id, doc, result, keep)),"
    " updated AS (UPDATE session_docs d SET session_doc = u.doc,"
    " result_doc = CASE WHEN u.keep THEN d.result_doc ELSE u.result END FROM u WHERE d.exec_id = u.exec_id"
    " RETURNING d.exec_id)"
    " INSERT INTO session_docs (exec_id, session_doc, result_doc) SELECT exec_id, doc, result FROM u"
    " WHERE exec_id NOT IN (SELECT exec_id FROM updated)")


def _int(flag: bool | None) -> int | None:
    return None if flag is None else int(flag)


class ExecutionRepository(Runs, UnitOfWork):
    """This source's executions, with their session documents, events and tool calls."""

    def __init__(self) -> None:
        super().__init__()
        self._ids: list[int] = []                   # taken from the sequence, not handed out yet
        self._reserved: dict[str, int] = {}
        # This source's stored runs as last read, (id, status, stalled): only this daemon
        # changes them; one whose status the batch in hand changes is read again until it ends.
        self._runs: dict[str, tuple[int, str, bool]] = {}
        self._status_written: set[int] = set()
        self._looked_up: dict[str, tuple | None] = {}   # look_up_executions's answers, for the batch
        self._appended: Kept[int, dict] = Kept()                    # runs' appends (_ADD_APPENDED)
        self._completions: Kept[tuple[int, int], tuple] = Kept()    # tool calls' ends (_COMPLETE_KEPT)
        self._session_docs: Kept[int, tuple] = Kept()               # session files as written (_WRITE_DOCS)
        self._created_checks: list[psycopg.Cursor] = []            # (_batch_end)
        self._open_inputs = OpenInputs()

    def _owned(self, execution_id: str) -> tuple[int, str, bool] | None:
        """(id, status, stalled) of a stored run of this source; NotOwned if another's."""
        run = self._runs.get(execution_id)
        if run is not None and run[0] not in self._status_written:
            return run
        if execution_id in self._looked_up:
            row = self._looked_up.pop(execution_id)
        else:
            row = self._execute(_LOOK_UP, (execution_id,)).fetchone()
        if row is None:
            return None
        if row[3] != self.source:
            raise NotOwned(f"execution {execution_id!r} belongs to source {row[3]!r}: not ingested from here")
        run = (row[0], row[1], bool(row[2]))
        if run[0] not in self._status_written:
            if len(self._runs) >= CACHED_RUNS:
                self._runs.clear()
            self._runs[execution_id] = run
        return run

    def look_up_executions(self, execution_ids: list[str]):
        """The runs a batch will ask for (a back-fill's new files), in one statement."""
        wanted = [e for e in execution_ids if e not in self._runs and e not in self.new.ids]
        if wanted:
            found = {r[4]: r[:4] for r in self._execute(_LOOK_UP_ALL, (wanted,))}
            self._looked_up.update((e, found.get(e)) for e in wanted)

    def _batch_end(self):
        super()._batch_end()
        self._write_appended()
        self._write_completions()
        self._write_session_docs()
        # An event log's timestamps earlier than those stored (rare): its derived columns
        # again. (Looked at once the files are done, so that the batch's pipeline does not wait
        # for each answer; a file undone since finds nothing to change.)
        checks, self._created_checks = self._created_checks, []
        for cur in checks:
            for exec_id, same in cur.fetchall():
                if not same:
                    self._refresh_derived("id = %s", (exec_id,))

    def _write_appended(self):
        """The appends kept so far, before a statement reads or updates runs' rows."""
        if self._appended:
            rows = [tuple(v[k] for k in _APPENDED) for v in self._appended.take(self._in_file)]
            self._created_checks.append(self._update_from_arrays(_ADD_APPENDED, rows))

    def _write_session_docs(self):
        """The session documents kept so far, before one is read (or its run's read again)."""
        if self._session_docs:
            rows = self._session_docs.take(self._in_file)
            self._update_from_arrays(_WRITE_DOCS, rows)

    def _write_completions(self):
        """The tool calls' ends kept so far, before a statement reads tool calls or deletes them."""
        if self._completions:
            rows = self._completions.take(self._in_file)
            self._update_from_arrays(_COMPLETE_KEPT, rows)

    def _update_from_arrays(self, sql: str, rows: list[tuple]) -> psycopg.Cursor:
        """`sql`, an UPDATE joining a table to unnest()ed arrays, with `rows` as its arrays (one
        per column). Planned at each call, never prepared: a prepared statement's generic plan,
        made while the table was small (a new database), knows neither the arrays' length nor
        the table's growth, and kept a hash join over a scan of the whole table (the live
        benchmark: the tool calls' ends took 2.8 ms a statement, 0.14 ms planned each time). A
        plan of its own sees the arrays (unnest's row estimate) and takes the primary key."""
        return self._execute(sql, [list(c) for c in zip(*rows, strict=True)], prepare=False)

    def _savepoint_started(self):
        super()._savepoint_started()
        self._open_inputs.savepoint_started()
        self._appended.savepoint_started()
        self._completions.savepoint_started()
        self._session_docs.savepoint_started()

    def _savepoint_undone(self):
        super()._savepoint_undone()
        self._open_inputs.savepoint_undone()
        self._appended.savepoint_undone()
        self._completions.savepoint_undone()
        self._session_docs.savepoint_undone()

    def _batch_over(self, committed: bool):
        super()._batch_over(committed)
        self._open_inputs.batch_over(committed)
        self._created_checks.clear()
        self._looked_up.clear()
        self._appended.clear()
        self._completions.clear()
        self._session_docs.clear()
        if self._status_written:
            self._runs = {k: v for k, v in self._runs.items() if v[0] not in self._status_written}
            self._status_written.clear()

    def _forget(self):
        super()._forget()
        self._runs.clear()
        self._open_inputs.forget()
        # A crash of the server forgets how far the sequence went in transactions that did not
        # commit: ids taken since the last commit may come from it again. (Rows read ahead with
        # a reserved id are read again: Ingestor.process compares the ids.)
        self._ids.clear()
        self._reserved.clear()

    def _stored_run(self, execution_id: str) -> Run | None:
        run = self._owned(execution_id)
        return None if run is None else Run(*run)

    def _stored_id(self, execution_id: str) -> int | None:
        if execution_id in self._runs:
            return self._runs[execution_id][0]
        row = (self._looked_up[execution_id] if execution_id in self._looked_up
               else self._execute("SELECT id FROM executions WHERE execution_id = %s", (execution_id,)).fetchone())
        return None if row is None else row[0]

    def _allocate_id(self) -> int:
        # From the table's sequence, a block at a time: never handed out twice, whichever
        # daemon takes them, not even after a rollback (a crash of the server: _forget).
        if not self._ids:
            self._ids = [r[0] for r in self._execute(
                "SELECT nextval(pg_get_serial_sequence('executions', 'id')) FROM generate_series(1, %s)",
                (ID_BLOCK,))]
        return self._ids.pop(0)

    def _insert_rows(self, rows: list[dict]) -> list[ExecutionState]:
        with self._cursor() as cur:
            cur.executemany(_INSERT_NEW, [{**row, "source": self.source} for row in rows], returning=True)
            inserted: list[ExecutionState] = []
            while True:
                inserted.extend(ExecutionState(*r) for r in cur.fetchall())
                if not cur.nextset():
                    break
        if len(inserted) < len(rows):
            # Another source created one of them meanwhile: run the batch again, which then
            # finds that source's run (and records the error on this source's file).
            taken = {r["execution_id"] for r in rows} - {s.execution_id for s in inserted}
            raise Busy(f"execution {sorted(taken)[0]!r} was created by another source meanwhile", "Conflict")
        return inserted

    _UPDATE_SESSION = _UPDATE_SESSION
    _ADD_AGGREGATES_DERIVING = _ADD_AGGREGATES_DERIVING

    @property
    def _row_generation(self) -> int:
        return self.stamp

    def _write_session_doc(self, exec_id: int, doc: str, result_doc: str | None, keep: bool):
        """Kept for the batch's end (read twice in a batch: the first is written first)."""
        if exec_id in self._session_docs:
            self._write_session_docs()
        self._session_docs.put(exec_id, (exec_id, doc, result_doc, keep))

    def _add_appended(self, exec_id: int, values: dict):
        """Kept for the batch's end, summed per run (_ADD_APPENDED)."""
        before = self._appended.get(exec_id)
        self._appended.put(exec_id, values if before is None else _merged(before, values))

    def set_status(self, exec_id: int, status: str, stale_reason: str | None = None):
        self._update_tracked(exec_id, _SET_STATUS, (status, stale_reason, self.stamp, exec_id))
        self.mark_changed()

    def stale_candidates(self, limit: int) -> list[StaleCandidate]:
        self._files_read()
        return [StaleCandidate(*row) for row in self._execute(
            "SELECT x.id, x.execution_id, max(f.mtime_ns) AS last_ns FROM executions x"
            " JOIN files f ON f.source = x.source AND f.kind = 'events' AND f.subject_id = x.execution_id"
            " WHERE x.source = %(source)s AND x.status = 'Running' AND NOT EXISTS (SELECT 1 FROM files s"
            "   WHERE s.source = x.source AND s.kind = 'session' AND s.subject_id = x.execution_id"
            "   AND s.state != 'missing')"
            " GROUP BY x.id, x.execution_id ORDER BY last_ns LIMIT %(limit)s",
            {"source": self.source, "limit": limit})]

    def reset_event_log(self, exec_id: int):
        self._insert_new(only=exec_id)
        self._write_rows()
        self._write_appended()
        self._write_completions()
        self._write_session_docs()
        self._execute("DELETE FROM events WHERE exec_id = %s", (exec_id,))
        self._execute("DELETE FROM tool_calls WHERE exec_id = %s", (exec_id,))
        self._open_inputs.reset(exec_id)
        # the recorded session id came from the session file (it wins) or the old lines
        keep, sid = self._session_id_of(exec_id)
        self._execute(
            "UPDATE executions SET event_count = 0, tool_call_count = 0, step_count = 0,"
            " first_event_at = NULL, last_event_at = NULL, first_prompt = NULL,"
            " recorded_session_id = CASE WHEN %s THEN recorded_session_id ELSE %s::text END,"
            " changed_generation = %s WHERE id = %s", (keep, sid, self.stamp, exec_id))
        self._refresh_derived("id = %s", (exec_id,))
        self.mark_changed()

    def _session_id_of(self, exec_id: int) -> tuple[bool, str | None]:
        """(keep the stored one, else the session_id written in the run's session file): as
        SQLite's json_extract in its reset_event_log, read here (PostgreSQL 15 has no test for
        valid JSON). No session file: none."""
        self._write_session_docs()
        row = self._execute("SELECT session_doc FROM session_docs WHERE exec_id = %s", (exec_id,)).fetchone()
        if row is None:
            return False, None
        try:
            doc = msgspec.json.decode(row[0])
        except msgspec.DecodeError:
            return True, None
        value = doc.get("session_id") if isinstance(doc, dict) else None
        return False, None if value is None else str(value)

    def relink_unlinked(self):
        """After benchmarks changed: this source's runs known only by their prompt."""
        self._refresh_derived("source = %s AND session_benchmark_id IS NULL"
                              " AND (first_prompt IS NOT NULL OR benchmark_id IS NOT NULL)", (self.source,))

    def _refresh_derived(self, where: str, params: tuple):
        self._write_appended()
        changed = self._execute(
            f"SELECT {TRACKED_COLUMNS}, {', '.join(_DERIVED.values())} FROM executions"
            f" WHERE ({where}) AND ({' OR '.join(f'{c} IS DISTINCT FROM {e}' for c, e in _DERIVED.items())})",
            params).fetchall()
        for row in changed:
            before = ExecutionState(*row[:-3])
            self._update_tracked(before.id, _SET_DERIVED, (*row[-3:], self.stamp, before.id), before)
        if changed:
            self.mark_changed()

    def _update_tracked(self, exec_id: int, sql: str, params: tuple | dict, before: ExecutionState | None = None):
        self._write_appended()
        self._status_written.add(exec_id)      # (its status may change: read again in this batch)
        if before is None:
            before = ExecutionState(*one_row(self._execute(_TRACKED, (exec_id,))))
        for row in self._execute(sql, params).fetchall():
            self._keep_rules(rules.execution_updated(before, ExecutionState(*row), GENERATION))

    # ------------------------------------------------------------------ events and tool calls

    def insert_events(self, rows: list[EventRow]):
        """Kept for the end of the batch (_write_rows): a back-fill's lines go in one COPY."""
        self._events.extend((r.exec_id, r.line, r.byte_offset, r.kind, r.event_type, r.ts, r.doc) for r in rows)

    def insert_tool_calls(self, rows: list[ToolCall]):
        """Kept, as event lines are, until something reads or completes tool calls, or the batch ends."""
        self._calls.extend((c.exec_id, c.line, c.source, c.output_line, c.tool_name, c.started_at, c.ended_at,
                            c.duration_ms, _int(c.success), c.status, c.error_message) for c in rows)
        for c in rows:
            if c.source == "input" and c.output_line is None:
                self._open_inputs.opened(c.exec_id, c.line)
            else:        # (a line read again may be something else now)
                self._open_inputs.closed(c.exec_id, c.line)

    def _write_rows(self):
        """The batch's event lines and tool calls kept so far: each table's rows upserted in one
        statement, from arrays, or (COPY_FROM rows or more) copied into a temporary table first;
        the last read of a line wins (a log read again from its first byte in the same batch),
        as row by row."""
        if self._events or self._calls:
            self._writing_kept_rows()
        for rows, stage in ((self._events, _EVENTS_STAGED), (self._calls, _CALLS_STAGED)):
            if not rows:
                continue
            if len(rows) < COPY_FROM:
                self._execute(stage.upsert_given, [list(column) for column in zip(*rows, strict=True)])
                rows.clear()
                continue
            with self._cursor() as cur:
                with self._unpiped(), cur.copy(f"COPY {stage.table} ({stage.columns})"
                                               " FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(stage.types)
                    for row in rows:
                        copy.write_row(row)
                cur.execute(stage.upsert)
                # (emptied now, not at the commit: a later write in the batch, a tool call's
                # completion, must not be undone by these rows upserted again)
                cur.execute(f"DELETE FROM {stage.table}")
            rows.clear()

    def _prepare_session(self):
        """The staging tables, once per session (temporary: each session has its own)."""
        for stage in (_EVENTS_STAGED, _CALLS_STAGED):
            self._execute(stage.create)

    def _write_calls_of(self, exec_id: int):
        """Before tool calls of a run are read: the batch's rows and ends of calls, if it kept
        some of the run (those of other runs wait: no round trip for them)."""
        if any(c[0] == exec_id for c in self._calls):
            self._write_rows()
        if any(key[0] == exec_id for key in self._completions.keys()):
            self._write_completions()

    def complete_tool_calls(self, rows: list[ToolCallEnd]):
        """Kept for the batch's end (one statement); the calls completed were opened by earlier
        reads: written first if the batch kept them, and a call completed twice in one batch
        has its first end written first."""
        completed = {(e.exec_id, e.line) for e in rows}
        if any((c[0], c[1]) in completed for c in self._calls):
            self._write_rows()
        if any(key in self._completions for key in completed):
            self._write_completions()
        for e in rows:
            self._open_inputs.closed(e.exec_id, e.line)
            self._completions.put((e.exec_id, e.line), (e.exec_id, e.line, e.output_line, e.ended_at, e.duration_ms,
                                                         _int(e.success), e.status, e.error_message))

    def open_tool_inputs(self, exec_id: int) -> list[int]:
        lines = self._open_inputs.get(exec_id)
        if lines is None:
            self._write_calls_of(exec_id)
            lines = [r[0] for r in self._execute(
                "SELECT line FROM tool_calls WHERE exec_id = %s AND source = 'input' AND output_line IS NULL"
                " ORDER BY line", (exec_id,))]
            self._open_inputs.read(exec_id, lines)
        return lines

    def last_legacy_calls(self, exec_id: int) -> dict[str, int]:
        self._write_calls_of(exec_id)
        return {r[0]: r[1] for r in self._execute(
            "SELECT tool_name, max(line) FROM tool_calls WHERE exec_id = %s AND source = 'legacy'"
            " GROUP BY tool_name", (exec_id,))}
