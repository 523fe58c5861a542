"""The Litestar application: its routes (api/routes/, a controller per resource), the HTTP
plumbing they share (api/plumbing.py) and what runs at start and stop.

Only reads: the database is opened read-only (api/db.py: a SQLite file, or PostgreSQL in
read-only transactions) and no route writes.
"""

import os
from pathlib import Path

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from api.db import open_database
from api.edge import Edge
from api.metrics import ApiMetrics, RequestMetrics
from api.plumbing import EXCEPTION_HANDLERS, TYPE_DECODERS, VERSION, dependencies, not_modified
from api.routes import CONTROLLERS
from api.stream import GenerationWatcher, StreamSlots
from core.notify import Notifier


def create_app(db_target: Path | str, cors_origins: list[str] | None = None, query_timeout: float = 2.0,
               max_streams: int = 100, stream_heartbeat: float = 15.0) -> Litestar:
    db = open_database(db_target, query_timeout=query_timeout)
    app = Litestar(
        route_handlers=CONTROLLERS,
        dependencies=dependencies(db),
        before_request=not_modified,
        on_startup=[start_watching, tell_systemd_ready],
        on_shutdown=[stop_watching, tell_systemd_stopping],
        exception_handlers=EXCEPTION_HANDLERS,
        type_decoders=TYPE_DECODERS,      # the integer query parameters (BoundedInteger)
        cors_config=CORSConfig(allow_origins=cors_origins or ["*"], allow_methods=["GET", "HEAD", "OPTIONS"],
                               allow_headers=["*"], expose_headers=["ETag"], max_age=600),
        openapi_config=OpenAPIConfig(title="reev-ingest API", version=VERSION, path="/schema",
                                     render_plugins=[JsonRenderPlugin()]),
        logging_config=None,    # the programs' own (core/logs.py); Litestar's would replace it
    )
    app.state.db = db           # for what runs outside a handler: the ETag hook, the stream's watcher, /metrics
    app.state.watcher = GenerationWatcher(db)
    app.state.stream_slots = StreamSlots(max_streams)
    app.state.stream_heartbeat = stream_heartbeat
    app.state.metrics = ApiMetrics(db)
    app.state.metrics.open_streams.set_function(lambda: app.state.stream_slots.taken)
    return app


def serve(app: Litestar):
    """The ASGI callable the server runs: request metrics around the HTTP edge around the app."""
    return RequestMetrics(Edge(app), app.state.metrics)


def start_watching(app: Litestar):
    app.state.watcher.start()


async def stop_watching(app: Litestar):
    await app.state.watcher.stop()


def tell_systemd_ready():
    """READY=1 from each worker once its app has started. The server process listened before it
    started the workers (api/serving.py), so a connection made when systemd hears it waits in
    the kernel's queue for a worker that is about to take it. (With several workers each says
    it: systemd acts on the first. NotifyAccess=all: it comes from a worker.)"""
    Notifier().ready(f"serving, pid {os.getpid()}")


def tell_systemd_stopping():
    Notifier().stopping()
