"""Read-ahead: a helper process reads and parses a batch's new files while this one writes.

A back-fill spends about a third of its time reading files and parsing their lines (Python,
so one core) and the rest writing the database, and one process cannot do both at once (APSW
takes the GIL back between rows). A file the reconcile scan found without a checkpoint is read
from its first byte whatever the database holds, by `ingest.read_new_file`, which touches no
database: a worker process runs it for the batch's new files, in the batch's order and a few
files ahead, and the service loop stores each when its turn comes. Anything else (files read on
from a checkpoint, identity checks, benchmarks) stays in the loop, and so does every decision:
the worker only reads. If it dies, the loop reads the files itself.
"""

import logging
import multiprocessing
import os
import pickle
import signal
from collections import deque
from typing import NamedTuple

from daemon.ids import Classified
from daemon.ingest import FileRead, Limits, read_new_file
from daemon.parentage import die_with_parent

log = logging.getLogger("reev.readahead")

AHEAD = 64        # files asked for before their turn (the socket holds the worker back beyond)
CHUNK = 16        # files asked for in one message
MIN_FILES = 64    # fewer new files in a batch are not worth a process (it takes 0.2 s to start)


class Job(NamedTuple):
    path: str
    what: Classified
    exec_id: int | None     # the id an event log's rows carry (Ingestor.reserve)


class ReadAhead:
    def __init__(self, limits: Limits):
        self.limits = limits
        self._proc: multiprocessing.Process | None = None
        self._conn = None
        self._seq = 0
        self._unsent: deque[Job] = deque()
        self._sent: deque[tuple[int, str]] = deque()    # (seq, path) asked for, answers to come
        self._stale = 0                                 # answers still to come for earlier batches
        self.broken = False                             # the worker died: read in the loop

    def start_batch(self, jobs: list[Job]) -> set[str]:
        """Ask for these reads; the paths it will answer for (none: read them in the loop)."""
        self._end_batch()
        if self.broken or len(jobs) < MIN_FILES and self._proc is None:
            return set()
        if self._proc is None:
            self._start()
        self._unsent = deque(jobs)
        self._send()
        return {job.path for job in jobs}

    def take(self, path: str) -> FileRead | None:
        """The read of `path` (asked for in this batch, in order), or None: read it yourself."""
        try:
            while self._sent:
                seq, sent_path = self._sent.popleft()
                while self._stale:           # answers for an earlier batch's jobs come first
                    self._conn.recv_bytes()
                    self._stale -= 1
                got_seq, read = pickle.loads(self._conn.recv_bytes())
                self._send()
                if got_seq != seq:
                    raise RuntimeError(f"answer {got_seq} for job {seq}")
                if sent_path == path:
                    return read
                # (a job skipped: the loop did not take it; its read is of no use now)
        except (EOFError, OSError, RuntimeError) as e:
            self._fail(e)
        return None

    def _end_batch(self):
        """Jobs of the batch that ended not taken: not sent any more; answers still to come skipped."""
        self._unsent.clear()
        self._stale += len(self._sent)
        self._sent.clear()

    def _send(self):
        """Keep AHEAD jobs asked for, CHUNK at a time."""
        while self._unsent and len(self._sent) + CHUNK <= AHEAD and not self.broken:
            chunk = []
            while self._unsent and len(chunk) < CHUNK:
                job = self._unsent.popleft()
                self._seq += 1
                chunk.append((self._seq, tuple(job)))
                self._sent.append((self._seq, job.path))
            try:
                self._conn.send_bytes(pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL))
            except OSError as e:
                self._fail(e)
                return

    def _start(self):
        ctx = multiprocessing.get_context("spawn")   # not fork: this process has threads and SQLite
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.limits, os.getpid()), name="reev-readahead",
                                 daemon=True)
        self._proc.start()
        child.close()
        log.info("read-ahead worker started (pid %d)", self._proc.pid)

    def _fail(self, error: Exception):
        log.warning("read-ahead worker failed (%s): reading files in the loop from now on", error)
        self.broken = True
        self.close()

    def close(self):
        """Stop the worker (a later batch may start another)."""
        self._unsent.clear()
        self._sent.clear()
        self._stale = 0
        if self._conn is not None:
            self._conn.close()        # the worker sees the end and exits
            self._conn = None
        if self._proc is not None:
            self._proc.join(timeout=2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._proc = None


def _serve(conn, limits: Limits, parent_pid: int):
    """The worker: read each job's file as it comes and answer (seq, read), until the end."""
    die_with_parent(parent_pid, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is for the loop, which closes us
    while True:
        try:
            chunk = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        for seq, (path, what, exec_id) in chunk:
            try:
                read = read_new_file(path, what, exec_id, limits)
            except Exception:        # a bug: the loop reads the file itself, and says what failed
                read = None
            try:
                conn.send_bytes(pickle.dumps((seq, read), pickle.HIGHEST_PROTOCOL))
            except OSError:
                return
