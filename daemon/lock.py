"""One writer per database: a lock on `<db>.lock` beside it, taken before the database opens
and let go of by the kernel when its holder dies, even by SIGKILL.

A POSIX record lock (fcntl F_SETLK) rather than flock or a pid file: anyone may ask the
kernel which process holds it (F_GETLK), so the answer is never a stale pid left by a crash,
and a child process never inherits it (the read-ahead worker cannot keep it after the daemon
died). Its one trap: closing *any* descriptor of the lock file in the holding process lets
go of the lock, so nothing else in the daemon opens that file.
"""

import errno
import fcntl
import os
import struct
from pathlib import Path

# struct flock on Linux (x86-64, arm64): l_type, l_whence, l_start, l_len, l_pid, padding
_FLOCK = "hhqqi4x"


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


class DatabaseBusy(Exception):
    """Another process holds the database's writer lock."""

    def __init__(self, db: Path, pid: int):
        self.db, self.pid = db, pid
        holder = f"pid {pid}" if pid > 0 else "a process in another PID namespace"
        super().__init__(f"the database {db} is in use by another reev-ingestd ({holder}):"
                         " one writer per database; not starting")


class WriterLock:
    def __init__(self, db: Path):
        self.db = db
        self.path = lock_path(db)
        self._fd: int | None = None

    def acquire(self):
        """Take the lock (creating the folder and the lock file if need be). DatabaseBusy if
        another process holds it; OSError if the lock file cannot be made or opened."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                pid = _holder(fd)
                if pid is not None:
                    raise DatabaseBusy(self.db, pid)
                # its holder let go between our attempt and our question: try again
            # For people who look; the kernel's answer (holder) is the one that counts.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)     # no pid left behind by a clean exit
            os.close(self._fd)
            self._fd = None


def holder(db: Path) -> int | None:
    """The pid of the process that holds the writer lock of `db` now (0: one in another PID
    namespace), None if none does. Reads only, and never creates the lock file; OSError if it
    exists but cannot be opened. Never call it in the process that holds the lock (see above)."""
    try:
        fd = os.open(lock_path(db), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return _holder(fd)
    finally:
        os.close(fd)


def _holder(fd: int) -> int | None:
    """Who holds a lock that would conflict with a write lock on the whole file."""
    asked = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, asked))
    return None if kind == fcntl.F_UNLCK else pid
