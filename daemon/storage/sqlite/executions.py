"""The executions table (and session_docs, the session files as written): a run's row, fed by
its session file and its event logs apart, so that either can be read again alone; its
derived columns (derived.py); its status as the files and the stale rule give it; the ids of
new runs (this is the only writer: an id is counted once, never handed out twice)."""


from daemon.storage import rules
from daemon.storage.derived import SQLITE as DERIVED
from daemon.storage.derived import of_stored_columns
from daemon.storage.records import Run, StaleCandidate
from daemon.storage.rules import TRACKED_COLUMNS, ExecutionState
from daemon.storage.runs import Runs
from daemon.storage.sqlite.unit_of_work import UnitOfWork

BENCHMARK, CREATED_AT, UPDATED_AT = DERIVED.BENCHMARK, DERIVED.CREATED_AT, DERIVED.UPDATED_AT

# The statements run for every file, built once.
_UPDATE_SESSION = (
    "UPDATE executions SET recorded_session_id = coalesce(:sid, recorded_session_id),"
    " session_benchmark_id = :bench, agent_type = coalesce(:agent, agent_type), status = :status,"
    " success = CASE WHEN :keep THEN success ELSE :success END,"
    " score = CASE WHEN :keep THEN score ELSE :score END,"
    " final_status = CASE WHEN :keep THEN final_status ELSE :final_status END,"
    " execution_time_ms = CASE WHEN :keep THEN execution_time_ms ELSE :ms END,"
    " start_time = :start, end_time = :end, stale_reason = NULL,"
    " finished_at = CASE WHEN :finished THEN coalesce(finished_at, :now) ELSE finished_at END,"
    # the derived columns, from the new values
    f" created_at = {CREATED_AT.format(start=':start', first='first_event_at')},"
    f" updated_at = {UPDATED_AT.format(last='last_event_at', end=':end', start=':start')},"
    f" benchmark_id = {BENCHMARK.format(session_benchmark=':bench', prompt='first_prompt')},"
    f" changed_generation = :gen WHERE id = :id RETURNING {TRACKED_COLUMNS}")
_FIRST_EVENT_AT = "CASE WHEN first_event_at IS NULL OR :first < first_event_at THEN :first ELSE first_event_at END"
_AGGREGATES = (
    "UPDATE executions SET event_count = event_count + :lines, tool_call_count = tool_call_count + :calls,"
    f" step_count = step_count + :steps, first_event_at = {_FIRST_EVENT_AT},"
    " last_event_at = CASE WHEN last_event_at IS NULL OR :last > last_event_at THEN :last ELSE last_event_at END,"
    " recorded_session_id = coalesce(recorded_session_id, :sid), changed_generation = :gen,"
    # updated_at only grows with appends, so it is kept here
    " updated_at = max(coalesce(updated_at, 0), coalesce(:last, 0))")
_ADD_AGGREGATES_DERIVING = (
    _AGGREGATES + ", first_prompt = coalesce(first_prompt, :prompt),"
    f" created_at = {CREATED_AT.format(start='start_time', first=_FIRST_EVENT_AT)},"
    " benchmark_id = "
    + BENCHMARK.format(session_benchmark="session_benchmark_id", prompt="coalesce(first_prompt, :prompt)")
    + f" WHERE id = :id RETURNING {TRACKED_COLUMNS}")
_ADD_AGGREGATES = (_AGGREGATES + " WHERE id = :id RETURNING created_at IS "
                   + CREATED_AT.format(start="start_time", first="first_event_at"))

# The derived columns recomputed from stored facts (_refresh_derived).
_DERIVED = of_stored_columns(DERIVED)

