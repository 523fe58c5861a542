"""Files the daemon may not read yet: an error that came from reading (no permission, an I/O
error) is tried again by every scan, SIGHUP and the next run, and goes once the file reads.

The suite runs as root, whom file permissions do not stop: here the daemon runs without the
two capabilities that let root past them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, dropped from
its bounding set before it starts), so permission bits apply to it as to any user. Not root,
it needs nothing dropped: they apply already."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests import fixtures as fx
from tests.conftest import Daemon, as_a_user, clean_env, daemon_command

RUNNERS_GROUP = 4242                        # a group the daemon is not in (no name needed)
NOT_THE_DAEMON = 65534                      # the owner of the runner's files (nobody)


def once(workspace, groups: list[int] = ()) -> subprocess.CompletedProcess:
    proc = subprocess.run(daemon_command() + workspace.args() + ["--once", "--settle-seconds", "0.2"],
                          capture_output=True, text=True, timeout=60, env=clean_env(),
                          stdin=subprocess.DEVNULL, **as_a_user(list(groups)))
    assert proc.returncode == 0, proc.stderr
    return proc


def user_daemon(workspace, stderr_path: Path) -> Daemon:
    """A live daemon to which permission bits apply. No rescan within the test: what it reads
    after a chmod, inotify told it (IN_ATTRIB)."""
    return Daemon(workspace, ["--rescan-interval", "120", "--settle-seconds", "0.2", "--log-level", "debug"],
                  stderr_path, **as_a_user([]))


def write_run(workspace, execution_id: str, mode: int) -> tuple[Path, Path, list[dict]]:
    items = [fx.prompt_line("written by a runner", at=0), fx.step_complete_line(at=1)]
    log = workspace.append_events(execution_id, items)
    session = workspace.write_session(execution_id, fx.session_doc(success=True, score=1.0))
    for path in (log, session):
        path.chmod(mode)
    return log, session, items


def cannot_read(db, *paths) -> bool:
    return all([e["reason"] for e in db.errors(p)] == ["cannot read: Permission denied"] for p in paths)


def read_whole(db, execution_id: str, items, *paths) -> bool:
    return ([e["doc"] for e in db.events(execution_id)] == [fx.stored_doc(i) for i in items]
            and (db.execution(execution_id) or {}).get("status") == "Completed"
            and all(db.errors(p) == [] and db.file(p)["state"] == "ok" for p in paths))


def test_a_file_unreadable_when_first_seen_is_read_once_it_may_be(workspace, tmp_path):
    log, session, items = write_run(workspace, "locked", 0o000)
    d = user_daemon(workspace, tmp_path / "daemon.stderr")
    try:
        d.wait_for(lambda: cannot_read(workspace.db, log, session), what="both files in error")
        assert d.stderr().count("cannot read: Permission denied") == 2
        for path in (log, session):
            path.chmod(0o644)
        d.wait_for(lambda: read_whole(workspace.db, "locked", items, log, session), what="both files read")
    finally:
        d.close()


def test_the_runners_files_are_read_once_the_daemon_is_in_the_runners_group(workspace):
    """The deploy guide's advice: add the daemon's user to the runner's group, restart it."""
    log, session, items = write_run(workspace, "grouped", 0o640)
    if os.geteuid() == 0:
        for path in (log, session):
            os.chown(path, NOT_THE_DAEMON, RUNNERS_GROUP)
    else:
        for path in (log, session):
            path.chmod(0o000)
    proc = once(workspace)
    assert cannot_read(workspace.db, log, session), workspace.db.errors()
    assert f"{log}: cannot read: Permission denied" in proc.stderr
    g = workspace.db.generation()
    assert "cannot read" not in once(workspace).stderr      # tried again, still not readable: no second warning,
    assert workspace.db.generation() == g                   # and nothing written
    if os.geteuid() != 0:
        for path in (log, session):
            path.chmod(0o644)
    once(workspace, groups=[RUNNERS_GROUP])
    assert read_whole(workspace.db, "grouped", items, log, session), (workspace.db.errors(), workspace.db.events("grouped"))
    assert workspace.db.errors() == []


def test_lines_written_while_the_folder_could_not_be_read_are_read_once_it_can(workspace, tmp_path):
    """A chmod of the sessions folder itself: the line appended meanwhile waited for the next
    rescan (here: none within the test), and the `cannot read` error stayed after it was read."""
    items = [fx.prompt_line("written by a runner", at=0), fx.step_complete_line(at=1)]
    log = workspace.append_events("r1", items[:1])
    workspace.write_session("r1", fx.session_doc(success=True, score=1.0))
    d = user_daemon(workspace, tmp_path / "daemon.stderr")
    try:
        d.wait_for(lambda: workspace.db.event_count("r1") == 1, what="the first line")
        workspace.sessions.chmod(0o000)
        d.wait_log(f"{workspace.sessions} (--sessions-dir) cannot be read (Permission denied):"
                   " nothing is read from it until it can be")
        workspace.append_events("r1", items[1:])
        d.wait_for(lambda: cannot_read(workspace.db, log), what="the file out of reach")
        workspace.sessions.chmod(0o755)
        d.wait_for(lambda: read_whole(workspace.db, "r1", items, log), what="the line read, the error gone")
        assert "reading it again from the start" not in d.stderr()     # read on from its checkpoint
        assert workspace.db.meta("lines_ingested_total") == 2
    finally:
        workspace.sessions.chmod(0o755)
        d.close()
