"""The SQLite statement that inserts the batch's new executions (daemon/storage/new_executions.py)."""

import apsw

from daemon.storage.derived import SQLITE as DERIVED
from daemon.storage.rules import TRACKED_COLUMNS, ExecutionState

BENCHMARK, CREATED_AT, UPDATED_AT = DERIVED.BENCHMARK, DERIVED.CREATED_AT, DERIVED.UPDATED_AT

# An execution first seen in this batch, with what every file of the batch gave it: the same
# rules as the updates of executions.py, applied once. (Its updated_at stays NULL, as a bare
# insert left it, while no file has given it anything.)
INSERT_NEW = (
    "INSERT INTO executions (id, execution_id, recorded_session_id, session_benchmark_id, first_prompt, agent_type,"
    " status, success, score, final_status, execution_time_ms, start_time, end_time, first_event_at, last_event_at,"
    " created_at, updated_at, benchmark_id, finished_at, event_count, tool_call_count, step_count, changed_generation)"
    " VALUES (:id, :execution_id, coalesce(:sid, :events_sid), :bench, :prompt, :agent, :status, :success, :score,"
    " :final_status, :ms, :start, :end, :first, :last,"
    f" {CREATED_AT.format(start=':start', first=':first')},"
    f" CASE WHEN :given THEN {UPDATED_AT.format(last=':last', end=':end', start=':start')} END,"
    f" {BENCHMARK.format(session_benchmark=':bench', prompt=':prompt')},"
    " :finished_at, :lines, :calls, :steps, :gen)")
_INSERT_NEW_RETURNING = f"{INSERT_NEW} RETURNING {TRACKED_COLUMNS}"


def insert_new(conn: apsw.Connection, rows: list[dict]) -> list[ExecutionState]:
    """Insert new executions (NewExecution.row()s): what the rules need to know of them."""
    return [ExecutionState(*row) for row in conn.executemany(_INSERT_NEW_RETURNING, rows)]
