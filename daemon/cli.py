"""`reev-ingestd`: the only writer of the database."""

import logging
import signal
import sys
import time
from pathlib import Path

from core import dburl
from core.logs import setup_logging
from core.notify import Notifier
from daemon import admin
from daemon.backoff import ONCE_PATIENCE_SECONDS, Backoff
from daemon.config import daemon_arguments
from daemon.ingest import Limits
from daemon.lock import DatabaseBusy, WriterLock
from daemon.service import EXTEND_BY, HANDLED_SIGNALS, Config, Service
from daemon.storage import StorageError, Store, Unreachable, open_store

log = logging.getLogger("reev.daemon")


def main(argv: list[str] | None = None) -> int:
    args = daemon_arguments(argv)
    setup_logging(args.log_level)
    if args.command == "status":
        return admin.status(args.db, args.json)
    if args.command == "dump":
        return admin.dump(args.db)
    config = Config(
        sessions_dir=args.sessions_dir.absolute(), benchmarks_dir=args.benchmarks_dir.absolute(),
        db=args.db, once=args.once, rescan_interval=args.rescan_interval, stale_after=args.stale_after,
        limits=Limits(max_line_bytes=args.max_line_bytes, settle_seconds=args.settle_seconds))
    notify = Notifier()
    # A stop that comes while the database opens waits for the service's handlers (they unblock
    # it): an exit 0 with nothing half done, never a death by SIGTERM halfway through start-up.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    # One writer per SQLite file: its lock, taken before SQLite opens the database. (On
    # PostgreSQL, one daemon per source: the store takes the source's advisory lock.)
    lock = None if dburl.is_url(config.db) else WriterLock(Path(config.db))
    try:
        if lock:
            lock.acquire()
        store = open_waiting(config, args.source, notify)
        if store is None:
            return 0       # stopped while it waited for the server
    except DatabaseBusy as e:
        log.error("%s", e)
        return 2
    except (StorageError, OSError, ValueError) as e:   # (ValueError: no regular file, a path SQLite can't take)
        if lock:
            lock.release()
        log.error("cannot open the database %s: %s", dburl.shown(config.db), e)
        return 2
    try:
        service = Service(config, store, notify, database_lost=lock.lost if lock else lambda: None)
        if not config.once:
            return service.run_live()      # (it retries a database error, backing off)
        try:
            return service.run_once()
        except StorageError as e:     # a run that ends stops at it: each batch committed before it stays
            log.error("--once stopped: the database %s failed (%s: %s); the batches committed before stay",
                      dburl.shown(config.db), e.engine_error, e)
            return 1
    finally:
        store.close()
        if lock:
            lock.release()


LOG_AGAIN_SECONDS = 30.0      # a wait at its longest backoff is logged this often


def open_waiting(config: Config, source: str, notify: Notifier) -> Store | None:
    """The store, once its database server can be reached: a PostgreSQL server down or starting
    (Unreachable) is waited for, backing off, forever when live (under systemd, telling it why and
    extending its start timeout), for ONCE_PATIENCE_SECONDS with --once. None: a signal stopped
    the wait. Any other error is raised at once: a server that refuses (a password, a missing
    database) or a bad URL is not mended by waiting."""
    backoff = Backoff(ONCE_PATIENCE_SECONDS if config.once else None)
    told = (0.0, -LOG_AGAIN_SECONDS)        # (the delay last logged, when)
    while True:
        try:
            # A migration rewrites tables: under systemd, ask for 10 more minutes each time the
            # store says it is still at it (every minute).
            return open_store(config.db, source, migrating=lambda what: notify.send(
                "EXTEND_TIMEOUT_USEC=600000000", f"STATUS={what}"))
        except Unreachable as e:
            delay = backoff.next(e)
            if delay is None:
                raise
            why = (f"cannot reach the database {dburl.shown(config.db)} ({e}); waiting for it"
                   f" ({backoff.failing_for():.0f} s so far), trying again in {delay:.3g} s")
            if delay != told[0] or time.monotonic() - told[1] >= LOG_AGAIN_SECONDS:
                log.warning("%s", why)
                told = (delay, time.monotonic())
            notify.send(EXTEND_BY, f"STATUS={why}")
            if not pause(notify, delay):
                log.info("stopped while waiting for the database")
                return None


def pause(notify: Notifier, seconds: float) -> bool:
    """Wait `seconds`, petting systemd's watchdog; False if SIGTERM or SIGINT came meanwhile
    (blocked until the service's handlers take over: taken here; a SIGHUP has nothing to rescan yet)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        notify.watchdog()
        due = notify.watchdog_due()
        got = signal.sigtimedwait(HANDLED_SIGNALS, left if due is None else min(left, max(due, 0.01)))
        if got is not None and got.si_signo != signal.SIGHUP:
            notify.stopping()
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
