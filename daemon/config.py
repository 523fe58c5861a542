"""The daemon's settings and command line: `reev-ingestd [options]`, and its read-only
subcommands `status` and `dump` (daemon/admin.py)."""

import argparse
import os
import re
import socket
from pathlib import Path

from core.settings import (
    DB,
    LOG_LEVEL,
    ArgumentParser,
    Setting,
    add_settings,
    database_target,
    integer,
    resolve,
    seconds,
)
from daemon.ingest import Limits

# The longest line an operator may allow: a read holds a line in memory, several times over
# while it is stored (docs/design.md, "Bad input, and memory").
LONGEST_LINE_ALLOWED = 64 << 20
HOUR, DAY, WEEK = 3600, 86400, 7 * 86400

# The daemon's database: a path (SQLite) or a PostgreSQL URL; the scheme alone decides.
DAEMON_DB = DB._replace(parse=database_target, metavar="PATH|URL",
                        help="the database: a SQLite file (created with its folder if missing), or a postgresql:// URL")
SOURCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}")


def source_name(text: str) -> str:
    """A source: what this daemon's files, checkpoints, errors and heartbeat are kept under in
    a database several daemons write (a host name fits): up to 63 letters, digits and . _ : @ -."""
    if not SOURCE_PATTERN.fullmatch(text):
        raise ValueError(f"{text!r} is not a source name: 1 to 63 ASCII letters, digits and . _ : @ -,"
                         " beginning with a letter or digit")
    return text


def default_source(environ=os.environ) -> str:
    """The host name (its first label's worth of characters that a source may hold)."""
    name = socket.gethostname()
    return name if SOURCE_PATTERN.fullmatch(name) else re.sub(r"[^A-Za-z0-9._:@-]", "-", name)[:63] or "localhost"


SETTINGS = (
    Setting("sessions_dir", "--sessions-dir", "REEV_SESSIONS_DIR", Path, Path("logs/sessions"), "logs/sessions",
            "folder of session_<id>.json and enhanced_otel_<id>.jsonl", metavar="DIR"),
    Setting("benchmarks_dir", "--benchmarks-dir", "REEV_BENCHMARKS_DIR", Path, Path("benchmarks"), "benchmarks",
            "folder of benchmark *.yml files", metavar="DIR"),
    DAEMON_DB,
    # Upper bounds on seconds: past them a setting is a mistake (a unit taken for another),
    # and a --once run could wait for ever on a file that keeps changing.
    Setting("rescan_interval", "--rescan-interval", "REEV_RESCAN_INTERVAL", seconds(0.1, DAY), 30.0, "30 s",
            "seconds between reconcile scans", metavar="SECONDS"),
    Setting("source", "--source", "REEV_SOURCE", source_name, default_source, "the host name",
            "the name this daemon's files, checkpoints, errors and heartbeat are kept under (PostgreSQL:"
            " one daemon per source and database)", metavar="NAME"),
    LOG_LEVEL,
    # Bounded above too: the longest line is what a read may hold in memory.
    Setting("max_line_bytes", "--max-line-bytes", "REEV_MAX_LINE_BYTES", integer(1, LONGEST_LINE_ALLOWED),
            Limits.max_line_bytes, f"{Limits.max_line_bytes} (8 MiB)",
            "longest event line accepted: a longer one is bad input",
            metavar="N"),
    Setting("settle_seconds", "--settle-seconds", "REEV_SETTLE_SECONDS", seconds(0, HOUR, inclusive=False),
            Limits.settle_seconds, f"{Limits.settle_seconds:g} s",
            "seconds an invalid session file may keep changing before it is an error",
            metavar="SECONDS"),
    Setting("stale_after", "--stale-after", "REEV_STALE_AFTER", seconds(0, WEEK), 1800.0, "1800 s",
            "seconds without a new byte in a run's event log, and no session file, after which the run is"
            " Timeout (its runner stopped); 0 turns this off", metavar="SECONDS"),
)
# What the subcommands use too, on either side of the subcommand's name.
COMMON = (DAEMON_DB, LOG_LEVEL)


def daemon_arguments(argv: list[str] | None, environ=os.environ) -> argparse.Namespace:
    """The parsed command line, every setting resolved; `command` is None (run the daemon),
    "status" or "dump"."""
    p = ArgumentParser(
        prog="reev-ingestd",
        description="Follow reev's session files and benchmark definitions into one SQLite database. "
                    "Every option has an environment variable; the option wins.")
    add_settings(p, SETTINGS)
    p.add_argument("--once", action="store_true", help="ingest everything complete, then exit")
    commands = p.add_subparsers(dest="command", title="read-only subcommands")
    status = commands.add_parser("status", help="one-screen summary of the database; exit 1 when degraded",
                                 description="One-screen summary of the ingest database; exit 0 healthy, 1 degraded.")
    add_settings(status, COMMON, again=True)
    status.add_argument("--json", action="store_true", help="print the summary as JSON")
    dump = commands.add_parser("dump", help="the ingested data as canonical JSON lines",
                               description="Print the ingested data as canonical JSON lines.")
    add_settings(dump, COMMON, again=True)
    args = p.parse_args(argv)
    if args.command:
        common = {s.name for s in COMMON}
        given = [s.flag for s in SETTINGS if s.name not in common and getattr(args, s.name) is not None]
        if given or args.once:
            p.error(f"{(given or ['--once'])[0]} is an option of the daemon, not of {args.command}")
    resolve(p, args, COMMON if args.command else SETTINGS, environ)
    return args
