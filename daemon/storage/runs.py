"""A batch's runs, the same rules in both backends: how one is found by its execution id or made
new, the ids reserved for runs not created yet (the read worker builds an event log's rows
before the batch has the run), and what a session file and an event log's lines give a run
(kept in memory for a run new in the batch, written to a stored one).

Each backend says how it reads a stored run (`_stored_run`, which may raise NotOwned on
PostgreSQL), a stored run's id whoever owns it (`_stored_id`: the owner is judged when the run
is asked for), how it takes a new id (`_allocate_id`), the generation its rows carry
(`_row_generation`), its SQL for a session file's columns and for lines that carry a prompt
(`_UPDATE_SESSION`, `_ADD_AGGREGATES_DERIVING`: run by `_update_tracked`, which keeps the domain
rules), and how it writes a session document and an append (`_write_session_doc`,
`_add_appended`)."""

from collections.abc import Callable

from core.run_status import status_from_event
from daemon.storage.new_executions import NewExecution, NewExecutions, aggregate_values, session_values
from daemon.storage.records import LogAggregates, Run, SessionUpdate


class Runs:
    """(A base of the backend's ExecutionRepository, before its UnitOfWork, which gives
    `mark_changed`.)"""
    new: NewExecutions
    mark_changed: Callable[[], None]
    _UPDATE_SESSION: str
    _ADD_AGGREGATES_DERIVING: str

    @property
    def _row_generation(self) -> int:
        raise NotImplementedError

    def _update_tracked(self, exec_id: int, sql: str, params: dict):
        raise NotImplementedError

    def _write_session_doc(self, exec_id: int, doc: str, result_doc: str | None, keep: bool):
        raise NotImplementedError

    def _add_appended(self, exec_id: int, values: dict):
        """Lines without a prompt appended to a stored run (`values`: aggregate_values)."""
        raise NotImplementedError
    _reserved: dict[str, int]        # execution_id → the id reserved for it (set by the backend)

    def _stored_run(self, execution_id: str) -> Run | None:
        raise NotImplementedError

    def _stored_id(self, execution_id: str) -> int | None:
        raise NotImplementedError

    def _allocate_id(self) -> int:
        raise NotImplementedError

    def execution(self, execution_id: str) -> Run:
        """An execution; a new one is inserted when the batch commits, with the status an event
        line starts a run with (core/run_status.py: a session file read in the same batch then
        decides it). (Reserved: it was not in the database then; on PostgreSQL, if another source
        creates it meanwhile, the insert at commit finds it there, and the batch is run again.)"""
        exec_id = self.new.ids.get(execution_id)
        if exec_id is not None:
            return Run(exec_id, self.new.by_id[exec_id].status, False)
        exec_id = self._reserved.pop(execution_id, None)
        if exec_id is None:
            run = self._stored_run(execution_id)
            if run is not None:
                return run
            exec_id = self._allocate_id()
        status = status_from_event(None, stalled=False)
        self.new.set(exec_id, NewExecution(exec_id, execution_id, status))
        self.mark_changed()
        return Run(exec_id, status, False)

    def reserve_execution_id(self, execution_id: str) -> int:
        """The id execution() gives this execution, in this batch or a later one, without
        creating it: rows can be built with it before it exists. (A reservation is lost when
        a batch that created the execution rolls back: the rows' id no longer matches, and
        whoever built them must build them again.)"""
        exec_id = self.new.ids.get(execution_id) or self._reserved.get(execution_id)
        if exec_id is None:
            stored = self._stored_id(execution_id)
            if stored is not None:
                return stored
            exec_id = self._reserved[execution_id] = self._allocate_id()
        return exec_id

    def drop_reservation(self, execution_id: str):
        """What was to be built with the reserved id will not be (the file was no file)."""
        self._reserved.pop(execution_id, None)

    def drop_reservations(self):
        """Nothing built with a reserved id is left to store (the read-ahead stopped)."""
        self._reserved.clear()

    def update_session(self, exec_id: int, update: SessionUpdate):
        """Columns fed by the session file, and the document as written."""
        result = update.result
        values = session_values(update, self._row_generation, exec_id)
        new = self.new.changing(exec_id)
        if new is None:
            self._update_tracked(exec_id, self._UPDATE_SESSION, values)
        else:
            new.session, new.status, new.given = values, update.status, True
        self._write_session_doc(exec_id, update.doc, None if result is None else result.doc, values["keep"])
        self.mark_changed()

    def add_event_aggregates(self, exec_id: int, aggregates: LogAggregates):
        new = self.new.changing(exec_id)
        if new is not None:
            new.add(aggregates)
        else:
            # Lines with a prompt are (nearly always) a log's first: they set first_prompt,
            # created_at and the benchmark in the same statement. Appends don't: a column in the
            # SET list costs an update of each index on it (a page written), even when its
            # value stays.
            values = aggregate_values(aggregates, self._row_generation, exec_id)
            if aggregates.first_prompt is not None:
                self._update_tracked(exec_id, self._ADD_AGGREGATES_DERIVING, values)
            else:
                self._add_appended(exec_id, values)
        self.mark_changed()
