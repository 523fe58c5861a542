"""Lost file events: what inotify never reported must still be ingested.

Already covered in tests/test_daemon_live.py: a sessions folder deleted and made again (files
found by the periodic scan), and a folder renamed away and replaced (SIGHUP's rescan restarts
the watcher). Here: the inotify queue overflowing while the observer cannot read it; files
written and the folder replaced while the daemon is stopped; and an observer that died
(its folder deleted) being restarted by the next periodic rescan and delivering events again.
"""

import os
import re
import shutil
import signal
import time
from pathlib import Path

from tests import fixtures as fx
from tests.conftest import missing_precondition
from tests.reliability.conftest import scale
from tests.reliability.support import dump, first_difference, once_db, wait_same_dump

QUEUE_SYSCTL = Path("/proc/sys/fs/inotify/max_queued_events")
SCAN = re.compile(r"scan: \d+ files found, (\d+) to look at")


def scans(d) -> int:
    return d.stderr().count("scan: ")


def reported_by_the_watcher(d, workspace, db, name: str, rescan: float, attempts: int = 3) -> bool:
    """Write a new event log and wait (up to a deadline) until it is ingested; then wait for the
    next reconcile scan. The watcher reported the file if no scan that ended from the write up to
    that one had anything to look at (a scan that listed the folder before the write could not
    have found it; one that listed it after would count it, ingested or not). A sample where a
    scan may have found it proves nothing either way: another file is tried, `attempts` in all."""
    for attempt in range(attempts):
        execution_id = f"{name}-{attempt}"
        before = len(SCAN.findall(d.stderr()))
        workspace.append_events(execution_id, [fx.prompt_line("through the watcher")])
        d.wait_for(lambda: db.event_count(execution_id) == 1, timeout=rescan * 3, what=f"{execution_id} ingested")
        ingested = len(SCAN.findall(d.stderr()))
        d.wait_for(lambda: len(SCAN.findall(d.stderr())) > ingested, timeout=rescan * 3, what="the next scan")
        looked_at = [int(m) for m in SCAN.findall(d.stderr())[before:ingested + 1]]
        if not any(looked_at):
            return True
    return False


def fill_inotify_queue(folder: Path, events: int):
    """`events` inotify events from writes to two files the daemon has no use for, in turn (the
    kernel merges an event into the one before it when they are the same)."""
    fds = [os.open(folder / f"filler-{k}.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND) for k in (0, 1)]
    try:
        for i in range(events):
            os.write(fds[i % 2], b"x")
    finally:
        for fd in fds:
            os.close(fd)


def write_runs(workspace, prefix: str, n: int) -> int:
    """n event logs of two lines, every other one with a finished session file; returns lines."""
    for i in range(n):
        eid = f"{prefix}-{i:05d}"
        workspace.append_events(eid, [fx.prompt_line(f"task {i}", at=0), fx.step_complete_line(at=1)])
        if i % 2 == 0:
            workspace.write_session(eid, fx.session_doc(success=i % 4 == 0))
    return 2 * n


def test_inotify_queue_overflow_is_caught_by_the_reconcile_scan(workspace, live_daemon, db, run_once, tmp_path):
    """With the daemon stopped, writes to two other files fill the kernel's queue for its inotify
    instance (fs.inotify.max_queued_events, left as it is: lowering it would reach every process
    that makes an instance meanwhile); every event of the runs written next is lost."""
    rescan = 2.0
    queue = int(QUEUE_SYSCTL.read_text())
    if queue > 1 << 20:
        missing_precondition(f"fs.inotify.max_queued_events is {queue}: too many events to fill it")
    n = scale(400, 3000)
    d = live_daemon(rescan=rescan)
    d.send(signal.SIGSTOP)                   # the observer thread cannot read its queue
    try:
        fill_inotify_queue(workspace.sessions, queue)
        lines = write_runs(workspace, "burst", n)
    finally:
        d.send(signal.SIGCONT)
    started = time.monotonic()
    d.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == lines
               and db.scalar("SELECT count(*) FROM executions WHERE status != 'Running'") == (n + 1) // 2,
               timeout=120, what=f"{n} runs ingested")
    found_in = time.monotonic() - started
    d.wait_log("Inotify queue overflowed", timeout=10)      # watchdog's own warning: events were lost
    looked_at = [int(m) for m in SCAN.findall(d.stderr())]
    watcher_works = reported_by_the_watcher(d, workspace, db, "after-overflow", rescan)

    once_db(run_once, workspace, tmp_path / "once.db")
    assert first_difference(dump(tmp_path / "once.db"), dump(workspace.db_path)) is None
    print(f"\ninotify queue of {queue} events; {n} runs ({lines} lines) written while the observer was stopped, all"
          f" ingested {found_in:.2f} s after it resumed; most files queued by one scan: {max(looked_at)}")
    assert max(looked_at) > n // 4, "the overflow lost hardly any event: the scan was not put to the test"
    assert watcher_works, "new files were found by scans only: the watcher no longer reports files"


def test_files_written_while_stopped_and_the_folder_replaced_are_found_at_start(
        workspace, live_daemon, db, run_once, tmp_path):
    d = live_daemon()
    lines = write_runs(workspace, "before", 20)
    d.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == lines, what="the first files")
    assert d.stop() == 0

    # While it is down: the folder is replaced by a copy (every file a new inode), some copies
    # grow, one is cut short and rewritten, one session file flips its result, new runs arrive.
    old = workspace.root / "sessions-before"
    workspace.sessions.rename(old)
    shutil.copytree(old, workspace.sessions)
    for i in range(0, 20, 3):
        workspace.append_events(f"before-{i:05d}", [fx.tool_input_line("sol_transfer", at=2),
                                                    fx.tool_output_line(at=3)])
    with open(workspace.events_path("before-00001"), "wb") as f:
        f.write(fx.jsonl([fx.prompt_line("rewritten", at=10)]))
    workspace.write_session("before-00000", fx.session_doc(success=False))
    write_runs(workspace, "while-down", 20)

    d2 = live_daemon(rescan=600)            # only its start-up scan can find all this
    once_db(run_once, workspace, tmp_path / "once.db")
    took = wait_same_dump(dump(tmp_path / "once.db"), workspace.db_path, timeout=20, alive=d2.check_alive)
    assert db.execution("before-00000")["status"] == "Failed"
    assert db.event_count("before-00001") == 1
    print(f"\nafter a replaced folder and 20 new runs while stopped: equal to a clean --once {took:.2f} s after it")


def test_a_dead_observer_is_restarted_by_the_next_rescan(workspace, live_daemon, db):
    """Deleting the watched folder ends inotify's watch on it for good; the next periodic
    rescan notices, and once the folder is back the restarted watcher reports new files
    without waiting for another scan."""
    rescan = 3.0
    d = live_daemon(rescan=rescan)
    assert reported_by_the_watcher(d, workspace, db, "before", rescan), "the watcher did not report files to begin with"
    shutil.rmtree(workspace.sessions)
    d.wait_log("restarting it", count=1, timeout=rescan * 3)
    workspace.sessions.mkdir()
    # If the restart above found no folder yet, the next scan restarts the watcher once more.
    d.wait_log("scan: ", count=scans(d) + 1, timeout=rescan * 3)
    assert reported_by_the_watcher(d, workspace, db, "after", rescan), \
        "new files were found by scans only: the watcher is not back"
