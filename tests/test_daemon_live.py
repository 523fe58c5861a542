"""The live daemon: files that change while it watches, restarts, signals, the periodic
reconcile scan, and exactly-once ingestion across a SIGKILL. The tests of what is stored take
`backend`: they run on SQLite, then on PostgreSQL."""

import json
import os
import re
import signal
import time

import pytest

from core.heartbeat import WRITE_EVERY_SECONDS as HEARTBEAT_SECONDS
from tests import fixtures as fx
from tests.conftest import alive, children, wait_for

X = "7d1e0b4a-93c2-4f5e-8a6b-0c1d2e3f4a5b"
Y = "second-run.01"


def docs(events):
    return [e["doc"] for e in events]


def warnings_about(stderr: str, path) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line and str(path) in line]


def status_is(db, execution_id, status):
    return lambda: (ex := db.execution(execution_id)) is not None and ex["status"] == status


# ------------------------------------------------------------------------------ partial writes


def test_line_written_in_two_pieces_is_ingested_once_whole(workspace, live_daemon, db, backend):
    d = live_daemon()
    path = workspace.events_path(X)
    line = fx.line_text(fx.prompt_line("Send 0.3 SOL to the second wallet.", at=0))
    half = len(line) // 2
    workspace.append_raw(path, line[:half])
    # the daemon has looked at the file and kept the incomplete line for later
    d.wait_for(lambda: (f := db.file(path)) is not None and f["size"] == half, what="the first half read")
    assert db.event_count(X) == 0
    assert db.file(path)["offset"] == 0

    workspace.append_raw(path, line[half:] + b"\n")
    d.wait_for(lambda: db.event_count(X) == 1, what="the whole line")
    workspace.append_events(X, [fx.step_complete_line(at=1)])          # a later line as a marker
    d.wait_for(lambda: db.event_count(X) == 2, what="the marker line")

    events = db.events(X)
    assert [e["line"] for e in events] == [1, 2]
    assert events[0]["doc"] == line.decode()
    assert events[0]["event_type"] == "Prompt"
    assert db.execution(X)["event_count"] == 2
    assert db.errors() == []
    assert warnings_about(d.stderr(), path) == []


def test_over_long_line_written_in_pieces_is_one_error_and_the_next_line_is_read(workspace, live_daemon, db, backend):
    d = live_daemon("--max-line-bytes", "500")
    path = workspace.events_path(X)
    workspace.append_events(X, [fx.step_complete_line(at=0)])                        # line 1 (short)
    d.wait_for(lambda: db.event_count(X) == 1)
    start = path.stat().st_size
    workspace.append_raw(path, b'{"event_type":"Big","pad":"' + b"a" * 300)           # line 2, 327 bytes so far
    d.wait_for(lambda: db.file(path)["size"] == start + 327, what="the first piece read")
    assert db.errors(path) == []
    workspace.append_raw(path, b"b" * 300)                                            # now over 500
    d.wait_for(lambda: db.errors(path), what="the error for the over-long line")
    workspace.append_raw(path, b"c" * 700 + b'"}\n')                                   # the rest of line 2
    workspace.append_events(X, [fx.tool_input_line("sol_transfer", at=3)])            # line 3
    d.wait_for(lambda: db.event_count(X) == 2, what="the line after the over-long one")

    assert [e["line"] for e in db.events(X)] == [1, 3]
    [err] = db.errors(path)
    assert (err["line"], err["byte_offset"]) == (2, start)
    assert "500 bytes" in err["reason"]
    assert db.tool_calls(X)[0]["line"] == 3
    d.wait_log(f"{path}:2: line longer than 500 bytes")


