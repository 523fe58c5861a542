"""Is it up: GET /api/v1/health (for people and load balancers) and GET /metrics (Prometheus)."""

import time

from litestar import Controller, Request, Response, get

from api import models as m
from api.db import Database, DatabaseUnavailable, Meta, QueryTimeout
from api.metrics import CONTENT_TYPE
from api.plumbing import VERSION, keyed_response, read_route
from core import heartbeat
from core.timestamps import iso


class HealthController(Controller):
    @read_route("/api/v1/health", etag="keyed")
    def health(self, request: Request, db: Database) -> Response[m.Health]:
        reasons, meta, reachable = [], Meta(), False
        try:
            with db.snapshot() as q:
                meta = q.meta()
            reachable = True
        except (DatabaseUnavailable, QueryTimeout) as e:
            reasons.append(str(e))
        now = time.time()
        age = heartbeat.age(meta.heartbeat_at, now)
        if reachable and heartbeat.is_stale(age):
            reasons.append("the daemon's heartbeat is stale: is reev-ingestd running?" if age is not None
                           else "the daemon has not written a heartbeat yet")
        stamp = iso(now)
        assert stamp is not None      # (now is a time iso() shows: after 1970, before 9999)
        body = m.Health(
            status="degraded" if reasons else "healthy", timestamp=stamp, version=VERSION, reasons=reasons,
            database=m.DatabaseHealth(
                name=db.name, reachable=reachable, data_generation=meta.data_generation,
                last_ingest_at=iso(meta.last_ingest_at), heartbeat_at=iso(meta.heartbeat_at),
                heartbeat_age_seconds=age))
        return keyed_response(request, body, (body.status, reasons, meta.database_id, meta.data_generation,
                                              meta.heartbeat_at))

    @get("/metrics", sync_to_thread=True, opt={"etag": "none"}, media_type=CONTENT_TYPE,
         description="Prometheus text format: the daemon's ingest counters and gauges, and the API's own.")
    def metrics(self, request: Request) -> Response[str]:
        return Response(content=request.app.state.metrics.render(), media_type=CONTENT_TYPE)
