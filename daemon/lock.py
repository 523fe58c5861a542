"""One writer per database: a lock held on the database file itself while the daemon runs,
taken before SQLite opens it, and let go of by the kernel when its holder dies, even by SIGKILL.

- On the database file, not on a file beside it: a lock file can be removed while the daemon
  runs, and a hard link to the database names another lock file; both let a second writer in.
  A lock on the file is a lock on its inode, whatever the path it is reached by.
- An open file description lock (F_OFD_SETLK), not a classic POSIX lock: a POSIX lock belongs
  to the process and goes as soon as the process closes *any* descriptor of the file (SQLite
  closes its own, and unlocks the whole file when its last lock goes), whereas this one
  belongs to the descriptor opened here, which stays open until SQLite is closed. Nor is it
  inherited by the read worker (close-on-exec).
- On bytes SQLite never locks (its locks are the 512 bytes at 1 GiB, PENDING_BYTE): SQLite's
  own locking, the API's readers and a hot backup are not affected.

The kernel does not say who holds an OFD lock (F_OFD_GETLK gives pid -1), so the holder takes
a second one, shared, on the byte PID_BASE + its pid: holder() reads the pid from the offset
of that lock. Anyone who can open the database read-only may ask, without taking anything.
"""

import errno
import fcntl
import os
import stat
import struct
import time
from pathlib import Path

from daemon.reader import what_is

# struct flock on Linux (x86-64, arm64): l_type, l_whence, l_start, l_len, l_pid, padding
_FLOCK = "hhqqi4x"
_SQLITE_LOCKS = 1 << 30                 # SQLite's PENDING_BYTE; its locks take the 512 bytes from there
WRITER_BYTE = _SQLITE_LOCKS + 512       # the writer lock: one byte, exclusive
PID_BASE = _SQLITE_LOCKS + 1024         # the holder's pid: a shared lock on PID_BASE + pid
HOLDER_PATIENCE = 0.5                   # seconds a holder may take between its two locks


class DatabaseBusy(Exception):
    """Another process holds the database's writer lock."""

    def __init__(self, db: Path, pid: int | None):
        self.db, self.pid = db, pid
        holder = f"pid {pid}" if pid else "its pid unknown"
        super().__init__(f"the database {db} is in use by another reev-ingestd ({holder}):"
                         " one writer per database; not starting")


class WriterLock:
    def __init__(self, db: Path):
        self.db = db
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None    # (device, inode) of the file locked

    def acquire(self):
        """Take the lock, creating the database's folder and an empty database file if need be
        (SQLite takes an empty file for a new database). DatabaseBusy if another process holds
        it; ValueError if the path is no regular file (nothing is created then); OSError if the
        file cannot be made or opened."""
        try:
            _refuse_unless_regular(os.stat(self.db).st_mode)
        except FileNotFoundError:
            self.db.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO put there since is not waited on; 0o644 & umask, as SQLite makes it
        fd = os.open(self.db, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        try:
            st = os.fstat(fd)
            _refuse_unless_regular(st.st_mode)
            deadline = time.monotonic() + HOLDER_PATIENCE
            while not _lock(fd, fcntl.F_WRLCK, WRITER_BYTE):
                pid = _holder(fd)
                if pid or time.monotonic() > deadline:
                    raise DatabaseBusy(self.db, pid)
                time.sleep(0.01)     # its holder is between its two locks (0), or let go meanwhile
            _lock(fd, fcntl.F_RDLCK, PID_BASE + os.getpid())
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._identity = fd, (st.st_dev, st.st_ino)

    def lost(self) -> str | None:
        """Why the database path no longer names the file this lock is held on (deleted,
        replaced), if it does not: whatever is written goes to a file nobody will read."""
        try:
            st = os.stat(self.db)
        except FileNotFoundError:
            return "was deleted"
        except OSError as e:
            return f"cannot be looked at ({e.strerror})"
        return None if (st.st_dev, st.st_ino) == self._identity else "was replaced by another file"

    def release(self):
        """Let go. Only once SQLite has closed the database: closing a descriptor of the file
        drops the process's POSIX locks on it, SQLite's."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _refuse_unless_regular(mode: int):
    if not stat.S_ISREG(mode):
        what = what_is(mode)
        raise ValueError(f"it is {what}, not a regular file" if what else "it is not a regular file")


def holder(db: Path) -> int | None:
    """The pid of the reev-ingestd that holds the writer lock of database `db` now (as that
    process sees it: in another PID namespace it names another process here), 0 if one does
    but its pid cannot be told, None if none does. Reads only: opens `db` read-only for a
    moment, creates nothing, takes no lock; OSError if it exists but cannot be opened.

    Call it before opening the database with SQLite in the same process, never while SQLite
    has it open there: closing the descriptor opened here would drop SQLite's locks."""
    try:
        fd = os.open(db, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        return _holder(fd)
    finally:
        os.close(fd)


def _lock(fd: int, kind: int, offset: int) -> bool:
    """Take an OFD lock of one byte at once; False if another holds a conflicting one."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, kind, os.SEEK_SET, offset, 1, 0))
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _conflicting(fd: int, offset: int, length: int) -> int | None:
    """The offset of a lock that conflicts with a write lock on these bytes, None if none does."""
    asked = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, length, 0)
    kind, _, start, _, _ = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_OFD_GETLK, asked))
    return None if kind == fcntl.F_UNLCK else start


def _holder(fd: int) -> int | None:
    """Who holds the writer lock: its pid, 0 if it holds it without a pid lock, None if none."""
    if _conflicting(fd, WRITER_BYTE, 1) is None:
        return None
    start = _conflicting(fd, PID_BASE, 0)       # (length 0: to the end of any file)
    return 0 if start is None else start - PID_BASE
