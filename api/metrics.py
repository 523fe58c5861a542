"""GET /metrics: Prometheus text format, through prometheus_client.

The daemon's figures are read from the database at scrape time (its counters live in the
meta table on SQLite, in each source's row on PostgreSQL, summed; moved by each committed
batch); the API's own are kept in this process."""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from api.db import Database, DatabaseUnavailable, QueryTimeout

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STREAMING_ROUTES = frozenset({"/api/v1/stream"})

_DAEMON_COUNTERS = {
    "lines_ingested_total": ("reev_ingest_lines", "Event lines stored"),
    "bad_lines_total": ("reev_ingest_bad_lines", "Event lines recorded as bad input"),
    "bytes_read_total": ("reev_ingest_read_bytes", "Bytes of input read"),
    "files_read_total": ("reev_ingest_file_reads", "Times a file was read into a batch"),
    "batches_total": ("reev_ingest_batches", "Committed batches that changed data"),
    "batch_seconds_total": ("reev_ingest_batch_seconds", "Time spent in those batches"),
}


class IngestCollector:
    """What the daemon recorded, read in one snapshot per scrape."""

    def __init__(self, db: Database):
        self.db = db

    def collect(self):
        up = GaugeMetricFamily("reev_ingest_database_up", "1 when the database could be read")
        try:
            with self.db.snapshot() as q:
                counters = q.ingest_counters()
                files = q.file_counts()
                errors = q.error_count()
        except (DatabaseUnavailable, QueryTimeout):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for key, (name, help_text) in _DAEMON_COUNTERS.items():
            yield CounterMetricFamily(name, help_text, value=float(counters.get(key) or 0))
        tracked = GaugeMetricFamily("reev_ingest_files_tracked", "Files the daemon tracks", labels=["kind", "state"])
        for f in files:
            tracked.add_metric([f.kind, f.state], f.files)
        yield tracked
        yield GaugeMetricFamily("reev_ingest_pending_bytes", "Bytes of event logs not read yet (as of the last read)",
                                value=sum(f.pending_bytes for f in files))
        yield GaugeMetricFamily("reev_ingest_errors", "Places with bad input recorded", value=errors)
        yield GaugeMetricFamily("reev_ingest_data_generation", "Committed batches that changed data, ever",
                                value=float(counters.get("data_generation") or 0))
        if counters.get("last_ingest_at") is not None:
            yield GaugeMetricFamily("reev_ingest_last_commit_timestamp_seconds",
                                    "When the last batch with data committed", value=float(counters["last_ingest_at"]))
        if counters.get("heartbeat_at") is not None:
            yield GaugeMetricFamily("reev_ingest_heartbeat_age_seconds", "Seconds since the daemon's last heartbeat",
                                    value=max(0.0, time.time() - float(counters["heartbeat_at"])))


class ApiMetrics:
    def __init__(self, db: Database):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(IngestCollector(db))
        self.requests = Counter("reev_api_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("reev_api_request_duration_seconds", "Time to answer, by route", ["route"],
                                 registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.not_modified = Counter("reev_api_not_modified", "304 answers to If-None-Match", registry=self.registry)
        self.open_streams = Gauge("reev_api_open_streams", "Event streams open now", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI wrapper counting every answer by route template and status, with its latency."""

    def __init__(self, app, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("path_template") or "unrouted"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            if route not in STREAMING_ROUTES:   # a stream lasts as long as its client: not a latency
                self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            if status == 304:
                self.metrics.not_modified.inc()
