"""The watched folders themselves: a symlink to a folder (watched where it leads, followed when
repointed), a path that is missing or not a folder (a warning at start and while running,
never a crash; read once it is a folder; its files out of reach meanwhile, not gone), a path
that is not UTF-8. The rescan interval is long here, so that only the
file watcher and the daemon's look at its folders can explain a file found quickly."""

from __future__ import annotations

import os
import shutil
import time

from tests import fixtures as fx
from tests.conftest import Workspace, start_daemon

RESCAN = 120          # seconds: never within these tests


def make_workspace(root, sessions) -> Workspace:
    ws = Workspace(root=root, sessions=sessions, benchmarks=root / "benchmarks", db_path=root / "state" / "reev.db")
    ws.benchmarks.mkdir(parents=True, exist_ok=True)
    return ws


def write_log(folder, execution_id: str, n: int = 1):
    with open(folder / f"enhanced_otel_{execution_id}.jsonl", "ab") as f:
        f.write(fx.jsonl([fx.step_complete_line(f"step-{i}", at=i) for i in range(n)]))


def folder_warnings(d, folder, what: str) -> int:
    return d.stderr().count(f"WARNING reev.daemon: {folder} (--sessions-dir) {what}")


def test_a_symlinked_sessions_folder_is_watched_where_it_leads_and_followed_when_repointed(tmp_path):
    first, second = tmp_path / "runs-1", tmp_path / "runs-2"
    first.mkdir()
    second.mkdir()
    link = tmp_path / "sessions"
    link.symlink_to(first)
    ws = make_workspace(tmp_path, link)
    with start_daemon(ws, tmp_path / "daemon.stderr", rescan=RESCAN) as d:
        d.wait_log("caught up")
        write_log(link, "through-the-link")
        written = time.monotonic()
        d.wait_for(lambda: ws.db.event_count("through-the-link") == 1, timeout=3,
                   what="a new event log in the linked folder, through inotify")
        assert time.monotonic() - written < 3
        assert ws.db.file(link / "enhanced_otel_through-the-link.jsonl") is not None   # the path as configured

        write_log(second, "there-before")                 # repointed like `ln -sfn`: a new link renamed over
        (tmp_path / "sessions.new").symlink_to(second)
        os.replace(tmp_path / "sessions.new", link)
        d.wait_for(lambda: ws.db.event_count("there-before") == 1, timeout=10, what="the new target scanned")
        assert ws.db.file(link / "enhanced_otel_there-before.jsonl") is not None
        write_log(second, "after-repointing")
        written = time.monotonic()
        d.wait_for(lambda: ws.db.event_count("after-repointing") == 1, timeout=3,
                   what="a new event log in the new target, through inotify")
        assert time.monotonic() - written < 3
        write_log(first, "in-the-old-target")             # no longer watched, nor read
        write_log(second, "canary")
        d.wait_for(lambda: ws.db.event_count("canary") == 1, timeout=3)
        assert ws.db.event_count("in-the-old-target") == 0
        d.check_alive()


def test_a_sessions_path_that_is_a_file_is_a_warning_never_a_crash(tmp_path):
    sessions = tmp_path / "sessions"
    sessions.write_text("x\n")                            # `--sessions-dir somefile`
    ws = make_workspace(tmp_path, sessions)
    ws.write_benchmark("301-a", fx.benchmark_yaml("301-a"))
    with start_daemon(ws, tmp_path / "daemon.stderr", rescan=RESCAN) as d:
        d.wait_for(lambda: ws.db.benchmark("301-a") is not None, what="the other folder still read")
        assert folder_warnings(d, sessions, "is not a folder") == 1
        sessions.unlink()                                 # the folder appears: read without a restart
        sessions.mkdir()
        write_log(sessions, "run-1")
        d.wait_for(lambda: ws.db.event_count("run-1") == 1, timeout=10, what="the folder read once it is one")
        d.wait_log(f"{sessions} (--sessions-dir) is a folder that can be read now")

        shutil.rmtree(sessions)                           # `rmdir s; echo x > s`, while running
        sessions.write_text("x\n")
        d.wait_for(lambda: folder_warnings(d, sessions, "is not a folder") == 2, timeout=10,
                   what="a second warning")
        ws.write_benchmark("302-b", fx.benchmark_yaml("302-b"))
        d.wait_for(lambda: ws.db.benchmark("302-b") is not None, what="still reading the other folder")

        sessions.unlink()
        sessions.mkdir()
        write_log(sessions, "run-2")
        d.wait_for(lambda: ws.db.event_count("run-2") == 1, timeout=10)
        # judged gone once its folder is back (while it was not, its files were out of reach)
        d.wait_for(lambda: ws.db.file(sessions / "enhanced_otel_run-1.jsonl")["state"] == "missing")
        assert ws.db.event_count("run-1") == 1                                            # rows kept
        d.check_alive()