class ExecutionRepository(Runs, UnitOfWork):
    """The executions and session_docs tables."""

    def __init__(self, generation: int):
        super().__init__(generation)
        self._next_id: int | None = None            # the id the next new execution gets (None: count)
        self._reserved: dict[str, int] = {}         # execution_id → id, for one not created yet

    def _stored_run(self, execution_id: str) -> Run | None:
        row = self.conn.execute("SELECT id, status, stale_reason IS NOT NULL FROM executions"
                                " WHERE execution_id = ?", (execution_id,)).fetchone()
        return None if row is None else Run(row[0], row[1], bool(row[2]))

    def _stored_id(self, execution_id: str) -> int | None:
        row = self.conn.execute("SELECT id FROM executions WHERE execution_id = ?", (execution_id,)).fetchone()
        return None if row is None else row[0]

    def look_up_executions(self, execution_ids: list[str]):
        """Nothing to do: a read in SQLite costs no round trip."""

    def _allocate_id(self) -> int:
        # Counted once: this is the only writer, and an id is never handed out twice, not even
        # one a rolled-back batch or a reservation left unused.
        if self._next_id is None:
            self._next_id = self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM executions").get
        exec_id, self._next_id = self._next_id, self._next_id + 1
        return exec_id

    _UPDATE_SESSION = _UPDATE_SESSION
    _ADD_AGGREGATES_DERIVING = _ADD_AGGREGATES_DERIVING

    @property
    def _row_generation(self) -> int:
        return self.next_generation

    def _write_session_doc(self, exec_id: int, doc: str, result_doc: str | None, keep: bool):
        self.conn.execute(
            "INSERT INTO session_docs (exec_id, session_doc, result_doc) VALUES (?, ?, ?)"
            " ON CONFLICT (exec_id) DO UPDATE SET session_doc = excluded.session_doc,"
            " result_doc = CASE WHEN ? THEN result_doc ELSE excluded.result_doc END",
            (exec_id, doc, result_doc, keep))

    def _add_appended(self, exec_id: int, values: dict):
        # (nothing the domain rules look at: no reading before)
        row = self.conn.execute(_ADD_AGGREGATES, values).fetchall()
        if row and not row[0][0]:
            self._refresh_derived("id = ?", (exec_id,))   # an earlier timestamp came later

    def set_status(self, exec_id: int, status: str, stale_reason: str | None = None):
        """A status no file gave: the stale rule's Timeout (with why), or Running again after it.
        (The domain rules carry it to the change feed and the benchmark's ETag scope.)"""
        self._update_tracked(exec_id, rules.SET_STATUS, (status, stale_reason, self.next_generation, exec_id))
        self.mark_changed()

    def stale_candidates(self, limit: int) -> list[StaleCandidate]:
        """The runs the stale rule applies to: Running, with an event log and no session file
        (one gone does not count), through the index of Running runs. The one whose newest log
        changed longest ago first, at most `limit`.
        (Forced to go from the Running runs: without statistics SQLite would walk every event log.)"""
        return [StaleCandidate(*row) for row in self.conn.execute(
            "SELECT x.id, x.execution_id, max(f.mtime_ns) AS last_ns FROM executions x INDEXED BY executions_running"
            " CROSS JOIN files f ON f.kind = 'events' AND f.subject_id = x.execution_id"
            " WHERE x.status = 'Running' AND NOT EXISTS (SELECT 1 FROM files s WHERE s.kind = 'session'"
            "   AND s.subject_id = x.execution_id AND s.state != 'missing')"
            " GROUP BY x.execution_id ORDER BY last_ns LIMIT ?", (limit,))]

    def reset_event_log(self, exec_id: int):
        """Forget what an event log contributed, before re-reading it from its first byte."""
        self._insert_new(only=exec_id)     # (rare: the statements below work on its row)
        self.conn.execute("DELETE FROM events WHERE exec_id = ?", (exec_id,))
        self.conn.execute("DELETE FROM tool_calls WHERE exec_id = ?", (exec_id,))
        self.conn.execute(
            "UPDATE executions SET event_count = 0, tool_call_count = 0, step_count = 0,"
            " first_event_at = NULL, last_event_at = NULL, first_prompt = NULL,"
            # the recorded session id came from the session file (it wins) or the old lines
            " recorded_session_id = (SELECT CASE WHEN json_valid(d.session_doc)"
            "   THEN json_extract(d.session_doc, '$.session_id') ELSE executions.recorded_session_id END"
            "   FROM session_docs d WHERE d.exec_id = executions.id),"
            " changed_generation = ? WHERE id = ?", (self.next_generation, exec_id))
        self._refresh_derived("id = ?", (exec_id,))
        self.mark_changed()

    def relink_unlinked(self):
        """After benchmarks changed: re-derive the benchmark of runs known only by their prompt."""
        self._refresh_derived("session_benchmark_id IS NULL"
                              " AND (first_prompt IS NOT NULL OR benchmark_id IS NOT NULL)", ())

    def _refresh_derived(self, where: str, params: tuple):
        """created_at, updated_at and the effective benchmark_id, from stored facts, where they
        differ from what they are. (Read, then written by id: the rules need the rows before.)"""
        changed = self.conn.execute(
            f"SELECT {TRACKED_COLUMNS}, {', '.join(_DERIVED.values())} FROM executions"
            f" WHERE ({where}) AND ({' OR '.join(f'{c} IS NOT {e}' for c, e in _DERIVED.items())})",
            params).fetchall()
        for row in changed:
            before = ExecutionState(*row[:-3])  # type: ignore[arg-type]  # apsw: a row is any SQLite values; these are TRACKED_COLUMNS
            self._update_tracked(before.id, rules.SET_DERIVED, (*row[-3:], self.next_generation, before.id), before)
        if changed:
            self.mark_changed()

    def _update_tracked(self, exec_id: int, sql: str, params: tuple | dict, before: ExecutionState | None = None):
        """Run `sql` (an UPDATE of the execution `exec_id` ending in RETURNING TRACKED_COLUMNS) and
        keep the domain rules (daemon/storage/rules.py), from the row before and after."""
        if before is None:
            before = ExecutionState(*self.conn.execute(rules.SELECT_TRACKED, (exec_id,)).fetchone())  # type: ignore[misc]  # apsw: fetchone() is None without a row; the execution is there
        for row in self.conn.execute(sql, params).fetchall():
            self._keep_rules(rules.execution_updated(before, ExecutionState(*row), self.next_generation))  # type: ignore[arg-type]  # apsw: a row is any SQLite values; these are TRACKED_COLUMNS
