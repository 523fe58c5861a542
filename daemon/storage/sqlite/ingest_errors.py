"""The ingest_errors table: bad input, one row per line of a file or per whole file (line 0)."""

import time

from core.ids import shown
from daemon.storage import rules
from daemon.storage.sqlite.unit_of_work import UnitOfWork


class ErrorRepository(UnitOfWork):
    """The ingest_errors table. Errors are kept under the path as shown (core/ids.py): a name
    that is not UTF-8 is stored with escapes, and no other name is stored the same."""

    def record_error(self, path: str, line: int, byte_offset: int, reason: str) -> bool:
        """Record bad input; True if it is new or its reason changed (worth a warning)."""
        path, now = shown(path), time.time()
        before = self.conn.execute(
            "SELECT reason FROM ingest_errors WHERE path = ? AND line = ?", (path, line)).fetchone()
        [(error_id,)] = self.conn.execute(
            "INSERT INTO ingest_errors (path, line, byte_offset, reason, first_seen_at, last_seen_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (path, line) DO UPDATE SET"
            " byte_offset = excluded.byte_offset, reason = excluded.reason,"
            " last_seen_at = excluded.last_seen_at, count = ingest_errors.count + 1 RETURNING id",
            (path, line, byte_offset, reason, now, now)).fetchall()
        if before is None:     # a new error is in the change feed (one seen again is not)
            self._keep_rules(rules.error_recorded(error_id, self.next_generation))  # type: ignore[arg-type]  # apsw: any SQLite value; id is INTEGER
        self.mark_changed()
        return before is None or before[0] != reason

    def error_reason(self, path: str) -> str | None:
        """The reason of the whole-file error recorded for a path, if any."""
        row = self.conn.execute("SELECT reason FROM ingest_errors WHERE path = ? AND line = 0",
                                (shown(path),)).fetchone()
        return row[0] if row else None

    def clear_line_errors(self, path: str):
        """The line errors of an event log that is read again from its first byte."""
        self.conn.execute("DELETE FROM ingest_errors WHERE path = ? AND line > 0", (shown(path),))
        if self.conn.changes():
            self.mark_changed()

    def clear_file_error(self, path: str):
        """The whole-file error of a file that has become valid."""
        self.conn.execute("DELETE FROM ingest_errors WHERE path = ? AND line = 0", (shown(path),))
        if self.conn.changes():
            self.mark_changed()
