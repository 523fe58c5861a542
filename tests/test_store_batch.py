"""The unit of work of both stores, driven as the service loop drives it: a file that fails midway
is undone alone, with what the store keeps for the batch's end (PostgreSQL keeps a batch's
checkpoints, appends to runs, tool calls' ends and session documents in memory and writes them
at its end, or earlier for a statement that must see them: then inside the failing file's
savepoint), and the rest of the batch commits. Real stores, real databases."""

import contextlib
import subprocess

import psycopg
import pytest

from daemon.reader import Checkpoint
from daemon.storage import open_store
from daemon.storage.records import LogAggregates, SessionUpdate
from tests.conftest import fresh_database


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "postgres":
        with fresh_database(request.getfixturevalue("pg_server")) as url:
            yield url
    else:
        yield tmp_path / "reev.db"


class Fails(Exception):
    """A file's processing failing midway (a bug: the service records it and goes on)."""


def _file(store, work):
    """One file's work inside the batch, as the service loop runs it."""
    with contextlib.suppress(Fails), store.savepoint():
        work()


def _cp(n: int) -> Checkpoint:
    return Checkpoint(dev=1, inode=n, size=10 * n, offset=10 * n, line_no=n, mtime_ns=n)


def _appended(lines: int) -> LogAggregates:
    return LogAggregates(lines=lines, tool_calls=0, steps=0, first_ts=100.0, last_ts=100.0 + lines,
                         first_prompt=None, recorded_session_id=None)


def _session() -> SessionUpdate:
    return SessionUpdate(status="Running", finished=False, doc='{"session_id": "s"}', recorded_session_id="s",
                         benchmark_id=None, agent_type="deterministic", start_time=50.0, end_time=None, result=None)


def test_a_file_that_fails_midway_is_undone_alone_with_what_the_batch_kept(db):
    store = open_store(db, "host-1")
    try:
        with store.batch():               # two runs stored before
            one, two = store.execution("run-1").id, store.execution("run-2").id
        with store.batch():
            def first():
                store.save_checkpoint("/s/a.jsonl", "events", "run-1", _cp(1), ingested=True)
                store.add_event_aggregates(one, _appended(3))
                store.update_session(one, _session())

            def failing():
                store.save_checkpoint("/s/b.jsonl", "events", "run-2", _cp(2), ingested=True)
                store.add_event_aggregates(two, _appended(5))
                # statements that must see what the batch kept so far (the first file's too):
                store.event_logs("run-2")             # reads the files table
                store.set_status(two, "Failed")       # reads and updates runs' rows
                store.reset_event_log(one)            # reads a session document
                raise Fails

            def last():
                store.save_checkpoint("/s/c.jsonl", "events", "run-2", _cp(3), ingested=True)

            for work in (first, failing, last):
                _file(store, work)
        # what the store tells (PostgreSQL: from what it keeps), then what the database holds
        assert store.checkpoint("/s/a.jsonl") == _cp(1)
        assert store.checkpoint("/s/b.jsonl") is None
        assert store.checkpoint("/s/c.jsonl") == _cp(3)
        assert store.execution("run-2").status == "Running"
    finally:
        store.close()
    assert _rows(db, 'SELECT path, "offset" FROM files ORDER BY path') == [("/s/a.jsonl", 10), ("/s/c.jsonl", 30)]
    rows = _rows(db, "SELECT execution_id, event_count, status FROM executions ORDER BY execution_id")
    assert rows == [("run-1", 3, "Running"), ("run-2", 0, "Running")]
    assert _rows(db, "SELECT count(*) FROM session_docs") == [(1,)]


def _rows(db, sql: str) -> list[tuple]:
    if isinstance(db, str):
        with psycopg.connect(db) as conn:
            return conn.execute(sql).fetchall()
    import apsw
    conn = apsw.Connection(str(db))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_postgres_back_fill_sends_few_statements_per_file(pg_server, tmp_path):
    """Issue 18's back-fill figure (6a) was set by round trips: 8.6 statements per file, each
    waited for. The batch's rows, checkpoints, appends, ends of tool calls and session documents
    now go in a few statements per batch, and most files send none of their own (no savepoint
    either). Counted by pg_stat_statements on the test's own database: a count, not a time, so
    it holds on a loaded machine."""
    from tests import fixtures as fx
    from tests.conftest import clean_env, daemon_command
    sessions, benchmarks = tmp_path / "sessions", tmp_path / "benchmarks"
    sessions.mkdir()
    benchmarks.mkdir()
    runs = 40
    for n in range(runs):
        lines = [fx.prompt_line("Send 0.3 SOL.", at=0)]
        for k in range(5):
            lines += [fx.tool_input_line("transfer", {"k": k}, at=2 * k + 1), fx.tool_output_line(at=2 * k + 2)]
        (sessions / f"enhanced_otel_run-{n}.jsonl").write_bytes(fx.jsonl(lines))
        (sessions / f"session_run-{n}.json").write_bytes(fx.session_bytes(fx.session_doc(f"s-{n}")))
    with fresh_database(pg_server) as url:
        subprocess.run(daemon_command() + ["--sessions-dir", str(sessions), "--benchmarks-dir", str(benchmarks),
                                           "--db", url, "--once", "--stale-after", "0"],
                       check=True, timeout=120, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True)
        dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with psycopg.connect(pg_server, autocommit=True) as admin:
            if admin.execute("SELECT to_regclass('pg_stat_statements')").fetchone()[0] is None:
                pytest.skip("the test server has no pg_stat_statements (tests/pgcluster.py's has)")
            (calls,) = admin.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = %s", (dbname,)).fetchone()
        assert _rows(url, "SELECT count(*) FROM events") == [(runs * 11,)]
    # (the schema's creation and the daemon's start count too; 8.7 per file before the batch kept
    # its writes for its end, 2.2 after)
    assert calls / (2 * runs) < 3, f"{calls} statements for {2 * runs} files"
