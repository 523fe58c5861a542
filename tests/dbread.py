"""How the tests read the daemon's database: the one place that knows which engine holds it.

Every read in the tests goes through these functions (conftest's `Db` is built on them), with
SQL that both SQLite and PostgreSQL take: standard joins, aggregates and `coalesce`, `?`
placeholders, no SQLite-only functions. The target is a SQLite file's path or a PostgreSQL
database's URL (the `backend` fixture): a URL is read with psycopg, `?` and `:name` becoming
`%s` and `%(name)s`, PostgreSQL's numeric sums given back as SQLite gives them, and `meta(key)`
reading SQLite's key/value facts from PostgreSQL's `meta` row and `sources` rows.

SQLite-only SQL that stays, because it tests the SQLite backend itself (another backend's run
would skip those tests): the schema version and migration checks (`PRAGMA user_version`,
`table_info`, `journal_mode`, `sqlite_schema`: test_daemon.py, test_systemd.py) and the
integrity check after a full disk (`PRAGMA quick_check`: reliability/test_db_faults.py); and,
not read here, the page size of the WAL copier's test on an open Store (test_daemon_units.py).
Connections that write or lock the database on purpose keep their own: the old-version
databases of the migration tests (conftest.write_old_database, test_daemon.py's newer
user_version), a foreign database (test_daemon_lock.py), a heartbeat set back in time
(test_api.py, test_live_feed.py), the change feed pruned as the daemon would
(test_live_feed.py), and the lock and snapshot holders of the fault tests (test_systemd.py,
reliability/support.py's HOLD_SCRIPT).

Each query runs on a fresh read-only connection, opened as the API opens one
(core/readonly.py: it creates no file, and refuses a database the daemon has not opened yet),
every row is read and the connection closed: a test never holds a snapshot or a lock that the
daemon would wait on. (APSW only: never the stdlib sqlite3 in the same process, whose SQLite
library would not share APSW's locks.)
"""

import re
from decimal import Decimal
from pathlib import Path

import apsw
import psycopg

from core.dburl import is_url
from core.readonly import CannotOpen, open_readonly

Params = tuple | dict


class Unreadable(Exception):
    """The query failed: the database is not created yet, its schema not there yet, or busy past
    the timeout (wait_for counts these as "not yet"); or the SQL is wrong (the message says)."""


def query(db: Path | str, sql: str, params: Params = ()) -> list[tuple]:
    """Every row of one query, as tuples."""
    return _run(db, sql, params, dicts=False)


def dicts(db: Path | str, sql: str, params: Params = ()) -> list[dict]:
    """Every row of one query, as {column: value}."""
    return _run(db, sql, params, dicts=True)


def one(db: Path | str, sql: str, params: Params = ()) -> dict | None:
    """The one row of a query (None: no row); more than one is a failed test."""
    rows = dicts(db, sql, params)
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def value(db: Path | str, sql: str, params: Params = ()):
    """The first column of the first row (None: no row)."""
    rows = query(db, sql, params)
    return rows[0][0] if rows else None


def is_postgres(db: Path | str) -> bool:
    return is_url(db)


# meta: SQLite's key/value rows; PostgreSQL's one typed row and, per source, `sources` (the
# latest start and heartbeat, the counters summed).
_PG_META = {"data_generation": "SELECT data_generation FROM meta", "database_id": "SELECT database_id FROM meta",
            "last_ingest_at": "SELECT last_ingest_at FROM meta", "schema_version": "SELECT schema_version FROM meta",
            "heartbeat_at": "SELECT max(heartbeat_at) FROM sources",
            "daemon_started_at": "SELECT max(started_at) FROM sources"}


def meta(db: Path | str, key: str):
    """A meta fact by its SQLite key, on either backend."""
    if not is_postgres(db):
        return value(db, "SELECT value FROM meta WHERE key = ?", (key,))
    if key.endswith("_total"):
        return value(db, f"SELECT sum({key}) FROM sources")
    return value(db, _PG_META[key])


_NAMED = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")


def _pg_sql(sql: str, params: Params) -> str:
    """SQLite's placeholders as psycopg's (`?` → `%s`, `:name` → `%(name)s`; a literal % doubled)."""
    sql = sql.replace("%", "%%")
    return _NAMED.sub(r"%(\1)s", sql) if isinstance(params, dict) else sql.replace("?", "%s")


def _plain(value):
    """PostgreSQL's numeric (sums) as SQLite gives it: int when whole, else float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _run_pg(url: str, sql: str, params: Params, dicts: bool) -> list:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(_pg_sql(sql, params), params or None)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            rows = [tuple(_plain(v) for v in row) for row in cur.fetchall()]
    except psycopg.Error as e:
        raise Unreadable(f"{type(e).__name__}: {e}") from e
    return [dict(zip(names, row)) for row in rows] if dicts else rows


def _run(db: Path | str, sql: str, params: Params, dicts: bool) -> list:
    if is_postgres(db):
        return _run_pg(str(db), sql, params, dicts)
    try:
        conn, _ = open_readonly(Path(db))
    except CannotOpen as e:
        raise Unreadable(str(e)) from e
    try:
        cur = conn.cursor()
        if dicts:
            cur.row_trace = lambda c, row: dict(zip((d[0] for d in c.get_description()), row))
        try:
            return cur.execute(sql, params).fetchall()
        finally:
            cur.close()
    except apsw.Error as e:
        raise Unreadable(f"{type(e).__name__}: {e}") from e
    finally:
        conn.close()
