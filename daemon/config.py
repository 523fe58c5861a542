"""The database's default path (shared by both programs), and the daemon's command line."""

import argparse
import os
from pathlib import Path

from daemon.ingest import Limits


def default_db_path() -> Path:
    """$REEV_DB, else reev.db in systemd's $STATE_DIRECTORY, else ./state/reev.db."""
    if os.environ.get("REEV_DB"):
        return Path(os.environ["REEV_DB"])
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state or "state") / "reev.db"


def daemon_arguments(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="reev-ingestd",
        description="Follow reev's session files and benchmark definitions into one SQLite database.",
        epilog="Operator commands (read-only): `reev-ingestd status [--db PATH] [--json]` summarises the "
               "database (exit 1 when degraded); `reev-ingestd dump [--db PATH]` prints the ingested data "
               "as canonical JSON lines.")
    p.add_argument("--sessions-dir", type=Path, default=Path(env("REEV_SESSIONS_DIR") or "logs/sessions"),
                   help="folder of session_<id>.json and enhanced_otel_<id>.jsonl (env REEV_SESSIONS_DIR; default logs/sessions)")
    p.add_argument("--benchmarks-dir", type=Path, default=Path(env("REEV_BENCHMARKS_DIR") or "benchmarks"),
                   help="folder of benchmark *.yml files (env REEV_BENCHMARKS_DIR; default benchmarks)")
    p.add_argument("--db", type=Path, default=None,
                   help="database file, created if missing (env REEV_DB; default $STATE_DIRECTORY/reev.db or state/reev.db)")
    p.add_argument("--once", action="store_true", help="ingest everything complete, then exit")
    p.add_argument("--rescan-interval", type=_positive, default=float(env("REEV_RESCAN_INTERVAL") or 30),
                   metavar="SECONDS", help="reconcile scan period (default 30)")
    p.add_argument("--log-level", default=env("REEV_LOG_LEVEL") or "info",
                   choices=["debug", "info", "warning", "error"], help="default info")
    p.add_argument("--max-line-bytes", type=int, default=Limits.max_line_bytes,
                   help=f"longest accepted event line (default {Limits.max_line_bytes})")
    p.add_argument("--settle-seconds", type=_positive, default=Limits.settle_seconds,
                   help="how long an invalid session file may keep changing before it is an error")
    args = p.parse_args(argv)
    args.db = args.db or default_db_path()
    return args


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value
