"""The PostgreSQL backend's unit of work, with several daemons writing one database.

A batch is one transaction; a file's work a savepoint inside it. During the batch a daemon
writes only rows of its own source (its files, errors, executions and their events, tool
calls and session documents, its `sources` row): rows no other daemon writes, so batches of
different sources never wait for each other's row locks, nor deadlock. What is shared (the data
generation in meta, the change feed, the per-agent statistics, the ETag scopes, benchmarks) is
written in the batch's commit tail, after the change feed's advisory lock (FEED_KEY), just
before COMMIT: the domain rules' statements (daemon/storage/rules.py) are kept in memory during
the batch and run there, with the generation the tail takes. The lock is released once the
commit is visible, so generations and the feed's numbers are handed out in commit order: a
reader that has seen change n has seen every change committed before it.

Rows changed in a batch carry its stamp (executions.changed_generation: the sequence
batch_stamps, taken at the batch's first change), since its generation is only known at commit:
an ETag needs a value that changes whenever the row does, and a stamp is unique per batch.

A connection lost (the server restarted, the network) fails the batch in hand as Unavailable;
the service loop backs off, and the next call reconnects, takes the source's lock again and
forgets what it had read from the database: a COMMIT cut off may or may not have committed, and
the stored checkpoints say which (rows and checkpoints commit together).

A batch runs in pipeline mode (psycopg's `conn.pipeline()`): its statements go out without
waiting for their results, and only a read waits (one round trip, which carries everything
queued before it); BEGIN, the savepoints, the checkpoints, the rows and the tail go with the
COMMIT. An error of a statement queued earlier is then raised by the next read or by the
commit, as the batch's failure (a file's own failures, in Python, are undone by its savepoint,
queued like the rest). COPY cannot run in a pipeline: a back-fill's rows leave it for a moment
(_unpiped)."""

import contextlib
import itertools
import logging
import time
from collections.abc import Iterable

import psycopg

from daemon.storage import rules
from daemon.storage.errors import StorageError
from daemon.storage.new_executions import NewExecutions
from daemon.storage.postgres.connection import FEED_KEY, connect, one_row, one_value, translating
from daemon.storage.rules import ExecutionState

log = logging.getLogger("reev.store")

_SAVEPOINT = "SAVEPOINT one_file"
_RELEASE = "RELEASE SAVEPOINT one_file"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT one_file"

CHANGES_KEPT = 100_000      # the change feed keeps this many of its newest rows
PRUNE_SECONDS = 10.0        # at most this often, from any daemon


class _Generation(rules.Pending):
    """Stands for the batch's generation in the rules' parameters until the tail knows it."""

    def __repr__(self) -> str:
        return "GENERATION"


GENERATION = _Generation()
_SQL: dict[str, str] = {}     # rules.py's statements (`?` parameters) as psycopg's (`%s`)


def pg_sql(sql: str) -> str:
    text = _SQL.get(sql)
    if text is None:
        text = _SQL[sql] = sql.replace("?", "%s")
    return text


def _with_generation(params: tuple, generation: int) -> tuple:
    return tuple(generation if p is GENERATION else p for p in params)


