"""The files table: each tracked file's identity and checkpoint, and its state."""

import time
from collections.abc import Iterator

from daemon.reader import Checkpoint
from daemon.storage.interface import NOT_LOOKED_UP, NotLookedUp
from daemon.storage.sqlite.reports import lag_bytes
from daemon.storage.sqlite.unit_of_work import UnitOfWork


class FileRepository(UnitOfWork):
    """The files table."""

    def __init__(self, generation: int):
        super().__init__(generation)
        self.marked_missing = 0    # files found gone since the start (a count, for the scan)
        self.oldest_log_mtime_ns: int | None = None    # of the event-log checkpoints written since taken

    def checkpoint(self, path: str, scanned: Checkpoint | None | NotLookedUp = NOT_LOOKED_UP) -> Checkpoint | None:
        """The file's checkpoint, None if it is not tracked. `scanned`: what the reconcile scan
        read for it before this batch, still true unless this batch has written it since."""
        if scanned is not NOT_LOOKED_UP and path not in self._files_written:
            return scanned
        row = self.conn.execute(
            "SELECT dev, inode, fingerprint, fingerprint_len, offset, line_no, skipping, size,"
            " mtime_ns, content_hash, state FROM files WHERE path = ?", (path,)).fetchone()
        if row is None:
            return None
        return Checkpoint(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7],
                          row[8], row[9], row[10])

    def save_checkpoint(self, path: str, kind: str, subject_id: str, cp: Checkpoint, ingested: bool):
        now = time.time()
        self._files_written.add(path)
        if kind == "events" and (self.oldest_log_mtime_ns is None or cp.mtime_ns < self.oldest_log_mtime_ns):
            self.oldest_log_mtime_ns = cp.mtime_ns
        self.conn.execute(
            "INSERT INTO files (path, kind, subject_id, dev, inode, fingerprint, fingerprint_len,"
            " offset, line_no, skipping, size, mtime_ns, content_hash, state, first_seen_at, ingested_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            # not kind and subject_id: they follow from the path, and setting them would
            # rewrite their index entry (a page written) on every commit
            " ON CONFLICT (path) DO UPDATE SET dev = excluded.dev, inode = excluded.inode,"
            " fingerprint = excluded.fingerprint, fingerprint_len = excluded.fingerprint_len, offset = excluded.offset,"
            " line_no = excluded.line_no, skipping = excluded.skipping, size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, content_hash = excluded.content_hash, state = excluded.state,"
            " ingested_at = coalesce(excluded.ingested_at, files.ingested_at)",
            (path, kind, subject_id, cp.dev, cp.inode, cp.fingerprint, cp.fingerprint_len, cp.offset,
             cp.line_no, int(cp.skipping), cp.size, cp.mtime_ns, cp.content_hash, cp.state, now,
             now if ingested else None))

    def take_oldest_log_mtime(self) -> int | None:
        """The oldest mtime (ns) of the event-log checkpoints written since the last call: how
        soon the stale rule may have a run to time out that it did not know of (a log found late)."""
        oldest, self.oldest_log_mtime_ns = self.oldest_log_mtime_ns, None
        return oldest

    def set_file_state(self, path: str, state: str) -> bool:
        """Returns True when the state changed."""
        self._files_written.add(path)
        self.conn.execute("UPDATE files SET state = ? WHERE path = ? AND state != ?", (state, path, state))
        changed = self.conn.changes() > 0
        self.marked_missing += changed and state == "missing"
        return changed

    def counts(self) -> tuple[int, int, int]:
        """(files tracked, input errors recorded, lag_bytes), for the one-line status."""
        files = self.conn.execute("SELECT count(*) FROM files").get
        errors = self.conn.execute("SELECT count(*) FROM ingest_errors").get
        return files, errors, lag_bytes(self.conn)

    def count_present(self, seen_before: float) -> int:
        """Files tracked since before `seen_before` and not known to be gone, for the scan."""
        return self.conn.execute("SELECT count(*) FROM files WHERE state != 'missing' AND first_seen_at < ?",
                                 (seen_before,)).get

    def present_paths(self, chunk: int = 1000) -> Iterator[str]:
        """Those files' paths, a chunk per query (no statement stays open between chunks)."""
        after = ""
        while True:
            paths = [r[0] for r in self.conn.execute(
                "SELECT path FROM files WHERE path > ? AND state != 'missing' ORDER BY path LIMIT ?",
                (after, chunk))]
            yield from paths
            if len(paths) < chunk:
                return
            after = paths[-1]

    def event_logs(self, execution_id: str) -> list[tuple[str, Checkpoint]]:
        """The event logs tracked for an execution (one, unless the sessions folder moved), with
        their checkpoints."""
        return [(path, self.checkpoint(path)) for (path,) in self.conn.execute(  # type: ignore[misc, arg-type]  # apsw: a row is any SQLite values, this one (path TEXT,); a tracked path has a checkpoint
            "SELECT path FROM files WHERE kind = 'events' AND subject_id = ?", (execution_id,)).fetchall()]
