"""One writer per database (daemon/lock.py): a second `reev-ingestd` on a database that another
one holds exits 2 with a line naming the database and the holder's pid, whatever the timing and
whatever the path it is reached by; the lock goes with its holder however it dies; `reev-ingestd
status` says whether a daemon holds the database now. And the database itself: a path that is
no regular file, or another program's database, is refused before anything is written; one
deleted or replaced while the daemon runs stops it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile

import apsw
import pytest

from daemon.lock import holder
from tests import fixtures as fx
from tests.conftest import clean_env, daemon_command, wait_for


def write_runs(workspace, runs: int, lines: int) -> int:
    """`runs` finished executions, each a session file and an event log of `lines` lines (a
    tool call and a step every four lines); returns the number of event lines."""
    kinds = [lambda i: fx.tool_input_line("sol_transfer", {"amount": i}, at=i),
             lambda i: fx.tool_output_line(True, f'["{i}"]', at=i),
             lambda i: fx.step_complete_line(f"step-{i}", at=i),
             lambda i: fx.unknown_event_line("Tick", at=i)]
    for r in range(runs):
        workspace.append_events(f"run-{r}", [fx.prompt_line(f"prompt {r}", at=0)]
                                + [kinds[i % 4](i) for i in range(1, lines)])
        workspace.write_session(f"run-{r}", fx.session_doc(f"run-{r}", success=True, score=1.0))
    return runs * lines


def counted_once(db, runs: int, lines: int):
    """Every execution's counts are those of its rows, and every line is there once."""
    assert db.scalar("SELECT count(*) FROM executions") == runs
    assert db.scalar("SELECT count(*) FROM events") == runs * lines
    wrong = db.rows(
        "SELECT execution_id, event_count, tool_call_count, step_count FROM executions x"
        " WHERE event_count != (SELECT count(*) FROM events e WHERE e.exec_id = x.id)"
        " OR tool_call_count != (SELECT count(*) FROM tool_calls t WHERE t.exec_id = x.id)"
        " OR step_count != (SELECT count(*) FROM events e WHERE e.exec_id = x.id AND e.event_type = 'StepComplete')")
    assert wrong == [], wrong[:5]


