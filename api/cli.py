"""`reev-api`: serve the database read-only over HTTP."""

import json
import logging
import os
import sys
from pathlib import Path

from api.app import create_app, serve
from api.config import api_arguments
from api.serving import Server, listen, server_settings
from core.dburl import is_url, shown
from core.logs import logging_config, setup_logging
from core.parentage import die_with_parent

log = logging.getLogger("reev.api")

_CONFIG_ENV = "REEV_API_CONFIG"   # carries the parsed options to each worker process


def app_from_env():
    """The app factory each server worker calls."""
    cfg = json.loads(os.environ[_CONFIG_ENV])
    die_with_parent(cfg["server_pid"])     # not left holding the port alone
    target = cfg["db"] if is_url(cfg["db"]) else Path(cfg["db"])
    return serve(create_app(target, cfg["cors_origins"], cfg["query_timeout"], cfg["max_streams"],
                            cfg["stream_heartbeat"]))


def main(argv: list[str] | None = None) -> int:
    args = api_arguments(argv)
    setup_logging(args.log_level)
    os.environ[_CONFIG_ENV] = json.dumps({"db": str(args.db), "cors_origins": args.cors_origins,
                                          "query_timeout": args.query_timeout, "max_streams": args.max_streams,
                                          "stream_heartbeat": args.stream_heartbeat, "server_pid": os.getpid()})
    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    log.info("serving %s on http://%s", shown(args.db), address)
    try:
        listener = listen(args.host, args.port)
    except OSError as e:        # taken (by anything, another reev-api included), no such address, no permission
        log.critical("cannot listen on %s: %s", address, e.strerror)
        return 1
    # Granian over uvicorn: measured faster on this machine for the UI's polling load
    # (docs/performance.md, "Choosing the ASGI server"; perf/asgi_servers.sh).
    server = Server("api.cli:app_from_env", factory=True, address=args.host, port=args.port, interface="asgi",
                    workers=args.workers, websockets=False, log_level=args.log_level, log_access=False,
                    log_dictconfig=logging_config(args.log_level), listener=listener, **server_settings())
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
