"""All SQL of the writer. One APSW connection, WAL, one transaction per batch.

Everything the daemon knows about a file (checkpoint) and everything it read from it (rows)
is written inside the same transaction: commit both or neither. That is the exactly-once
guarantee, so nothing here commits on its own except `Store.batch()`.
"""

import contextlib
import copy
import ctypes
import functools
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import apsw
import msgspec

from core.ids import shown
from daemon.reader import Checkpoint
from daemon.storage.errors import Busy, Corrupt, Full, Incompatible, StorageError, Unavailable

log = logging.getLogger("reev.store")

# SQLite's errors as the storage layer's (the rest are StorageError itself).
_ERRORS: dict[type, type[StorageError]] = {
    apsw.BusyError: Busy, apsw.LockedError: Busy,
    apsw.FullError: Full,
    apsw.CorruptError: Corrupt, apsw.NotADBError: Corrupt,
    apsw.CantOpenError: Unavailable, apsw.IOError: Unavailable, apsw.ReadOnlyError: Unavailable,
    apsw.PermissionsError: Unavailable, apsw.ProtocolError: Unavailable, apsw.AuthError: Unavailable,
}


def storage_error(e: apsw.Error) -> StorageError:
    """The storage layer's error for an APSW one."""
    kind = next((k for c, k in _ERRORS.items() if isinstance(e, c)), StorageError)
    return kind(str(e), type(e).__name__)


def translating(fn):
    """`fn` (a function or a generator function) raising StorageError for apsw.Error."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                return (yield from fn(*args, **kwargs))
            except apsw.Error as e:
                raise storage_error(e) from e
        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except apsw.Error as e:
            raise storage_error(e) from e
    return function


def translating_methods(cls):
    """The class, its public methods (and __init__) translating apsw.Error at the edge."""
    for name, value in list(vars(cls).items()):
        if inspect.isfunction(value) and (not name.startswith("_") or name == "__init__"):
            setattr(cls, name, translating(value))
    return cls

SCHEMA_VERSION = 6


class Migration(NamedTuple):
    """What brings a database of the version before to this one: `before` moves away what
    schema.sql cannot change in place, schema.sql then creates the new forms, and `after`
    fills them and drops what was moved away. All in one transaction."""
    before: list[str]
    after: list[str]


# 2 (the change feed and ingest counters) was additive: schema.sql absorbs it.
MIGRATIONS = {
    3: Migration(  # session files move to their own table; a cheaper stats trigger; an unused index goes
        before=["DROP TRIGGER executions_stats_update", "DROP INDEX IF EXISTS executions_changed"],
        after=["INSERT INTO session_docs (exec_id, session_doc, result_doc)"
               " SELECT id, session_doc, result_doc FROM executions WHERE session_doc IS NOT NULL",
               "ALTER TABLE executions DROP COLUMN session_doc",
               "ALTER TABLE executions DROP COLUMN result_doc"]),
    4: Migration(  # events becomes a rowid table keyed by an index
        before=["ALTER TABLE events RENAME TO events_v3"],
        after=["INSERT INTO events (exec_id, line, byte_offset, kind, event_type, ts, doc)"
               " SELECT exec_id, line, byte_offset, kind, event_type, ts, doc FROM events_v3",
               "DROP TABLE events_v3"]),
    5: Migration(  # files becomes a rowid table keyed by an index; tool calls no longer copy their JSON
        before=["DROP INDEX files_by_subject", "ALTER TABLE files RENAME TO files_v4"],
        after=["INSERT INTO files (path, kind, subject_id, dev, inode, fingerprint, fingerprint_len, offset, line_no,"
               " skipping, size, mtime_ns, content_hash, state, first_seen_at, ingested_at)"
               " SELECT path, kind, subject_id, dev, inode, fingerprint, fingerprint_len, offset, line_no,"
               " skipping, size, mtime_ns, content_hash, state, first_seen_at, ingested_at FROM files_v4",
               "DROP TABLE files_v4",
               "ALTER TABLE tool_calls DROP COLUMN input",
               "ALTER TABLE tool_calls DROP COLUMN output"]),
    # why a run is the stale rule's Timeout (no rewrite: ADD COLUMN only changes the schema);
    # schema.sql then indexes the Running runs, one pass over executions
    6: Migration(before=["ALTER TABLE executions ADD COLUMN stale_reason TEXT"], after=[]),
}
CHANGES_KEPT = 100_000
NOT_LOOKED_UP = object()     # Store.checkpoint(): no scanned checkpoint given
BUSY_TIMEOUT_MS = 5000


class Tuning(NamedTuple):
    cache_kib: int          # SQLite's page cache
    copy_pages: int         # the WAL copier is asked to copy the WAL once it holds this many pages
    checkpoint_pages: int   # ... and the loop copies what is left itself at this many (a restart)
    wal_limit: int          # bytes the WAL file is cut back to when it restarts (-1: never)


# Following live files, a batch touches a few pages: a small cache, the WAL copied into the
# database by the loop every 4 MiB (by the copier it was copied after nearly every commit,
# which took the core the writers and the API need: live p50 6 -> 9.5 ms) and its file kept
# small. Catching up, a batch inserts thousands of rows at random places of the path and
# execution indexes: a large cache keeps those pages; the copier copies the WAL behind the
# loop, which restarts it every 256 MiB.
LIVE = Tuning(cache_kib=2000, copy_pages=1000, checkpoint_pages=1000, wal_limit=16 << 20)
CATCHING_UP = Tuning(cache_kib=65536, copy_pages=2048, checkpoint_pages=65536, wal_limit=-1)
MIGRATION_NOTICE_SECONDS = 60.0


def schema_sql() -> str:
    """The repository's schema.sql: beside the package in a source tree or editable install,
    else where pyproject's data-files put it (<prefix>/share/reev-ingest/schema.sql)."""
    for candidate in (Path(__file__).resolve().parent.parent / "schema.sql",
                      Path(sys.prefix) / "share" / "reev-ingest" / "schema.sql"):
        if candidate.exists():
            return candidate.read_text()
    raise Unavailable("schema.sql not found: reinstall reev-ingest")


