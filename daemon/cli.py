"""`reev-ingestd`: the only writer of the database."""

import logging
import os
import sys

import apsw
import msgspec

from daemon.config import daemon_arguments, dump_arguments, setup_logging
from daemon.ingest import Limits
from daemon.service import Config, Service
from daemon.store import Store, canonical_dump

log = logging.getLogger("reev.daemon")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dump"]:
        return dump(argv[1:])
    args = daemon_arguments(argv)
    setup_logging(args.log_level)
    config = Config(
        sessions_dir=args.sessions_dir.absolute(), benchmarks_dir=args.benchmarks_dir.absolute(),
        db=args.db, once=args.once, rescan_interval=args.rescan_interval,
        limits=Limits(max_line_bytes=args.max_line_bytes, settle_seconds=args.settle_seconds))
    try:
        store = Store(config.db)
    except (apsw.Error, OSError, RuntimeError) as e:
        log.error("cannot open the database %s: %s", config.db, e)
        return 2
    try:
        service = Service(config, store)
        return service.run_once() if config.once else service.run_live()
    finally:
        store.close()


def dump(argv: list[str]) -> int:
    """`reev-ingestd dump [--db PATH]`: the ingested data as canonical JSON lines, for comparing
    two databases (tests, debugging) with diff."""
    args = dump_arguments(argv)
    try:
        for record in canonical_dump(args.db):
            sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    except apsw.Error as e:
        print(f"reev-ingestd dump: cannot read {args.db}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:        # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
