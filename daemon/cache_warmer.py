"""Page-cache warming: the files a batch is about to read are asked of the kernel before their turn.

A back-fill reads files that are mostly not in the page cache (written days ago), one after
the other, and would wait for the disk on each. `posix_fadvise(WILLNEED)` starts reading a
file in the background and returns; done on a thread of its own for the whole batch at its
start, the disk works while this process writes the database. (Only the system calls run on
that thread, which releases the GIL for each of them.)
"""

import logging
import os
import threading

log = logging.getLogger("reev.cache_warmer")


class CacheWarmer:
    def __init__(self, length: int):
        self.length = length                  # bytes asked for per file, from where reading starts
        self._todo: list[tuple[str, int]] = []    # (path, offset), the next one last
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def warm(self, files: list[tuple[str, int]]):
        """Read ahead these (path, offset), in order, instead of what was asked before."""
        with self._cond:
            self._todo = files[::-1]
            self._cond.notify()
        if files and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cache-warmer", daemon=True)
            self._thread.start()

    def _run(self):
        while True:
            with self._cond:
                while not self._todo:
                    self._cond.wait()
                path, offset = self._todo.pop()
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue          # gone or not a file: the batch will say so
            try:
                os.posix_fadvise(fd, offset, self.length, os.POSIX_FADV_WILLNEED)
            except OSError as e:  # a file system without read-ahead: only slower
                log.debug("%s: no read-ahead: %s", path, e)
            finally:
                os.close(fd)
