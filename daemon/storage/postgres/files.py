"""The files and ingest_errors tables of one source: checkpoints, file states, bad input."""

import time
from collections.abc import Iterator

from core.ids import shown
from daemon.reader import Checkpoint
from daemon.storage import rules
from daemon.storage.interface import NOT_LOOKED_UP, NotLookedUp
from daemon.storage.postgres.connection import one_row, one_value
from daemon.storage.postgres.reports import lag_bytes
from daemon.storage.postgres.unit_of_work import GENERATION, UnitOfWork

_CHECKPOINT = ("SELECT dev, inode, fingerprint, fingerprint_len, \"offset\", line_no, skipping, size, mtime_ns,"
               " content_hash, state FROM files WHERE source = %s AND path = %s")
_SAVE_CHECKPOINT = (
    "INSERT INTO files (source, path, kind, subject_id, dev, inode, fingerprint, fingerprint_len, \"offset\","
    " line_no, skipping, size, mtime_ns, content_hash, state, first_seen_at, ingested_at)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (source, path) DO UPDATE SET dev = excluded.dev, inode = excluded.inode,"
    " fingerprint = excluded.fingerprint, fingerprint_len = excluded.fingerprint_len, \"offset\" = excluded.\"offset\","
    " line_no = excluded.line_no, skipping = excluded.skipping, size = excluded.size,"
    " mtime_ns = excluded.mtime_ns, content_hash = excluded.content_hash, state = excluded.state,"
    " ingested_at = coalesce(excluded.ingested_at, files.ingested_at)")


class FileRepository(UnitOfWork):
    """This source's rows of files (keyed by source and path: two hosts often have the same paths)."""

    def __init__(self) -> None:
        super().__init__()
        self.marked_missing = 0
        self.oldest_log_mtime_ns: int | None = None

    def checkpoint(self, path: str, scanned: Checkpoint | None | NotLookedUp = NOT_LOOKED_UP) -> Checkpoint | None:
        # (After a reconnect the scan's checkpoints may predate a commit that went through.)
        if scanned is not NOT_LOOKED_UP and path not in self._files_written and self._trust_scanned:
            return scanned
        row = self.conn.execute(_CHECKPOINT, (self.source, path)).fetchone()
        if row is None:
            return None
        return Checkpoint(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7],
                          row[8], row[9], row[10])

    def save_checkpoint(self, path: str, kind: str, subject_id: str, cp: Checkpoint, ingested: bool):
        now = time.time()
        self._files_written.add(path)
        if kind == "events" and (self.oldest_log_mtime_ns is None or cp.mtime_ns < self.oldest_log_mtime_ns):
            self.oldest_log_mtime_ns = cp.mtime_ns
        self.conn.execute(_SAVE_CHECKPOINT, (
            self.source, path, kind, subject_id, cp.dev, cp.inode, cp.fingerprint, cp.fingerprint_len, cp.offset,
            cp.line_no, int(cp.skipping), cp.size, cp.mtime_ns, cp.content_hash, cp.state, now,
            now if ingested else None))

    def take_oldest_log_mtime(self) -> int | None:
        oldest, self.oldest_log_mtime_ns = self.oldest_log_mtime_ns, None
        return oldest

    def set_file_state(self, path: str, state: str) -> bool:
        self._files_written.add(path)
        changed = bool(self.conn.execute(
            "UPDATE files SET state = %s WHERE source = %s AND path = %s AND state != %s RETURNING 1",
            (state, self.source, path, state)).fetchall())
        self.marked_missing += changed and state == "missing"
        return changed

    def counts(self) -> tuple[int, int, int]:
        files = one_value(self.conn.execute("SELECT count(*) FROM files WHERE source = %s", (self.source,)))
        errors = one_value(self.conn.execute("SELECT count(*) FROM ingest_errors WHERE source = %s",
                                             (self.source,)))
        return files, errors, lag_bytes(self.conn, self.source)

    def count_present(self, seen_before: float) -> int:
        return one_value(self.conn.execute("SELECT count(*) FROM files WHERE source = %s AND state != 'missing'"
                                           " AND first_seen_at < %s", (self.source, seen_before)))

    def present_paths(self, chunk: int = 1000) -> Iterator[str]:
        """This source's files only: one host never marks another's files gone."""
        after = ""
        while True:
            paths = [r[0] for r in self.conn.execute(
                "SELECT path FROM files WHERE source = %s AND path > %s AND state != 'missing'"
                " ORDER BY path LIMIT %s", (self.source, after, chunk))]
            yield from paths
            if len(paths) < chunk:
                return
            after = paths[-1]

    def event_logs(self, execution_id: str) -> list[tuple[str, Checkpoint]]:
        logs = []
        for (path,) in self.conn.execute(
                "SELECT path FROM files WHERE source = %s AND kind = 'events' AND subject_id = %s",
                (self.source, execution_id)).fetchall():
            cp = self.checkpoint(path)
            if cp is not None:      # (always: the path was just read from its row)
                logs.append((path, cp))
        return logs

    # ------------------------------------------------------------------ input errors

    def record_error(self, path: str, line: int, byte_offset: int, reason: str) -> bool:
        path, now = shown(path), time.time()
        before = self.conn.execute("SELECT reason FROM ingest_errors WHERE source = %s AND path = %s AND line = %s",
                                   (self.source, path, line)).fetchone()
        (error_id,) = one_row(self.conn.execute(
            "INSERT INTO ingest_errors (source, path, line, byte_offset, reason, first_seen_at, last_seen_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (source, path, line) DO UPDATE SET"
            " byte_offset = excluded.byte_offset, reason = excluded.reason,"
            " last_seen_at = excluded.last_seen_at, count = ingest_errors.count + 1 RETURNING id",
            (self.source, path, line, byte_offset, reason, now, now)))
        if before is None:
            self._keep_rules(rules.error_recorded(error_id, GENERATION))
        self.mark_changed()
        return before is None or before[0] != reason

    def error_reason(self, path: str) -> str | None:
        row = self.conn.execute("SELECT reason FROM ingest_errors WHERE source = %s AND path = %s AND line = 0",
                                (self.source, shown(path))).fetchone()
        return row[0] if row else None

    def clear_line_errors(self, path: str):
        if self.conn.execute("DELETE FROM ingest_errors WHERE source = %s AND path = %s AND line > 0 RETURNING 1",
                             (self.source, shown(path))).fetchall():
            self.mark_changed()

    def clear_file_error(self, path: str):
        if self.conn.execute("DELETE FROM ingest_errors WHERE source = %s AND path = %s AND line = 0 RETURNING 1",
                             (self.source, shown(path))).fetchall():
            self.mark_changed()
