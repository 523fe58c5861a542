"""The benchmark's PostgreSQL server (`BENCH_ONLY=pg`): a throwaway cluster started and stopped
by tests/pgcluster.py (the one start/stop implementation), a fresh database per run, and what
the server spent: pg_stat_statements' execution time per database, and the CPU time of the
server's processes read from /proc.

The cluster lives in a temporary folder (`postgres`, who runs it when we are root, must be able
to enter it) on the same disk as the benchmark's SQLite files, with the settings of
tests/pgcluster.py (fsync and synchronous_commit on, shared_buffers 64 MB): a test machine's
server, not a tuned one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from tests import pgcluster

TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """A cluster for one benchmark run: `with Server() as pg: url = pg.fresh("bench")`."""

    def __enter__(self) -> Server:
        if pgcluster.bindir() is None:
            raise RuntimeError("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="reev-bench-pg-"))
        try:
            self.cluster = pgcluster.start(self.root)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.admin_url = self.cluster.url()
        return self

    def __exit__(self, *exc):
        try:
            pgcluster.stop(self.root)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def fresh(self, name: str) -> str:
        """The URL of database `name`, dropped first if it exists: empty, for one run."""
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return pgcluster.database_url(self.admin_url, name)

    def reset_statements(self):
        """Start pg_stat_statements' counts again (every database's)."""
        query(self.admin_url, "SELECT pg_stat_statements_reset()")

    def statement_seconds(self, url: str, containing: str = "") -> tuple[float, int]:
        """pg_stat_statements since the last reset, for the database `url` names (and the
        statements whose text contains `containing`): the summed execution time (seconds;
        planning not included) and the calls."""
        ms, calls = query(self.admin_url, "SELECT coalesce(sum(s.total_exec_time), 0), coalesce(sum(s.calls), 0)"
                                          " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                                          " WHERE d.datname = %s AND strpos(s.query, %s) > 0",
                          (pgcluster.dbname_of(url), containing))[0]
        return float(ms) / 1000, int(calls)

    def top_statements(self, url: str, count: int = 10) -> list[tuple[int, float, str]]:
        """pg_stat_statements since the last reset, for the database `url` names: its `count`
        statements that took longest in all (calls, total ms, the statement's text)."""
        return query(self.admin_url, "SELECT s.calls, s.total_exec_time, regexp_replace(s.query, '\\s+', ' ', 'g')"
                                     " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                                     " WHERE d.datname = %s ORDER BY s.total_exec_time DESC LIMIT %s",
                     (pgcluster.dbname_of(url), count))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server has used so far: the postmaster's own and its
        reaped children's (ended sessions), plus that of its children still running."""
        pid = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        ticks = sum(_stat(pid)[11:15])      # utime, stime, cutime, cstime
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            fields = _stat(int(child))
            ticks += sum(fields[11:13]) if fields else 0
        return ticks / TICKS


# What perf/dbgen.py writes that the scale benchmark's routes (status, benchmark detail,
# agent-performance) read, in an order the foreign keys allow: not files nor tool calls.
DBGEN_TABLES = ("benchmarks", "executions", "session_docs", "agent_benchmark_stats")


def copy_dbgen(sqlite_db: Path, url: str, source: str):
    """perf/dbgen.py's rows (a SQLite file) into the empty PostgreSQL database `url`, whose
    schema a daemon made: each table's columns that both schemas have (not PostgreSQL's
    generated ones), `source` where only PostgreSQL's table has one; one COPY per table, one
    transaction. The scale benchmark's large databases, without a back-fill of minutes."""
    import apsw
    lite = apsw.Connection(str(sqlite_db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        with psycopg.connect(url) as conn:
            for table in DBGEN_TABLES:
                theirs = [c for (c,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                    " AND table_name = %s AND is_generated = 'NEVER'", (table,))]
                ours = [row[1] for row in lite.execute(f"PRAGMA table_xinfo({table})") if row[6] == 0]
                columns = [c for c in ours if c in theirs]
                add_source = "source" in theirs and "source" not in ours
                target = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns + ["source"] * add_source)))
                select = f"SELECT {', '.join(f'[{c}]' for c in columns)} FROM {table}"
                with conn.cursor().copy(target) as copy:
                    for row in lite.execute(select):
                        copy.write_row((*row, source) if add_source else row)
            conn.execute("UPDATE meta SET data_generation = 1")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")      # as autovacuum would have by the time a fleet's database is this big
    finally:
        lite.close()


def _stat(pid: int) -> list[int]:
    """/proc/PID/stat's numeric fields after the command name (index 11 is utime); [] if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return [int(x) if x.lstrip("-").isdigit() else 0 for x in text[text.rindex(")") + 2:].split()]


def query(url: str, statement: str, params=()) -> list:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()
