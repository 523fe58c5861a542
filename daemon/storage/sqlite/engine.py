"""SQLite engine plumbing, and nothing else: the writer's connection and its pragmas, the WAL
(kept beside the database, copied into it behind the loop, restarted by the loop), and the
tuning for catching up or following live files. All of it is SQLite's alone: another backend
has none of it (the interface's `tune` is a hint it may ignore)."""

import ctypes
import logging
import threading
from pathlib import Path
from typing import NamedTuple

import apsw

log = logging.getLogger("reev.store")

BUSY_TIMEOUT_MS = 5000


class Tuning(NamedTuple):
    cache_kib: int          # SQLite's page cache
    copy_pages: int         # the WAL copier is asked to copy the WAL once it holds this many pages
    checkpoint_pages: int   # ... and the loop copies what is left itself at this many (a restart)
    wal_limit: int          # bytes the WAL file is cut back to when it restarts (-1: never)


# Following live files, a batch touches a few pages: a small cache, the WAL copied into the
# database by the loop every 4 MiB (copying it after nearly every commit takes the core the
# writers and the API need: docs/storage.md) and its file kept small. Catching up, a batch
# inserts thousands of rows at random places of the path and execution indexes: a large cache
# keeps those pages; the copier copies the WAL behind the loop, which restarts it every 256 MiB.
LIVE = Tuning(cache_kib=2000, copy_pages=1000, checkpoint_pages=1000, wal_limit=16 << 20)
CATCHING_UP = Tuning(cache_kib=65536, copy_pages=2048, checkpoint_pages=65536, wal_limit=-1)


def pragma(conn: apsw.Connection, text: str) -> list:
    # A PRAGMA that returns a row only runs to completion when the row is fetched.
    return conn.execute(f"PRAGMA {text}").fetchall()


def open_writer(path: Path) -> apsw.Connection:
    """The writer's connection, created if missing, waiting BUSY_TIMEOUT_MS for a lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    return conn


def set_up_writer(conn: apsw.Connection):
    """The writer's pragmas, once the database is known to be ours."""
    pragma(conn, "journal_mode = WAL")
    # Keep -wal and -shm when the daemon closes: a reader without write access to the state
    # folder (the API's systemd unit) can only open a WAL database whose files exist.
    persist = ctypes.c_int(1)
    conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(persist))
    pragma(conn, "synchronous = NORMAL")
    # Savepoint journals (one per file) in memory, not in a temporary file.
    pragma(conn, "temp_store = MEMORY")
    pragma(conn, "foreign_keys = OFF")


class WalCopier:
    """A thread with a connection of its own that copies the WAL into the database file while
    the loop writes on: a PASSIVE checkpoint neither waits for the writer nor blocks it, and
    APSW lets go of the GIL while SQLite copies, so the copying takes the other core instead of
    the loop's (what it saves: docs/storage.md)."""

    def __init__(self, path: Path):
        self._wanted = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, args=(path,), name="wal-copier", daemon=True)
        self._thread.start()

    def request(self):
        self._wanted.set()

    def close(self):
        self._closing = True
        self._wanted.set()
        self._thread.join()

    def _run(self, path: Path):
        try:
            conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
            conn.execute("PRAGMA synchronous = NORMAL").fetchall()    # as the writer's
        except apsw.Error as e:
            log.warning("%s: no background WAL copies (%s): the loop copies it all", path, e)
            return
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closing:
                    return
                try:
                    conn.wal_checkpoint()
                except apsw.Error as e:     # the loop's own copy (Wal.committed) bounds the WAL
                    log.debug("%s: background WAL copy failed: %s", path, e)
        finally:
            conn.close()


class Wal:
    """The writer's WAL: SQLite's auto-checkpoint replaced by copies behind the loop (WalCopier)
    and by the loop itself once the WAL is long (a restart), as the tuning says."""

    def __init__(self, conn: apsw.Connection, path: Path):
        self.conn, self.path = conn, path
        self.tuning = LIVE
        self._pages = 0                          # in the WAL after the last commit
        conn.set_wal_hook(self._wal_committed)   # (in place of SQLite's own auto-checkpoint)
        self._copier = WalCopier(path)

    def tune(self, catching_up: bool):
        """Set SQLite up for a back-fill or for following live files (see LIVE)."""
        t = self.tuning = CATCHING_UP if catching_up else LIVE
        pragma(self.conn, f"cache_size = -{t.cache_kib}")
        pragma(self.conn, f"journal_size_limit = {t.wal_limit}")

    def _wal_committed(self, _conn, _db: str, pages: int) -> int:
        self._pages = pages
        return apsw.SQLITE_OK

    def committed(self):
        """After a batch's commit: have the copier copy the WAL behind the loop, and once the WAL
        is long, copy what it has not copied yet here. Only the writer can restart the WAL, at
        the start of a transaction, and only when all of it is in the database: copied here,
        it is; by the copier alone, a batch has usually begun meanwhile."""
        if self._pages >= self.tuning.checkpoint_pages:
            try:
                self.conn.wal_checkpoint()
            except apsw.BusyError:
                pass         # the copier is copying: the next commit copies the rest
            except apsw.Error as e:     # (the batch is committed: the WAL only grows on)
                log.warning("%s: copying the WAL into the database failed: %s", self.path, e)
        elif self._pages >= self.tuning.copy_pages:
            self._copier.request()

    def empty(self):
        """Copy the WAL into the database file and empty it (the file at the -wal path may be
        paired with another database file next)."""
        try:
            pragma(self.conn, "wal_checkpoint(TRUNCATE)")
        except apsw.Error as e:
            log.warning("%s: emptying the WAL failed: %s", self.path, e)

    def close(self):
        self._copier.close()
