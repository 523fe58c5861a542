"""The PostgreSQL backend of daemon/storage/interface.py: one connection per daemon (its
source's lock held by its session), several daemons on one database, one transaction per batch
with the shared writes in its commit tail (unit_of_work.py)."""

import functools
import inspect

from daemon.storage import errors
from daemon.storage.postgres.benchmarks import BenchmarkRepository
from daemon.storage.postgres.connection import connect, translating
from daemon.storage.postgres.executions import ExecutionRepository
from daemon.storage.postgres.files import FileRepository
from daemon.storage.postgres.meta import MetaRepository
from daemon.storage.postgres.migrations import migrate


def _reconnecting(fn):
    """`fn`, called outside a batch, first makes the connection again if it was lost (the
    service loop calls the store between batches too: its scan, its status line)."""
    if fn.__name__ in ("__init__", "batch", "close"):
        return translating(fn)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(self, *args, **kwargs):
            if not self._in_batch:
                self._connected()
            return (yield from fn(self, *args, **kwargs))
        return translating(generator)

    @functools.wraps(fn)
    def function(self, *args, **kwargs):
        if not self._in_batch:
            self._connected()
        return fn(self, *args, **kwargs)
    return translating(function)


@functools.partial(errors.translating_methods, wrap=_reconnecting)
class PostgresStore(FileRepository, ExecutionRepository, BenchmarkRepository, MetaRepository):
    # A commit waits for its WAL flush (synchronous_commit stays on) and the commit tail's lock:
    # a live batch takes what is dirty in one go, rather than a file or two per commit.
    live_batch_seconds = 0.02

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
