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
the stored checkpoints say which (rows and checkpoints commit together)."""

import contextlib
import logging
import time
from collections.abc import Iterable

import psycopg

from daemon.storage import rules
from daemon.storage.new_executions import NewExecutions
from daemon.storage.postgres.connection import FEED_KEY, connect, translating
from daemon.storage.rules import ExecutionState

log = logging.getLogger("reev.store")

CHANGES_KEPT = 100_000      # the change feed keeps this many of its newest rows
PRUNE_SECONDS = 10.0        # at most this often, from any daemon


class _Generation:
    """Stands for the batch's generation in the rules' parameters until the tail knows it."""

    def __repr__(self):
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

    def __init__(self):
        self.generation = self._read_generation()
        self.changed = False
        self.new = NewExecutions()
        self._files_written: set[str] = set()
        self._deferred: list[tuple[str, list[tuple], bool]] = []   # (sql, params, many): for the tail
        self._stamp: int | None = None
        self._in_batch = False
        self._benchmarks_locked = False
        self._trust_scanned = True     # False once reconnected: checkpoints are read again
        self._pruned_at = 0.0

    def _read_generation(self) -> int:
        return self.conn.execute("SELECT data_generation FROM meta").fetchone()[0]

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
        self._trust_scanned = False
        self.new.forget()
        self._files_written.clear()
        log.info("reconnected to the database (generation %d)", self.generation)

    # ------------------------------------------------------------------ the batch

    @contextlib.contextmanager
    @translating
    def batch(self):
        """One transaction; its shared writes in the commit tail (see the module's docstring)."""
        self._connected()
        self.changed, self._stamp, self._benchmarks_locked = False, None, False
        self._deferred.clear()
        self._in_batch = True
        generation = None
        try:
            with self.conn.transaction():
                yield self
                self._insert_new()
                if self.changed:
                    generation = self._commit_tail()
        finally:
            self._in_batch = False
            self.new.forget()
            self._files_written.clear()
            self._deferred.clear()
        if generation is not None:
            self.generation = generation
        self._prune_changes()

    @contextlib.contextmanager
    @translating
    def savepoint(self):
        """One file's work: undone alone (its writes, its new executions, its deferred rules)."""
        deferred = len(self._deferred)
        self.new.savepoint()
        try:
            with self.conn.transaction():
                yield
        except BaseException:
            self.new.undo()
            del self._deferred[deferred:]
            raise
        finally:
            self.new.release()

    def _commit_tail(self) -> int:
        """The shared writes, in commit order: the feed's lock, the generation, the rules."""
        self._lock_feed()
        now = time.time()
        generation = self.conn.execute(
            "UPDATE meta SET data_generation = data_generation + 1, last_ingest_at = %s RETURNING data_generation",
            (now,)).fetchone()[0]
        with self.conn.cursor() as cur:
            for sql, params, many in self._deferred:
                if many:
                    cur.executemany(sql, [_with_generation(p, generation) for p in params])
                else:
                    cur.execute(sql, _with_generation(params[0], generation))
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
                self._deferred.append((pg_sql(sql), rows, True))

    def _insert_rows(self, rows: list[dict]) -> list[ExecutionState]:
        raise NotImplementedError     # executions.py

    def _keep_rules(self, statements: Iterable[rules.Statement]):
        """What the domain rules say a change takes, run in the commit tail."""
        for sql, params in statements:
            self._deferred.append((pg_sql(sql), [params], False))

    @property
    def stamp(self) -> int:
        """The batch's stamp, for the rows it changes."""
        if self._stamp is None:
            self._stamp = self.conn.execute("SELECT nextval('batch_stamps')").fetchone()[0]
        return self._stamp

    def mark_changed(self):
        self.changed = True
