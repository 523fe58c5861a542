"""The API's SQLite engine (api/db.py is the interface): the daemon's file opened read-only with
APSW (core/readonly.py: it creates no file), one connection per thread that queries, reopened
when the file is replaced; the time limit is a progress handler over each response's snapshot."""

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw

from api.db import Database, DatabaseUnavailable, Meta, Queries, QueryTimeout
from core.readonly import CannotOpen, open_readonly


class SQLiteQueries(Queries):
    NO_LIMIT = -1

    def execute(self, sql: str, params=()) -> apsw.Cursor:
        return self.conn.execute(sql, params)

    def columns(self, cursor: apsw.Cursor) -> tuple[str, ...] | None:
        try:
            return tuple(d[0] for d in cursor.get_description())
        except apsw.ExecutionCompleteError:      # no rows: nothing to check yet
            return None

    def meta(self) -> Meta:
        fields = Meta.__struct_fields__
        return Meta(**{key: value for key, value in self.conn.execute("SELECT key, value FROM meta")
                       if key in fields})

    def stored_database_id(self) -> str | None:
        return self.value("SELECT value FROM meta WHERE key = 'database_id'")

    def generation(self) -> int:
        return int(self.value("SELECT value FROM meta WHERE key = 'data_generation'") or 0)

    def agents(self, limit: int) -> list[str]:
        return [name for name, in self.conn.execute(
            "SELECT DISTINCT agent_type FROM executions WHERE agent_type IS NOT NULL"
            " ORDER BY agent_type LIMIT ?", (limit,))]

    def ingest_counters(self) -> dict[str, float | None]:
        return dict(self.conn.execute(
            "SELECT key, value FROM meta WHERE key LIKE '%_total' OR key IN"
            " ('data_generation', 'last_ingest_at', 'heartbeat_at')"))


class SQLiteDatabase(Database):
    """Read-only access to the daemon's database file; survives the file not existing yet."""

    _CLOSE_ERRORS = apsw.Error

    def __init__(self, path: Path, query_timeout: float = 2.0):
        self.path = path
        self.name = path.name
        self.query_timeout = query_timeout
        self._local = threading.local()

    def _connection(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            ino = None
        if conn is not None and self._local.ino == ino:
            return conn
        self._drop()   # first use, or the file was replaced (or is gone): open it anew
        try:
            conn, st = open_readonly(self.path)
        except CannotOpen as e:
            raise DatabaseUnavailable(str(e)) from None
        self._local.conn, self._local.ino, self._local.database_id = conn, st.st_ino, None
        return conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[SQLiteQueries]:
        conn = self._connection()
        deadline = time.monotonic() + self.query_timeout
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            conn.execute("BEGIN DEFERRED").fetchall()
            try:
                yield self._identified(SQLiteQueries(conn, self._local.database_id))
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT").fetchall()
        except apsw.InterruptError:
            raise QueryTimeout(f"the query took longer than {self.query_timeout:g} s") from None
        except (apsw.CantOpenError, apsw.NotADBError, apsw.CorruptError, apsw.IOError) as e:
            self._drop()
            raise DatabaseUnavailable(f"cannot read the database: {e}") from None
        finally:
            conn.set_progress_handler(None)
