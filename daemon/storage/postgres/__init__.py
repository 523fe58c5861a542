"""The PostgreSQL backend of the daemon's storage (daemon/storage/interface.py): several
daemons, each under its source, writing one database; the only module tree that imports
psycopg. docs/storage.md ("The PostgreSQL backend") says what differs from SQLite and why.

- store.py: PostgresStore, put together from
- unit_of_work.py (batch, savepoint, the commit tail, reconnecting) and the repositories:
  files.py (files and ingest errors), executions.py (runs, events, tool calls), benchmarks.py,
  meta.py (the source's row),
- connection.py: the connection, its errors as the storage layer's, the advisory locks,
- migrations.py with schema.sql: the schema, made under a lock,
- reports.py: the operators' read-only queries (status, dump) and the ingest lag.
"""

from daemon.storage.postgres.connection import SourceTaken
from daemon.storage.postgres.reports import canonical_dump, open_reader, status_report
from daemon.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore", "SourceTaken", "canonical_dump", "open_reader", "status_report"]
