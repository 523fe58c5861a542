"""The storage layer's own contract, on real SQLite files: the engine's errors reach callers
as the storage layer's (daemon/storage/errors.py), each the kind that says what happened."""

import apsw
import pytest

from daemon.storage.sqlite import SqliteStore as Store, canonical_dump, engine, status_report
from daemon.storage import Busy, Corrupt, Full, Incompatible, StorageError, Unavailable
from tests.reliability.test_db_faults import fill, small_filesystem


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
                               " if m == 'apsw' or m.startswith('daemon.storage.sqlite')))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
