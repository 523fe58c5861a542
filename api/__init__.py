"""reev-api: the read-only HTTP API over the reev-ingest database.

Where each concern lives (a request goes down this list, and its answer back up):

- cli.py, config.py, serving.py: the `reev-api` command, its options, and how Granian serves
  the app (one listening socket, workers, connection limits).
- metrics.py: request counts and latencies around everything; /metrics' collector.
- edge.py: the ASGI edge, for every answer whichever layer made it: HEAD, the size limits of
  a request, error answers that were not JSON.
- app.py: the Litestar app: its controllers, its plumbing, start and stop.
- plumbing.py: the HTTP plumbing the routes share: the read_route decorator, typed and
  bounded query parameters, cursors, ETags (and the 304 before any route query), the error
  answers and their messages, the database handed to handlers (dependency injection).
- routes/: one Controller per resource, one module each: health.py (health, /metrics),
  benchmarks.py, agents.py (agent performance), runs.py (the UI's renderings of one
  execution: execution-logs, transaction-logs, flows), sessions.py (executions, events, tool
  calls), ingest.py (ingest status and errors), stream.py (the event stream route).
- convert.py: rows into answers (models.py) and into the renderers' facts.
- models.py: the response types (msgspec Structs); the OpenAPI document is generated from them.
- render.py: the text renderings of one execution (trace, transaction logs, flow diagram);
  pure functions.
- stream.py: the change feed behind the event stream: the watcher, resuming by event id,
  the stream slots.
- db.py: the API's SQL, the interface the routes read through (Database, snapshot, Queries)
  and the typed rows its queries return; one engine each in db_sqlite.py (a SQLite file, read
  only) and db_postgres.py (a postgresql:// URL, read-only sessions): the only modules that
  know table and column names.

The API never imports the daemon (daemon/): what both programs share is in core/.
"""
