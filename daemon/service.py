"""The service loop: discover files, ingest them in bounded batches, keep the heartbeat.

One thread writes (this one); the watchdog thread only marks paths dirty.
"""

import contextlib
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import dburl, heartbeat
from core.ids import Classified, Refused, partner_file_name, shown
from core.notify import Notifier
from daemon.backoff import ONCE_PATIENCE_SECONDS, Backoff, passes
from daemon.cache_warmer import CacheWarmer
from daemon.discovery import DirtyPaths, Watcher, folder_problem, scan_dir
from daemon.identity import needs_look
from daemon.ingest import Ingestor, Limits, Outcome, Scanned
from daemon.offloop import OffLoop
from daemon.parse import ParsedBenchmark
from daemon.read_worker import ReadWorker
from daemon.reader import folder_is_there
from daemon.stale import StaleRuns
from daemon.storage import NotOwned, StorageError, Store

log = logging.getLogger("reev.daemon")

STATUS_SECONDS = 1.0           # at most one systemd STATUS= line per second
PROGRESS_SECONDS = 5.0         # at most one info line about ingestion this often (batches: debug)
FOLDER_CHECK_SECONDS = 1.0     # how often the watched folders are looked at (cheap: a few stats)
MAX_FILES_PER_BATCH = 4096
MAX_BATCH_BYTES = 64 << 20     # a batch stops taking files past this much input (or, following
                               # live files, past the store's live_batch_seconds)
EXTEND_SECONDS = 5.0           # while catching up, systemd's start timeout is extended this often
EXTEND_BY = "EXTEND_TIMEOUT_USEC=30000000"    # ... by 30 s from then: a long back-fill is progress
HANDLED_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
SCAN_SLICE_SECONDS = 0.005     # live, a scan advances this long between batches
SWITCH_INTERVAL_SECONDS = 0.0005


@dataclass
class Config:
    sessions_dir: Path
    benchmarks_dir: Path
    db: Path | str      # a SQLite file, or a PostgreSQL URL (core/dburl.py)
    once: bool = False
    rescan_interval: float = 30.0
    stale_after: float = 1800.0     # seconds (0: off): daemon/stale.py
    limits: Limits = Limits()


def _found_without_checkpoint(scanned: Scanned | None) -> Classified | None:
    """A session file or event log the scan found without a checkpoint (a back-fill's): read
    from its first byte whatever happens, so it can be read ahead. What it is, if so."""
    if (scanned is not None and scanned.checkpoint is None and isinstance(scanned.what, Classified)
            and scanned.what.kind != "benchmark"):
        return scanned.what
    return None


