"""The events and tool_calls tables: the lines of event logs, and the tool calls they pair into."""

from daemon.storage.sqlite.derived import DURATION
from daemon.storage.sqlite.unit_of_work import UnitOfWork

_INSERT_TOOL_CALLS = (
    "INSERT OR REPLACE INTO tool_calls (exec_id, line, source, output_line, tool_name, started_at,"
    " ended_at, duration_ms, success, status, error_message)"
    f" VALUES (?1,?2,?3,?4,?5,?6,?7,{DURATION.format(given='?8', started='?6', ended='?7')},?9,?10,?11)")
_COMPLETE_TOOL_CALLS = (
    "UPDATE tool_calls SET output_line = ?1, ended_at = coalesce(?2, ended_at),"
    f" duration_ms = coalesce({DURATION.format(given='?3', started='started_at', ended='?2')}, duration_ms),"
    " success = ?4, status = ?5, error_message = ?6 WHERE exec_id = ?7 AND line = ?8")


class EventRepository(UnitOfWork):
    """The events and tool_calls tables."""

    def insert_events(self, rows: list[tuple]):
        """rows: (exec_id, line, byte_offset, kind, event_type, ts, doc)."""
        self.conn.executemany(
            "INSERT OR REPLACE INTO events (exec_id, line, byte_offset, kind, event_type, ts, doc)"
            " VALUES (?,?,?,?,?,?,?)", rows)

    def insert_tool_calls(self, rows: list[tuple]):
        """rows: (exec_id, line, source, output_line, tool_name, started_at, ended_at, duration_ms,
        success, status, error_message)."""
        self.conn.executemany(_INSERT_TOOL_CALLS, rows)

    def complete_tool_calls(self, rows: list[tuple]):
        """rows: (output_line, ended_at, duration_ms, success, status, error_message, exec_id,
        line). Without a duration of its own, the duration follows from the opening line's
        timestamp and ended_at."""
        self.conn.executemany(_COMPLETE_TOOL_CALLS, rows)

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
