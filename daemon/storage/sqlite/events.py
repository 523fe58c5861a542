"""The events and tool_calls tables: the lines of event logs, and the tool calls they pair into."""

from daemon.storage.derived import SQLITE as DERIVED
from daemon.storage.records import EventRow, ToolCall, ToolCallEnd
from daemon.storage.sqlite.unit_of_work import UnitOfWork

DURATION = DERIVED.DURATION

_INSERT_TOOL_CALLS = (
    "INSERT OR REPLACE INTO tool_calls (exec_id, line, source, output_line, tool_name, started_at,"
    " ended_at, duration_ms, success, status, error_message)"
    f" VALUES (?1,?2,?3,?4,?5,?6,?7,{DURATION.format(given='?8', started='?6', ended='?7')},?9,?10,?11)")
_COMPLETE_TOOL_CALLS = (
    "UPDATE tool_calls SET output_line = ?3, ended_at = coalesce(?4, ended_at),"
    f" duration_ms = coalesce({DURATION.format(given='?5', started='started_at', ended='?4')}, duration_ms),"
    " success = ?6, status = ?7, error_message = ?8 WHERE exec_id = ?1 AND line = ?2")


class EventRepository(UnitOfWork):
    """The events and tool_calls tables."""

    # The records' fields, in the order of the statements' parameters (a comprehension: about
    # as fast as msgspec.structs.astuple, and it names the columns here, where the SQL is).

    def insert_events(self, rows: list[EventRow]):
        self.conn.executemany(
            "INSERT OR REPLACE INTO events (exec_id, line, byte_offset, kind, event_type, ts, doc)"
            " VALUES (?,?,?,?,?,?,?)",
            [(r.exec_id, r.line, r.byte_offset, r.kind, r.event_type, r.ts, r.doc) for r in rows])

    def insert_tool_calls(self, rows: list[ToolCall]):
        """Without a duration of its own, a call's duration follows from started_at and ended_at."""
        self.conn.executemany(_INSERT_TOOL_CALLS, [
            (c.exec_id, c.line, c.source, c.output_line, c.tool_name, c.started_at, c.ended_at, c.duration_ms,
             c.success, c.status, c.error_message) for c in rows])

    def complete_tool_calls(self, rows: list[ToolCallEnd]):
        """Without a duration of its own, the duration follows from the opening line's timestamp
        and ended_at."""
        self.conn.executemany(_COMPLETE_TOOL_CALLS, [
            (e.exec_id, e.line, e.output_line, e.ended_at, e.duration_ms, e.success, e.status, e.error_message)
            for e in rows])

    def open_tool_inputs(self, exec_id: int) -> list[int]:
        """Lines of ToolInputs still waiting for their output, oldest first."""
        return [r[0] for r in self.conn.execute(
            "SELECT line FROM tool_calls WHERE exec_id = ? AND source = 'input' AND output_line IS NULL"
            " ORDER BY line", (exec_id,))]

    def last_legacy_calls(self, exec_id: int) -> dict[str, int]:
        """tool_name → line of its most recent older-logger call."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT tool_name, max(line) FROM tool_calls WHERE exec_id = ? AND source = 'legacy'"
            " GROUP BY tool_name", (exec_id,))}
