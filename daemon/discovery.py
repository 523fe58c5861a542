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
from typing import Generic, NamedTuple, TypeVar

from watchdog.events import (
    DirAttribEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from core.ids import is_text

log = logging.getLogger("reev.discovery")

# Events that can mean new bytes, a new file, or a file readable now (a chmod: FileAttribEvent,
# whose IN_ATTRIB the mask holds for FileModifiedEvent anyway). Our own reads raise
# FileOpenedEvent and FileClosedNoWriteEvent: reacting to those would re-read our reads
# forever. Given to schedule() as its event filter, this also narrows the inotify mask, so the
# kernel does not queue an open and a close for each of our reads (two events per read through
# watchdog's threads, which compete with the service loop for the GIL). DirAttribEvent: a chmod
# of the watched folder itself, which may make its files readable (or not).
_RELEVANT = [FileModifiedEvent, FileAttribEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent,
             FileClosedEvent, DirAttribEvent]


Found = TypeVar("Found")


class DirtyPaths(Generic[Found]):
    """Paths that may have changed, shared by the observer thread and the service loop. A path
    the reconcile scan queued carries what the scan found out about it (`found`), so that it is
    not looked up twice; a path queued by an event carries None."""

    def __init__(self) -> None:
        self._paths: dict[str, Found | None] = {}   # insertion-ordered: path → found
        # Re-entrant: the signal handlers call wake() on the thread that may hold it.
        self._cond = threading.Condition(threading.RLock())
        self.woken = False

    def add(self, path: str, found: Found | None = None):
        with self._cond:
            self._paths[path] = found
            self._cond.notify()

    def add_many(self, paths):
        with self._cond:
            for p in paths:
                self._paths[p] = None
            self._cond.notify()

    def put_back(self, items: list[tuple[str, Found | None]]):
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

    def take(self, limit: int) -> list[tuple[str, Found | None]]:
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
    """Every entry directly in `folder` (its type comes with the listing; lstat on demand);
    nothing if it is no folder that can be listed (folder_problem says why)."""
    try:
        with os.scandir(folder) as it:
            yield from it
    except OSError:
        return


def folder_problem(folder: Path) -> str | None:
    """Why a watched path is no folder to read now, and until when nothing is read from it, in
    a few words for a warning (missing, a file, not readable, a path the database cannot hold);
    None when it is a folder to read."""
    if not is_text(str(folder)):
        return ("is not valid UTF-8 (shown with \\x escapes), and the database holds paths as text:"
                " nothing is read from it; name the folder by a path that is")
    try:
        with os.scandir(folder):
            return None
    except FileNotFoundError:
        return "does not exist: nothing is read from it until it does"
    except NotADirectoryError:
        return "is not a folder: nothing is read from it until it is one"
    except OSError as e:
        return f"cannot be read ({e.strerror}): nothing is read from it until it can be"


class _Handler(FileSystemEventHandler):
    """Hands on the paths of a folder's events, as paths in the folder as configured: inotify
    watches what a symlink resolves to, and names its files there. A change of the folder's own
    attributes (a chmod) goes to `on_folder`."""

    def __init__(self, on_path: Callable[[str], None], on_folder: Callable[[], None], watched: str,
                 configured: str):
        self.on_path = on_path
        self.on_folder = on_folder
        self._folder = watched
        self._watched = os.path.join(watched, "")
        self._configured = os.path.join(configured, "")

    def _path(self, raw: str | bytes) -> str:
        path = os.fsdecode(raw)
        return self._configured + path[len(self._watched):] if path.startswith(self._watched) else path

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:       # (DirAttribEvent: ours, or a subfolder's, which is not ours)
            if os.fsdecode(event.src_path) == self._folder:
                self.on_folder()
            return
        self.on_path(self._path(event.src_path))
        if isinstance(event, FileMovedEvent):
            self.on_path(self._path(event.dest_path))


class _Where(NamedTuple):
    """A folder to watch: what its path resolves to (through symlinks), and its identity."""
    real: str
    identity: tuple[int, int]


def _where(folder: Path) -> _Where | None:
    """Where a watched path leads, None if to no folder."""
    try:
        real = os.path.realpath(folder)
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    return _Where(real, (st.st_dev, st.st_ino)) if stat.S_ISDIR(st.st_mode) else None


class Watcher:
    """A watchdog observer over a few folders (not recursive), restarted when it dies or when a
    folder changes under it. watchdog does not follow a symlinked folder (IN_DONT_FOLLOW): it
    is given what the path resolves to, and a link repointed is noticed (check)."""

    def __init__(self, folders: list[Path], on_path: Callable[[str], None], on_folder: Callable[[], None]):
        """`on_path(path)` for a file that may have changed; `on_folder()` when a watched
        folder's own attributes changed (called on the observer's thread)."""
        self.folders = folders
        self.on_path = on_path
        self.on_folder = on_folder
        self.observer = None
        self.watching: dict[Path, _Where] = {}   # folder → where it led when scheduled

    def start(self):
        observer = Observer()
        self.watching = {}
        for folder in self.folders:
            where = _where(folder)
            if where is not None:          # (no folder there: the service says so)
                observer.schedule(_Handler(self.on_path, self.on_folder, where.real, str(folder)), where.real,
                                  recursive=False, event_filter=_RELEVANT)
                self.watching[folder] = where
        observer.daemon = True
        observer.start()
        self.observer = observer

    def check(self) -> str | None:
        """What went wrong since the start, if anything: the observer thread or one of its
        per-folder emitters died (inotify stops watching a folder that is deleted), or a
        folder was replaced, appeared, went away, or its symlink leads elsewhere now."""
        if self.observer is None or not self.observer.is_alive():
            return "the observer is not running"
        if not all(emitter.is_alive() for emitter in self.observer.emitters):
            return "an emitter died"
        for folder in self.folders:
            was, now = self.watching.get(folder), _where(folder)
            if was != now:
                if now is None:
                    return f"{folder} is no folder any more"
                if was is None:
                    return f"{folder} is a folder now"
                return f"{folder} leads to {now.real} now" if was.real != now.real else f"{folder} was replaced"
        return None

    def restart(self, why: str):
        log.info("file watcher: %s; restarting it", why)
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
