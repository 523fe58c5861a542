"""The stale rule (docs/formats.md §5, daemon/stale.py): a Running run with only an event log that has
had no new byte for --stale-after seconds is Timeout, with why; a new line makes it Running
again, a session file finishes it. The real daemon (live and --once) and the real API on files
whose mtimes are set back with os.utime, as a runner that died long ago leaves them."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest

from daemon import stale as stale_module
from core.run_status import stale_reason
from tests import dbread
from tests import fixtures as fx
from tests.api_client import Api
from tests.conftest import wait_for
from tests.test_live_feed import StreamClient

X = "0f3c6d2e-5b1a-4c8e-9d7f-a1b2c3d4e5f6"
PROMPT = "Send 0.3 SOL to the second wallet."     # the fixture benchmark's: the run is linked to it
BENCH = "301-test-transfer"


def age(path, seconds: float) -> float:
    """Set a file's mtime `seconds` back (whole seconds, as the message shows them); the new mtime."""
    t = float(int(time.time() - seconds))
    os.utime(path, (t, t))
    return t


def since(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, timezone.utc).isoformat().replace("+00:00", "Z")


def status_of(db, execution_id: str = X) -> str | None:
    row = db.execution(execution_id)
    return row and row["status"]


@pytest.fixture
def api(workspace, tmp_path):
    api = Api(workspace.db_path, tmp_path / "api.log")
    yield api
    api.close()


def test_a_quiet_log_times_out_with_why_and_a_new_line_makes_it_running_again(workspace, live_daemon, db, api):
    """Timeout comes from the daemon, so the database, every route that shows the run and its
    ETags agree; a new line reopens it; left quiet again, it times out again by itself (the loop
    wakes when it is due); a session file with a result then finishes it for good."""
    workspace.write_benchmark(BENCH, fx.benchmark_yaml())
    daemon = live_daemon("--stale-after", "3")
    log = workspace.append_events(X, [fx.prompt_line(PROMPT, at=0), fx.tool_input_line("sol_transfer", at=1)])
    daemon.wait_for(lambda: status_of(db) == "Running" and db.execution(X)["benchmark_id"] == BENCH)
    status_path = f"/api/v1/benchmarks/{BENCH}/status/{X}"
    running = api.request(status_path)
    assert running.json()["error_message"] is None and running.json()["progress"] == 0.0

    mtime = age(log, 3600)        # the runner died an hour ago (inotify tells of the attribute change)
    daemon.wait_for(lambda: status_of(db) == "Timeout", what="the quiet run timed out")
    row = db.execution(X)
    assert row["stale_reason"] == stale_reason(mtime, 3) == (
        f"no new event line since {since(mtime)} (--stale-after 3 s) and no session file:"
        " the runner probably stopped")
    assert row["success"] is None and row["finished_at"] is None      # no result: not a finished run
    assert api.request(status_path, headers={"If-None-Match": running.etag}).status == 200   # a new ETag
    state = api.get(status_path)
    assert (state["status"], state["progress"], state["error_message"], state["result_data"]) == (
        "Timeout", 1.0, row["stale_reason"], None)
    assert api.get(f"/api/v1/benchmarks/{BENCH}/status")["status"] == "Timeout"
    assert api.get(f"/api/v1/benchmarks/{BENCH}")["recent_executions"][0]["status"] == "timeout"
    for route in ("execution-logs", "transaction-logs"):
        logs = api.get(f"/api/v1/{route}/{BENCH}?execution_id={X}")
        assert (logs["status"], logs["is_running"], logs["progress"]) == ("timeout", False, 1.0), route
    assert "Timeout" in daemon.stderr() and X in daemon.stderr()

    workspace.append_events(X, [fx.tool_output_line(True, at=2)])       # the runner is back
    daemon.wait_for(lambda: status_of(db) == "Running", what="Running again after a new line")
    assert db.execution(X)["stale_reason"] is None and db.event_count(X) == 3
    state = api.get(status_path)
    assert (state["status"], state["progress"], state["error_message"]) == ("Running", 0.0, None)
    assert api.get(f"/api/v1/execution-logs/{BENCH}?execution_id={X}")["is_running"] is True

    # quiet again: due 3 s after that line, found by the loop's own wake-up (no file event)
    daemon.wait_for(lambda: status_of(db) == "Timeout", timeout=20, what="timed out again by itself")

    workspace.write_session(X, fx.session_doc(X, success=True, score=1.0))
    daemon.wait_for(lambda: status_of(db) == "Completed", what="the session file finished it")
    assert db.execution(X)["stale_reason"] is None
    state = api.get(status_path)
    assert (state["status"], state["error_message"], state["result_data"]["score"]) == ("Completed", None, 1.0)
    # its log stays old, but a run a file finished is never timed out: a later line changes nothing
    workspace.append_events(X, [fx.step_complete_line(at=3)])
    daemon.wait_for(lambda: db.event_count(X) == 4)
    age(log, 3600)
    other = workspace.append_events("after", [fx.prompt_line("p", at=0)])
    age(other, 3600)
    daemon.wait_for(lambda: status_of(db, "after") == "Timeout")      # (looked at since)
    assert status_of(db) == "Completed"


