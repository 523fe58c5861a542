"""The executions first seen in the batch in hand, kept in memory until it commits: what the
batch's files give each is gathered here and inserted with one statement (back-fill: one
insert per execution, instead of an insert and an update per file). A savepoint's undo puts
them back as they were before it. Shared by the backends; each has its own INSERT (the
parameters are NewExecution.row()'s names)."""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.storage.records import LogAggregates, SessionUpdate
from daemon.storage.rules import ExecutionState


def session_values(update: SessionUpdate, generation: int, exec_id: int) -> dict:
    """The parameters, by name, of the UPDATE a session file makes (and a new execution's
    `session`): `keep` when it has no final_result, whose last one stored is kept."""
    result = update.result
    return {
        "sid": update.recorded_session_id, "bench": update.benchmark_id, "agent": update.agent_type,
        "status": update.status, "keep": result is None,
        "success": None if result is None or result.success is None else int(result.success),
        "score": None if result is None else result.score,
        "final_status": None if result is None else result.final_status,
        "ms": None if result is None else result.execution_time_ms,
        "start": update.start_time, "end": update.end_time,
        "finished": update.finished, "now": time.time(), "gen": generation, "id": exec_id}


def aggregate_values(aggregates: LogAggregates, generation: int, exec_id: int) -> dict:
    """The parameters, by name, of the UPDATE lines of an event log make."""
    return {"lines": aggregates.lines, "calls": aggregates.tool_calls, "steps": aggregates.steps,
            "first": aggregates.first_ts, "last": aggregates.last_ts, "prompt": aggregates.first_prompt,
            "sid": aggregates.recorded_session_id, "gen": generation, "id": exec_id}

_NO_SESSION = {"sid": None, "bench": None, "agent": None, "success": None, "score": None, "final_status": None,
               "ms": None, "start": None, "end": None, "finished_at": None}


@dataclass(slots=True)
class NewExecution:
    """An execution not in the database yet."""
    id: int
    execution_id: str
    status: str
    session: dict | None = None      # the session file's columns (update_session's values)
    given: bool = False              # a file gave it something (else updated_at stays NULL)
    lines: int = 0
    calls: int = 0
    steps: int = 0
    first: float | None = None
    last: float | None = None
    prompt: str | None = None
    events_sid: str | None = None

    def add(self, aggregates: LogAggregates):
        """What lines of its event log give it (as the UPDATE of an execution stored does)."""
        self.given = True
        self.lines += aggregates.lines
        self.calls += aggregates.tool_calls
        self.steps += aggregates.steps
        if aggregates.first_ts is not None and (self.first is None or aggregates.first_ts < self.first):
            self.first = aggregates.first_ts
        if aggregates.last_ts is not None and (self.last is None or aggregates.last_ts > self.last):
            self.last = aggregates.last_ts
        self.prompt = self.prompt if self.prompt is not None else aggregates.first_prompt
        self.events_sid = self.events_sid if self.events_sid is not None else aggregates.recorded_session_id

    def row(self, gen: int) -> dict:
        """The parameters of INSERT_NEW."""
        row = {"id": self.id, "execution_id": self.execution_id, "status": self.status, "given": self.given,
               "lines": self.lines, "calls": self.calls, "steps": self.steps, "first": self.first,
               "last": self.last, "prompt": self.prompt, "events_sid": self.events_sid, "gen": gen, **_NO_SESSION}
        session = self.session
        if session is not None:
            row.update(sid=session["sid"], bench=session["bench"], agent=session["agent"], start=session["start"],
                       end=session["end"], finished_at=session["now"] if session["finished"] else None)
            if not session["keep"]:     # a session file without final_result keeps the last result
                row.update(success=session["success"], score=session["score"],
                           final_status=session["final_status"], ms=session["ms"])
        return row


class NewExecutions:
    """The batch's new executions, by id and by execution_id, with the undo log of the
    savepoint in hand."""

    def __init__(self) -> None:
        self.by_id: dict[int, NewExecution] = {}
        self.ids: dict[str, int] = {}                    # execution_id → id
        self._undo: dict[int, NewExecution | None] | None = None   # inside a savepoint: by_id[] before it

    def changing(self, exec_id: int) -> NewExecution | None:
        """The new execution `exec_id`, ready to be changed (a savepoint can undo it); None if
        it is in the database."""
        new = self.by_id.get(exec_id)
        if new is not None and self._undo is not None and exec_id not in self._undo:
            self._undo[exec_id] = copy.copy(new)
        return new

    def set(self, exec_id: int, new: NewExecution | None):
        if self._undo is not None and exec_id not in self._undo:
            self._undo[exec_id] = self.by_id.get(exec_id)
        old = self.by_id.pop(exec_id, None)
        if old is not None:
            del self.ids[old.execution_id]
        if new is not None:
            self.by_id[exec_id] = new
            self.ids[new.execution_id] = exec_id

    def savepoint(self):
        """A savepoint begins: what changes from now on can be undone."""
        self._undo = {}

    def undo(self):
        """The savepoint rolls back: put back what it changed."""
        undo, self._undo = self._undo or {}, None
        for exec_id, before in undo.items():
            self.set(exec_id, before)

    def release(self):
        self._undo = None

    def insert(self, insert_rows: Callable[[list[dict]], list[ExecutionState]], generation: int,
               only: int | None = None) -> list[ExecutionState]:
        """Insert them (or only one, before a statement that needs its row) with `insert_rows`
        (the backend's statement over NewExecution.row()s, in order); what the rules need to
        know of the rows inserted."""
        ids = list(self.by_id) if only is None else [only] if only in self.by_id else []
        if not ids:
            return []
        inserted = insert_rows([self.by_id[i].row(generation) for i in ids])
        for exec_id in ids:
            self.set(exec_id, None)
        return inserted

    def forget(self):
        """After a commit or a rollback: nothing is new any more."""
        self.by_id.clear()
        self.ids.clear()
