"""`reev-api`: serve the database read-only over HTTP."""

import json
import logging
import os
import re
import sys
from pathlib import Path

from granian import Granian

from api.app import create_app, serve
from api.config import api_arguments
from api.serving import server_settings
from daemon.logs import logging_config, setup_logging
from daemon.parentage import die_with_parent

log = logging.getLogger("reev.api")

_CONFIG_ENV = "REEV_API_CONFIG"   # carries the parsed options to each worker process


def app_from_env():
    """The app factory each server worker calls."""
    cfg = json.loads(os.environ[_CONFIG_ENV])
    die_with_parent(cfg["server_pid"])     # not left holding the port alone
    return serve(create_app(Path(cfg["db"]), cfg["cors_origins"], cfg["query_timeout"], cfg["max_streams"],
                            cfg["stream_heartbeat"], port=cfg["port"]))


def main(argv: list[str] | None = None) -> int:
    args = api_arguments(argv)
    setup_logging(args.log_level)
    os.environ[_CONFIG_ENV] = json.dumps({"db": str(args.db), "cors_origins": args.cors_origins,
                                          "query_timeout": args.query_timeout, "max_streams": args.max_streams,
                                          "stream_heartbeat": args.stream_heartbeat, "server_pid": os.getpid(),
                                          "port": args.port})
    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    log.info("serving %s on http://%s", args.db, address)
    # Granian over uvicorn: measured faster on this machine for the UI's polling load
    # (README, "Choosing the ASGI server"; perf/asgi_servers.sh).
    server = Granian("api.cli:app_from_env", factory=True, address=args.host, port=args.port, interface="asgi",
                     workers=args.workers, websockets=False, log_level=args.log_level, log_access=False,
                     log_dictconfig=logging_config(args.log_level), **server_settings())
    try:
        server.serve()
    except RuntimeError as e:
        # Granian reports a socket it cannot bind (busy port, no such address, no permission)
        # as Rust's io::Error, "<reason> (os error N)", followed by a Rust backtrace.
        reason = (str(e).splitlines() or [""])[0]
        if not re.search(r"\(os error \d+\)$", reason):
            raise
        log.critical("cannot listen on %s: %s", address, reason)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