def test_the_event_stream_delivers_the_timeout_and_the_reopening(workspace, live_daemon, db, tmp_path):
    daemon = live_daemon("--stale-after", "60")
    api = Api(workspace.db_path, tmp_path / "api.log", "--stream-heartbeat", "0.5")
    try:
        stream = StreamClient(api, f"?execution_id={X}")
        wait_for(lambda: stream.comments >= 1, what="the stream to be open")
        log = workspace.append_events(X, [fx.prompt_line("p", at=0)])
        daemon.wait_for(lambda: stream.statuses() == [(X, "Running")])
        age(log, 120)
        daemon.wait_for(lambda: stream.statuses() == [(X, "Running"), (X, "Timeout")], what="Timeout streamed")
        workspace.append_events(X, [fx.step_complete_line(at=1)])
        daemon.wait_for(lambda: stream.statuses() == [(X, "Running"), (X, "Timeout"), (X, "Running")])
        stream.close()
    finally:
        api.close()


def test_an_old_log_found_at_start_is_timeout_at_once_live_and_once(workspace, run_once, live_daemon, db, backend):
    """The clock is the log's mtime in its checkpoint: it holds across restarts, and with the
    default --stale-after. A session file without a result keeps its run Running; one deleted
    counts as none."""
    old = workspace.append_events(X, [fx.prompt_line("p", at=0)])
    unfinished = workspace.append_events("unfinished", [fx.prompt_line("p", at=0)])
    workspace.write_session("unfinished", fx.session_doc("unfinished", finished=False))
    for path in (old, unfinished):
        age(path, 7200)
    run_once("--stale-after", "0")                     # off: both Running, their checkpoints old
    assert (status_of(db), status_of(db, "unfinished")) == ("Running", "Running")
    run_once()                                         # the default, 1800 s: X at once
    assert (status_of(db), status_of(db, "unfinished")) == ("Timeout", "Running")
    assert "(--stale-after 1800 s)" in db.execution(X)["stale_reason"]

    workspace.append_events(X, [fx.step_complete_line(at=1)])
    age(old, 7200)                                     # (a line, then quiet again while stopped)
    run_once("--stale-after", "0")
    assert status_of(db) == "Running"
    daemon = live_daemon()                             # the default again, live
    daemon.wait_for(lambda: status_of(db) == "Timeout", what="Timeout once caught up")
    assert status_of(db, "unfinished") == "Running"
    workspace.session_path("unfinished").unlink()      # only its event log is left
    daemon.wait_for(lambda: status_of(db, "unfinished") == "Timeout", what="Timeout once the session file is gone")


def test_a_session_file_decides_a_timed_out_run(workspace, run_once, db, backend):
    for eid in ("ends-ok", "ends-failed", "still-going"):
        age(workspace.append_events(eid, [fx.prompt_line("p", at=0)]), 7200)
    run_once()
    assert {e["execution_id"]: e["status"] for e in db.executions()} == dict.fromkeys(
        ("ends-ok", "ends-failed", "still-going"), "Timeout")
    workspace.write_session("ends-ok", fx.session_doc("ends-ok", success=True, score=0.5))
    workspace.write_session("ends-failed", fx.session_doc("ends-failed", success=False))
    workspace.write_session("still-going", fx.session_doc("still-going", finished=False))
    run_once()
    rows = {e["execution_id"]: (e["status"], e["stale_reason"], e["score"]) for e in db.executions()}
    assert rows == {"ends-ok": ("Completed", None, 0.5), "ends-failed": ("Failed", None, 0.0),
                    "still-going": ("Running", None, None)}
    stats = db.rows("SELECT agent_type, finished, succeeded FROM agent_benchmark_stats")
    assert stats == [("deterministic", 2, 1)]         # finished runs count; a Timeout never did


