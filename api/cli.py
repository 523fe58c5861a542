"""`reev-api`: serve the database read-only over HTTP."""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from granian import Granian

from api.app import create_app, serve
from api.serving import server_settings
from daemon.config import default_db_path, logging_config, setup_logging
from daemon.parentage import die_with_parent

_CONFIG_ENV = "REEV_API_CONFIG"   # carries the parsed options to each worker process


def arguments(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="reev-api", description="Read-only HTTP API over the reev-ingest database.")
    p.add_argument("--db", type=Path, default=None,
                   help="database written by reev-ingestd (env REEV_DB; default: the daemon's default)")
    p.add_argument("--host", default=env("REEV_API_HOST") or "127.0.0.1", help="default 127.0.0.1")
    p.add_argument("--port", type=int, default=int(env("REEV_API_PORT") or 3001), help="default 3001")
    p.add_argument("--workers", type=int, default=int(env("REEV_API_WORKERS") or 1),
                   help="worker processes (default 1)")
    p.add_argument("--cors-origin", action="append", dest="cors_origins", metavar="ORIGIN",
                   default=[o for o in (env("REEV_API_CORS_ORIGINS") or "").split(",") if o],
                   help="allowed browser origin, repeatable (default: any)")
    p.add_argument("--query-timeout", type=float, default=float(env("REEV_API_QUERY_TIMEOUT") or 2.0),
                   help="seconds a query may run before it answers 503 (default 2)")
    p.add_argument("--max-streams", type=int, default=int(env("REEV_API_MAX_STREAMS") or 100),
                   help="concurrent event streams per worker; more answer 503 (default 100)")
    p.add_argument("--stream-heartbeat", type=float, default=15.0, metavar="SECONDS",
                   help="seconds between keep-alive comments on event streams (default 15)")
    p.add_argument("--log-level", default=env("REEV_LOG_LEVEL") or "info",
                   choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    args.db = (args.db or default_db_path()).absolute()
    return args


def app_from_env():
    """The app factory each server worker calls."""
    cfg = json.loads(os.environ[_CONFIG_ENV])
    die_with_parent(cfg["server_pid"])     # not left holding the port alone
    return serve(create_app(Path(cfg["db"]), cfg["cors_origins"], cfg["query_timeout"], cfg["max_streams"],
                            cfg["stream_heartbeat"], port=cfg["port"]))


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    setup_logging(args.log_level)
    os.environ[_CONFIG_ENV] = json.dumps({"db": str(args.db), "cors_origins": args.cors_origins,
                                          "query_timeout": args.query_timeout, "max_streams": args.max_streams,
                                          "stream_heartbeat": args.stream_heartbeat, "server_pid": os.getpid(),
                                          "port": args.port})
    logging.getLogger("reev.api").info("serving %s on http://%s:%d", args.db, args.host, args.port)
    # Granian over uvicorn: measured faster on this machine for the UI's polling load
    # (README, "Choosing the ASGI server"; perf/asgi_servers.sh).
    Granian("api.cli:app_from_env", factory=True, address=args.host, port=args.port, interface="asgi",
            workers=args.workers, websockets=False, log_level=args.log_level, log_access=False,
            log_dictconfig=logging_config(args.log_level), **server_settings()).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
