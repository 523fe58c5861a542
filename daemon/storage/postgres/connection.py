"""The PostgreSQL connection of a daemon: opening it, its errors as the storage layer's, and
the advisory locks (the source's, the schema migration's, the change feed's).

The writer's connection is in autocommit: a batch is an explicit transaction
(`conn.transaction()`), a file's work a savepoint inside it, and a read outside any batch (the
reconcile scan, the one-line status) is its own short transaction, never one left open.

The source lock is a session advisory lock held by the writer's own session: no transaction can
commit without it (when the session ends, its open transaction is rolled back with it), and the
server releases it when the daemon dies or its connection is lost."""

import hashlib
import time
from typing import Any

import psycopg
import psycopg.errors
from psycopg import pq

from daemon.storage import errors
from daemon.storage.errors import Busy, Corrupt, Full, Incompatible, StorageError, Unavailable, Unreachable

# 40001 serialization failure, 40P01 deadlock, 55P03 lock not available: the batch lost a
# conflict with another writer, and is run again.
_BUSY = {"40001", "40P01", "55P03"}
_FULL = {"53100", "53200", "53400"}          # disk full, out of memory, configuration limit
_CORRUPT = {"XX001", "XX002"}                # data corrupted, index corrupted
# The server shut down, is starting, or the connection failed: reachable again later.
_UNAVAILABLE = {"57P01", "57P02", "57P03", "57P05", "3D000", "28000", "28P01", "42501"}


def storage_error(e: psycopg.Error) -> StorageError:
    """The storage layer's error for a psycopg one."""
    state = e.sqlstate
    if state in _BUSY:
        kind: type[StorageError] = Busy
    elif state in _FULL:
        kind = Full
    elif state in _CORRUPT:
        kind = Corrupt
    elif state is None or state.startswith("08") or state in _UNAVAILABLE or isinstance(e, psycopg.OperationalError):
        kind = Unavailable
    else:
        kind = StorageError
    return kind(first_line(e), type(e).__name__)


def one_row(cursor: psycopg.Cursor) -> tuple[Any, ...]:
    """The row of a statement that always returns one (an aggregate, a function's result, meta's
    single row, an upsert's RETURNING, a row this transaction holds)."""
    row = cursor.fetchone()
    if row is None:
        raise Corrupt("a statement that always returns a row returned none")
    return row


def one_value(cursor: psycopg.Cursor) -> Any:
    """The first column of one_row."""
    return one_row(cursor)[0]


def translating(fn):
    """`fn` raising StorageError for psycopg.Error."""
    return errors.translating(fn, psycopg.Error, storage_error)


def translating_methods(cls):
    return errors.translating_methods(cls, translating)


def lock_key(*words: str) -> int:
    """A 64-bit advisory lock key computed here (stable, unlike the server's hashtext)."""
    digest = hashlib.blake2b("\0".join(("reev-ingest", *words)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


MIGRATE_KEY = lock_key("migrate")
FEED_KEY = lock_key("change feed")


def source_key(source: str) -> int:
    return lock_key("source", source)


class SourceTaken(Incompatible):
    """Another daemon with the same source runs against this database."""


# A daemon restarted at once after a kill may find its lock still held, for the moment the
# server takes to see the old session gone: it tries again for this long before giving up.
LOCK_WAIT_SECONDS = 3.0


def _open(url: str, source: str) -> psycopg.Connection:
    """A new connection; Unreachable when the server could not be reached or does not take
    connections now. libpq gives no SQLSTATE for a connection refused at start, so its ping
    tells: no answer, or one that rejects every connection (starting up, shutting down), passes;
    a server that takes connections but not this one (a password, a missing database or role,
    its pg_hba.conf) or parameters libpq refuses do not. A server that takes connections is
    asked once more: it may have come up between the two."""
    def new() -> psycopg.Connection:
        return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name=f"reev-ingestd:{source}"[:63],
                               keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
    try:
        return new()
    except psycopg.OperationalError as e:
        ping = pq.PGconn.ping(url.encode())
        if ping in (pq.Ping.NO_RESPONSE, pq.Ping.REJECT):
            raise Unreachable(first_line(e), type(e).__name__) from e
        if ping != pq.Ping.OK:
            raise
    return new()


def first_line(e: psycopg.Error) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def connect(url: str, source: str) -> psycopg.Connection:
    """The writer's connection, holding the source's lock (SourceTaken when another session
    still has it after LOCK_WAIT_SECONDS; Unreachable: see _open)."""
    conn = _open(url, source)
    try:
        # a hung daemon inside a transaction frees its row locks (and the feed's) after a minute
        conn.execute("SET idle_in_transaction_session_timeout = '60s'")
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not one_value(conn.execute("SELECT pg_try_advisory_lock(%s)", (source_key(source),))):
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise SourceTaken(f"source {source!r} is already running against this database"
                              f" ({holder(conn, source) or 'a session that has ended since'})")
    except BaseException:
        conn.close()
        raise
    return conn


_HOLDER = (
    "SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local socket'), a.backend_start"
    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.objsubid = 1 AND l.classid = ((%(key)s >> 32) & 4294967295)::oid AND l.objid = (%(key)s & 4294967295)::oid")


def holder(conn: psycopg.Connection, source: str) -> str | None:
    """Who holds the source's lock, for the messages; None: nobody."""
    row = conn.execute(_HOLDER, {"key": source_key(source)}).fetchone()
    if row is None:
        return None
    pid, name, addr, since = row
    return f"{name or 'a session'}, server pid {pid}, from {addr} since {since:%Y-%m-%d %H:%M:%S %Z}"


def running_sources(conn: psycopg.Connection, sources: list[str]) -> set[str]:
    """Those of `sources` whose lock some session holds now (a daemon running)."""
    return {s for s in sources if conn.execute(_HOLDER, {"key": source_key(s)}).fetchone() is not None}