def test_stale_after_0_turns_the_rule_off(workspace, run_once, db, backend):
    age(workspace.append_events(X, [fx.prompt_line("p", at=0)]), 10 * 365 * 86400)
    run_once("--stale-after", "0")
    assert status_of(db) == "Running" and db.execution(X)["stale_reason"] is None


def test_a_log_that_changed_since_its_checkpoint_is_read_not_timed_out(tmp_path):
    """The lstat before a timeout: inotify can be late, so a log whose checkpoint is old but
    which has grown since is queued to be read, and its run stays Running. (In process, on a
    real store and real files: the race is not one a test can time from outside.)"""
    from daemon.ingest import Ingestor, Limits
    from daemon.stale import StaleRuns
    from daemon.storage.sqlite import SqliteStore as Store

    sessions = tmp_path / "sessions"
    sessions.mkdir()
    quiet, grown = (sessions / f"enhanced_otel_{eid}.jsonl" for eid in ("quiet", "grown"))
    for path in (quiet, grown):
        path.write_bytes(fx.jsonl([fx.prompt_line("p", at=0)]))
        age(path, 7200)
    db = tmp_path / "reev.db"
    store = Store(db)
    try:
        ingestor = Ingestor(store, sessions, tmp_path / "benchmarks", Limits())
        with store.batch():
            for path in (quiet, grown):
                ingestor.process(str(path))
        queued = []
        stale = StaleRuns(store, 1800, queued.append)
        stale.logs_written(store.take_oldest_log_mtime())
        assert stale.due()
        with open(grown, "ab") as f:                   # a line the daemon has not heard of yet
            f.write(fx.jsonl([fx.step_complete_line(at=1)]))
        age(grown, 7200)                               # (even with its mtime set back)
        assert stale.look() == 1 and queued == [str(grown)]
        statuses = dict(dbread.query(db, "SELECT execution_id, status FROM executions"))
        assert statuses == {"quiet": "Timeout", "grown": "Running"}
        with store.batch():
            ingestor.process(str(grown))               # read: its checkpoint is the file again
        stale.logs_written(store.take_oldest_log_mtime())
        assert stale.look() == 0
        statuses = dict(dbread.query(db, "SELECT execution_id, status FROM executions"))
        assert statuses == {"quiet": "Timeout", "grown": "Timeout"}
    finally:
        store.close()


def test_a_look_times_out_a_bounded_number_of_runs_and_comes_back_for_the_rest(workspace, monkeypatch):
    """CHECK_LIMIT runs per transaction; the next look comes at once while there are more. The
    next look after that is planned for when the oldest remaining candidate is due."""
    from daemon.ingest import Ingestor, Limits
    from daemon.stale import SLACK_SECONDS, StaleRuns
    from daemon.storage.sqlite import SqliteStore as Store

    monkeypatch.setattr(stale_module, "CHECK_LIMIT", 2)
    for n in range(5):
        age(workspace.append_events(f"run-{n}", [fx.prompt_line("p", at=0)]), 7200 - n)
    fresh = workspace.append_events("fresh", [fx.prompt_line("p", at=0)])
    store = Store(workspace.db_path)
    try:
        ingestor = Ingestor(store, workspace.sessions, workspace.benchmarks, Limits())
        with store.batch():
            for path in sorted(workspace.sessions.iterdir()):
                ingestor.process(str(path))
        stale = StaleRuns(store, 1800, lambda path: pytest.fail(f"{path} queued"))
        stale.look_by()
        generations, looks = [store.generation], 0
        while stale.due():
            stale.look()
            looks += 1
            generations.append(store.generation)
        assert looks == 3 and generations == [generations[0] + i for i in range(4)]   # one transaction each
        timed_out = [r[0] for r in dbread.query(
            workspace.db_path, "SELECT execution_id FROM executions WHERE status = 'Timeout' ORDER BY execution_id")]
        assert timed_out == [f"run-{n}" for n in range(5)]
        assert stale.due_at == pytest.approx(fresh.stat().st_mtime + 1800 + SLACK_SECONDS)
    finally:
        store.close()
