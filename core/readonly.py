"""The one way the database is opened read-only: by the API, and by `reev-ingestd status` and
`dump`. It creates no file, and it never waits on something that is not a file. (It imports
only apsw and the standard library, so the API imports it without the daemon's writer.)

- SQLite, even read-only, creates a WAL database's -wal and -shm files when they are missing
  and the folder is writable. The daemon creates both when it opens the database and keeps
  them (SQLITE_FCNTL_PERSIST_WAL), so a database without them has not been opened by a daemon
  (a copy, a restored backup; and until then there is nothing new to read): it is refused.
- SQLite opens whatever the path names: the open() of a FIFO waits for a writer for ever, a
  device gives whatever it gives. So the database, its -wal and its -shm must be regular files
  (checked just before SQLite opens them: a file swapped for a FIFO in between is not guarded
  against).

Every refusal is a CannotOpen whose message names the file by its name only (the API shows it
to clients).
"""

import os
import stat
from pathlib import Path

import apsw

BUSY_TIMEOUT_MS = 2000
COMPANIONS = ("-wal", "-shm")


class CannotOpen(Exception):
    """The database cannot be opened read-only as it is now (it may be later)."""


class NotAFile(CannotOpen):
    """The path, or its -wal or -shm, is not a regular file (a FIFO, a device, a folder): the
    setting is wrong, not the database late."""


def _regular(path: str) -> os.stat_result | None:
    """The file's status (following symlinks), None when there is no such file; NotAFile when
    it is something else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CannotOpen(f"cannot open {Path(path).name}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
        raise NotAFile(f"{Path(path).name} is {kind}, not a database file")
    return st


def open_readonly(path: Path) -> tuple[apsw.Connection, os.stat_result]:
    """A read-only connection (`query_only` too) to the daemon's database, and the database
    file's status as it was opened (its inode tells a replaced file)."""
    name = path.name
    st = _regular(str(path))
    if st is None:
        raise CannotOpen(f"the database {name} does not exist (yet): is reev-ingestd running?")
    missing = [suffix for suffix in COMPANIONS if _regular(f"{path}{suffix}") is None]
    if missing:
        raise CannotOpen(f"reev-ingestd has not opened the database {name} yet (no {' or '.join(missing)} file"
                         " beside it, and a reader creates no files): is it running?")
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error as e:
        raise CannotOpen(f"cannot open the database {name}: {e}") from None
    try:
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA query_only = ON").fetchall()
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchall():
            raise CannotOpen(f"the database {name} has no schema yet: is reev-ingestd running?")
    except apsw.Error as e:
        conn.close()
        raise CannotOpen(f"cannot read the database {name}: {e}") from None
    except CannotOpen:
        conn.close()
        raise
    return conn, st
