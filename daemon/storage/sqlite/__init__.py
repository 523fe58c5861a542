"""The SQLite backend of the daemon's storage (daemon/storage/interface.py), the only module
tree of the daemon that imports apsw:

- store.py: SqliteStore, the interface's implementation, put together from
- unit_of_work.py (batch, savepoint, generations) and new_executions.py (runs first seen in
  the batch, inserted at its commit, with a savepoint's undo),
- the repositories: files.py, ingest_errors.py, executions.py (with derived.py, the derived
  columns' SQL), events.py (events and tool calls), benchmarks.py, meta.py,
- engine.py: the connection, its pragmas, the WAL and its copier, the tuning (SQLite's alone),
- migrations.py: schema.sql and the numbered migrations,
- errors.py: apsw.Error translated into the storage layer's errors,
- reports.py: the operators' read-only queries (status, dump) and the ingest lag.
"""

from daemon.storage.sqlite.migrations import SCHEMA_VERSION
from daemon.storage.sqlite.reports import canonical_dump, lag_bytes, status_report
from daemon.storage.sqlite.store import SqliteStore
from daemon.storage.sqlite.unit_of_work import CHANGES_KEPT

__all__ = ["CHANGES_KEPT", "SCHEMA_VERSION", "SqliteStore", "canonical_dump", "lag_bytes", "status_report"]
