"""The storage layer's own contract, on real SQLite files: the engine's errors reach callers
as the storage layer's (daemon/storage/errors.py), each the kind that says what happened."""

import queue

import apsw
import pytest

from daemon.storage import Busy, Corrupt, Full, Incompatible, StorageError, Unavailable
from daemon.storage.sqlite import SqliteStore, canonical_dump, engine, status_report
from tests.reliability.test_db_faults import fill, small_filesystem

Store = SqliteStore


def test_a_file_that_is_no_database_is_corrupt(tmp_path):
    db = tmp_path / "reev.db"
    db.write_bytes(b"not a database, but text long enough to be read as a header" * 100)
    with pytest.raises(Corrupt) as caught:
        Store(db)
    assert caught.value.engine_error == "NotADBError" and not isinstance(caught.value.__cause__, StorageError)


def test_a_folder_in_place_of_the_database_is_unavailable(tmp_path):
    (tmp_path / "reev.db").mkdir()
    with pytest.raises(Unavailable):
        Store(tmp_path / "reev.db")


def test_another_programs_database_is_incompatible_and_left_alone(tmp_path):
    db = tmp_path / "other.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE theirs (x)")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(Incompatible, match="another program's database"):
        Store(db)
    assert db.read_bytes() == before


def test_a_database_held_by_another_writer_is_busy(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 50)
    db = tmp_path / "reev.db"
    Store(db).close()
    store = Store(db)
    other = apsw.Connection(str(db))
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Busy) as caught:
            with store.batch():
                store.record_error("/x", 1, 0, "bad")
        assert caught.value.engine_error == "BusyError"
        other.execute("ROLLBACK")
        with store.batch():        # the failed batch left nothing open
            store.record_error("/x", 1, 0, "bad")
    finally:
        other.close()
        store.close()


def test_a_full_disk_is_full_and_the_batch_leaves_nothing(tmp_path):
    with small_filesystem(tmp_path / "small", "2M") as folder:
        store = Store(folder / "reev.db")
        try:
            with store.batch():
                store.record_error("/kept", 1, 0, "before the disk filled")
            filler = fill(folder)
            with pytest.raises(Full) as caught:
                with store.batch():
                    for line in range(1, 200):
                        store.record_error("/lost", line, 0, "x" * 10_000)
            assert caught.value.engine_error == "FullError"
            filler.unlink()
            rows = store.conn.execute("SELECT path FROM ingest_errors").fetchall()
            assert rows == [("/kept",)]
        finally:
            store.close()


def test_the_operators_queries_raise_storage_errors(tmp_path):
    db = tmp_path / "reev.db"
    Store(db).close()
    conn = apsw.Connection(str(db))
    conn.execute("DROP TABLE benchmarks")
    conn.execute("DROP TABLE executions")
    with pytest.raises(StorageError):
        status_report(conn)
    with pytest.raises(StorageError):
        list(canonical_dump(conn))
    conn.close()


