"""The schema of a SQLite database: schema.sql for a new one, numbered migrations for an older
one, a refusal for another program's or a newer one. The version is PRAGMA user_version."""

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import apsw

from daemon.storage.errors import Incompatible, Unavailable
from daemon.storage.sqlite.engine import pragma

log = logging.getLogger("reev.store")

SCHEMA_VERSION = 7
MIGRATION_NOTICE_SECONDS = 60.0


class Migration(NamedTuple):
    """What brings a database of the version before to this one: `before` moves away what
    schema.sql cannot change in place, schema.sql then creates the new forms, and `after`
    fills them and drops what was moved away. All in one transaction."""
    before: list[str]
    after: list[str]


# 2 (the change feed and ingest counters) was additive: schema.sql absorbs it.
MIGRATIONS = {
    3: Migration(  # session files move to their own table; a cheaper stats trigger; an unused index goes
        before=["DROP TRIGGER executions_stats_update", "DROP INDEX IF EXISTS executions_changed"],
        after=["INSERT INTO session_docs (exec_id, session_doc, result_doc)"
               " SELECT id, session_doc, result_doc FROM executions WHERE session_doc IS NOT NULL",
               "ALTER TABLE executions DROP COLUMN session_doc",
               "ALTER TABLE executions DROP COLUMN result_doc"]),
    4: Migration(  # events becomes a rowid table keyed by an index
        before=["ALTER TABLE events RENAME TO events_v3"],
        after=["INSERT INTO events (exec_id, line, byte_offset, kind, event_type, ts, doc)"
               " SELECT exec_id, line, byte_offset, kind, event_type, ts, doc FROM events_v3",
               "DROP TABLE events_v3"]),
    5: Migration(  # files becomes a rowid table keyed by an index; tool calls no longer copy their JSON
        before=["DROP INDEX files_by_subject", "ALTER TABLE files RENAME TO files_v4"],
        after=["INSERT INTO files (path, kind, subject_id, dev, inode, fingerprint, fingerprint_len, offset, line_no,"
               " skipping, size, mtime_ns, content_hash, state, first_seen_at, ingested_at)"
               " SELECT path, kind, subject_id, dev, inode, fingerprint, fingerprint_len, offset, line_no,"
               " skipping, size, mtime_ns, content_hash, state, first_seen_at, ingested_at FROM files_v4",
               "DROP TABLE files_v4",
               "ALTER TABLE tool_calls DROP COLUMN input",
               "ALTER TABLE tool_calls DROP COLUMN output"]),
    # why a run is the stale rule's Timeout (no rewrite: ADD COLUMN only changes the schema);
    # schema.sql then indexes the Running runs, one pass over executions
    6: Migration(before=["ALTER TABLE executions ADD COLUMN stale_reason TEXT"], after=[]),
    # the domain rules move from triggers into the store (daemon/storage/rules.py): their tables stay
    7: Migration(before=[f"DROP TRIGGER IF EXISTS {name}" for name in (
        "executions_stats_insert", "executions_stats_update", "benchmarks_scope_insert", "benchmarks_scope_update",
        "executions_benchmark_scope", "executions_results_scope_insert", "executions_results_scope",
        "executions_change_insert", "executions_change_update", "ingest_errors_change")], after=[]),
}


def schema_sql() -> str:
    """The repository's schema.sql: beside the packages in a source tree or editable install,
    else where pyproject's data-files put it (<prefix>/share/reev-ingest/schema.sql)."""
    for candidate in (Path(__file__).resolve().parents[3] / "schema.sql",
                      Path(sys.prefix) / "share" / "reev-ingest" / "schema.sql"):
        if candidate.exists():
            return candidate.read_text()
    raise Unavailable("schema.sql not found: reinstall reev-ingest")


def refuse_anothers(conn: apsw.Connection):
    """Another program's SQLite database is not taken over: one that holds tables but no
    schema version (ours is set with its first tables, in the same transaction)."""
    if pragma(conn, "user_version")[0][0] == 0:
        if conn.execute("SELECT count(*) FROM sqlite_master").get:
            raise Incompatible("it already holds tables but no reev-ingest schema version (user_version 0):"
                               " another program's database, left as it is")


def migrate(conn: apsw.Connection, path: Path, migrating: Callable[[str], None] | None):
    """A new database gets schema.sql; an older one its pending migrations around it (see
    Migration). schema.sql also creates what is missing from any version. `migrating(what)`
    is told when a migration starts, and again every MIGRATION_NOTICE_SECONDS until it ends."""
    version = pragma(conn, "user_version")[0][0]
    if version > SCHEMA_VERSION:
        raise Incompatible(f"database schema {version} is newer than this daemon ({SCHEMA_VERSION})")
    pending = [m for v, m in MIGRATIONS.items() if 0 < version < v]
    what = f"migrating the database schema from version {version} to {SCHEMA_VERSION}"
    if pending:
        log.info("%s: %s", path, what)
        if migrating:
            migrating(what)
            # Told again every MIGRATION_NOTICE_SECONDS while SQLite works: rewriting the
            # events of a big database takes longer than any one start timeout.
            next_notice = time.monotonic() + MIGRATION_NOTICE_SECONDS

            def still_migrating() -> bool:
                nonlocal next_notice
                if time.monotonic() >= next_notice:
                    migrating(what)
                    next_notice = time.monotonic() + MIGRATION_NOTICE_SECONDS
                return False     # go on
            conn.set_progress_handler(still_migrating, 1_000_000)
    try:
        with conn:
            for statement in (s for m in pending for s in m.before):
                conn.execute(statement).fetchall()
            conn.execute(schema_sql()).fetchall()
            for statement in (s for m in pending for s in m.after):
                conn.execute(statement).fetchall()
            pragma(conn, f"user_version = {SCHEMA_VERSION}")
    finally:
        conn.set_progress_handler(None)
    if pending:
        # The rewritten tables went through the WAL, which PERSIST_WAL keeps at its largest:
        # give that space back. (The old tables' pages stay in the file as free pages,
        # reused by new rows; `VACUUM` with the daemon stopped returns them, see docs/design.md.)
        pragma(conn, "wal_checkpoint(TRUNCATE)")
        log.info("%s: %s: done", path, what)
