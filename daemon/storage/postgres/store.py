"""The PostgreSQL backend of daemon/storage/interface.py: one connection per daemon (its
source's lock held by its session), several daemons on one database, one transaction per batch
with the shared writes in its commit tail (unit_of_work.py)."""

from daemon.storage.postgres.benchmarks import BenchmarkRepository
from daemon.storage.postgres.connection import connect, translating_methods
from daemon.storage.postgres.executions import ExecutionRepository
from daemon.storage.postgres.files import FileRepository
from daemon.storage.postgres.meta import MetaRepository
from daemon.storage.postgres.migrations import migrate


@translating_methods
class PostgresStore(FileRepository, ExecutionRepository, BenchmarkRepository, MetaRepository):
    def __init__(self, url: str, source: str):
        """SourceTaken (Incompatible) when a daemon of the same source holds the database."""
        self.url, self.source = url, source
        self.conn = connect(url, source)
        try:
            migrate(self.conn, source)
            super().__init__()
        except BaseException:
            self.conn.close()
            raise

    def close(self):
        self.conn.close()

    def tune(self, catching_up: bool):
        """Nothing to tune: the server's settings are the operator's."""

    def abandon(self):
        """Nothing lies beside a path to be paired with another database."""
