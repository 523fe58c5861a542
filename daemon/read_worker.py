"""The read worker: a helper process reads and parses the back-fill's new files while this one writes.

A back-fill spends about a third of its time reading files and parsing their lines (Python,
so one core) and the rest writing the database, and one process cannot do both at once (APSW
takes the GIL back between rows). A file the reconcile scan found without a checkpoint is read
from its first byte whatever the database holds, by `ingest.read_new_file`, which touches no
database: a worker process runs it for the new files in the order the loop will take them, up
to AHEAD files before their turn, and the loop stores each read when its turn comes, if the
file is still as it was read. A file asked for but not taken in a batch stays asked for: a
batch puts back what it did not get to first in line, so the read is usually the next
batch's; one the loop goes past instead is read in the loop. Anything else (files read on
from a checkpoint, identity checks, benchmarks) stays in the loop, and so does every
decision: the worker only reads. If it dies, the loop reads the files itself.
"""

import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection

from core.ids import Classified
from core.parentage import die_with_parent
from daemon.identity import seen, unchanged
from daemon.ingest import FileRead, Limits, NotReadable, read_new_file

log = logging.getLogger("reev.read_worker")

AHEAD = 64        # files asked for and not yet taken, at most (a few MB of answers in flight)
CHUNK = 16        # files asked for in one message
MIN_FILES = 64    # fewer new files in a batch are not worth starting a process (0.2 s)
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class ReadWorker:
    def __init__(self, limits: Limits, reserve: Callable[[Classified], int | None]):
        self.limits = limits
        self.reserve = reserve      # the execution id an event log's rows will carry
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._seq = 0
        self._todo: Iterator[tuple[str, Classified]] = iter(())   # new files of the batch, not asked for
        self._sent: deque[tuple[int, str]] = deque()     # (seq, path) asked for, in order, answer to come
        self._in_flight: set[str] = set()                # ... their paths
        self._passed: set[str] = set()                   # paths the loop took since the plan
        self.broken = False                              # the worker died: read in the loop

    def plan(self, new_files: Iterable[tuple[str, Classified]]):
        """The new files (path, what) of a batch, in the order the loop takes them; consumed
        as their reads are asked for."""
        self._passed.clear()
        # (lazily: by the time one is asked for, the loop may have taken it, read in the loop)
        todo: Iterator[tuple[str, Classified]] = (f for f in new_files
                                                  if f[0] not in self._in_flight and f[0] not in self._passed)
        if self.broken:
            return
        if self._proc is None:
            first = list(itertools.islice(todo, MIN_FILES))
            if len(first) < MIN_FILES:
                return
            self._start()
            todo = itertools.chain(first, todo)
        self._todo = todo
        self._send()

    def take(self, path: str) -> FileRead | None:
        """The read of `path` if it was asked for, else None: read it yourself. Answers for
        files asked for earlier and not taken are dropped (those files are read in the loop)."""
        if self._conn is None:       # no worker (started and stopped with its connection)
            return None
        self._passed.add(path)
        if path not in self._in_flight:
            return None
        while self._sent:
            seq, sent_path = self._sent.popleft()
            self._in_flight.discard(sent_path)
            self._passed.add(sent_path)      # taken now, or gone past
            try:
                got_seq, read = pickle.loads(self._conn.recv_bytes())
                if got_seq != seq:
                    raise RuntimeError(f"answer {got_seq} for request {seq}")
            except Exception as e:    # EOF, a broken pipe, a bad answer: the loop reads from now on
                self._fail(e)
                return None
            self._send()              # (a database error reserving an id is the batch's)
            if sent_path == path:
                return read if _still_as_read(path, read) else None
        return None

    def _send(self):
        """Keep up to AHEAD files asked for, CHUNK at a time."""
        while len(self._sent) + CHUNK <= AHEAD and not self.broken:
            # the ids first: reserving one may raise a database error, which must leave nothing
            # half asked for
            files = [(path, what, self.reserve(what)) for path, what in itertools.islice(self._todo, CHUNK)]
            if not files:
                return
            chunk = []
            for path, what, exec_id in files:
                self._seq += 1
                chunk.append((self._seq, path, what, exec_id))
                self._sent.append((self._seq, path))
                self._in_flight.add(path)
            try:
                self._conn.send_bytes(pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL))
            except OSError as e:
                self._fail(e)

    def _start(self):
        # A fresh interpreter (not fork: this process has threads and SQLite; not
        # multiprocessing's spawn, which re-imports the whole daemon and starts a resource
        # tracker process too) that imports only what reading takes (ingest.py knows the store
        # by its interface only: neither the SQLite backend nor apsw is loaded); -P: not from
        # the cwd.
        ours, theirs = socket.socketpair()
        # The worker must not die of the signals that stop the daemon (systemd sends SIGTERM to
        # the whole group, Ctrl-C SIGINT): the loop closes it. Blocked before it starts, so
        # not even its interpreter's start-up sees them; _serve ignores them and unblocks.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "daemon.read_worker", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send_bytes(pickle.dumps(self.limits, pickle.HIGHEST_PROTOCOL))
        log.info("read worker started (pid %d)", self._proc.pid)

    def _fail(self, error: Exception):
        log.warning("read worker failed (%s: %s): reading files in the loop from now on",
                    type(error).__name__, error)
        self.broken = True
        self.close()

    def close(self):
        """Stop the worker; nothing is asked for any more (plan starts another)."""
        self._todo = iter(())
        self._sent.clear()
        self._in_flight.clear()
        self._passed.clear()
        if self._conn is not None:
            self._conn.close()        # the worker sees the end and exits
            self._conn = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _still_as_read(path: str, read: FileRead | None) -> bool:
    """The file is as the worker found it. (Its read may be a batch old, and a change since
    may have been queued into the very entry being processed: then it is read again.)"""
    if read is None or isinstance(read, NotReadable):
        return False          # (rare: the loop finds out why itself)
    try:
        return unchanged(os.lstat(path), seen(read.st))
    except OSError:
        return False


def _serve(fd: int, parent_pid: int):
    """The worker: read each file as it is asked for and answer (seq, read), until the end."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    die_with_parent(parent_pid)
    conn = Connection(fd)
    try:
        limits = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    while True:
        try:
            chunk = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        for seq, path, what, exec_id in chunk:
            try:
                read = read_new_file(path, what, exec_id, limits)
            except Exception:        # a bug: the loop reads the file itself, and says what failed
                read = None
            try:
                conn.send_bytes(pickle.dumps((seq, read), pickle.HIGHEST_PROTOCOL))
            except OSError:
                return


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