def test_session_file_written_in_two_pieces_ends_completed_without_error(workspace, live_daemon, db, backend):
    d = live_daemon(settle=3)
    path = workspace.session_path(X)
    data = fx.session_bytes(fx.session_doc(data_tools=[fx.tool_record()]))
    with open(path, "wb") as f:                         # reev: open(truncate) + write + flush
        f.write(data[: len(data) // 2])
        f.flush()
        d.wait_for(lambda: (r := db.file(path)) is not None and r["state"] == "pending",
                   what="the half-written file to be seen as pending")
        time.sleep(0.3)                                  # a slow writer pauses between the halves
        f.write(data[len(data) // 2:])
    d.wait_for(status_is(db, X, "Completed"), what="Completed")
    assert db.errors() == []
    assert db.file(path)["state"] == "ok"
    assert warnings_about(d.stderr(), path) == []


def test_session_file_that_stays_invalid_gets_an_error_that_clears_when_valid(workspace, live_daemon, db, backend):
    d = live_daemon(settle=0.5)
    path = workspace.write_session(X, b'{\n  "session_id": "inner-session",\n  "final_result": ')
    mtime = path.stat().st_mtime
    [err] = d.wait_for(lambda: db.errors(path), what="the error after the settle period")
    assert (err["line"], err["byte_offset"]) == (0, 0)
    assert "invalid JSON" in err["reason"]
    assert err["first_seen_at"] >= mtime + 0.5 - 0.01             # not before the settle period
    assert db.file(path)["state"] == "error"
    d.wait_log(f"WARNING reev.ingest: {path}: invalid JSON")

    workspace.write_session(X, fx.session_doc(success=False))
    d.wait_for(status_is(db, X, "Failed"), what="Failed")
    d.wait_for(lambda: db.errors(path) == [], what="the error to be cleared")
    assert db.file(path)["state"] == "ok"


# ------------------------------------------------------------------------------ truncation


def test_truncate_and_rewrite_of_an_event_log_gives_no_duplicates(workspace, live_daemon, db, backend):
    d = live_daemon()
    first = [fx.prompt_line("first prompt", at=0), fx.tool_input_line("sol_transfer", at=1),
             "{not json", fx.tool_output_line(at=2), fx.step_complete_line(at=3)]
    path = workspace.append_events(X, first)
    d.wait_for(lambda: db.event_count(X) == 4)
    assert [e["line"] for e in db.errors(path)] == [3]

    second = [fx.prompt_line("second prompt", at=100), fx.tool_input_line("jupiter_swap", {"amount": 2}, at=101),
              fx.tool_output_line(False, {"e": 1}, at=102), fx.tool_input_line("spl_transfer", at=103),
              fx.step_complete_line(at=104), fx.unknown_event_line(at=105)]
    with open(path, "wb") as f:
        f.write(fx.jsonl(second))
    want = [fx.stored_doc(i) for i in second]
    d.wait_for(lambda: docs(db.events(X)) == want, what="exactly the rewritten lines")

    ex = db.execution(X)
    assert (ex["event_count"], ex["tool_call_count"], ex["step_count"]) == (6, 2, 1)
    assert ex["first_prompt"] == "second prompt"
    assert ex["first_event_at"] == pytest.approx(fx.unix(100))
    assert [(c["line"], c["tool_name"], c["output_line"]) for c in db.tool_calls(X)] == [
        (2, "jupiter_swap", 3), (4, "spl_transfer", None)]
    assert db.errors() == []                        # the old line's error went with the old content


def test_truncation_to_a_shorter_file_then_new_lines_are_read(workspace, live_daemon, db, backend):
    d = live_daemon()
    items = [fx.prompt_line("p", at=0), fx.tool_input_line("a", at=1), fx.tool_output_line(at=2),
             fx.tool_input_line("b", at=3), fx.tool_output_line(at=4)]
    path = workspace.append_events(X, items)
    d.wait_for(lambda: db.event_count(X) == 5)

    os.truncate(path, fx.line_offsets(items)[2])             # keep lines 1 and 2
    d.wait_for(lambda: db.execution(X)["event_count"] == 2, what="the truncation to be noticed")
    new = [fx.tool_output_line(False, {"n": 1}, at=10), fx.step_complete_line(at=11)]
    workspace.append_events(X, new)
    want = [fx.stored_doc(i) for i in items[:2] + new]
    d.wait_for(lambda: docs(db.events(X)) == want, what="the new lines after the truncation")
    assert [(c["line"], c["output_line"]) for c in db.tool_calls(X)] == [(2, 3)]
    assert db.execution(X)["event_count"] == 4


def test_event_log_rewritten_while_the_daemon_is_not_looking_is_read_again(workspace, live_daemon, db, backend):
    """A rewrite that keeps the first line (longer than the head fingerprint) and makes the
    file longer: the daemon never sees it shorter, and still must not read on from its old
    offset into the middle of the new content."""
    d = live_daemon()
    prompt = fx.prompt_line("the same first line, long enough to fill the fingerprint", at=0)
    assert len(fx.line_text(prompt)) > 256
    first = [prompt, fx.tool_input_line("sol_transfer", {"amount": 1}, at=1), fx.tool_output_line(at=2)]
    path = workspace.append_events(X, first)
    d.wait_for(lambda: db.event_count(X) == 3)

    second = [prompt, fx.tool_input_line("jupiter_swap", {"amount": 2_000_000, "slippage_bps": 50}, at=5),
              fx.tool_output_line(False, {"error": "slippage"}, at=6), fx.step_complete_line(at=7)]
    d.send(signal.SIGSTOP)                                  # it can't look while the file is rewritten
    try:
        with open(path, "wb") as f:
            f.write(fx.jsonl(second))
    finally:
        d.send(signal.SIGCONT)
    want = [fx.stored_doc(i) for i in second]
    d.wait_for(lambda: docs(db.events(X)) == want, what="exactly the rewritten lines")
    assert [(c["line"], c["tool_name"], c["output_line"]) for c in db.tool_calls(X)] == [(2, "jupiter_swap", 3)]
    assert db.errors() == []


# ------------------------------------------------------------------------------ restarts and signals


def test_restart_resumes_without_duplicates_and_reads_what_was_written_meanwhile(workspace, live_daemon, db, backend):
    d = live_daemon()
    items = [fx.prompt_line("p", at=0), fx.tool_input_line("sol_transfer", at=1), fx.step_complete_line(at=2)]
    workspace.append_events(X, items)
    d.wait_for(lambda: db.event_count(X) == 3)
    assert d.stop() == 0

    more = [fx.tool_output_line(at=3), fx.summary_line(at=4)]
    workspace.append_events(X, more)
    workspace.append_events(Y, [fx.prompt_line("other", at=0)])
    workspace.write_session(Y, fx.session_doc(success=False))
    d2 = live_daemon()
    d2.wait_for(lambda: db.event_count(X) == 5 and status_is(db, Y, "Failed")(), what="everything")

    assert docs(db.events(X)) == [fx.stored_doc(i) for i in items + more]
    assert [e["line"] for e in db.events(X)] == [1, 2, 3, 4, 5]
    assert db.execution(X)["event_count"] == 5
    assert [(c["line"], c["output_line"]) for c in db.tool_calls(X)] == [(2, 4)]
    assert db.event_count(Y) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_promptly(workspace, live_daemon, db, sig):
    """Idle, the loop sleeps until its next heartbeat (every 5 s; the rescan is further off).
    Signalled just after a heartbeat, it must be gone before the next one would have woken
    it: the signal itself wakes it."""
    d = live_daemon(rescan=60)
    workspace.append_events(X, [fx.prompt_line("p")])
    d.wait_for(lambda: db.event_count(X) == 1)
    beat = db.meta("heartbeat_at")
    d.wait_for(lambda: db.meta("heartbeat_at") != beat, timeout=HEARTBEAT_SECONDS + 5, what="a heartbeat")
    assert d.stop(sig, timeout=HEARTBEAT_SECONDS - 1) == 0      # (a TimeoutExpired past the deadline)
    assert "stopped:" in d.stderr()
    assert "Traceback" not in d.stderr()


def test_the_read_ahead_worker_does_not_outlive_a_killed_daemon(workspace, live_daemon):
    """SIGKILL leaves the daemon no time to close its read worker; the worker must go too
    (it asks Linux for SIGKILL when its parent dies). The daemon is stopped first (SIGSTOP), so
    the worker is surely there when the daemon dies, not closed at the end of the catch-up."""
    import re

    for i in range(3000):       # a back-fill long enough to catch the worker at work
        workspace.append_events(f"ra-{i:04d}", [fx.prompt_line("p", at=0)] +
                                [fx.tool_input_line("t", {"pad": "x" * 500}, at=j) for j in range(20)])
    d = live_daemon(log_level="info", ready=False)
    text = d.wait_log("read worker started", timeout=30)
    worker = int(re.search(r"read worker started \(pid (\d+)\)", text).group(1))
    d.send(signal.SIGSTOP)
    try:
        assert alive(worker) and worker in children(d.pid), "the back-fill ended before the daemon was stopped"
    finally:
        d.kill()
    try:
        wait_for(lambda: not alive(worker), timeout=10, what="the read worker to exit")
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)      # (the test failed: leave nothing behind)


def test_sigterm_during_once_commits_what_it_has_and_exits_zero(workspace, run_once, db):
    """--once stops between files on SIGTERM, exit 0; the next run ingests the rest, once."""
    import subprocess

    from tests.conftest import clean_env, daemon_command

    many = 400
    for i in range(many):
        workspace.append_events(f"run-{i:03d}", [fx.prompt_line("p", at=0)] +
                                [fx.tool_input_line("t", {"pad": "x" * 2000}, at=j) for j in range(30)])
    proc = subprocess.Popen(daemon_command() + workspace.args() + ["--once"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, env=clean_env())
    wait_for_db = time.monotonic() + 20
    while time.monotonic() < wait_for_db and not workspace.db_path.exists():
        time.sleep(0.002)     # the schema is applied before the first batch: signal in the middle
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"stopped early by a signal" in err, err.decode()[-3000:]
    run_once()
    assert db.scalar("SELECT count(*) FROM executions") == many
    assert db.scalar("SELECT count(*) FROM events") == many * 31


@pytest.mark.parametrize("mode", [["--once"], []], ids=["once", "live"])
def test_a_stop_during_start_up_is_a_clean_exit(workspace, mode):
    """SIGTERM while the database opens (systemd stopping a unit that is starting; a test that
    signals early) is taken once the daemon can finish cleanly: exit 0, never death by signal."""
    import subprocess

    from tests.conftest import clean_env, daemon_command

    workspace.append_events(X, [fx.prompt_line("p")])
    proc = subprocess.Popen(daemon_command() + workspace.args() + mode, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, env=clean_env())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not workspace.db_path.exists():    # (made by the writer lock)
        time.sleep(0.0005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"SIGTERM" in err


# ------------------------------------------------------------------------------ discovery


def test_files_in_a_recreated_sessions_folder_are_found_by_the_periodic_scan(workspace, live_daemon, db):
    d = live_daemon(rescan=0.5)
    for p in list(workspace.sessions.iterdir()):
        p.unlink()
    workspace.sessions.rmdir()                  # the watch on it is gone with it
    workspace.sessions.mkdir()
    workspace.append_events(X, [fx.prompt_line("p", at=0), fx.step_complete_line(at=1)])
    workspace.write_session(X, fx.session_doc())
    d.wait_for(lambda: db.event_count(X) == 2 and status_is(db, X, "Completed")(), timeout=10,
               what="the files in the new folder")


def test_watcher_restarts_when_the_sessions_folder_is_replaced(workspace, live_daemon, db):
    """SIGHUP's rescan finds files the watcher missed, and notices that the watcher watches a
    folder that has been replaced: new lines must then arrive without waiting for a rescan."""
    d = live_daemon(rescan=600)
    workspace.sessions.rename(workspace.root / "old-sessions")   # the watch follows the old folder
    workspace.sessions.mkdir()
    workspace.append_events(X, [fx.prompt_line("p", at=0)])
    d.send(signal.SIGHUP)
    d.wait_for(lambda: db.event_count(X) == 1, what="the rescan to find the file")
    d.wait_log("restarting it")
    # no rescan for 600 s: only a working watcher can bring these in
    workspace.append_events(X, [fx.step_complete_line(at=1)])
    workspace.append_events(Y, [fx.prompt_line("q", at=0)])
    d.wait_for(lambda: db.event_count(X) == 2 and db.event_count(Y) == 1, timeout=5,
               what="new lines through the restarted watcher")


def test_the_watcher_is_not_woken_by_reads(tmp_path):
    """Reading a file (as the daemon does on every batch) must not even reach watchdog's
    threads as an event: each event costs them the GIL the service loop needs. Every event the
    observer dispatches is recorded here, beside the daemon's own handler."""
    from watchdog.events import FileSystemEventHandler

    from daemon.discovery import Watcher
    from tests.conftest import wait_for

    class Everything(FileSystemEventHandler):
        def __init__(self):
            self.events = []

        def dispatch(self, event):
            self.events.append((type(event).__name__, os.fsdecode(event.src_path)))

    read_me, marker = tmp_path / "read_me.jsonl", tmp_path / "marker.jsonl"
    read_me.write_bytes(b"{}\n")
    reported, everything = [], Everything()
    watcher = Watcher([tmp_path], reported.append, lambda: None)
    watcher.start()
    try:
        for emitter in watcher.observer.emitters:
            watcher.observer.add_handler_for_watch(everything, emitter.watch)
        for _ in range(3):
            assert read_me.read_bytes() == b"{}\n"      # open, read, close (no write)
        marker.write_bytes(b"{}\n")                     # inotify keeps order: reported after the reads
        wait_for(lambda: str(marker) in reported, timeout=5, what="the marker's event")
        assert [e for e in everything.events if e[1] == str(read_me)] == []
        with read_me.open("ab") as f:
            f.write(b"{}\n")
        wait_for(lambda: str(read_me) in reported, timeout=5, what="the append's event")
    finally:
        watcher.stop()


def test_non_session_files_written_while_watching_are_ignored(workspace, live_daemon, db):
    d = live_daemon()
    s = workspace.sessions
    (s / "otel_abc.jsonl").write_bytes(fx.jsonl([fx.prompt_line("x")]))
    (s / "session_abc.json.tmp").write_bytes(b"{")
    (s / ".session_abc.json.swp").write_bytes(b"\x00")
    (s / "sub").mkdir()
    (s / "sub" / "session_abc.json").write_bytes(b"{")
    (s / "session_folder.json").mkdir()
    workspace.append_events(X, [fx.prompt_line("marker")])               # written last
    d.wait_for(lambda: db.event_count(X) == 1)
    d.wait_log("scan: ", count=2)                                        # and a rescan saw them all
    assert [e["execution_id"] for e in db.executions()] == [X]
    assert [r[0] for r in db.rows("SELECT path FROM files")] == [str(workspace.events_path(X))]
    assert db.errors() == []
    assert "WARNING" not in d.stderr()


def test_benchmark_files_changed_and_deleted_while_watching(workspace, live_daemon, db, backend):
    d = live_daemon()
    path = workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml(description="Version one."))
    d.wait_for(lambda: (b := db.benchmark("301-test-transfer")) and b["description"] == "Version one.")

    text = fx.benchmark_yaml(description="Version two.", tags=["changed"], prompt="Send 0.4 SOL.")
    path.write_text(text)
    d.wait_for(lambda: db.benchmark("301-test-transfer")["description"] == "Version two.")
    b = db.benchmark("301-test-transfer")
    assert (json.loads(b["tags"]), b["prompt"], b["yaml_text"], b["removed"]) == (
        ["changed"], "Send 0.4 SOL.", text, 0)

    path.unlink()
    d.wait_for(lambda: db.benchmark("301-test-transfer")["removed"] == 1, what="removed = 1")
    b = db.benchmark("301-test-transfer")
    assert b["yaml_text"] == text                                        # the row is kept
    assert db.file(path)["state"] == "missing"
    assert db.errors() == []


# ------------------------------------------------------------------------------ generation and heartbeat


def test_rescans_that_find_nothing_new_keep_the_data_generation(workspace, live_daemon, db, backend):
    d = live_daemon(rescan=0.2, settle=0.3)
    g0 = db.generation()
    events = workspace.append_events(X, [fx.prompt_line("p", at=0)])
    workspace.append_raw(events, b'{"event_type":"Ste')                 # a partial last line
    workspace.write_session(Y, fx.session_doc())
    workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml())
    workspace.write_session("broken", b"{ not json")                   # becomes an error after 0.3 s
    os.symlink(workspace.session_path(Y), workspace.session_path("link"))
    d.wait_for(lambda: db.event_count(X) == 1 and len(db.errors()) == 2, what="everything ingested")
    g1 = db.generation()
    assert g1 > g0
    assert db.meta("last_ingest_at") is not None

    seen = d.stderr().count("scan: ")
    d.wait_log("scan: ", count=seen + 1)
    g1 = db.generation()                                                # settled now
    d.wait_log("scan: ", count=seen + 4)                                # three more rescans
    assert db.generation() == g1

    workspace.append_raw(events, b'pComplete"}\n')
    d.wait_for(lambda: db.event_count(X) == 2)
    assert db.generation() > g1
    assert db.meta("heartbeat_at") == pytest.approx(time.time(), abs=10)
    assert db.meta("daemon_started_at") >= d.launched_at


# ------------------------------------------------------------------------------ exactly once


def _big_log(n: int) -> list[dict]:
    kinds = [lambda i: fx.unknown_event_line("Tick", at=i / 1000),
             lambda i: fx.tool_input_line("sol_transfer", {"amount": i}, at=i / 1000),
             lambda i: fx.tool_output_line(True, f'["{i}"]', at=i / 1000),
             lambda i: fx.step_complete_line(f"step-{i}", at=i / 1000)]
    return [fx.prompt_line("a long run", at=0)] + [kinds[i % 4](i) for i in range(1, n)]


def test_exactly_once_across_sigkill_mid_ingest(workspace, live_daemon, db, backend):
    n = 20_000
    lines = [fx.line_text(i) + b"\n" for i in _big_log(n)]
    path = workspace.events_path(X)
    d = live_daemon()
    written = 0
    with open(path, "ab") as f:
        while written < n:                                   # the writer keeps appending ...
            f.write(b"".join(lines[written:written + 400]))
            f.flush()
            written += 400
            time.sleep(0.002)
            if db.event_count(X) >= 3000:                    # ... until the daemon is well into it
                break
        d.kill()
        at_kill = db.event_count(X)
        assert 0 < at_kill < n
        f.write(b"".join(lines[written:]))                   # the rest arrives while it is down
    d2 = live_daemon()
    d2.wait_for(lambda: db.event_count(X) == n, timeout=60, what=f"{n} lines")
    d2.wait_for(lambda: db.file(path)["offset"] == path.stat().st_size, what="the checkpoint at the end")

    assert db.rows("SELECT count(*), count(DISTINCT e.line), min(e.line), max(e.line) FROM events e"
                   " JOIN executions x ON x.id = e.exec_id WHERE x.execution_id = ?", (X,)) == [(n, n, 1, n)]
    ex = db.execution(X)
    types = [json.loads(line).get("event_type") for line in lines]
    calls, steps = types.count("ToolInput"), types.count("StepComplete")
    assert types.count("ToolOutput") == calls > 4000
    assert (ex["event_count"], ex["tool_call_count"], ex["step_count"]) == (n, calls, steps)
    assert db.scalar("SELECT count(*) FROM tool_calls WHERE output_line = line + 1") == calls
    assert db.scalar("SELECT count(*) FROM tool_calls") == calls
    assert db.file(path)["line_no"] == n
    assert db.errors() == []


# ------------------------------------------------------------------------------ the WAL after a back-fill


def big_logs(workspace, runs: int = 24, lines: int = 1000) -> int:
    """About 1 MB of event lines per run: more than the WAL is kept to once caught up."""
    for r in range(runs):
        workspace.append_events(f"big-{r}", [fx.prompt_line("p" * 900, at=i) for i in range(lines)])
    return runs * lines


def test_the_wal_grows_while_catching_up_and_is_cut_back_once_following_live_files(workspace, live_daemon, db):
    """A back-fill restarts its WAL only every 256 MiB (the copier thread copies it behind the
    loop meanwhile); once caught up the WAL is cut back to 16 MiB when it restarts, so the
    file does not keep the back-fill's size."""
    from daemon.storage.sqlite.engine import LIVE

    total = big_logs(workspace)
    d = live_daemon()
    d.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == total, timeout=60, what="the back-fill")
    wal = f"{workspace.db_path}-wal"
    for i in range(3):                      # transactions after the catch-up: a checkpoint, a restart
        workspace.append_events(X, [fx.step_complete_line(at=i)])
        d.wait_for(lambda: db.event_count(X) == i + 1, what=f"live line {i + 1}")
    d.wait_for(lambda: os.path.getsize(wal) <= LIVE.wal_limit, what="the WAL cut back")
    assert db.scalar("SELECT count(*) FROM events") == total + 3


def test_a_back_fill_logs_its_progress_not_its_batches_and_a_sighup_says_what_it_did(workspace, live_daemon):
    """A 300-session back-fill logged 80 info lines (one per batch); after SIGHUP, `caught up`
    gave the totals since the start instead of what that rescan did."""
    for r in range(300):
        workspace.append_events(f"run-{r}", [fx.prompt_line("p" * 2000, at=i) for i in range(40)])
        workspace.write_session(f"run-{r}", fx.session_doc(f"run-{r}"))
    started = time.monotonic()
    d = live_daemon(log_level="info")
    d.wait_log("caught up", timeout=120)
    elapsed = time.monotonic() - started
    info = [line for line in d.stderr().splitlines() if " INFO " in line]
    assert re.search(r"caught up: 600 files found by the scan; 600 files read, 12000 lines ingested in \d+\.\d s",
                     d.stderr()), info
    assert not [line for line in info if "batch:" in line], info
    assert len(info) <= 4 + elapsed / 5, info        # start-up, the worker, progress every 5 s, caught up
    d.send(signal.SIGHUP)
    d.wait_log("caught up", count=2)
    first, again = [line.split("caught up: ")[1] for line in d.stderr().splitlines() if "caught up: " in line]
    assert first.startswith("600 files found by the scan; 600 files read")
    assert again.startswith("600 files found by the scan; 0 files read, 0 lines ingested"), again


def test_a_log_gone_and_back_as_the_same_file_is_read_on_from_its_checkpoint(workspace, live_daemon, db, tmp_path, backend):
    """Moved away and back (the same inode, the same first bytes): it was read again from byte
    0, and its lines counted twice in the totals."""
    log = workspace.append_events(X, [fx.prompt_line("p", at=0), fx.step_complete_line(at=1)])
    d = live_daemon()
    d.wait_for(lambda: db.event_count(X) == 2)
    away = tmp_path / "away.jsonl"
    os.replace(log, away)
    d.wait_for(lambda: db.file(log)["state"] == "missing", what="the log marked gone")
    os.replace(away, log)
    workspace.append_events(X, [fx.step_complete_line(at=2)])
    d.wait_for(lambda: db.event_count(X) == 3 and db.file(log)["state"] == "ok", what="the new line")
    assert "reading it again from the start" not in d.stderr()
    assert db.meta("lines_ingested_total") == 3
