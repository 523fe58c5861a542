"""The API's settings and command line: `reev-api [options]`."""

import argparse
import os

from core.settings import DB, LOG_LEVEL, ArgumentParser, Setting, add_settings, integer, ip_address, resolve, seconds

SETTINGS = (
    DB._replace(help="the database reev-ingestd writes, read only: a SQLite file, or a postgresql:// URL"),
    Setting("host", "--host", "REEV_API_HOST", ip_address, "127.0.0.1", "127.0.0.1",
            "IP address to listen on", metavar="HOST"),
    Setting("port", "--port", "REEV_API_PORT", integer(1, 65535), 3001, "3001", "TCP port to listen on",
            metavar="PORT"),
    Setting("workers", "--workers", "REEV_API_WORKERS", integer(1, 64), 1, "1", "worker processes",
            metavar="N"),
    Setting("cors_origins", "--cors-origin", "REEV_API_CORS_ORIGINS", str, [], "any origin",
            "allowed browser origin: the flag repeats, the variable is comma-separated", metavar="ORIGIN",
            repeatable=True),
    # A minute at most: past that a poll is of no use to anyone, and a worker is held.
    Setting("query_timeout", "--query-timeout", "REEV_API_QUERY_TIMEOUT", seconds(0, 60, inclusive=False), 2.0,
            "2 s", "seconds a response's queries may run before it answers 503", metavar="SECONDS"),
    Setting("max_streams", "--max-streams", "REEV_API_MAX_STREAMS", integer(1, 1_000_000), 100, "100",
            "concurrent event streams per worker; more answer 503", metavar="N"),
    # Bounded below: each keep-alive is a write to every open stream; above: proxies close a
    # connection idle for minutes, and the comment is what keeps it.
    Setting("stream_heartbeat", "--stream-heartbeat", "REEV_API_STREAM_HEARTBEAT", seconds(0.1, 3600), 15.0,
            "15 s", "seconds between keep-alive comments on event streams", metavar="SECONDS"),
    LOG_LEVEL,
)


def api_arguments(argv: list[str] | None, environ=os.environ) -> argparse.Namespace:
    p = ArgumentParser(prog="reev-api",
                       description="Read-only HTTP API over the reev-ingest database. "
                                   "Every option has an environment variable; the option wins.")
    add_settings(p, SETTINGS)
    args = p.parse_args(argv)
    resolve(p, args, SETTINGS, environ)
    return args