def test_a_missing_sessions_folder_is_a_warning_and_read_once_it_appears(tmp_path, run_once):
    sessions = tmp_path / "logs" / "sesions"               # mistyped
    ws = make_workspace(tmp_path, sessions)
    proc = run_once(base_args=ws.args())
    assert f"WARNING reev.daemon: {sessions} (--sessions-dir) does not exist" in proc.stderr
    assert not sessions.exists()                          # not made: it would be watched, empty, for ever
    with start_daemon(ws, tmp_path / "daemon.stderr", rescan=RESCAN) as d:
        d.wait_log("caught up")
        assert folder_warnings(d, sessions, "does not exist") == 1
        assert not sessions.exists()
        sessions.mkdir(parents=True)
        write_log(sessions, "run-1")
        d.wait_for(lambda: ws.db.event_count("run-1") == 1, timeout=10, what="the folder read once it exists")
        write_log(sessions, "run-2")
        written = time.monotonic()
        d.wait_for(lambda: ws.db.event_count("run-2") == 1, timeout=3, what="and watched")
        assert time.monotonic() - written < 3


def test_a_brief_blip_of_the_sessions_folder_reads_on_and_times_nothing_out(tmp_path):
    """`rm s; echo hi > s; rm s; ln -s runs s`: the logs were read again from byte 0 (their lines
    counted twice), and a run still going flapped Running, Timeout, Running: its session file
    counted as gone while its folder was not there."""
    real = tmp_path / "runs"
    real.mkdir()
    link = tmp_path / "sessions"
    link.symlink_to(real)
    ws = make_workspace(tmp_path, link)
    log = ws.append_events("going", [fx.prompt_line("p", at=0), fx.step_complete_line(at=1)])
    session = ws.write_session("going", fx.session_doc(finished=False))
    an_hour_ago = time.time() - 3600            # quiet for longer than --stale-after, but not stale:
    os.utime(log, (an_hour_ago, an_hour_ago))   # it has a session file
    with start_daemon(ws, tmp_path / "daemon.stderr", "--stale-after", "60", rescan=RESCAN) as d:
        d.wait_log("caught up")
        assert ws.db.execution("going")["status"] == "Running"

        link.unlink()
        link.write_text("hi\n")
        d.wait_log(f"{link} (--sessions-dir) is not a folder")
        restarts = d.wait_log("file watcher:").count("file watcher:")
        ws.write_benchmark("301-canary", fx.benchmark_yaml("301-canary"))   # a batch after the scan
        d.wait_for(lambda: ws.db.benchmark("301-canary") is not None)
        assert ws.db.file(session)["state"] == "ok"                         # out of reach, not gone

        link.unlink()
        link.symlink_to(real)
        d.wait_log("file watcher:", count=restarts + 1)
        ws.append_events("going", [fx.step_complete_line(at=2)])
        d.wait_for(lambda: ws.db.event_count("going") == 3, what="the new line")
        assert "reading it again from the start" not in d.stderr()
        assert ws.db.meta("lines_ingested_total") == 3                      # read on: no line twice
        assert ws.db.rows("SELECT DISTINCT status FROM changes WHERE execution_id = 'going'") == [("Running",)]
        assert ws.db.execution("going")["status"] == "Running"
        d.check_alive()


def test_a_sessions_folder_whose_path_is_not_utf8_is_one_warning(tmp_path):
    """Each of its files was blamed (`the path is not valid UTF-8 … rename it`), not the folder."""
    sessions = tmp_path / os.fsdecode(b"sessions-\xff")
    sessions.mkdir()
    ws = make_workspace(tmp_path, sessions)
    for execution_id in ("a", "b"):
        write_log(sessions, execution_id)
    ws.write_benchmark("301-a", fx.benchmark_yaml("301-a"))
    with start_daemon(ws, tmp_path / "daemon.stderr", rescan=RESCAN) as d:
        d.wait_log("caught up")
        shown = str(tmp_path / "sessions-\\xff")
        assert folder_warnings(d, shown, "is not valid UTF-8") == 1, d.stderr()
        assert ws.db.errors() == [] and ws.db.rows("SELECT path FROM files") == [(str(ws.benchmark_path("301-a")),)]
        write_log(sessions, "c")
        ws.write_benchmark("302-b", fx.benchmark_yaml("302-b"))
        d.wait_for(lambda: ws.db.benchmark("302-b") is not None)
        assert ws.db.errors() == [] and d.stderr().count("WARNING") == 1
