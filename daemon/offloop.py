"""Parsing a benchmark definition off the loop, on a thread of its own.

A definition is YAML, parsed whole and slowly (docs/design.md has the figures). Parsed in a
batch, one big file held back every other file's lines and starved the watchdog. Here the loop hands
the parse over and goes on; when it is done, the path is queued again (`done`), and the loop
stores the outcome if the file still holds the bytes that were parsed (their content hash).
The size limit on definitions (ingest.Limits) bounds what one parse costs; this keeps even
that out of the loop's way. One parse at a time, so at most one definition's worth of memory.
"""

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("reev.offloop")

Parsed = TypeVar("Parsed")


class OffLoop(Generic[Parsed]):
    def __init__(self, done: Callable[[str], None]):
        self._done = done
        self._cond = threading.Condition()
        self._wanted: dict[str, tuple[bytes, Callable[[], Parsed]]] = {}   # path → (digest, job), to start
        self._running: tuple[str, bytes] | None = None
        self._results: dict[str, tuple[bytes, Parsed | Exception]] = {}   # path → (digest, outcome)
        self._thread: threading.Thread | None = None

    def result(self, path: str, digest: bytes, job: Callable[[], Parsed]) -> Parsed | Exception | None:
        """What `job` (the parse of `path` whose bytes hash to `digest`) returned or raised,
        once it is done; until then None, the job queued (in place of one for older bytes of
        the same path), and `done(path)` called from the thread when it is."""
        with self._cond:
            got = self._results.pop(path, None)
            if got is not None and got[0] == digest:
                return got[1]
            if self._running != (path, digest) and self._wanted.get(path, (None,))[0] != digest:
                self._wanted[path] = (digest, job)
                self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="offloop", daemon=True)
                self._thread.start()
        return None

    @property
    def busy(self) -> bool:
        """A parse is waiting or under way. Read it before what `done` queues (Service._all_committed):
        a parse that ends queues its path first, so once not busy, the path is there."""
        with self._cond:
            return bool(self._wanted) or self._running is not None

    def _run(self):
        while True:
            with self._cond:
                while not self._wanted:
                    self._cond.wait()
                path, (digest, job) = next(iter(self._wanted.items()))
                del self._wanted[path]
                self._running = (path, digest)
            try:
                outcome = job()
            except Exception as e:      # bad input, or a bug: the loop decides what it becomes
                outcome = e
            with self._cond:
                self._results[path] = (digest, outcome)
                self._done(path)        # before it stops being busy: see `busy`
                self._running = None
