"""The SQLite backend's unit of work: a batch is one write transaction (BEGIN IMMEDIATE ...
COMMIT), a file's work inside it one savepoint, and the data generation moves by one for a
batch that changed anything. The repositories (files.py, executions.py, ...) extend this class:
they share its connection and what it knows of the batch in hand."""

import contextlib
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import apsw

from daemon.storage import rules
from daemon.storage.new_executions import NewExecutions
from daemon.storage.sqlite.engine import Wal
from daemon.storage.sqlite.errors import translating
from daemon.storage.sqlite.new_executions import insert_new

CHANGES_KEPT = 100_000      # the change feed keeps this many of its newest rows


class UnitOfWork:
    conn: apsw.Connection
    path: Path
    wal: Wal

    def __init__(self, generation: int):
        self.generation = generation               # the last committed data generation
        self.changed = False                       # the batch in hand changed data
        self.new = NewExecutions()                 # executions first seen in this batch
        self._files_written: set[str] = set()      # paths whose checkpoint this batch wrote

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
            self.wal.committed()
        finally:
            self.new.forget()
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
        self.new.savepoint()
        try:
            yield
        except BaseException:
            self.new.undo()      # what the file did to new executions
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO one_file")
                self.conn.execute("RELEASE one_file")
            raise
        finally:
            self.new.release()
        self.conn.execute("RELEASE one_file")

    def _insert_new(self, only: int | None = None):
        """Insert the batch's new executions (or only one), keeping the rules."""
        inserted = self.new.insert(partial(insert_new, self.conn), self.next_generation, only)
        if inserted:
            for sql, rows in rules.executions_inserted(inserted, self.next_generation):
                self.conn.executemany(sql, rows)

    def _keep_rules(self, statements: Iterable[rules.Statement]):
        """Run what the domain rules (daemon/storage/rules.py) say a change takes."""
        for sql, params in statements:
            self.conn.execute(sql, params)

    @property
    def next_generation(self) -> int:
        return self.generation + 1

    def mark_changed(self):
        self.changed = True
