"""How the tests read the daemon's database: the one place that knows which engine holds it.

Every read in the tests goes through these functions (conftest's `Db` is built on them), with
SQL that both SQLite and PostgreSQL take: standard joins, aggregates and `coalesce`, `?`
placeholders, no SQLite-only functions. Running the suite against another backend is then a
change here alone: open the test's --db target with that engine's client (and translate `?`
for a driver that wants another placeholder).

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

from pathlib import Path

import apsw

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


def _run(db: Path | str, sql: str, params: Params, dicts: bool) -> list:
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
