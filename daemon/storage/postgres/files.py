"""The files and ingest_errors tables of one source: checkpoints, file states, bad input."""

import time
from collections.abc import Iterator

from core.ids import shown
from daemon.reader import Checkpoint
from daemon.storage import rules
from daemon.storage.interface import NOT_LOOKED_UP, NotLookedUp
from daemon.storage.postgres.connection import one_row, one_value
from daemon.storage.postgres.kept import Kept
from daemon.storage.postgres.reports import lag_bytes
from daemon.storage.postgres.unit_of_work import GENERATION, UnitOfWork

_SAVE_COLUMNS = ("source, path, kind, subject_id, dev, inode, fingerprint, fingerprint_len, \"offset\", line_no,"
                 " skipping, size, mtime_ns, content_hash, state, first_seen_at, ingested_at")
_SAVE_TYPES = ("text", "text", "text", "text", "bigint", "bigint", "bytea", "bigint", "bigint", "bigint", "smallint",
               "bigint", "bigint", "bytea", "text", "double precision", "double precision")
# The batch's checkpoints, one statement: a row per path (a path saved twice keeps its last).
# (Arrays sent in binary, %b: see executions.py's upsert_given.)
_SAVE_CHECKPOINTS = (
    f"INSERT INTO files ({_SAVE_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(f"%b::{t}[]" for t in _SAVE_TYPES) + ")"
    " ON CONFLICT (source, path) DO UPDATE SET dev = excluded.dev, inode = excluded.inode,"
    " fingerprint = excluded.fingerprint, fingerprint_len = excluded.fingerprint_len, \"offset\" = excluded.\"offset\","
    " line_no = excluded.line_no, skipping = excluded.skipping, size = excluded.size,"
    " mtime_ns = excluded.mtime_ns, content_hash = excluded.content_hash, state = excluded.state,"
    " ingested_at = coalesce(excluded.ingested_at, files.ingested_at)")

_ROW = ("dev, inode, fingerprint, fingerprint_len, \"offset\", line_no, skipping, size, mtime_ns, content_hash,"
        " state")
CACHED_FILES = 100_000  # the source's checkpoints kept in memory, if it has no more files than this


def _checkpoint(row) -> Checkpoint:
    return Checkpoint(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7], row[8], row[9], row[10])


_CHECKPOINT = f"SELECT {_ROW} FROM files WHERE source = %s AND path = %s"


