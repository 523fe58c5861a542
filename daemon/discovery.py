"""Discovery: which files exist (scans) and which changed (watchdog events).

inotify drops events when its queue overflows and watchdog's observer thread can die
silently, so events are only a hint for speed: the periodic reconcile scan is the truth.
"""

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from watchdog.events import (
    FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
    FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer

log = logging.getLogger("reev.discovery")

# Events that can mean new bytes or a new file. Our own reads raise FileOpenedEvent and
# FileClosedNoWriteEvent: reacting to those would re-read our reads forever. Given to
# schedule() as its event filter, this also narrows the inotify mask, so the kernel does not
# queue an open and a close for each of our reads (two events per read through watchdog's
# threads, which compete with the service loop for the GIL).
_RELEVANT = [FileModifiedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent]


class DirtyPaths:
    """Paths that may have changed, shared by the observer thread and the service loop. A path
    the reconcile scan queued carries what the scan found out about it (`found`), so that it is
    not looked up twice; a path queued by an event carries None."""

    def __init__(self):
        self._paths: dict[str, object] = {}   # insertion-ordered: path → found
        # Re-entrant: the signal handlers call wake() on the thread that may hold it.
        self._cond = threading.Condition(threading.RLock())
        self.woken = False

    def add(self, path: str, found: object = None):
        with self._cond:
            self._paths[path] = found
            self._cond.notify()

    def add_many(self, paths):
        with self._cond:
            for p in paths:
                self._paths[p] = None
            self._cond.notify()

    def put_back(self, items: list[tuple[str, object]]):
        """Paths taken but not processed (the batch ran out of time): first in line again."""
        if not items:
            return
        with self._cond:
            # what was queued meanwhile wins: an event's None is newer than the scan's view
            self._paths = {**dict(items), **self._paths}
            self._cond.notify()

    def wake(self):
        with self._cond:
            self.woken = True
            self._cond.notify()

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self._paths and not self.woken:
                self._cond.wait(timeout)
            self.woken = False

    def pause(self, timeout: float) -> None:
        """Wait `timeout` s whatever is queued (a backoff); only wake() (a signal) ends it early."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.woken and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            self.woken = False

    def take(self, limit: int) -> list[tuple[str, object]]:
        """Up to `limit` (path, found) in the order queued."""
        with self._cond:
            taken = []
            for item in self._paths.items():
                taken.append(item)
                if len(taken) >= limit:
                    break
            for path, _ in taken:
                del self._paths[path]
            return taken

    def __len__(self):
        return len(self._paths)


def scan_dir(folder: Path) -> Iterator[os.DirEntry]:
    """Every entry directly in `folder` (its type comes with the listing; lstat on demand)."""
    try:
        with os.scandir(folder) as it:
            yield from it
    except FileNotFoundError:
        return


class _Handler(FileSystemEventHandler):
    def __init__(self, on_path: Callable[[str], None]):
        self.on_path = on_path

    def dispatch(self, event: FileSystemEvent) -> None:
        self.on_path(os.fsdecode(event.src_path))
        if isinstance(event, FileMovedEvent):
            self.on_path(os.fsdecode(event.dest_path))


def _identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of a folder, None if there is no folder there."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class Watcher:
    """A watchdog observer over a few folders (not recursive), restarted if it dies."""

    def __init__(self, folders: list[Path], on_path: Callable[[str], None]):
        self.folders = folders
        self.on_path = on_path
        self.observer = None
        self.watching: dict[Path, tuple[int, int]] = {}   # folder → identity when scheduled

    def start(self):
        observer = Observer()
        handler = _Handler(self.on_path)
        self.watching = {}
        for folder in self.folders:
            identity = _identity(folder)
            if identity is not None:
                observer.schedule(handler, str(folder), recursive=False, event_filter=_RELEVANT)
                self.watching[folder] = identity
            else:
                log.warning("%s does not exist (yet): found by the periodic scan when it does", folder)
        observer.daemon = True
        observer.start()
        self.observer = observer

    def healthy(self) -> bool:
        """False when the observer thread or one of its per-folder emitters died (inotify
        stops watching a folder that is deleted), or when a watched folder was replaced by
        another (deleted or renamed, then made again) or appeared since the start."""
        if self.observer is None or not self.observer.is_alive():
            return False
        if not all(emitter.is_alive() for emitter in self.observer.emitters):
            return False
        return all(self.watching.get(f) == _identity(f) for f in self.folders if _identity(f) is not None)

    def restart(self):
        log.warning("file watcher is not running or misses a folder; restarting it")
        self.stop()
        self.start()

    def stop(self):
        if self.observer is not None:
            try:
                self.observer.stop()
                self.observer.join(timeout=2)
            except Exception:  # a dead observer may fail to stop; it is replaced anyway
                log.debug("stopping the old observer failed", exc_info=True)
            self.observer = None