# The derived columns of an execution (FORMATS §5), each defined once, as SQL over the
# expressions given for its inputs: stored columns, or the new values a statement sets.
# created_at: the session file's start, else the first event's time.
_CREATED_AT = "coalesce({start}, {first})"
# updated_at: the last activity seen in either file.
_UPDATED_AT = "max(coalesce({last}, 0), coalesce({end}, 0), coalesce({start}, 0))"
# benchmark_id: the session file's, else the benchmark whose prompt equals the first user
# prompt, when exactly one benchmark has it (a run without a session file).
_BENCHMARK = ("coalesce({session_benchmark}, (SELECT CASE WHEN count(*) = 1 THEN max(b.id) END FROM benchmarks b"
              " WHERE b.removed = 0 AND b.prompt != '' AND b.prompt = {prompt}))")


# A tool call's duration: the one written, else the time between its two lines (SQL, so that a
# call completed in one read and one completed across two reads round alike).
_DURATION = ("coalesce({given}, CASE WHEN {started} IS NOT NULL AND {ended} IS NOT NULL"
             " THEN round(({ended} - {started}) * 1000, 3) END)")

# The statements run for every file, built once.
_UPDATE_SESSION = (
    "UPDATE executions SET recorded_session_id = coalesce(:sid, recorded_session_id),"
    " session_benchmark_id = :bench, agent_type = coalesce(:agent, agent_type), status = :status,"
    " success = CASE WHEN :keep THEN success ELSE :success END,"
    " score = CASE WHEN :keep THEN score ELSE :score END,"
    " final_status = CASE WHEN :keep THEN final_status ELSE :final_status END,"
    " execution_time_ms = CASE WHEN :keep THEN execution_time_ms ELSE :ms END,"
    " start_time = :start, end_time = :end, stale_reason = NULL,"
    " finished_at = CASE WHEN :finished THEN coalesce(finished_at, :now) ELSE finished_at END,"
    # the derived columns, from the new values
    f" created_at = {_CREATED_AT.format(start=':start', first='first_event_at')},"
    f" updated_at = {_UPDATED_AT.format(last='last_event_at', end=':end', start=':start')},"
    f" benchmark_id = {_BENCHMARK.format(session_benchmark=':bench', prompt='first_prompt')},"
    " changed_generation = :gen WHERE id = :id")
_FIRST_EVENT_AT = "CASE WHEN first_event_at IS NULL OR :first < first_event_at THEN :first ELSE first_event_at END"
_AGGREGATES = (
    "UPDATE executions SET event_count = event_count + :lines, tool_call_count = tool_call_count + :calls,"
    f" step_count = step_count + :steps, first_event_at = {_FIRST_EVENT_AT},"
    " last_event_at = CASE WHEN last_event_at IS NULL OR :last > last_event_at THEN :last ELSE last_event_at END,"
    " recorded_session_id = coalesce(recorded_session_id, :sid), changed_generation = :gen,"
    # updated_at only grows with appends, so it is kept here
    " updated_at = max(coalesce(updated_at, 0), coalesce(:last, 0))")
_ADD_AGGREGATES_DERIVING = (
    _AGGREGATES + ", first_prompt = coalesce(first_prompt, :prompt),"
    f" created_at = {_CREATED_AT.format(start='start_time', first=_FIRST_EVENT_AT)},"
    " benchmark_id = "
    + _BENCHMARK.format(session_benchmark="session_benchmark_id", prompt="coalesce(first_prompt, :prompt)")
    + " WHERE id = :id")
_ADD_AGGREGATES = (_AGGREGATES + " WHERE id = :id RETURNING created_at IS "
                   + _CREATED_AT.format(start="start_time", first="first_event_at"))
