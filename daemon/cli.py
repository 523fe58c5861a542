"""`reev-ingestd`: the only writer of the database."""

import logging
import signal
import sys
from pathlib import Path

from core import dburl
from core.logs import setup_logging
from core.notify import Notifier
from daemon import admin
from daemon.config import daemon_arguments
from daemon.ingest import Limits
from daemon.lock import DatabaseBusy, WriterLock
from daemon.service import HANDLED_SIGNALS, Config, Service
from daemon.storage import StorageError, open_store

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
        # A migration rewrites tables: under systemd, ask for 10 more minutes each time the
        # store says it is still at it (every minute).
        store = open_store(config.db, args.source, migrating=lambda what: notify.send(
            "EXTEND_TIMEOUT_USEC=600000000", f"STATUS={what}"))
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


if __name__ == "__main__":
    sys.exit(main())