@pytest.mark.parametrize("module", ["daemon.read_worker", "daemon.service"])
def test_the_loop_and_the_read_worker_know_the_store_by_its_interface_only(module):
    """ingest.py, service.py and stale.py import the interface, never a backend: the read worker
    (which imports ingest.py) loads no SQLite, and a second backend changes none of them."""
    import subprocess
    import sys
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(sorted(m for m in sys.modules"
                               " if m in ('apsw', 'psycopg') or m.startswith(('daemon.storage.sqlite',"
                               " 'daemon.storage.postgres'))))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


# ------------------------------------------------------------------------------ the domain rules

def _shadow_triggers(conn):
    """Schema 6's ten triggers, unchanged but for the tables they write (shadow_*): what the
    triggers would have kept, beside what the store keeps itself (daemon/storage/rules.py)."""
    import re
    from pathlib import Path
    schema_v6 = (Path(__file__).parent / "data" / "schema_v6.sql").read_text()
    triggers = re.findall(r"CREATE TRIGGER IF NOT EXISTS .*?\nEND;", schema_v6, flags=re.S)
    assert len(triggers) == 10
    for table in ("agent_benchmark_stats", "scope_generations", "changes"):
        conn.execute(f"CREATE TABLE shadow_{table} AS SELECT * FROM {table} WHERE 0")
    for sql in triggers:
        sql = sql.replace("CREATE TRIGGER IF NOT EXISTS ", "CREATE TRIGGER shadow_")
        sql = re.sub(r"\b(INTO|UPDATE|FROM) (agent_benchmark_stats|scope_generations|changes)\b", r"\1 shadow_\2", sql)
        sql = sql.replace("ON CONFLICT (agent_type, benchmark_id) DO", "ON CONFLICT DO").replace(
            "ON CONFLICT (scope) DO", "ON CONFLICT DO")
        conn.execute(sql)
    conn.execute("CREATE UNIQUE INDEX shadow_stats_key ON shadow_agent_benchmark_stats (agent_type, benchmark_id)")
    conn.execute("CREATE UNIQUE INDEX shadow_scope_key ON shadow_scope_generations (scope)")


def _kept(conn, prefix: str) -> tuple:
    return (conn.execute(f"SELECT agent_type, benchmark_id, finished, succeeded, scored, round(score_sum, 9)"
                         f" FROM {prefix}agent_benchmark_stats ORDER BY 1, 2").fetchall(),
            conn.execute(f"SELECT scope, generation FROM {prefix}scope_generations ORDER BY 1").fetchall(),
            conn.execute(f"SELECT generation, kind, execution_id, benchmark_id, agent_type, status, score, error_id"
                         f" FROM {prefix}changes ORDER BY {'seq' if not prefix else 'rowid'}").fetchall())


def test_the_store_keeps_the_rules_exactly_as_the_triggers_did(tmp_path):
    """Statistics, ETag scopes and the change feed, through runs that appear, finish, change
    agent, score and benchmark, lose their benchmark, time out and come back, benchmarks that
    appear, change and go, and bad lines: the same rows, in the same order, as schema 6's
    triggers wrote."""
    from core import run_status
    from core.ids import classify_benchmark_file, classify_session_file
    from daemon.ingest import Ingestor, Limits, Scanned
    from daemon.offloop import OffLoop
    from tests import fixtures as fx

    sessions, benchmarks = tmp_path / "sessions", tmp_path / "benchmarks"
    sessions.mkdir()
    benchmarks.mkdir()
    store = Store(tmp_path / "reev.db")
    _shadow_triggers(store.conn)
    parsed = queue.Queue()          # benchmarks are parsed off the loop, then looked at again
    ingestor = Ingestor(store, sessions, benchmarks, Limits(settle_seconds=0), OffLoop(done=parsed.put))

    def write(path, data):
        path.write_bytes(data)
        return path

    def batch(*paths, parsing=True):
        with store.batch():
            for path in paths:
                classify = classify_benchmark_file if path.parent == benchmarks else classify_session_file
                with store.savepoint():
                    ingestor.process(str(path), Scanned(classify(path.name), store.checkpoint(str(path))))
        definitions = [p for p in paths if p.parent == benchmarks and p.exists()]
        if parsing and definitions:
            for _ in definitions:
                parsed.get(timeout=30)
            batch(*definitions, parsing=False)

    def log(run):
        return sessions / f"enhanced_otel_{run}.jsonl"

    def session(run, **doc):
        return write(sessions / f"session_{run}.json", fx.jsonl([]) + fx.line_text(fx.session_doc(**doc)))

    try:
        b1 = write(benchmarks / "b1.yml", fx.benchmark_yaml("b1", prompt="first task").encode())
        b2 = write(benchmarks / "b2.yml", fx.benchmark_yaml("b2", prompt="second task").encode())
        a = write(log("a"), fx.jsonl([fx.prompt_line("first task", at=0), fx.step_complete_line(at=1)]))
        b = write(log("b"), fx.jsonl([fx.prompt_line("second task", at=0)]))
        batch(b1, b2, a, b, session("b", benchmark_id="b2", success=True, score=0.5, agent_type="x"),
              session("c", benchmark_id=None, finished=False))
        batch(session("b", benchmark_id="b2", success=False, score=0.1, agent_type="y"),
              write(b1, fx.benchmark_yaml("b1", prompt="another task").encode()),
              write(a, a.read_bytes() + b"not json\n" + fx.jsonl([fx.step_complete_line(at=2)])))
        b2.unlink()
        batch(b2, session("c", benchmark_id="b1", success=True, score=None, agent_type="x"),
              session("b", benchmark_id="b1", success=True, score=1.0, agent_type="y"))
        with store.batch():
            store.set_status(store.execution("a").id, run_status.STALE, "quiet")
        batch(write(a, a.read_bytes() + fx.jsonl([fx.step_complete_line(at=3)])),
              write(benchmarks / "b3.yml", fx.benchmark_yaml("b1", prompt="first task").encode()))
        batch(session("b", benchmark_id="b1", success=True, score=0.7, agent_type="y"))   # only the score
        batch(session("c", benchmark_id="b9", success=True, score=None, agent_type="x"))  # only the benchmark
        stats, scopes, changes = _kept(store.conn, "")
        assert (stats, scopes, changes) == _kept(store.conn, "shadow_")
        assert len(stats) >= 2 and {"benchmarks", "results", "benchmark:b1", "benchmark:b2"} <= {s for s, _ in scopes}
        assert {c[1] for c in changes} == {"execution", "ingest-error"} and len(changes) >= 8
    finally:
        store.close()


@pytest.mark.parametrize("engine_name", ["sqlite", "postgres"])
def test_each_store_implements_every_method_of_the_interface_with_its_parameters(engine_name):
    """What ingest.py, service.py and stale.py call is the interface; each backend has all of it,
    with the same parameters."""
    import inspect

    from daemon.storage import interface
    from daemon.storage.postgres import PostgresStore
    store_class = {"sqlite": SqliteStore, "postgres": PostgresStore}[engine_name]
    members = [n for n, v in vars(interface.Store).items() if not n.startswith("_") and callable(v)]
    assert "batch" in members and "update_session" in members
    for name in members:
        wanted = list(inspect.signature(getattr(interface.Store, name)).parameters)
        given = inspect.signature(getattr(store_class, name)).parameters
        assert list(given)[:len(wanted)] == wanted, name
        assert all(p.default is not p.empty for p in list(given.values())[len(wanted):]), name   # extras optional
    for name in ("generation", "changed", "marked_missing"):
        assert hasattr(store_class, name) or name in interface.Store.__annotations__


def test_each_store_method_translates_errors_once():
    """Public methods are wrapped once (a second layer cost a back-fill a wrapped call per store
    call, 42 000 of them for 26 000 lines); batch and savepoint, which translate themselves,
    are not wrapped again."""
    from daemon.storage.sqlite.store import SqliteStore

    def layers(fn) -> int:
        n = 0
        while hasattr(fn, "__wrapped__"):
            fn, n = fn.__wrapped__, n + 1
        return n

    for name in ("checkpoint", "save_checkpoint", "execution", "insert_events", "mark_changed", "__init__"):
        assert layers(getattr(SqliteStore, name)) == 1, name
    for name in ("batch", "savepoint"):          # contextmanager over one translating layer
        assert layers(getattr(SqliteStore, name)) == 2, name