def refusal(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def status(db_path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(daemon_command() + ["status", "--db", str(db_path), *extra], capture_output=True,
                          text=True, env=clean_env(), timeout=30)


def test_a_second_daemon_on_a_held_database_exits_2_naming_the_holder(workspace, live_daemon, run_once):
    first = live_daemon()
    line = refusal(run_once(expect_rc=2).stderr)
    assert str(workspace.db_path) in line and f"pid {first.pid}" in line, line
    second = live_daemon(ready=False)
    assert second.proc.wait(30) == 2
    line = refusal(second.stderr())
    assert str(workspace.db_path) in line and f"pid {first.pid}" in line, line
    first.check_alive()
    workspace.append_events("after", [fx.prompt_line("still the writer")])
    first.wait_for(lambda: workspace.db.event_count("after") == 1)


def test_two_back_fills_started_together_count_every_line_once(workspace, db):
    """Both claimed every line once: 58 events counted where 29 were stored."""
    runs, lines = 300, 30
    write_runs(workspace, runs, lines)
    procs = [subprocess.Popen(daemon_command() + workspace.args() + ["--once"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
             for _ in range(2)]
    outcomes = sorted((p.wait(120), p.stderr.read(), p.pid) for p in procs)
    for p in procs:
        p.stderr.close()
        p.stdout.close()
    assert [rc for rc, _, _ in outcomes] == [0, 2], outcomes
    (_, _, winner), (_, refused, _) = outcomes
    assert f"pid {winner}" in refusal(refused)
    counted_once(db, runs, lines)


def test_the_lock_goes_with_a_daemon_killed_by_sigkill_and_its_worker_never_holds_it(workspace, live_daemon, db):
    runs, lines = 400, 40
    write_runs(workspace, runs, lines)
    d = live_daemon(ready=False, log_level="info")
    log = d.wait_log("read worker started", timeout=60)
    worker = int(re.search(r"read worker started \(pid (\d+)\)", log).group(1))
    assert holder(workspace.db_path) == d.pid
    d.kill()
    # the kernel let go with the process: nobody holds it, even if the worker still lives a moment
    wait_for(lambda: holder(workspace.db_path) is None, timeout=5, what="the lock to go")
    assert worker != d.pid
    again = live_daemon(ready=False)
    again.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == runs * lines, timeout=120,
                   what="the back-fill finished by the next daemon")
    assert holder(workspace.db_path) == again.pid
    counted_once(db, runs, lines)


def test_status_says_whether_a_daemon_holds_the_database_now(workspace, live_daemon, run_once):
    """Right after a --once run the heartbeat is fresh, but nothing is running: degraded."""
    run_once()
    proc = status(workspace.db_path)
    assert proc.returncode == 1, proc.stdout
    assert "DEGRADED" in proc.stdout and "daemon     not running" in proc.stdout
    assert f"no reev-ingestd holds the writer lock of {workspace.db_path}" in proc.stdout
    report = json.loads(status(workspace.db_path, "--json").stdout)
    assert (report["healthy"], report["daemon_running"], report["daemon_pid"]) == (False, False, None)

    d = live_daemon()
    proc = status(workspace.db_path)
    assert proc.returncode == 0, proc.stdout
    assert f"daemon     running (pid {d.pid})" in proc.stdout
    report = json.loads(status(workspace.db_path, "--json").stdout)
    assert (report["healthy"], report["daemon_running"], report["daemon_pid"]) == (True, True, d.pid)
    assert holder(workspace.db_path) == d.pid       # asking took nothing from it

    assert d.stop() == 0
    proc = status(workspace.db_path)
    assert proc.returncode == 1 and "daemon     not running" in proc.stdout


def test_status_creates_no_file(workspace, run_once, tmp_path):
    run_once()
    before = sorted(p.name for p in workspace.db_path.parent.iterdir())
    proc = status(workspace.db_path)
    assert proc.returncode == 1 and "not running" in proc.stdout
    assert sorted(p.name for p in workspace.db_path.parent.iterdir()) == before


def test_files_removed_beside_the_database_let_no_second_writer_in(workspace, live_daemon, run_once):
    """A lock file beside the database (as the lock once was) removed while the daemon runs let a
    `--once` in: two writers. The lock is on the database file itself."""
    first = live_daemon()
    kept = {workspace.db_path.name + suffix for suffix in ("", "-wal", "-shm")}
    for path in workspace.db_path.parent.iterdir():
        if path.name not in kept:
            path.unlink()
    line = refusal(run_once(expect_rc=2).stderr)
    assert f"pid {first.pid}" in line, line
    first.check_alive()


def test_a_hard_link_to_the_database_is_the_same_database(workspace, live_daemon, run_once, tmp_path):
    """Another name for the same file took another lock: two writers on one database."""
    first = live_daemon()
    other = tmp_path / "other.db"
    os.link(workspace.db_path, other)
    line = refusal(run_once("--db", str(other), expect_rc=2).stderr)
    assert str(other) in line and f"pid {first.pid}" in line, line
    assert holder(other) == first.pid
    first.check_alive()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_under_the_daemon_stops_it(workspace, live_daemon, db, how):
    """It went on writing to a file nobody would read, without a word. Now it says so and exits 1
    (systemd restarts it); started again, it opens what the path names then."""
    workspace.append_events("before", [fx.prompt_line("before")])
    first = live_daemon()
    first.wait_for(lambda: db.event_count("before") == 1)
    if how == "deleted":
        workspace.db_path.unlink()
    else:              # (a copy renamed over it: the same data, another file)
        copy = workspace.db_path.with_name("copy.db")
        shutil.copyfile(workspace.db_path, copy)
        os.replace(copy, workspace.db_path)
    assert first.proc.wait(15) == 1
    assert f"ERROR reev.daemon: the database {workspace.db_path} was {how}" in first.stderr()
    workspace.append_events("after", [fx.prompt_line("after")])
    again = live_daemon()
    again.wait_for(lambda: db.event_count("before") == 1 and db.event_count("after") == 1,
                   what="the database the path names now, caught up")
    assert holder(workspace.db_path) == again.pid


def _no_regular_file(kind: str, tmp_path) -> tuple[str, socket.socket | None]:
    """A path of that kind (and the socket listening there, to close)."""
    if kind == "device":
        return "/dev/null", None
    if kind == "socket":         # (a short path: AF_UNIX takes 107 bytes)
        path = os.path.join(tempfile.mkdtemp(prefix="reev-"), "db")
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(path)
        return path, listening
    path = tmp_path / "db-path"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    return str(path), None


@pytest.mark.parametrize("kind", ["device", "folder", "fifo", "socket"])
def test_a_database_path_that_is_no_regular_file_is_refused_before_anything_is_made(workspace, run_once,
                                                                                     tmp_path, kind):
    """REEV_DB=/dev/null exited 2, but made /dev/null.lock and /dev/null-journal first."""
    path, keep = _no_regular_file(kind, tmp_path)
    around = [f"{path}{suffix}" for suffix in (".lock", "-journal", "-wal", "-shm")]
    assert not any(os.path.exists(p) for p in around), "left by an earlier run"
    try:
        line = refusal(run_once("--db", str(path), expect_rc=2, timeout=30).stderr)
        assert f"cannot open the database {path}: it is a" in line and "not a regular file" in line, line
        assert [p for p in around if os.path.exists(p)] == []
    finally:
        if keep is not None:
            keep.close()
            shutil.rmtree(os.path.dirname(path))


def test_another_programs_database_is_refused_and_left_as_it_was(workspace, run_once):
    """It was taken over: tables added, user_version 6, WAL."""
    workspace.append_events("run", [fx.prompt_line("p")])
    workspace.db_path.parent.mkdir(parents=True)
    conn = apsw.Connection(str(workspace.db_path))
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ann')")
    conn.close()
    before = workspace.db_path.read_bytes()
    line = refusal(run_once(expect_rc=2).stderr)
    assert f"cannot open the database {workspace.db_path}: it already holds tables but no reev-ingest schema" in line
    assert workspace.db_path.read_bytes() == before
    assert sorted(p.name for p in workspace.db_path.parent.iterdir()) == [workspace.db_path.name]