# An execution first seen in this batch, with what every file of the batch gave it: the same
# rules as the two updates above, applied once. (Its updated_at stays NULL, as a bare insert
# left it, while no file has given it anything.)
_INSERT_NEW = (
    "INSERT INTO executions (id, execution_id, recorded_session_id, session_benchmark_id, first_prompt, agent_type,"
    " status, success, score, final_status, execution_time_ms, start_time, end_time, first_event_at, last_event_at,"
    " created_at, updated_at, benchmark_id, finished_at, event_count, tool_call_count, step_count, changed_generation)"
    " VALUES (:id, :execution_id, coalesce(:sid, :events_sid), :bench, :prompt, :agent, :status, :success, :score,"
    " :final_status, :ms, :start, :end, :first, :last,"
    f" {_CREATED_AT.format(start=':start', first=':first')},"
    f" CASE WHEN :given THEN {_UPDATED_AT.format(last=':last', end=':end', start=':start')} END,"
    f" {_BENCHMARK.format(session_benchmark=':bench', prompt=':prompt')},"
    " :finished_at, :lines, :calls, :steps, :gen)")


class Run(NamedTuple):
    """An execution as the status rules see it."""
    id: int
    status: str
    stalled: bool             # its Timeout is the stale rule's (core/run_status.py)


_NO_SESSION = {"sid": None, "bench": None, "agent": None, "success": None, "score": None, "final_status": None,
               "ms": None, "start": None, "end": None, "finished_at": None}


@dataclass(slots=True)
class NewExecution:
    """An execution not in the database yet. What the batch's files give it is gathered here and
    inserted with one statement when the batch commits (back-fill: one insert per execution,
    instead of an insert and an update per file)."""
    id: int
    execution_id: str
    status: str = "Running"
    session: dict | None = None      # the session file's columns (update_session's values)
    given: bool = False              # a file gave it something (else updated_at stays NULL)
    lines: int = 0
    calls: int = 0
    steps: int = 0
    first: float | None = None
    last: float | None = None
    prompt: str | None = None
    events_sid: str | None = None

    def row(self, gen: int) -> dict:
        """The parameters of _INSERT_NEW."""
        row = {"id": self.id, "execution_id": self.execution_id, "status": self.status, "given": self.given,
               "lines": self.lines, "calls": self.calls, "steps": self.steps, "first": self.first,
               "last": self.last, "prompt": self.prompt, "events_sid": self.events_sid, "gen": gen, **_NO_SESSION}
        s = self.session
        if s is not None:
            row.update(sid=s["sid"], bench=s["bench"], agent=s["agent"], start=s["start"], end=s["end"],
                       finished_at=s["now"] if s["finished"] else None)
            if not s["keep"]:     # a session file without final_result keeps the last result
                row.update(success=s["success"], score=s["score"], final_status=s["final_status"], ms=s["ms"])
        return row


_INSERT_TOOL_CALLS = (
    "INSERT OR REPLACE INTO tool_calls (exec_id, line, source, output_line, tool_name, started_at,"
    " ended_at, duration_ms, success, status, error_message)"
    f" VALUES (?1,?2,?3,?4,?5,?6,?7,{_DURATION.format(given='?8', started='?6', ended='?7')},?9,?10,?11)")
_COMPLETE_TOOL_CALLS = (
    "UPDATE tool_calls SET output_line = ?1, ended_at = coalesce(?2, ended_at),"
    f" duration_ms = coalesce({_DURATION.format(given='?3', started='started_at', ended='?2')}, duration_ms),"
    " success = ?4, status = ?5, error_message = ?6 WHERE exec_id = ?7 AND line = ?8")


class WalCopier:
    """A thread with a connection of its own that copies the WAL into the database file while
    the loop writes on: a PASSIVE checkpoint neither waits for the writer nor blocks it, and
    APSW lets go of the GIL while SQLite copies, so the copying takes the other core. (A
    back-fill's loop spent a seventh of its time copying the WAL: 45 -> 41-42 s.)"""

    def __init__(self, path: Path):
        self._wanted = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, args=(path,), name="wal-copier", daemon=True)
        self._thread.start()

    def request(self):
        self._wanted.set()

    def close(self):
        self._closing = True
        self._wanted.set()
        self._thread.join()

    def _run(self, path: Path):
        try:
            conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
            conn.execute("PRAGMA synchronous = NORMAL").fetchall()    # as the writer's
        except apsw.Error as e:
            log.warning("%s: no background WAL copies (%s): the loop copies it all", path, e)
            return
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closing:
                    return
                try:
                    conn.wal_checkpoint()
                except apsw.Error as e:     # the loop's own copy (Store._copy_wal) bounds the WAL
                    log.debug("%s: background WAL copy failed: %s", path, e)
        finally:
            conn.close()