class UnitOfWork:
    conn: psycopg.Connection
    url: str
    source: str

    def __init__(self) -> None:
        self.generation = self._read_generation()
        self._changed = False
        self._changes_to_see: list[psycopg.Cursor] = []   # statements that changed data if they returned a row
        self.new = NewExecutions()
        self._deferred: list[tuple[str, list[tuple]]] = []   # (sql, its parameters' rows): for the tail
        self._events: list[tuple] = []       # event lines and tool calls of the batch, written at its
        self._calls: list[tuple] = []        # end or before tool calls are read (executions.py)
        # how long those lists were when the savepoint in hand began (their rows, once written)
        self._kept_before: tuple[int, int] | tuple[list, list] | None = None
        self._stamp: int | None = None
        # the next batch's stamp, taken by this one's commit tail in its own statement: a live
        # batch then sends no statement of its own to take one (one wait fewer per batch)
        self._next_stamp: int | None = None
        self._in_batch = False
        self._savepoint_due = False      # a file's savepoint, sent before its first statement
        self._savepoint_open = False     # ... sent
        self._benchmarks_locked = False
        self._trust_scanned = True     # False once reconnected: checkpoints are read again
        self._pruned_at = 0.0
        self._pipeline: contextlib.AbstractContextManager | None = None   # the batch's (_pipe)
        self._prepare_session()

    def _prepare_session(self):
        """What a new session needs before its first batch (the repositories' temporary tables)."""

    def _read_generation(self) -> int:
        return one_value(self.conn.execute("SELECT data_generation FROM meta"))

    # ------------------------------------------------------------------ the connection

    def _connected(self):
        """Reconnect if the connection was lost (outside a batch only)."""
        if not (self.conn.closed or self.conn.broken):
            return
        log.info("reconnecting to the database")
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        self.conn = connect(self.url, self.source)
        self.generation = self._read_generation()
        self._prepare_session()
        self._trust_scanned = False
        self.new.forget()
        self._forget()
        log.info("reconnected to the database (generation %d)", self.generation)

    # ------------------------------------------------------------------ the batch

    @contextlib.contextmanager
    @translating
    def batch(self):
        """One transaction, pipelined; its shared writes in the commit tail (see the module's
        docstring)."""
        self._connected()
        self._changed, self._stamp, self._benchmarks_locked = False, None, False
        self._changes_to_see.clear()
        self._deferred.clear()
        self._in_batch, self._savepoint_open = True, False
        generation = None
        committed = False
        try:
            self._pipe()
            self.conn.execute("BEGIN")
            yield self
            self._batch_end()
            self._insert_new()
            self._write_rows()
            if self.changed:
                generation = self._commit_tail()
            self.conn.execute("COMMIT")
            self._unpipe()           # the sync: what failed in the batch is raised here
            committed = True
        finally:
            if not committed:
                self._roll_back()
            self._in_batch = False
            self.new.forget()
            self._deferred.clear()
            self._events.clear()
            self._calls.clear()
            self._batch_over(committed)
        if generation is not None:
            self.generation = generation
        self._prune_changes()

    def _pipe(self):
        """Enter pipeline mode (the batch's statements are queued, not waited for)."""
        pipeline = self.conn.pipeline()
        pipeline.__enter__()
        self._pipeline = pipeline

    def _unpipe(self):
        """Leave pipeline mode: sends what is queued and waits for every result; raises the
        first error among them."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.__exit__(None, None, None)

    @contextlib.contextmanager
    def _unpiped(self):
        """Out of pipeline mode for a moment (COPY), within the batch's transaction."""
        if self._pipeline is None:
            yield
            return
        self._unpipe()
        try:
            yield
        finally:
            self._pipe()

    def _roll_back(self):
        """The batch failed: what it queued is dropped, its transaction rolled back (unless the
        connection went with it: then the server did)."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            with contextlib.suppress(Exception):     # (the batch's own error is what goes up)
                pipeline.__exit__(None, None, None)
        if not (self.conn.closed or self.conn.broken) \
                and self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")

    def _batch_end(self):
        """The files are done: what the repositories left for the end of the batch."""

    def _batch_over(self, committed: bool):
        """The batch committed or was rolled back: the repositories' caches follow."""

    def _files_read(self):
        """A statement is about to read the files table: what the batch keeps for it is written."""

    def _forget(self):
        """Reconnected: what the repositories keep of the database may be wrong."""

    def _savepoint_started(self):
        """A file's work begins (the repositories' undo records of the file in hand start)."""

    def _savepoint_undone(self):
        """The file's work was rolled back: the repositories undo what it did to their memory."""

    @contextlib.contextmanager
    @translating
    def savepoint(self):
        """One file's work: undone alone (its writes, its new executions, its deferred rules,
        the rows it kept for later). The SAVEPOINT itself waits for the file's first statement
        (_execute): most files of a back-fill send none (their rows and checkpoints are kept
        for the batch's end), and a savepoint that writes is a subtransaction, of which more
        than 64 in one transaction slow down every reader of the server."""
        deferred = len(self._deferred)
        self._kept_before = (len(self._events), len(self._calls))
        self.new.savepoint()
        self._savepoint_started()
        self._savepoint_due = True
        try:
            yield
            if self._savepoint_open:
                self.conn.execute(_RELEASE)
        except BaseException as e:
            # (A database error loses the batch: nothing to undo here, and a pipeline that
            # failed takes no statement until the batch rolls back.)
            if self._savepoint_open and not isinstance(e, (psycopg.Error, StorageError)) \
                    and not (self.conn.broken or self.conn.closed):
                self.conn.execute(_ROLLBACK_TO)
                self.conn.execute(_RELEASE)
            self.new.undo()
            self._savepoint_undone()
            del self._deferred[deferred:]
            kept = self._kept_before
            if isinstance(kept[0], list):
                # This file's reads wrote what earlier files kept, and the rollback to the
                # savepoint undid that write: it is kept again.
                self._events[:], self._calls[:] = kept
            else:
                del self._events[kept[0]:]
                del self._calls[kept[1]:]
            raise
        finally:
            self._savepoint_due = self._savepoint_open = False
            self.new.release()
            self._kept_before = None

    def _execute(self, sql, params=None, prepare: bool | None = None) -> psycopg.Cursor:
        """A statement of the batch (or outside one), after the file's savepoint if one is due."""
        self._open_savepoint()
        return self.conn.execute(sql, params, prepare=prepare)

    def _cursor(self) -> psycopg.Cursor:
        """A cursor for the batch's statements (executemany, COPY), after the file's savepoint."""
        self._open_savepoint()
        return self.conn.cursor()

    def _open_savepoint(self):
        if self._savepoint_due:
            self._savepoint_due = False
            self.conn.execute(_SAVEPOINT)
            self._savepoint_open = True

    @property
    def _in_file(self) -> bool:
        """Inside a file's savepoint (what is written now for earlier files is undone with it)."""
        return self._kept_before is not None

    def _writing_kept_rows(self):
        """The kept rows are about to be written: inside a savepoint, what earlier files kept is
        remembered first (see savepoint)."""
        kept = self._kept_before
        if kept is not None and not isinstance(kept[0], list):
            self._kept_before = (self._events[:kept[0]], self._calls[:kept[1]])

    def _commit_tail(self) -> int:
        """The shared writes, in commit order: the feed's lock, the generation, the rules."""
        self._lock_feed()
        now = time.time()
        generation, self._next_stamp = one_row(self._execute(
            "UPDATE meta SET data_generation = data_generation + 1, last_ingest_at = %s"
            " RETURNING data_generation, nextval('batch_stamps')", (now,)))
        with self._cursor() as cur:
            # (a statement's runs in a row as one executemany: a back-fill's tail is thousands)
            for sql, group in itertools.groupby(self._deferred, key=lambda d: d[0]):
                cur.executemany(sql, [_with_generation(p, generation) for _, params in group for p in params])
        return generation

    def _lock_feed(self):
        """The change feed's lock, until the commit (taken early by a batch that writes
        benchmarks, which are shared too)."""
        if not self._benchmarks_locked:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (FEED_KEY,))
            self._benchmarks_locked = True

    def _prune_changes(self):
        """The feed keeps its newest CHANGES_KEPT rows (old rows only: no lock a tail needs)."""
        if time.monotonic() - self._pruned_at < PRUNE_SECONDS:
            return
        self._pruned_at = time.monotonic()
        self.conn.execute("DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - %s", (CHANGES_KEPT,))

    def _insert_new(self, only: int | None = None):
        inserted = self.new.insert(self._insert_rows, self.stamp if self.new.by_id else 0, only)
        if inserted:
            for sql, rows in rules.executions_inserted(inserted, GENERATION):
                self._deferred.append((pg_sql(sql), rows))

    def _insert_rows(self, rows: list[dict]) -> list[ExecutionState]:
        raise NotImplementedError     # executions.py

    def _write_rows(self):
        raise NotImplementedError     # executions.py

    def _keep_rules(self, statements: Iterable[rules.Statement]):
        """What the domain rules say a change takes, run in the commit tail."""
        for sql, params in statements:
            self._deferred.append((pg_sql(sql), [params]))

    @property
    def stamp(self) -> int:
        """The batch's stamp, for the rows it changes."""
        if self._stamp is None:
            if self._next_stamp is not None:     # (a sequence's value: unique, rolled back or not)
                self._stamp, self._next_stamp = self._next_stamp, None
            else:
                self._stamp = one_value(self._execute("SELECT nextval('batch_stamps')"))
        return self._stamp

    @property
    def changed(self) -> bool:
        """The batch changed data (looked at once asked: the statements that may have are not
        waited for one by one)."""
        if not self._changed and self._changes_to_see:
            self._changed = any(cur.fetchone() is not None for cur in self._changes_to_see)
            self._changes_to_see.clear()
        return self._changed

    @changed.setter
    def changed(self, value: bool):
        self._changed = value
        self._changes_to_see.clear()

    def mark_changed(self):
        self._changed = True

    def changed_if_any(self, cursor: psycopg.Cursor):
        """The batch changed data if `cursor`'s statement (queued) returns a row."""
        if not self._changed:
            self._changes_to_see.append(cursor)