class FileRepository(UnitOfWork):
    """This source's rows of files (keyed by source and path: two hosts often have the same paths).

    Only this daemon writes them (it holds its source's lock), so it keeps them in memory
    (`_known`, loaded in one statement; a source with more than CACHED_FILES files is read a
    path at a time): a scan or a live file's batch reads no checkpoint from the server. What a
    batch writes is `_written` until it commits (undone with a file's savepoint, dropped with a
    rollback); a reconnect forgets it all (a COMMIT cut off may or may not have committed).
    The batch's checkpoints are written at its end, in one statement (`_saves`), in its
    transaction as the rows they cover are, or before a statement reads the files table."""

    def __init__(self) -> None:
        super().__init__()
        self.marked_missing = 0
        self.oldest_log_mtime_ns: int | None = None
        self._known: dict[str, Checkpoint] | None = None     # every checkpoint of the source; None: not loaded
        self._written: Kept[str, Checkpoint] = Kept()        # the batch's
        self._saves: Kept[str, tuple] = Kept()               # ... not written yet (_SAVE_CHECKPOINTS)
        # the paths (as shown) with ingest errors, as complete as `_known` (a path may stay after
        # its errors went: a statement too many, never one too few)
        self._error_paths: set[str] = set()

    def checkpoint(self, path: str, scanned: Checkpoint | None | NotLookedUp = NOT_LOOKED_UP) -> Checkpoint | None:
        written = self._written.get(path)
        if written is not None:
            return written
        # (After a reconnect the scan's checkpoints may predate a commit that went through.)
        if scanned is not NOT_LOOKED_UP and self._trust_scanned:
            return scanned
        known = self._known_checkpoints()
        if known is not None:
            return known.get(path)
        row = self._execute(_CHECKPOINT, (self.source, path)).fetchone()
        return None if row is None else _checkpoint(row)

    def _known_checkpoints(self) -> dict[str, Checkpoint] | None:
        if self._known is None and not self._in_batch:
            rows = self._execute(f"SELECT path, {_ROW} FROM files WHERE source = %s LIMIT %s",
                                 (self.source, CACHED_FILES + 1)).fetchall()
            if len(rows) <= CACHED_FILES:
                self._known = {r[0]: _checkpoint(r[1:]) for r in rows}
                self._error_paths = {r[0] for r in self._execute(
                    "SELECT DISTINCT path FROM ingest_errors WHERE source = %s", (self.source,))}
        return self._known

    def _may_have_errors(self, path: str) -> bool:
        """Whether the path may have ingest errors (no: clearing them sends no statement)."""
        return self._known is None or path in self._error_paths

    def _write(self, path: str, cp: Checkpoint, save: tuple | None = None):
        """The batch wrote `cp` for `path` (to be written at the end, as `save`, if given)."""
        self._written.put(path, cp)
        if save is not None:
            self._saves.put(path, save)

    def _savepoint_started(self):
        super()._savepoint_started()
        self._written.savepoint_started()
        self._saves.savepoint_started()

    def _savepoint_undone(self):
        super()._savepoint_undone()
        self._written.savepoint_undone()
        self._saves.savepoint_undone()

    def _files_read(self):
        """The batch's checkpoints, written before a statement reads or updates the files table."""
        super()._files_read()
        if self._saves:
            rows = self._saves.take(self._in_file)
            self._execute(_SAVE_CHECKPOINTS, [list(c) for c in zip(*rows, strict=True)])

    def _batch_end(self):
        super()._batch_end()
        self._files_read()

    def _batch_over(self, committed: bool):
        super()._batch_over(committed)
        if committed and self._known is not None:
            self._known.update(self._written.items())
        self._written.clear()
        self._saves.clear()

    def _forget(self):
        super()._forget()
        self._known = None
        self._error_paths.clear()

    def save_checkpoint(self, path: str, kind: str, subject_id: str, cp: Checkpoint, ingested: bool):
        now = time.time()
        self._write(path, cp, (
            self.source, path, kind, subject_id, cp.dev, cp.inode, cp.fingerprint, cp.fingerprint_len, cp.offset,
            cp.line_no, int(cp.skipping), cp.size, cp.mtime_ns, cp.content_hash, cp.state, now,
            now if ingested else None))
        if kind == "events" and (self.oldest_log_mtime_ns is None or cp.mtime_ns < self.oldest_log_mtime_ns):
            self.oldest_log_mtime_ns = cp.mtime_ns

    def take_oldest_log_mtime(self) -> int | None:
        oldest, self.oldest_log_mtime_ns = self.oldest_log_mtime_ns, None
        return oldest

    def set_file_state(self, path: str, state: str) -> bool:
        self._files_read()
        row = self._execute(
            f"UPDATE files SET state = %s WHERE source = %s AND path = %s AND state != %s RETURNING {_ROW}",
            (state, self.source, path, state)).fetchone()
        if row is not None:
            self._write(path, _checkpoint(row))
        self.marked_missing += row is not None and state == "missing"
        return row is not None

    def counts(self) -> tuple[int, int, int]:
        files = one_value(self._execute("SELECT count(*) FROM files WHERE source = %s", (self.source,)))
        errors = one_value(self._execute("SELECT count(*) FROM ingest_errors WHERE source = %s",
                                             (self.source,)))
        return files, errors, lag_bytes(self.conn, self.source)

    def count_present(self, seen_before: float) -> int:
        return one_value(self._execute("SELECT count(*) FROM files WHERE source = %s AND state != 'missing'"
                                           " AND first_seen_at < %s", (self.source, seen_before)))

    def present_paths(self, chunk: int = 1000) -> Iterator[str]:
        """This source's files only: one host never marks another's files gone."""
        after = ""
        while True:
            paths = [r[0] for r in self._execute(
                "SELECT path FROM files WHERE source = %s AND path > %s AND state != 'missing'"
                " ORDER BY path LIMIT %s", (self.source, after, chunk))]
            yield from paths
            if len(paths) < chunk:
                return
            after = paths[-1]

    def event_logs(self, execution_id: str) -> list[tuple[str, Checkpoint]]:
        logs = []
        self._files_read()
        for (path,) in self._execute(
                "SELECT path FROM files WHERE source = %s AND kind = 'events' AND subject_id = %s",
                (self.source, execution_id)).fetchall():
            cp = self.checkpoint(path)
            if cp is not None:      # (always: the path was just read from its row)
                logs.append((path, cp))
        return logs

    # ------------------------------------------------------------------ input errors

    def record_error(self, path: str, line: int, byte_offset: int, reason: str) -> bool:
        path, now = shown(path), time.time()
        self._error_paths.add(path)
        before = self._execute("SELECT reason FROM ingest_errors WHERE source = %s AND path = %s AND line = %s",
                                   (self.source, path, line)).fetchone()
        (error_id,) = one_row(self._execute(
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
        row = self._execute("SELECT reason FROM ingest_errors WHERE source = %s AND path = %s AND line = 0",
                                (self.source, shown(path))).fetchone()
        return row[0] if row else None

    def clear_line_errors(self, path: str):
        if not self._may_have_errors(shown(path)):
            return
        self.changed_if_any(self._execute(
            "DELETE FROM ingest_errors WHERE source = %s AND path = %s AND line > 0 RETURNING 1",
            (self.source, shown(path))))

    def clear_file_error(self, path: str):
        if not self._may_have_errors(shown(path)):
            return
        self.changed_if_any(self._execute(
            "DELETE FROM ingest_errors WHERE source = %s AND path = %s AND line = 0 RETURNING 1",
            (self.source, shown(path))))