@translating_methods
class Store:
    def __init__(self, path: Path, migrating: Callable[[str], None] | None = None):
        """`migrating(what)` is told when a schema migration starts, and again every
        MIGRATION_NOTICE_SECONDS until it ends (it can take many minutes)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
        try:
            self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            self._refuse_anothers()      # before anything is written to it
        except BaseException:
            self.conn.close()
            raise
        self._pragma("journal_mode = WAL")
        # Keep -wal and -shm when the daemon closes: a reader without write access to the state
        # folder (the API's systemd unit) can only open a WAL database whose files exist.
        persist = ctypes.c_int(1)
        self.conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(persist))
        self._pragma("synchronous = NORMAL")
        # Savepoint journals (one per file) in memory, not in a temporary file.
        self._pragma("temp_store = MEMORY")
        self._pragma("foreign_keys = OFF")
        self._migrate(migrating)
        self._tuning = LIVE
        self._wal_pages = 0                          # in the WAL after the last commit
        self.conn.set_wal_hook(self._wal_committed)  # (in place of SQLite's own auto-checkpoint)
        self._copier = WalCopier(path)
        self.generation = self.meta("data_generation") or 0
        self.changed = False
        self.new: dict[int, NewExecution] = {}     # executions first seen in this batch, by id
        self._new_ids: dict[str, int] = {}          # ... their execution_id → id
        self._next_id: int | None = None            # the id the next new execution gets (None: count)
        self._reserved: dict[str, int] = {}         # execution_id → id, for one not created yet
        self._undo: dict[int, NewExecution | None] | None = None   # inside a savepoint: new[] before it
        self._files_written: set[str] = set()       # paths whose checkpoint this batch wrote
        self.marked_missing = 0    # files found gone since the start (a count, for the scan)
        self.oldest_log_mtime_ns: int | None = None    # of the event-log checkpoints written since taken

    def _pragma(self, text: str):
        # A PRAGMA that returns a row only runs to completion when the row is fetched.
        return self.conn.execute(f"PRAGMA {text}").fetchall()

    def _refuse_anothers(self):
        """Another program's SQLite database is not taken over: one that holds tables but no
        schema version (ours is set with its first tables, in the same transaction)."""
        if self._pragma("user_version")[0][0] == 0:
            if self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise Incompatible("it already holds tables but no reev-ingest schema version (user_version 0):"
                                   " another program's database, left as it is")

    def _migrate(self, migrating: Callable[[str], None] | None):
        """A new database gets schema.sql; an older one its pending migrations around it (see
        Migration). schema.sql also creates what is missing from any version."""
        version = self._pragma("user_version")[0][0]
        if version > SCHEMA_VERSION:
            raise Incompatible(f"database schema {version} is newer than this daemon ({SCHEMA_VERSION})")
        pending = [m for v, m in MIGRATIONS.items() if 0 < version < v]
        what = f"migrating the database schema from version {version} to {SCHEMA_VERSION}"
        if pending:
            log.info("%s: %s", self.path, what)
            if migrating:
                migrating(what)
                # Told again every MIGRATION_NOTICE_SECONDS while SQLite works: rewriting the
                # events of a big database takes longer than any one start timeout.
                next_notice = time.monotonic() + MIGRATION_NOTICE_SECONDS

                def still_migrating() -> bool:
                    nonlocal next_notice
                    if time.monotonic() >= next_notice:
                        migrating(what)
                        next_notice = time.monotonic() + MIGRATION_NOTICE_SECONDS
                    return False     # go on
                self.conn.set_progress_handler(still_migrating, 1_000_000)
        try:
            with self.conn:
                for statement in (s for m in pending for s in m.before):
                    self.conn.execute(statement).fetchall()
                self.conn.execute(schema_sql()).fetchall()
                for statement in (s for m in pending for s in m.after):
                    self.conn.execute(statement).fetchall()
                self._pragma(f"user_version = {SCHEMA_VERSION}")
        finally:
            self.conn.set_progress_handler(None)
        if pending:
            # The rewritten tables went through the WAL, which PERSIST_WAL keeps at its largest:
            # give that space back. (The old tables' pages stay in the file as free pages,
            # reused by new rows; `VACUUM` with the daemon stopped returns them, see README.)
            self._pragma("wal_checkpoint(TRUNCATE)")
            log.info("%s: %s: done", self.path, what)

    def close(self):
        self._copier.close()
        self.conn.close()

    def empty_wal(self):
        """Copy the WAL into the database file and empty it (the file at the -wal path may be
        paired with another database file next)."""
        try:
            self._pragma("wal_checkpoint(TRUNCATE)")
        except apsw.Error as e:
            log.warning("%s: emptying the WAL failed: %s", self.path, e)

    def tune(self, catching_up: bool):
        """Set SQLite up for a back-fill or for following live files (see LIVE)."""
        t = self._tuning = CATCHING_UP if catching_up else LIVE
        self._pragma(f"cache_size = -{t.cache_kib}")
        self._pragma(f"journal_size_limit = {t.wal_limit}")

    def _wal_committed(self, _conn, _db: str, pages: int) -> int:
        self._wal_pages = pages
        return apsw.SQLITE_OK

    def _copy_wal(self):
        """After a batch's commit: have the copier copy the WAL behind the loop, and once the WAL
        is long, copy what it has not copied yet here. Only the writer can restart the WAL, at
        the start of a transaction, and only when all of it is in the database: copied here,
        it is; by the copier alone, a batch has usually begun meanwhile."""
        if self._wal_pages >= self._tuning.checkpoint_pages:
            try:
                self.conn.wal_checkpoint()
            except apsw.BusyError:
                pass         # the copier is copying: the next commit copies the rest
            except apsw.Error as e:     # (the batch is committed: the WAL only grows on)
                log.warning("%s: copying the WAL into the database failed: %s", self.path, e)
        elif self._wal_pages >= self._tuning.copy_pages:
            self._copier.request()

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    @translating
    def batch(self):
        """One write transaction. Commits the data generation +1 if anything changed."""
        self.changed = False
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
            self._insert_new()
            if self.changed:
                now = time.time()
                self.conn.execute("DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?",
                                  (CHANGES_KEPT,))
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'data_generation'", (self.generation + 1,))
                self.conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ingest_at'", (now,))
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            if self.changed:
                self.generation += 1
            self._copy_wal()
        finally:
            self._forget_new()
            self._files_written.clear()

    @contextlib.contextmanager
    @translating
    def savepoint(self):
        """Isolate one file's work inside a batch: an unexpected failure undoes only that file.

        Not `with self.conn`: SQLITE_FULL or an I/O error in the middle of a statement (a cache
        spill) makes SQLite roll back the whole transaction, and APSW's context manager then
        replaces that error with its own "no such savepoint". Here the original error goes up
        as it is, and batch() sees that there is no transaction left to roll back."""
        self.conn.execute("SAVEPOINT one_file")
        self._undo = {}
        try:
            yield
        except BaseException:
            undo, self._undo = self._undo, None
            for exec_id, before in undo.items():     # what the file did to new executions
                self._set_new(exec_id, before)
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO one_file")
                self.conn.execute("RELEASE one_file")
            raise
        finally:
            self._undo = None
        self.conn.execute("RELEASE one_file")

    @property
    def next_generation(self) -> int:
        return self.generation + 1

    def mark_changed(self):
        self.changed = True

    # ------------------------------------------------------------------ meta

    def meta(self, key: str):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value):
        self.conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))

    def add_counters(self, **amounts: float):
        """Move the ingest counters of the meta table (lines_ingested_total=…, …)."""
        self.conn.executemany("UPDATE meta SET value = value + ? WHERE key = ?",
                              [(amount, key) for key, amount in amounts.items() if amount])

    def set_started(self, now: float):
        with self.conn:
            self.set_meta("daemon_started_at", now)
            self.set_meta("heartbeat_at", now)

    def heartbeat(self, now: float):
        with self.conn:
            self.set_meta("heartbeat_at", now)

    # ------------------------------------------------------------------ files / checkpoints

    def checkpoint(self, path: str, scanned: object = NOT_LOOKED_UP) -> Checkpoint | None:
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
        files = self.conn.execute("SELECT count(*) FROM files").fetchone()[0]
        errors = self.conn.execute("SELECT count(*) FROM ingest_errors").fetchone()[0]
        return files, errors, lag_bytes(self.conn)

    def count_present(self, seen_before: float) -> int:
        """Files tracked since before `seen_before` and not known to be gone, for the scan."""
        return self.conn.execute("SELECT count(*) FROM files WHERE state != 'missing' AND first_seen_at < ?",
                                 (seen_before,)).fetchone()[0]

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

    # ------------------------------------------------------------------ errors

    # Errors are kept under the path as shown (core/ids.py): a name that is not UTF-8 is
    # stored with escapes, and no other name is stored the same.

    def record_error(self, path: str, line: int, byte_offset: int, reason: str) -> bool:
        """Record bad input; True if it is new or its reason changed (worth a warning)."""
        path, now = shown(path), time.time()
        before = self.conn.execute(
            "SELECT reason FROM ingest_errors WHERE path = ? AND line = ?", (path, line)).fetchone()
        self.conn.execute(
            "INSERT INTO ingest_errors (path, line, byte_offset, reason, first_seen_at, last_seen_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (path, line) DO UPDATE SET"
            " byte_offset = excluded.byte_offset, reason = excluded.reason,"
            " last_seen_at = excluded.last_seen_at, count = count + 1",
            (path, line, byte_offset, reason, now, now))
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

    # ------------------------------------------------------------------ executions

    def execution(self, execution_id: str) -> Run:
        """An execution; a new one is Running, and inserted when the batch commits."""
        exec_id = self._new_ids.get(execution_id)
        if exec_id is not None:
            return Run(exec_id, self.new[exec_id].status, False)
        exec_id = self._reserved.pop(execution_id, None)
        if exec_id is None:
            row = self.conn.execute("SELECT id, status, stale_reason IS NOT NULL FROM executions"
                                    " WHERE execution_id = ?", (execution_id,)).fetchone()
            if row:
                return Run(row[0], row[1], bool(row[2]))
            exec_id = self._allocate_id()
        self._set_new(exec_id, NewExecution(exec_id, execution_id))
        self.mark_changed()
        return Run(exec_id, "Running", False)

    def reserve_execution_id(self, execution_id: str) -> int:
        """The id execution() gives this execution, in this batch or a later one, without
        creating it: rows can be built with it before it exists. (A reservation is lost when
        a batch that created the execution rolls back: the rows' id no longer matches, and
        whoever built them must build them again.)"""
        exec_id = self._new_ids.get(execution_id) or self._reserved.get(execution_id)
        if exec_id is None:
            row = self.conn.execute("SELECT id FROM executions WHERE execution_id = ?", (execution_id,)).fetchone()
            if row:
                return row[0]
            exec_id = self._reserved[execution_id] = self._allocate_id()
        return exec_id

    def drop_reservation(self, execution_id: str):
        """What was to be built with the reserved id will not be (the file was no file)."""
        self._reserved.pop(execution_id, None)

    def drop_reservations(self):
        """Nothing built with a reserved id is left to store (the read-ahead stopped)."""
        self._reserved.clear()

    def _allocate_id(self) -> int:
        # Counted once: this is the only writer, and an id is never handed out twice, not even
        # one a rolled-back batch or a reservation left unused.
        if self._next_id is None:
            self._next_id = self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM executions").fetchone()[0]
        exec_id, self._next_id = self._next_id, self._next_id + 1
        return exec_id

    def _changing_new(self, exec_id: int) -> NewExecution | None:
        """The new execution `exec_id`, ready to be changed (a savepoint can undo it); None if
        it is in the database."""
        new = self.new.get(exec_id)
        if new is not None and self._undo is not None and exec_id not in self._undo:
            self._undo[exec_id] = copy.copy(new)
        return new

    def _set_new(self, exec_id: int, new: NewExecution | None):
        if self._undo is not None and exec_id not in self._undo:
            self._undo[exec_id] = self.new.get(exec_id)
        old = self.new.pop(exec_id, None)
        if old is not None:
            del self._new_ids[old.execution_id]
        if new is not None:
            self.new[exec_id] = new
            self._new_ids[new.execution_id] = exec_id

    def _insert_new(self, only: int | None = None):
        """Insert the new executions (or only one, before a statement that needs its row)."""
        ids = list(self.new) if only is None else [only] if only in self.new else []
        if ids:
            self.conn.executemany(_INSERT_NEW, [self.new[i].row(self.next_generation) for i in ids])
            for exec_id in ids:
                self._set_new(exec_id, None)

    def _forget_new(self):
        """After a commit or a rollback: nothing is new any more."""
        self.new.clear()
        self._new_ids.clear()

    def update_session(self, exec_id: int, status: str, s, finished_now: bool):
        """Columns fed by the session file. `s` is a parse.ParsedSession."""
        final = s.final
        keep_result = final is None  # a session file without final_result keeps the last result
        values = {
            "sid": s.recorded_session_id, "bench": s.benchmark_id, "agent": s.agent_type,
            "status": status, "keep": keep_result,
            "success": None if final is None or final.success is None else int(final.success),
            "score": None if final is None else final.score,
            "final_status": None if final is None else final.status,
            "ms": None if final is None or final.execution_time_ms is None else int(final.execution_time_ms),
            "start": s.start_time, "end": s.end_time,
            "finished": finished_now, "now": time.time(), "gen": self.next_generation, "id": exec_id}
        new = self._changing_new(exec_id)
        if new is None:
            self.conn.execute(_UPDATE_SESSION, values)
        else:
            new.session, new.status, new.given = values, status, True
        self.conn.execute(
            "INSERT INTO session_docs (exec_id, session_doc, result_doc) VALUES (?, ?, ?)"
            " ON CONFLICT (exec_id) DO UPDATE SET session_doc = excluded.session_doc,"
            " result_doc = CASE WHEN ? THEN result_doc ELSE excluded.result_doc END",
            (exec_id, s.doc, s.final_doc, keep_result))
        self.mark_changed()

    def add_event_aggregates(self, exec_id: int, *, lines: int, tool_calls: int, steps: int,
                             first_ts: float | None, last_ts: float | None,
                             first_prompt: str | None, recorded_session_id: str | None):
        new = self._changing_new(exec_id)
        if new is not None:
            new.given = True
            new.lines += lines
            new.calls += tool_calls
            new.steps += steps
            if first_ts is not None and (new.first is None or first_ts < new.first):
                new.first = first_ts
            if last_ts is not None and (new.last is None or last_ts > new.last):
                new.last = last_ts
            new.prompt = new.prompt if new.prompt is not None else first_prompt
            new.events_sid = new.events_sid if new.events_sid is not None else recorded_session_id
            self.mark_changed()
            return
        # Lines with a prompt are (nearly always) a log's first: they set first_prompt,
        # created_at and the benchmark in the same statement. Appends don't: a column in the SET
        # list costs an update of each index on it (a page written), even when its value stays.
        sql = _ADD_AGGREGATES_DERIVING if first_prompt is not None else _ADD_AGGREGATES
        row = self.conn.execute(sql, {
            "lines": lines, "calls": tool_calls, "steps": steps, "first": first_ts, "last": last_ts,
            "prompt": first_prompt, "sid": recorded_session_id, "gen": self.next_generation,
            "id": exec_id}).fetchall()
        if first_prompt is None and row and not row[0][0]:
            self._refresh_derived("id = ?", (exec_id,))   # an earlier timestamp came later
        self.mark_changed()

    def set_status(self, exec_id: int, status: str, stale_reason: str | None = None):
        """A status no file gave: the stale rule's Timeout (with why), or Running again after it.
        (The triggers carry it to the change feed and the benchmark's ETag scope.)"""
        self.conn.execute("UPDATE executions SET status = ?, stale_reason = ?, changed_generation = ? WHERE id = ?",
                          (status, stale_reason, self.next_generation, exec_id))
        self.mark_changed()

    def stale_candidates(self, limit: int) -> list[tuple[int, str, int]]:
        """The runs the stale rule applies to: Running, with an event log and no session file
        (one gone does not count), through the index of Running runs. The one whose newest log
        changed longest ago first: (id, execution_id, that log's mtime_ns), at most `limit`.
        (Forced to go from the Running runs: without statistics SQLite would walk every event log.)"""
        return self.conn.execute(
            "SELECT x.id, x.execution_id, max(f.mtime_ns) AS last_ns FROM executions x INDEXED BY executions_running"
            " CROSS JOIN files f ON f.kind = 'events' AND f.subject_id = x.execution_id"
            " WHERE x.status = 'Running' AND NOT EXISTS (SELECT 1 FROM files s WHERE s.kind = 'session'"
            "   AND s.subject_id = x.execution_id AND s.state != 'missing')"
            " GROUP BY x.execution_id ORDER BY last_ns LIMIT ?", (limit,)).fetchall()

    def event_logs(self, execution_id: str) -> list[tuple[str, Checkpoint]]:
        """The event logs tracked for an execution (one, unless the sessions folder moved), with
        their checkpoints."""
        return [(path, self.checkpoint(path)) for (path,) in self.conn.execute(
            "SELECT path FROM files WHERE kind = 'events' AND subject_id = ?", (execution_id,)).fetchall()]

    def reset_event_log(self, exec_id: int):
        """Forget what an event log contributed, before re-reading it from its first byte."""
        self._insert_new(only=exec_id)     # (rare: the statements below work on its row)
        self.conn.execute("DELETE FROM events WHERE exec_id = ?", (exec_id,))
        self.conn.execute("DELETE FROM tool_calls WHERE exec_id = ?", (exec_id,))
        self.conn.execute(
            "UPDATE executions SET event_count = 0, tool_call_count = 0, step_count = 0,"
            " first_event_at = NULL, last_event_at = NULL, first_prompt = NULL,"
            # the recorded session id came from the session file (it wins) or the old lines
            " recorded_session_id = (SELECT CASE WHEN json_valid(d.session_doc)"
            "   THEN json_extract(d.session_doc, '$.session_id') ELSE executions.recorded_session_id END"
            "   FROM session_docs d WHERE d.exec_id = executions.id),"
            " changed_generation = ? WHERE id = ?", (self.next_generation, exec_id))
        self._refresh_derived("id = ?", (exec_id,))
        self.mark_changed()

    def relink_unlinked(self):
        """After benchmarks changed: re-derive the benchmark of runs known only by their prompt."""
        self._refresh_derived("session_benchmark_id IS NULL"
                              " AND (first_prompt IS NOT NULL OR benchmark_id IS NOT NULL)", ())

    def _refresh_derived(self, where: str, params: tuple):
        """created_at, updated_at and the effective benchmark_id, from stored facts, where they
        differ from what they are."""
        derived = {
            "created_at": _CREATED_AT.format(start="start_time", first="first_event_at"),
            "updated_at": _UPDATED_AT.format(last="last_event_at", end="end_time", start="start_time"),
            "benchmark_id": _BENCHMARK.format(session_benchmark="session_benchmark_id",
                                              prompt="executions.first_prompt")}
        self.conn.execute(
            f"UPDATE executions SET {', '.join(f'{c} = {e}' for c, e in derived.items())}, changed_generation = ?"
            f" WHERE ({where}) AND ({' OR '.join(f'{c} IS NOT {e}' for c, e in derived.items())})",
            (self.next_generation, *params))
        if self.conn.changes():
            self.mark_changed()

    # ------------------------------------------------------------------ events and tool calls

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

    # ------------------------------------------------------------------ benchmarks

    def upsert_benchmark(self, b, path: str) -> str | None:
        """Insert or update; returns the path of another file that already defines this id."""
        row = self.conn.execute("SELECT path, removed FROM benchmarks WHERE id = ?", (b.id,)).fetchone()
        if row and row[0] != path and not row[1]:
            return row[0]
        self.conn.execute(
            "INSERT INTO benchmarks (id, path, description, tags, prompt, flow_steps, yaml_text, removed, updated_at)"
            " VALUES (?,?,?,?,?,?,?,0,?) ON CONFLICT (id) DO UPDATE SET path = excluded.path,"
            " description = excluded.description, tags = excluded.tags, prompt = excluded.prompt,"
            " flow_steps = excluded.flow_steps, yaml_text = excluded.yaml_text, removed = 0,"
            " updated_at = excluded.updated_at",
            (b.id, path, b.description, _json_list(b.tags), b.prompt, b.flow_steps, b.yaml_text, time.time()))
        # A file whose id changed no longer defines the old one.
        self.conn.execute("UPDATE benchmarks SET removed = 1 WHERE path = ? AND id != ? AND removed = 0", (path, b.id))
        self.mark_changed()
        self.relink_unlinked()
        return None

    def benchmark_ids_of(self, path: str) -> list[str]:
        """The ids a benchmark file defines now (not removed)."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM benchmarks WHERE path = ? AND removed = 0", (path,))]

    def benchmark_files_in_error(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT path FROM files WHERE kind = 'benchmark' AND state = 'error'")]

    def remove_benchmarks_of(self, path: str):
        self.conn.execute("UPDATE benchmarks SET removed = 1, updated_at = ? WHERE path = ? AND removed = 0",
                          (time.time(), path))
        if self.conn.changes():
            self.mark_changed()
            self.relink_unlinked()


def _json_list(values: list[str]) -> str:
    return msgspec.json.encode(values).decode()


# ---------------------------------------------------------------------- canonical dump

# What was ingested, in a canonical order, without what depends on when or how often the
# daemon ran (ingest times, counters, generations, row ids): two databases built from the
# same final files dump identically, however their ingestion was interrupted.
DUMP_QUERIES = {
    "benchmark": "SELECT id, path, description, tags, prompt, flow_steps, yaml_text, removed"
                 " FROM benchmarks ORDER BY id",
    "execution": "SELECT execution_id, recorded_session_id, benchmark_id, session_benchmark_id, first_prompt,"
                 " agent_type, status, success, score, final_status, execution_time_ms, start_time, end_time,"
                 " first_event_at, last_event_at, created_at, updated_at, event_count, tool_call_count,"
                 " step_count, stale_reason, d.session_doc, d.result_doc"
                 " FROM executions x LEFT JOIN session_docs d ON d.exec_id = x.id ORDER BY execution_id",
    "event": "SELECT x.execution_id, e.line, e.byte_offset, e.kind, e.event_type, e.ts, e.doc"
             " FROM events e JOIN executions x ON x.id = e.exec_id ORDER BY x.execution_id, e.line",
    "tool_call": "SELECT x.execution_id, t.line, t.source, t.output_line, t.tool_name, t.started_at, t.ended_at,"
                 " t.duration_ms, t.input, t.output, t.success, t.status, t.error_message"
                 " FROM tool_calls_io t JOIN executions x ON x.id = t.exec_id ORDER BY x.execution_id, t.line",
    # score_sum is a running sum kept by triggers: its last bits depend on the order in which
    # scores were added and taken back (rewritten session files), so it is compared rounded.
    "agent_benchmark_stats": "SELECT agent_type, benchmark_id, finished, succeeded, scored,"
                             " round(score_sum, 9) AS score_sum"
                             " FROM agent_benchmark_stats ORDER BY agent_type, benchmark_id",
    "file": "SELECT path, kind, subject_id, offset, line_no, skipping, state FROM files ORDER BY path",
    "ingest_error": "SELECT path, line, byte_offset, reason FROM ingest_errors ORDER BY path, line",
}


@translating
def canonical_dump(conn: apsw.Connection):
    """Every ingested record as a dict with its `table`, in a canonical order, read through a
    read-only connection (core/readonly.py)."""
    with conn:     # one snapshot for the whole dump
        for table, sql in DUMP_QUERIES.items():
            cursor = conn.execute(sql)
            names = None
            for row in cursor:
                names = names or [d[0] for d in cursor.get_description()]
                yield {"table": table, **dict(zip(names, row))}


# ---------------------------------------------------------------------- operator status

def lag_bytes(conn: apsw.Connection) -> int:
    """The lag, for the daemon's STATUS= line and `reev-ingestd status` alike: bytes of the event
    logs the daemon reads (state ok) beyond their checkpoint, as of its last look at each (a
    partial last line, a read the budget cut short). Never a file it does not read: one refused
    (a symlink, not followed), one it cannot read yet, one gone. From the database only, through
    the index of the logs read short (files_behind, whose condition the query repeats so that
    SQLite uses it): a few rows, whatever the number of files."""
    return conn.execute(
        "SELECT coalesce(sum(size - offset), 0) FROM files"
        " WHERE kind = 'events' AND size > offset AND state != 'missing' AND state = 'ok'").fetchone()[0]


@translating
def status_report(conn: apsw.Connection) -> dict:
    """What `reev-ingestd status` shows, read in one snapshot of a read-only connection
    (core/readonly.py)."""
    with conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        files = conn.execute("SELECT kind, state, count(*) FROM files GROUP BY kind, state"
                             " ORDER BY kind, state").fetchall()
        lag = lag_bytes(conn)
        statuses = conn.execute("SELECT status, count(*) FROM executions GROUP BY status ORDER BY status").fetchall()
        errors = conn.execute("SELECT path, line, byte_offset, reason, last_seen_at FROM ingest_errors"
                              " ORDER BY last_seen_at DESC, id DESC LIMIT 5").fetchall()
        error_count = conn.execute("SELECT count(*) FROM ingest_errors").fetchone()[0]
    return {"meta": meta, "files": files, "lag_bytes": lag, "statuses": statuses, "errors": errors,
            "error_count": error_count}
