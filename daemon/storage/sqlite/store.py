"""The SQLite backend of daemon/storage/interface.py: one APSW connection (the only writer),
WAL, one transaction per batch. The store is put together from the repositories (one module
per table or two), which share the unit of work (unit_of_work.py); the engine's own tuning
stays in engine.py, the schema in migrations.py."""

from collections.abc import Callable
from pathlib import Path

from daemon.storage.sqlite.benchmarks import BenchmarkRepository
from daemon.storage.sqlite.engine import Wal, open_writer, set_up_writer
from daemon.storage.sqlite.errors import translating_methods
from daemon.storage.sqlite.events import EventRepository
from daemon.storage.sqlite.executions import ExecutionRepository
from daemon.storage.sqlite.files import FileRepository
from daemon.storage.sqlite.ingest_errors import ErrorRepository
from daemon.storage.sqlite.meta import MetaRepository
from daemon.storage.sqlite.migrations import migrate, refuse_anothers


@translating_methods
class SqliteStore(FileRepository, ErrorRepository, ExecutionRepository, EventRepository, BenchmarkRepository,
                  MetaRepository):
    live_batch_seconds = 0.003     # commits are cheap: WAL with synchronous=NORMAL does not fsync

    def __init__(self, path: Path, migrating: Callable[[str], None] | None = None, source: str | None = None):
        """`migrating(what)` is told when a schema migration starts, and again every
        migrations.MIGRATION_NOTICE_SECONDS until it ends (it can take many minutes). `source`:
        the daemon's --source, recorded in meta when it starts (the file lock, not the source,
        keeps a SQLite database to one writer)."""
        self.path, self.source = path, source
        self.conn = open_writer(path)
        try:
            refuse_anothers(self.conn)      # before anything is written to it
            set_up_writer(self.conn)
            migrate(self.conn, path, migrating)
            self.wal = Wal(self.conn, path)
        except BaseException:
            self.conn.close()
            raise
        super().__init__(self.meta("data_generation") or 0)

    def close(self):
        self.wal.close()
        self.conn.close()

    def tune(self, catching_up: bool):
        self.wal.tune(catching_up)

    def abandon(self):
        self.wal.empty()