class Service:
    def __init__(self, config: Config, store: Store, notify: Notifier, database_lost: Callable[[], str | None]):
        """`database_lost()`: why the database path no longer names the file open (deleted,
        replaced), if it does not (WriterLock.lost)."""
        self.config = config
        self.database_lost = database_lost
        self.store = store
        self.dirty: DirtyPaths[Scanned] = DirtyPaths()
        # benchmark definitions, parsed off the loop
        self.parses: OffLoop[ParsedBenchmark] = OffLoop(done=self.dirty.add)
        self.ingestor = Ingestor(store, config.sessions_dir, config.benchmarks_dir, config.limits, self.parses)
        self.cache_warmer = CacheWarmer(config.limits.read_budget_bytes)
        self.read_worker = ReadWorker(config.limits, self.ingestor.reserve)
        self.stale = StaleRuns(store, config.stale_after, self.dirty.add)
        self.retry_at: dict[str, float] = {}    # unsettled documents: path → wall time
        self.stopping = False
        self.database_gone = False      # the database file was deleted or replaced: exit 1
        self.rescan_requested = False
        self.notify = notify
        self.catching_up = True        # until the first full scan (or a SIGHUP rescan) is committed
        self.scanning: Iterator[str] | None = None     # the reconcile scan in progress
        # --once only wants throughput; live, a batch is also bounded in time (latency)
        self.batch_seconds = float("inf") if config.once else store.live_batch_seconds
        self.totals = {"batches": 0, "files": 0, "read": 0, "lines": 0}   # files: processed; read: bytes read
        # Batches rolled back by a Busy or Unavailable error (and run again) since start, and
        # those of them not stored yet: the next batch that commits adds them to the store's
        # retried_batches_total (a failed batch can't, its transaction is gone).
        self.retried_batches = self._retries_unstored = 0
        # live: every error is waited out; --once gives up on one that waiting does not mend
        self.backoff = Backoff(ONCE_PATIENCE_SECONDS if config.once else None)
        self.scan_found = 0          # our files found by the scan in progress, or the last one
        self._catch_up_from = (dict(self.totals), time.monotonic())   # the catch-up in progress, since
        self._progress_from = (dict(self.totals), time.monotonic())   # the last progress line, since
        self._status_sent: str | None = None
        self._folder_problems: dict[Path, str | None] = {}
        self.folder_changed = False    # a watched folder's own attributes changed (the watcher's thread)

    # ------------------------------------------------------------------ the watched folders

    def check_folders(self) -> bool:
        """Warn when a watched path is missing, not a folder, not readable or not UTF-8 (at
        start and whenever that changes); say so when it is a folder to read again. True when
        one is: what it holds has to be looked at (no event told of what happened meanwhile)."""
        back = False
        for folder, option in ((self.config.sessions_dir, "--sessions-dir"),
                               (self.config.benchmarks_dir, "--benchmarks-dir")):
            problem = folder_problem(folder)
            if problem != self._folder_problems.get(folder):
                if problem is not None:
                    log.warning("%s (%s) %s", shown(str(folder)), option, problem)
                elif folder in self._folder_problems:
                    log.info("%s (%s) is a folder that can be read now: reading it", folder, option)
                    back = True
                self._folder_problems[folder] = problem
        return back

    def _folder_attributes_changed(self):
        """The watcher's thread: a chmod of a watched folder may have made its files readable
        (or not): looked at in the loop, at once."""
        self.folder_changed = True
        self.dirty.wake()

    # ------------------------------------------------------------------ scans

    def scan(self):
        """Start a reconcile scan, in place of one still in progress. It is consumed a slice at
        a time between batches (_advance_scan): memory stays flat whatever the folder holds,
        and following live files never waits for a whole folder to be listed."""
        self.scanning = self._reconcile()
        self._look_again_at_refused_benchmarks()

    def _look_again_at_refused_benchmarks(self):
        """Benchmark files refused because another daemon's source defined their id differently
        may be accepted now that it changed (the store says which, cheaply when none): they are
        unchanged, so not read again by themselves. At every scan and every heartbeat."""
        paths = self.store.benchmark_files_to_look_at_again()
        if paths:
            with self.store.batch():
                for path in paths:
                    self.store.set_file_state(path, "pending")
            self.dirty.add_many(paths)

    def _reconcile(self) -> Iterator[tuple[str, Scanned | None]]:
        """Every path that differs from its checkpoint; then, only if fewer tracked files were
        found than are tracked as present, every tracked path that is gone (or a folder now).

        A session file or event log comes with the other file of its execution, if that
        differs too: both then go in one batch, and the execution's row is written once."""
        tracked = queued = 0
        self.scan_found = 0
        marked_before = self.store.marked_missing
        started = time.time()
        for folder in (self.config.benchmarks_dir, self.config.sessions_dir):
            for entry in scan_dir(folder):
                path = entry.path
                what = self.ingestor.classify(path)
                if what is None or entry.is_dir(follow_symlinks=False):   # folders are never ours
                    continue
                self.scan_found += 1
                if isinstance(what, Refused):        # an error, recorded once
                    if self.store.error_reason(path) != what.reason:
                        queued += 1
                        yield path, Scanned(what, None)
                    continue
                cp = self.store.checkpoint(path)     # holds the lstat of what was there
                if cp is not None:                   # (a new file needs no lstat)
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue                     # gone meanwhile: as if not listed
                    tracked += cp.state != "missing"
                if cp is not None and not needs_look(st, cp):
                    continue
                queued += 1
                yield path, Scanned(what, cp)
                partner = self._partner(folder, what)
                if partner is not None:
                    queued += 1
                    yield partner
        # Files first tracked during the scan (a back-fill's) are not counted on either side. A
        # file counted here and found gone (and marked) before the scan ends no longer counts as
        # present: add those back, or another file gone unseen would go unnoticed.
        if tracked < self.store.count_present(started) + self.store.marked_missing - marked_before:
            log.debug("scan: %d tracked files found, fewer than tracked: looking for gone ones", tracked)
            reachable: dict[str, bool] = {}
            for path in self.store.present_paths():
                parent = os.path.dirname(path)
                if parent not in reachable:
                    reachable[parent] = folder_is_there(path)
                if not reachable[parent]:
                    continue          # out of reach, not gone: judged once its folder is back
                try:
                    gone = stat.S_ISDIR(os.lstat(path).st_mode)
                except (FileNotFoundError, NotADirectoryError):
                    gone = True
                except OSError:
                    gone = False      # not ours to judge (permissions): the watcher will tell
                if gone:
                    queued += 1
                    yield path, None   # processing notices it is gone
        log.debug("scan: %d files found, %d to look at", self.scan_found, queued)

    def _partner(self, folder: Path, what: Classified) -> tuple[str, Scanned] | None:
        """The other file of an execution, if it is there and differs from its checkpoint."""
        name = partner_file_name(what)
        if name is None:
            return None
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except OSError:
            return None       # not there (yet): its own event or scan will tell
        cp = self.store.checkpoint(path)
        partner = self.ingestor.classify(path)     # (always something: a name of the same folder's)
        if stat.S_ISDIR(st.st_mode) or not needs_look(st, cp) or partner is None:
            return None
        return path, Scanned(partner, cp)

    def _advance_scan(self, seconds: float):
        """Queue the next paths of the scan in progress, up to a batch's worth or `seconds`."""
        deadline = time.monotonic() + seconds
        while self.scanning is not None and len(self.dirty) < MAX_FILES_PER_BATCH:
            try:
                item = next(self.scanning, None)
            except StorageError:
                self.scan()        # a generator that raised is over: start again after the backoff
                raise
            if item is None:
                self.scanning = None
            else:
                self.dirty.add(*item)
            if time.monotonic() > deadline:
                break

    # ------------------------------------------------------------------ batches

    def run_batch(self) -> bool:
        """Ingest one bounded batch of dirty paths in one transaction. False if none."""
        items = self.dirty.take(MAX_FILES_PER_BATCH)
        if not items:
            return False
        # What the scan queued may not be in the page cache (a back-fill); what events queued was
        # just written.
        self.cache_warmer.warm([(path, scanned.checkpoint.offset if scanned.checkpoint else 0)
                              for path, scanned in items
                              if scanned is not None and isinstance(scanned.what, Classified)])
        started = time.monotonic()
        lines, size, bad, again, done, read = 0, 0, 0, [], 0, 0
        self.ingestor.take_requeue()
        missing_before = self.store.marked_missing
        try:
            with self.store.batch():
                if self.catching_up:
                    new = [(path, what) for path, s in items if (what := _found_without_checkpoint(s)) is not None]
                    self.store.look_up_executions([what.subject_id for _, what in new])
                    self.read_worker.plan(new)
                for path, scanned in items:
                    if done and (size >= MAX_BATCH_BYTES or self.stopping
                                 or time.monotonic() - started > self.batch_seconds):
                        break     # bounded transactions; on SIGTERM, commit what is in hand
                    outcome = self._process_one(path, scanned, self.read_worker.take(path))
                    done += 1
                    read += outcome.bytes_read > 0
                    size += outcome.bytes_read
                    lines += outcome.lines
                    bad += outcome.bad_lines
                    if outcome.more:
                        again.append(path)
                    if outcome.retry_at is not None:
                        self.retry_at[path] = outcome.retry_at
                    else:
                        self.retry_at.pop(path, None)
                # the counters /metrics and `status` show, in the same transaction
                counters = dict(lines_ingested_total=lines, bad_lines_total=bad, bytes_read_total=size,
                                files_read_total=done, batches_total=1,
                                batch_seconds_total=time.monotonic() - started) if self.store.changed else {}
                if self._retries_unstored:
                    counters["retried_batches_total"] = self._retries_unstored
                if counters:
                    self.store.add_counters(**counters)
        except StorageError as e:
            self.dirty.put_back(items)   # nothing was committed: the checkpoints did not move
            if passes(e):                # (run again after the backoff)
                self.retried_batches += 1
                self._retries_unstored += 1
            raise
        self._retries_unstored = 0
        self.dirty.put_back(items[done:])
        self.dirty.add_many(again)
        self.dirty.add_many(self.ingestor.take_requeue())
        # What may give the stale rule a run due sooner than it knew: an old log, a file gone
        # (a session file deleted leaves its run with only an event log).
        self.stale.logs_written(self.store.take_oldest_log_mtime())
        if self.store.marked_missing > missing_before:
            self.stale.look_by()
        now = time.monotonic()
        self.totals["batches"] += 1
        self.totals["files"] += done
        self.totals["read"] += read
        self.totals["lines"] += lines
        if lines or self.store.changed:
            log.debug("batch: %d files, %d lines, %.1f MB, %.1f ms (generation %d)",
                      done, lines, size / 1e6, (now - started) * 1000, self.store.generation)
        if now - self._progress_from[1] >= PROGRESS_SECONDS:
            self._log_progress(now)
        return True

    def _log_progress(self, now: float):
        """One info line for what was ingested since the last one (if anything was)."""
        (then, at), self._progress_from = self._progress_from, (dict(self.totals), now)
        files, lines = self.totals["files"] - then["files"], self.totals["lines"] - then["lines"]
        if self.catching_up:
            log.info("catching up: %s so far%s", self._catch_up_done(), self._retried())
        elif lines:
            log.info("%d lines ingested from %d file reads in the last %.0f s%s", lines, files, now - at,
                     self._retried())

    def _retried(self) -> str:
        """For the log lines that sum up: the batches retried since start, if any."""
        n = self.retried_batches
        return f"; {n} batch{'es' * (n != 1)} retried since start (the database busy or unreachable)" if n else ""

    def _catch_up_done(self) -> str:
        """What the catch-up in progress (a live start's, a SIGHUP's, a --once run) has done:
        what its scan found, and what was read and ingested since it began (files queued by
        events included)."""
        then = self._catch_up_from[0]
        return (f"{self.scan_found} files found by the scan; {self.totals['read'] - then['read']} files read,"
                f" {self.totals['lines'] - then['lines']} lines ingested")

    def _caught_up(self) -> str:
        """What the catch-up that just ended did."""
        at, now = self._catch_up_from[1], time.monotonic()
        self._progress_from = (dict(self.totals), now)
        return f"{self._catch_up_done()} in {now - at:.1f} s{self._retried()}"

    def _set_catching_up(self, catching_up: bool):
        """Throughput while catching up, latency after (Store.tune); the read worker only
        while catching up."""
        self.catching_up = catching_up
        if catching_up:
            self._catch_up_from = (dict(self.totals), time.monotonic())
        if not catching_up:
            self.read_worker.close()
            self.store.drop_reservations()
        self.store.tune(catching_up)

    def _process_one(self, path: str, scanned: Scanned | None, ahead):
        try:
            with self.store.savepoint():
                return self.ingestor.process(path, scanned, ahead)
        except StorageError:
            raise          # the database itself failed: abort the batch, back off, retry
        except NotOwned as e:    # another source's (PostgreSQL): its error, the file left unread
            if self.store.error_reason(path) != str(e) and self.store.record_error(path, 0, 0, str(e)):
                log.warning("%s: %s", shown(path), e)
            return Outcome()
        except OSError as e:     # reading failed midway: what the file did is undone; tried again
            with self.store.savepoint():
                self.ingestor.read_failed(path, scanned, e)
            return Outcome()
        except Exception as e:   # a bug on one file must not stop the others
            log.exception("%s: unexpected failure", shown(path))
            self.store.record_error(path, 0, 0, f"internal error: {type(e).__name__}: {e}")
            return Outcome()

    def drain(self):
        """Run batches until nothing is dirty and no scan is in progress (--once), or the
        database file is lost (a look every FOLDER_CHECK_SECONDS)."""
        next_check = time.monotonic() + FOLDER_CHECK_SECONDS
        while not self.stopping:
            if not self._persisting(self._drain_step) and self.scanning is None:
                return
            if time.monotonic() >= next_check:
                if self._lost_the_database():
                    return
                next_check = time.monotonic() + FOLDER_CHECK_SECONDS

    def _drain_step(self) -> bool:
        self._advance_scan(float("inf"))
        return self.run_batch()

    def _persisting(self, step: Callable[[], Any]) -> Any:
        """--once: `step()`, run again after a backoff while it fails with an error that waiting
        mends (a lost conflict, a server restarting), as the live loop does; what it raises once
        --once gives up (daemon/backoff.py). A failed batch's files are queued again, and a scan
        that failed starts again: a step run again goes on where it stopped."""
        while True:
            try:
                result = step()
            except StorageError as e:
                self._back_off(e)
                continue
            self.backoff.reset()
            return result

    def _back_off(self, e: StorageError):
        """After a database error: wait (the backoff) before trying again. Raises `e` when
        --once gives up, or when a signal stopped the daemon meanwhile."""
        delay = self.backoff.next(e)
        if delay is None or self.stopping:
            raise e
        log.warning("database error (%s: %s); retrying in %.3g s", e.engine_error, e, delay)
        self._sleep(delay)
        if self.stopping:
            raise e

    def _all_committed(self) -> bool:
        """Nothing queued, no scan in progress, no definition being parsed: what was found is in
        the database. `busy` is read first: a parse that ends queues its path before it stops
        being busy, so once it is not, the path is counted. (Read last, a parse that ended
        between the reads let a start say "caught up", and READY=1, before its file was stored.)"""
        return not self.parses.busy and not len(self.dirty) and self.scanning is None

    def _lost_the_database(self) -> bool:
        """Whether the database path no longer names the file open (deleted or replaced while
        the daemon runs): then everything written goes to a file nobody reads. Says so, empties
        the WAL (its frames are that file's: the -wal beside a new database must not hold them)
        and stops: the caller exits 1, and a restart (systemd's Restart=on-failure) opens what
        the path names then (a new database is back-filled from the files)."""
        why = self.database_lost()
        if why is None:
            return False
        log.error("the database %s %s while the daemon ran: exiting (started again, it opens or creates"
                  " the database the path names then)", dburl.shown(self.config.db), why)
        self.store.abandon()
        self.stopping = self.database_gone = True
        return True

    def due_retries(self) -> float | None:
        """Queue the unsettled documents whose time has come; the next wake-up time, if any."""
        now = time.time()
        for path, at in list(self.retry_at.items()):
            if at <= now:
                del self.retry_at[path]
                self.dirty.add(path)
        return min(self.retry_at.values(), default=None)

    # ------------------------------------------------------------------ modes

    def run_once(self) -> int:
        self._install_signals()
        self.check_folders()
        self._set_catching_up(True)
        self.scan()
        self._finish_once()
        # Then the stale rule, once everything is read; a log that changed meanwhile is read
        # first, then looked at again (what changes after that waits for the next run).
        self.stale.look_by()
        if self._persisting(self._look_for_stale_runs):
            self._finish_once()
            self.stale.look_by()
            self._persisting(self._look_for_stale_runs)
        if self.database_gone or self._lost_the_database():     # (a look at the end too)
            return 1
        done = self._caught_up()
        self._set_catching_up(False)     # (and the WAL is cut back when the store closes)
        if not self.stopping:
            self._persisting(lambda: self.store.heartbeat(time.time()))
        log.info("--once: %s%s", done, " (stopped early by a signal)" if self.stopping else "")
        return 0

    def _finish_once(self):
        """--once: drain the queue, the documents caught mid-write after their settle period (then
        they count as what they are) and the benchmark definitions parsed off the loop."""
        self.drain()
        while (self.retry_at or not self._all_committed()) and not self.stopping:
            next_at = self.due_retries()
            if not len(self.dirty):
                self.dirty.wait(0.5 if next_at is None else max(0.0, min(next_at - time.time(), 0.5)))
            self.drain()

    def _look_for_stale_runs(self) -> int:
        """--once: time out every run that is due now; how many logs were queued instead."""
        queued = 0
        while self.stale.due() and not self.stopping:
            queued += self.stale.look()
        return queued

    def run_live(self) -> int:
        self._install_signals()
        # A change reaches this loop through watchdog's threads (inotify reader, emitter,
        # observer): each hand-over waits for the GIL, by default up to 5 ms while a batch runs.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        # Folders are not made here: a mistyped path would be watched, empty, for ever. One that
        # is missing is a warning, and is read once it appears.
        self.check_folders()
        watcher = Watcher([self.config.sessions_dir, self.config.benchmarks_dir], self.dirty.add,
                          self._folder_attributes_changed)
        watcher.start()          # before the first scan, so nothing written meanwhile is missed
        self.store.set_started(time.time())
        self._set_catching_up(True)
        self.scan()
        next_heartbeat = next_status = next_folder_check = next_extend = 0.0
        status_stale = False        # a batch ran since the last STATUS= line
        next_rescan = time.monotonic() + self.config.rescan_interval
        log.info("watching %s and %s; database %s", self.config.sessions_dir,
                 self.config.benchmarks_dir, dburl.shown(self.config.db))
        while not self.stopping:
            # Petted only here, in the loop that does the work: if it hangs, systemd restarts us.
            self.notify.watchdog()
            try:
                self._advance_scan(SCAN_SLICE_SECONDS)
                worked = self.run_batch()
                now = time.monotonic()
                if self.catching_up and self._all_committed():
                    log.info("caught up: %s", self._caught_up())
                    self._set_catching_up(False)     # everything found by the scan is committed
                    self.stale.look_by()             # (not while catching up: the files are ahead)
                    self._status_sent = self.status_line()
                    self.notify.ready(self._status_sent)
                    next_status = now + STATUS_SECONDS
                elif self.catching_up and now >= next_extend:
                    self.notify.send(EXTEND_BY)
                    next_extend = now + EXTEND_SECONDS
                status_stale = status_stale or worked
                if status_stale and now >= next_status and self.notify.enabled:
                    self._send_status()
                    # (counting the files takes a few ms a 10 000: less often while catching up)
                    next_status = now + (PROGRESS_SECONDS if self.catching_up else STATUS_SECONDS)
                    status_stale = False
                if not self.catching_up and self.stale.due():
                    self.stale.look()        # one transaction; more due: the next round
                if now >= next_heartbeat:
                    self.store.heartbeat(time.time())
                    self._look_again_at_refused_benchmarks()
                    next_heartbeat = now + heartbeat.WRITE_EVERY_SECONDS
                if now >= next_folder_check or self.folder_changed:
                    self.folder_changed = False
                    if self._lost_the_database():
                        break
                    # A folder that appeared, went, can be read again, or whose symlink leads
                    # elsewhere now: watch what is there, and scan it (what happened meanwhile
                    # raised no event, or one that found the file out of reach).
                    back = self.check_folders()
                    why = watcher.check()
                    if why is not None:
                        watcher.restart(why)
                    if why is not None or back:
                        self.scan()
                    next_folder_check = now + FOLDER_CHECK_SECONDS
                if now >= next_rescan or self.rescan_requested:
                    if self.rescan_requested:
                        self.notify.reloading()
                        self._set_catching_up(True)      # READY=1 again once the rescan is committed
                    # a periodic scan waits for the one in progress (a long catch-up); SIGHUP does not
                    if self.rescan_requested or self.scanning is None:
                        self.scan()
                    self.rescan_requested = False
                    next_rescan = now + self.config.rescan_interval
                # Only a whole round without a database error ends the backoff: reset after the
                # batch alone, a failing heartbeat would be retried every 0.1 s forever.
                self.backoff.reset()
            except StorageError as e:
                with contextlib.suppress(StorageError):     # (raised again only once a signal stops the loop)
                    self._back_off(e)
                continue
            if not len(self.dirty) and self.scanning is None and not self.rescan_requested:
                next_retry = self.due_retries()
                timeout = min(next_heartbeat, next_rescan, next_folder_check) - time.monotonic()
                if next_retry is not None:
                    timeout = min(timeout, next_retry - time.time())
                if not self.catching_up:
                    timeout = min(timeout, self.stale.due_at - time.time())
                if status_stale and self.notify.enabled:
                    timeout = min(timeout, next_status - time.monotonic())
                watchdog = self.notify.watchdog_due()
                if watchdog is not None:
                    timeout = min(timeout, watchdog)
                self.dirty.wait(max(0.0, timeout))
        watcher.stop()
        self._set_catching_up(False)
        log.info("stopped: %d batches, %d lines ingested%s", self.totals["batches"], self.totals["lines"],
                 self._retried())
        return 1 if self.database_gone else 0

    def status_line(self) -> str:
        """systemd's STATUS=: while catching up, how far (the lag counts only what was looked at);
        after, what is tracked, and the lag (the store's lag: Store.counts)."""
        if self.catching_up:
            return f"catching up: {self._catch_up_done()} so far"
        files, errors, lag = self.store.counts()
        return (f"{files} files tracked, {self.totals['lines']} lines ingested since start, "
                f"{errors} input errors recorded, {lag} bytes not ingested yet")

    def _send_status(self):
        """systemd's STATUS= line, when it says something new."""
        line = self.status_line()
        if line != self._status_sent:
            self.notify.status(line)
            self._status_sent = line

    def _sleep(self, seconds: float):
        """Back off. Not dirty.wait(): the paths of the failed batch are queued again, so it
        would return at once and the loop would spin. A signal ends it early; the watchdog is
        still petted (backing off is not hanging)."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            due = self.notify.watchdog_due()
            self.dirty.pause(left if due is None else min(left, max(due, 0.01)))
            self.notify.watchdog()

    def _install_signals(self):
        def stop(signum, _frame):
            log.info("%s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
            self.notify.stopping()
            self.stopping = True
            self.dirty.wake()

        def rescan(_signum, _frame):
            log.info("SIGHUP: full rescan")
            self.rescan_requested = True
            self.dirty.wake()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, rescan)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)    # (blocked by cli.main)
