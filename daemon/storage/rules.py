"""The domain rules the store keeps beside the rows, in the batch's own transaction: per-agent
statistics (agent_benchmark_stats), the ETag scopes (scope_generations) and the change feed
(changes). Until schema 7 they were ten SQLite triggers; here each is written once, in SQL that
SQLite and PostgreSQL both accept (INSERT ... ON CONFLICT ... DO UPDATE, qualified column
names), so that a second backend runs the same statements. (Parameters are `?`; a psycopg
backend turns them into `%s`.)

A backend reads the tracked columns of an execution before and after each statement that can
change them (ExecutionState, TRACKED_COLUMNS), and runs the statements these pure functions
give, in order, right after that statement: what the triggers did, row by row.
"""

from collections.abc import Iterator
from typing import NamedTuple

Statement = tuple[str, tuple]


class Pending:
    """A generation not known yet when the statements are made: a backend that takes the batch's
    generation only at commit (PostgreSQL's) passes one and puts the number in its place then."""


Generation = int | Pending


class ExecutionState(NamedTuple):
    """The columns of an execution the rules look at, in TRACKED_COLUMNS' order."""
    id: int
    execution_id: str
    status: str
    success: int | None
    score: float | None
    final_status: str | None
    agent_type: str | None
    benchmark_id: str | None
    created_at: float | None


TRACKED_COLUMNS = "id, execution_id, status, success, score, final_status, agent_type, benchmark_id, created_at"
# A run's tracked columns; its status set; its derived columns set: each returning the columns
# the rules look at after the change (`?` parameters: PostgreSQL's backend converts them).
SELECT_TRACKED = f"SELECT {TRACKED_COLUMNS} FROM executions WHERE id = ?"
SET_STATUS = ("UPDATE executions SET status = ?, stale_reason = ?, changed_generation = ? WHERE id = ?"
              f" RETURNING {TRACKED_COLUMNS}")
SET_DERIVED = ("UPDATE executions SET created_at = ?, updated_at = ?, benchmark_id = ?, changed_generation = ?"
               f" WHERE id = ? RETURNING {TRACKED_COLUMNS}")

# agent_benchmark_stats: the finished runs (success known) per agent and benchmark ('' unknown).
_ADD_STATS = (
    "INSERT INTO agent_benchmark_stats (agent_type, benchmark_id, finished, succeeded, scored, score_sum)"
    " VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (agent_type, benchmark_id) DO UPDATE SET"
    " finished = agent_benchmark_stats.finished + 1,"
    " succeeded = agent_benchmark_stats.succeeded + excluded.succeeded,"
    " scored = agent_benchmark_stats.scored + excluded.scored,"
    " score_sum = agent_benchmark_stats.score_sum + excluded.score_sum")
_SUBTRACT_STATS = (
    "UPDATE agent_benchmark_stats SET finished = finished - 1, succeeded = succeeded - ?, scored = scored - ?,"
    " score_sum = score_sum - ? WHERE agent_type = ? AND benchmark_id = ?")
_DROP_EMPTY_STATS = "DELETE FROM agent_benchmark_stats WHERE agent_type = ? AND benchmark_id = ? AND finished <= 0"
# scope_generations: the generation that last changed what an API answer shows.
_BUMP_SCOPE = ("INSERT INTO scope_generations (scope, generation) VALUES (?, ?)"
               " ON CONFLICT (scope) DO UPDATE SET generation = excluded.generation")
# changes: the event stream's feed, one row per change, its seq the stream's event id.
_EXECUTION_CHANGE = ("INSERT INTO changes (generation, kind, execution_id, benchmark_id, agent_type, status, score)"
                     " VALUES (?, 'execution', ?, ?, ?, ?, ?)")
_ERROR_CHANGE = "INSERT INTO changes (generation, kind, error_id) VALUES (?, 'ingest-error', ?)"


def _key(run: ExecutionState) -> tuple[str, str]:
    return run.agent_type or "", run.benchmark_id or ""


def _added(run: ExecutionState) -> Statement:
    score = 0 if run.score is None else run.score
    return _ADD_STATS, (*_key(run), run.success, int(run.score is not None), score)


def _change(run: ExecutionState, generation: Generation) -> Statement:
    return _EXECUTION_CHANGE, (generation, run.execution_id, run.benchmark_id, run.agent_type, run.status, run.score)


def executions_inserted(runs: list[ExecutionState], generation: Generation) -> Iterator[tuple[str, list[tuple]]]:
    """New executions: the finished ones in the statistics and the results' scope; each in the
    feed. Statements with their parameters for many rows (a back-fill inserts thousands in one
    batch): each table gets its rows in the order of `runs`, as row-by-row triggers gave them."""
    finished = [_added(run)[1] for run in runs if run.success is not None]
    if finished:
        yield _ADD_STATS, finished
        yield _BUMP_SCOPE, [("results", generation)]
    yield _EXECUTION_CHANGE, [_change(run, generation)[1] for run in runs]


def execution_updated(old: ExecutionState, new: ExecutionState, generation: Generation) -> Iterator[Statement]:
    """An execution's tracked columns went from `old` to `new` (perhaps unchanged)."""
    outcome = (old.success != new.success or old.score != new.score or old.agent_type != new.agent_type
               or old.benchmark_id != new.benchmark_id)
    if outcome:              # moved from one statistics row to another (or in or out of them)
        if old.success is not None:
            yield _SUBTRACT_STATS, (old.success, int(old.score is not None), 0 if old.score is None else old.score,
                                    *_key(old))
        if new.success is not None:
            yield _added(new)
        if old.success is not None:
            yield _DROP_EMPTY_STATS, _key(old)
    # a benchmark's detail lists its newest executions: id, agent, status, time and score
    if (old.benchmark_id != new.benchmark_id or old.status != new.status or old.score != new.score
            or old.agent_type != new.agent_type or old.created_at != new.created_at):
        yield _BUMP_SCOPE, ("benchmark:" + (new.benchmark_id or ""), generation)
        yield _BUMP_SCOPE, ("benchmark:" + (old.benchmark_id or ""), generation)
    # agent performance: the finished executions, their scores, results and times
    if (old.success is not None or new.success is not None) and (
            outcome or old.final_status != new.final_status or old.created_at != new.created_at):
        yield _BUMP_SCOPE, ("results", generation)
    if old.status != new.status or old.score != new.score or old.benchmark_id != new.benchmark_id:
        yield _change(new, generation)


def benchmark_written(benchmark_id: str, generation: Generation) -> Iterator[Statement]:
    """A benchmark row inserted or updated (even to the same values)."""
    yield _BUMP_SCOPE, ("benchmarks", generation)
    yield _BUMP_SCOPE, ("benchmark:" + benchmark_id, generation)


def error_recorded(error_id: int, generation: Generation) -> Iterator[Statement]:
    """A new row of ingest_errors (not one seen again)."""
    yield _ERROR_CHANGE, (generation, error_id)
