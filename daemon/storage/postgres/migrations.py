"""The schema of a PostgreSQL database: schema.sql (beside this module) for a new one, a
refusal for another program's or a newer one; the version is meta.schema_version. Created or
migrated under an advisory lock, in one transaction (DDL is transactional here): daemons that
start at the same moment wait for the first, then find the schema made."""

import logging
import uuid
from pathlib import Path

import psycopg

from daemon.storage.errors import Incompatible
from daemon.storage.postgres.connection import MIGRATE_KEY, one_value

log = logging.getLogger("reev.store")

# This backend's own numbering. 2: sources.retried_batches_total, which schema.sql adds to a
# version 1 database (it runs again whenever the version differs): no numbered migration yet.
SCHEMA_VERSION = 2
SCHEMA = Path(__file__).with_name("schema.sql")


def migrate(conn: psycopg.Connection, source: str):
    """The schema, made or checked; this source's row in `sources`."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_KEY,))
        version = _version(conn)
        if version is None:
            if one_value(conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                      " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'S')")):
                raise Incompatible("its schema already holds tables but no reev-ingest meta table:"
                                   " another program's database, left as it is")
        elif version > SCHEMA_VERSION:
            raise Incompatible(f"database schema {version} is newer than this daemon ({SCHEMA_VERSION})")
        if version != SCHEMA_VERSION:
            if version is None:
                log.info("creating the database schema (version %d)", SCHEMA_VERSION)
            else:
                log.info("migrating the database schema from version %d to %d", version, SCHEMA_VERSION)
            conn.execute(SCHEMA.read_text())
            conn.execute("INSERT INTO meta (schema_version, database_id) VALUES (%s, %s)"
                         " ON CONFLICT (one) DO UPDATE SET schema_version = excluded.schema_version",
                         (SCHEMA_VERSION, uuid.uuid4().hex[:16]))
        conn.execute("INSERT INTO sources (source) VALUES (%s) ON CONFLICT (source) DO NOTHING", (source,))


def _version(conn: psycopg.Connection) -> int | None:
    if one_value(conn.execute("SELECT to_regclass('meta')")) is None:
        return None
    row = conn.execute("SELECT schema_version FROM meta").fetchone()
    return row[0] if row else 0
