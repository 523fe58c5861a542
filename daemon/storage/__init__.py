"""The daemon's storage seam: the interface (interface.py) that ingest.py, service.py and
stale.py use, its errors (errors.py), and its backends (sqlite/). docs/storage.md says where
each rule lives and why."""

from collections.abc import Callable
from pathlib import Path

from core.dburl import is_url
from daemon.storage.errors import Busy, Corrupt, Full, Incompatible, NotOwned, StorageError, Unavailable, Unreachable
from daemon.storage.interface import NOT_LOOKED_UP, Store
from daemon.storage.records import Run

__all__ = ["NOT_LOOKED_UP", "Busy", "Corrupt", "Full", "Incompatible", "NotOwned", "Run", "StorageError", "Store",
           "Unavailable", "Unreachable", "open_store"]


def open_store(db: Path | str, source: str, migrating: Callable[[str], None] | None = None) -> Store:
    """The one place the backend is chosen: a PostgreSQL URL (core/dburl.py) opens the PostgreSQL
    backend, anything else is a SQLite file. (Imported here, when chosen: a SQLite daemon loads
    no psycopg, and the read worker no backend at all.) StorageError when it cannot be opened."""
    if is_url(db):
        try:
            from daemon.storage.postgres import PostgresStore
        except ImportError as e:
            raise Unavailable(f"a PostgreSQL database needs psycopg: pip install 'reev-ingest[postgres]' ({e})") \
                from None
        return PostgresStore(str(db), source)
    from daemon.storage.sqlite import SqliteStore
    return SqliteStore(Path(db), migrating=migrating, source=source)


class Reports:
    """The operators' read-only queries (`reev-ingestd status` and `dump`) over one database,
    whichever backend holds it: `status()` (one snapshot), `dump()` (canonical records) and
    `close()`. Opened by open_reports."""

    def __init__(self, conn, status_report, canonical_dump):
        self.conn, self._status, self._dump = conn, status_report, canonical_dump

    def status(self) -> dict:
        return self._status(self.conn)

    def dump(self):
        return self._dump(self.conn)

    def close(self):
        self.conn.close()


def open_reports(db: Path | str) -> Reports:
    """The reports of `db`, chosen as open_store chooses. A SQLite file is opened as the API
    opens it (core/readonly.py: CannotOpen, NotAFile); a PostgreSQL database that cannot be
    reached is Unavailable."""
    if is_url(db):
        try:
            import psycopg

            from daemon.storage.postgres import canonical_dump, open_reader, status_report
        except ImportError as e:
            raise Unavailable(f"a PostgreSQL database needs psycopg: pip install 'reev-ingest[postgres]' ({e})") \
                from None
        try:
            pg_conn = open_reader(str(db))
        except psycopg.Error as e:
            raise Unavailable(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
        return Reports(pg_conn, status_report, canonical_dump)
    from core.readonly import open_readonly
    from daemon.storage.sqlite import canonical_dump as sqlite_dump
    from daemon.storage.sqlite import status_report as sqlite_status
    conn, _ = open_readonly(Path(db))
    return Reports(conn, sqlite_status, sqlite_dump)
