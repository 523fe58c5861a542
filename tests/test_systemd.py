"""systemd integration: sd_notify from both programs and journald's log format.

A test binds the datagram socket systemd would, starts the real program with NOTIFY_SOCKET
pointing at it, and reads what arrives."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from daemon.storage.sqlite import SCHEMA_VERSION
from tests import fixtures as fx
from tests.api_client import api_command, free_port
from tests.conftest import clean_env, daemon_command, missing_precondition, wait_for, write_old_database


class NotifySocket:
    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []     # every datagram, in arrival order

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except (TimeoutError, socket.timeout):
                return self.messages

    def fields(self) -> list[str]:
        """Every KEY=VALUE line received, in order."""
        return [f for m in self.drain() for f in m.split("\n") if f]

    def wait_for_field(self, prefix: str, after: int = 0, timeout: float = 15) -> int:
        """Index (in fields()) of the first field starting with prefix at or after `after`."""
        def found():
            fields = self.fields()
            return next((i for i in range(after, len(fields)) if fields[i].startswith(prefix)), None)
        index = wait_for(lambda: found() is not None and found() + 1, timeout=timeout,
                         what=f"{prefix!r} on the notify socket (got {self.fields()})")
        return index - 1

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


@contextlib.contextmanager
def launched(command: list[str], log_path: Path, env: dict):
    """A program running for the block, its output in log_path; killed if still running after."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def stop_and_expect_stopping(proc: subprocess.Popen, notify_socket: NotifySocket):
    mark = len(notify_socket.fields())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    notify_socket.wait_for_field("STOPPING=1", after=mark)


def test_daemon_speaks_sd_notify_in_order(workspace, notify_socket, tmp_path):
    workspace.append_events("run-1", [fx.prompt_line("p", at=0)])
    env = clean_env() | {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "400000"}
    command = daemon_command() + workspace.args() + ["--rescan-interval", "30"]
    with launched(command, tmp_path / "daemon.log", env) as proc:
        ready = notify_socket.wait_for_field("READY=1")
        # READY=1 comes after the first full scan is committed: the line is in the database.
        assert workspace.db.event_count("run-1") == 1
        fields = notify_socket.fields()
        assert any(f.startswith("STATUS=") and "files tracked" in f for f in fields[ready:]), fields
        first_pet = notify_socket.wait_for_field("WATCHDOG=1", after=ready)
        notify_socket.wait_for_field("WATCHDOG=1", after=first_pet + 1)   # petted again while idle
        workspace.append_events("run-1", [fx.tool_input_line("t", at=1)])
        wait_for(lambda: workspace.db.event_count("run-1") == 2)
        after_batch = notify_socket.wait_for_field("STATUS=", after=first_pet)
        assert "2 lines ingested" in notify_socket.fields()[after_batch]

        mark = len(notify_socket.fields())
        proc.send_signal(signal.SIGHUP)
        reloading = notify_socket.wait_for_field("RELOADING=1", after=mark)
        assert any(f.startswith("MONOTONIC_USEC=") for f in notify_socket.fields()[reloading:])
        notify_socket.wait_for_field("READY=1", after=reloading)
        stop_and_expect_stopping(proc, notify_socket)


def test_status_comes_with_ready_and_then_only_when_it_changes(workspace, notify_socket, tmp_path):
    """With empty folders, READY=1 carries the STATUS= line (systemctl status shows it); after
    that a STATUS= line comes when what it says changes (files, lines, errors, lag), not after
    every batch."""
    env = clean_env() | {"NOTIFY_SOCKET": notify_socket.path}
    with launched(daemon_command() + workspace.args(), tmp_path / "daemon.log", env):
        notify_socket.wait_for_field("READY=1")
        [ready] = [m for m in notify_socket.drain() if "READY=1" in m.split("\n")]
        assert ("STATUS=0 files tracked, 0 lines ingested since start, 0 input errors recorded,"
                " 0 bytes not ingested yet") in ready.split("\n"), ready

        partial = b'{"event_type": "StepComp'
        path = workspace.append_raw(workspace.events_path("run-1"), fx.jsonl([fx.prompt_line("p")]) + partial)
        lag = notify_socket.wait_for_field("STATUS=1 files tracked, 1 lines ingested")
        assert notify_socket.fields()[lag].endswith(f", {len(partial)} bytes not ingested yet")

        mark = len(notify_socket.fields())
        os.utime(path, ns=(time.time_ns(), time.time_ns() - 10**9))      # a batch that changes nothing
        wait_for(lambda: workspace.db.file(path)["mtime_ns"] == path.stat().st_mtime_ns)
        workspace.append_raw(workspace.events_path("run-2"), b"{not json\n")   # one that does
        changed = notify_socket.wait_for_field("STATUS=", after=mark)
        assert "1 input errors recorded" in notify_socket.fields()[changed], notify_socket.fields()[mark:]


def test_a_back_fill_says_how_far_it_is_and_extends_the_start_timeout_now_and_then(workspace, notify_socket,
                                                                                     tmp_path):
    """While catching up, STATUS= said `0 bytes not ingested yet` with thousands of files still
    unread, and EXTEND_TIMEOUT_USEC came about 100 times a second (670 in a 6 s back-fill). And
    `caught up` after a SIGHUP rescan said `0 files looked at` of a scan that found them all."""
    runs = 1500
    for r in range(runs):
        workspace.append_events(f"run-{r}", [fx.prompt_line(f"p{r}", at=0), fx.step_complete_line(at=1)])
        workspace.write_session(f"run-{r}", fx.session_doc(f"run-{r}"))
    env = clean_env() | {"NOTIFY_SOCKET": notify_socket.path}
    log_path = tmp_path / "daemon.log"
    with launched(daemon_command() + workspace.args() + ["--log-level", "info"], log_path, env) as proc:
        started = time.monotonic()
        ready = notify_socket.wait_for_field("READY=1", timeout=120)
        took = time.monotonic() - started
        before = notify_socket.fields()[:ready]
        extends = before.count("EXTEND_TIMEOUT_USEC=30000000")
        assert 1 <= extends <= took / 5 + 1, (extends, took)
        statuses = [f for f in before if f.startswith("STATUS=")]
        assert statuses and all(f.startswith("STATUS=catching up: ") for f in statuses), statuses
        assert f"caught up: {2 * runs} files found by the scan; {2 * runs} files read, {2 * runs} lines ingested" \
            in log_path.read_text()

        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: log_path.read_text().count("caught up:") == 2, timeout=60, what="the rescan caught up")
        assert f"caught up: {2 * runs} files found by the scan; 0 files read, 0 lines ingested" in log_path.read_text()
        stop_and_expect_stopping(proc, notify_socket)


def test_a_schema_migration_asks_systemd_for_the_time_it_takes(workspace, notify_socket):
    """A migration rewrites tables (minutes on a big database): before it starts, the daemon
    extends its start timeout and says what it is doing."""
    write_old_database(workspace.db_path, 2, fx.session_doc("before"))
    proc = subprocess.run(daemon_command() + workspace.args() + ["--once"], capture_output=True, text=True,
                          timeout=60, env=clean_env() | {"NOTIFY_SOCKET": notify_socket.path})
    assert proc.returncode == 0, proc.stderr
    fields = notify_socket.fields()
    extend = fields.index("EXTEND_TIMEOUT_USEC=600000000")
    assert f"STATUS=migrating the database schema from version 2 to {SCHEMA_VERSION}" in fields[extend:]
    assert f"migrating the database schema from version 2 to {SCHEMA_VERSION}" in proc.stderr
    assert workspace.db.scalar("PRAGMA user_version") == SCHEMA_VERSION


def test_daemon_without_notify_socket_is_silent_and_fine(workspace, run_once):
    run_once()           # NOTIFY_SOCKET unset: nothing to send to, nothing fails
    assert workspace.db.generation() is not None


def test_a_stuck_writer_loop_stops_petting_the_watchdog(workspace, notify_socket, tmp_path):
    """WATCHDOG=1 comes from the loop that does the work: a loop that cannot get through its
    batch (here: the database held by another writer) stops petting, so systemd would restart it."""
    import apsw

    env = clean_env() | {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"}
    with launched(daemon_command() + workspace.args(), tmp_path / "daemon.log", env):
        notify_socket.wait_for_field("READY=1")
        blocker = apsw.Connection(str(workspace.db_path))
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            workspace.append_events("run-2", [fx.prompt_line("p")])     # a batch that must wait
            time.sleep(0.5)
            mark = len(notify_socket.fields())
            time.sleep(2.0)          # the daemon sits in its 5 s busy timeout: no pets meanwhile
            pets = [f for f in notify_socket.fields()[mark:] if f == "WATCHDOG=1"]
            assert len(pets) <= 1, pets
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        mark = len(notify_socket.fields())
        notify_socket.wait_for_field("WATCHDOG=1", after=mark)            # petting again
        wait_for(lambda: workspace.db.event_count("run-2") == 1, timeout=20)


def test_a_huge_benchmark_definition_holds_no_line_back_and_the_watchdog_is_petted(workspace, notify_socket,
                                                                                    tmp_path):
    """A 6.6 MB definition of 400 000 keys took 30 s in one batch: a live line waited 39 s and
    WATCHDOG=1 came 29 s apart (systemd kills at 30). Now a definition over the size limit is
    refused unread, and one under it is parsed off the loop."""
    env = clean_env() | {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000"}
    with launched(daemon_command() + workspace.args(), tmp_path / "daemon.log", env):
        notify_socket.wait_for_field("READY=1")
        pets: list[float] = []

        def watch_pets():
            got = notify_socket.fields()
            pets.extend([time.monotonic()] * (got.count("WATCHDOG=1") - len(pets)))

        huge = "".join(f"key{i}: value{i}\n" for i in range(100_000))          # 1.8 MB
        big = fx.benchmark_yaml("402-big") + "initial_state:\n" + "".join(f"  k{i}: {i}\n" for i in range(16_000))
        assert len(big) < 256 << 10 < len(huge)
        workspace.write_benchmark("401-huge", "id: 401-huge\n" + huge)
        workspace.write_benchmark("402-big", big)
        latencies = []
        for n in range(1, 31):
            workspace.append_events("live", [fx.step_complete_line(f"step-{n}", at=n)])
            written = time.monotonic()
            wait_for(lambda: workspace.db.event_count("live") == n, timeout=60, interval=0.005)
            latencies.append(time.monotonic() - written)
            watch_pets()
            time.sleep(0.05)
        gaps = [b - a for a, b in zip(pets, pets[1:])]
        assert max(latencies) < 1.0, f"a line took {max(latencies):.2f} s to show"
        assert len(pets) >= 3 and max(gaps) < 2.0, f"WATCHDOG=1 gaps {gaps}"
        [err] = wait_for(lambda: workspace.db.errors(workspace.benchmark_path("401-huge")))
        assert f"over the {256 << 10}-byte limit" in err["reason"], err
        wait_for(lambda: workspace.db.benchmark("402-big"), what="the big definition under the limit")


def test_api_says_ready_once_it_listens_and_stopping_on_sigterm(tmp_path, notify_socket):
    port = free_port()
    env = clean_env() | {"NOTIFY_SOCKET": notify_socket.path}
    command = api_command() + ["--db", str(tmp_path / "none.db"), "--port", str(port)]
    with launched(command, tmp_path / "api.log", env) as proc:
        notify_socket.wait_for_field("READY=1", timeout=30)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass                      # listening by the time READY=1 arrived
        stop_and_expect_stopping(proc, notify_socket)


def test_abstract_notify_socket_address(workspace):
    name = f"reev-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(20)
    try:
        proc = subprocess.Popen(daemon_command() + workspace.args(), stderr=subprocess.DEVNULL,
                                env=clean_env() | {"NOTIFY_SOCKET": "@" + name})
        try:
            assert "READY=1" in sock.recv(65536).decode().split("\n")
        finally:
            proc.terminate()
            assert proc.wait(10) == 0
    finally:
        sock.close()


def test_journald_format_when_stderr_is_the_journal(workspace, tmp_path):
    workspace.append_events("run-1", [fx.prompt_line("p")])
    workspace.append_raw(workspace.events_path("run-1"), b"{bad json\n")
    path = tmp_path / "journal.txt"
    with open(path, "wb") as f:
        st = os.fstat(f.fileno())
        env = clean_env() | {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        subprocess.run(daemon_command() + workspace.args() + ["--once"], stderr=f, env=env, check=True)
    lines = path.read_text().splitlines()
    assert lines and all(line[:3] in ("<6>", "<4>", "<7>", "<3>") for line in lines), lines
    assert any(line.startswith("<4>") and ":2:" in line for line in lines), "a warning names path:line"
    assert not any(line[3:7].isdigit() for line in lines), "no timestamps of our own"


def test_plain_format_otherwise(workspace, tmp_path):
    proc = subprocess.run(daemon_command() + workspace.args() + ["--once"], capture_output=True, text=True,
                          env=clean_env() | {"JOURNAL_STREAM": "1:1"}, check=True)
    first = proc.stderr.splitlines()[0]
    assert first[:4].isdigit() and " INFO " in first, first


# ---------------------------------------------------------------------- units and permissions

ROOT = Path(__file__).resolve().parent.parent


def test_unit_files_verify_without_warnings_and_rate_ok():
    if shutil.which("systemd-analyze") is None:
        missing_precondition("systemd-analyze not installed (apt-get install systemd; .ci/run installs it)")
    proc = subprocess.run(["bash", str(ROOT / "deploy" / "verify.sh"), str(Path(sys.executable).parent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scores = [line for line in proc.stdout.splitlines() if "Overall exposure level" in line]
    assert len(scores) == 2 and all(("OK" in s or "SAFE" in s) for s in scores), proc.stdout


def test_database_files_are_group_readable_and_outlive_the_daemon(workspace, tmp_path):
    """Under the unit's UMask=0027 the database, -wal and -shm are 0640 (the API's group reads
    them) and stay after a clean stop, so a read-only reader can still open the database."""
    workspace.append_events("run-1", [fx.prompt_line("p")])
    proc = subprocess.Popen(daemon_command() + workspace.args(), stderr=subprocess.DEVNULL,
                            env=clean_env(), preexec_fn=lambda: os.umask(0o027))
    try:
        wait_for(lambda: workspace.db.event_count("run-1") == 1, timeout=15)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(workspace.db_path) + suffix)
        assert path.exists(), f"{path.name} was removed at stop"
        assert oct(path.stat().st_mode & 0o777) == oct(0o640), (path.name, oct(path.stat().st_mode))


def _can_make_read_only_mounts() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt 2>/dev/null"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def test_api_reads_from_a_read_only_state_folder_while_the_daemon_writes(workspace, live_daemon, tmp_path):
    """As in reev-api.service: the state folder is read-only for the API (a read-only bind mount
    in its own mount namespace, which binds root too). It still reads what the daemon commits,
    and still opens the database after the daemon stopped."""
    if not _can_make_read_only_mounts():
        missing_precondition("cannot make a read-only bind mount in a mount namespace (unshare -m, mount: root)")
    workspace.append_events("run-1", [fx.prompt_line("p")])
    daemon = live_daemon()
    daemon.wait_for(lambda: workspace.db.event_count("run-1") == 1)
    state = workspace.db_path.parent
    port = free_port()
    script = f"mount --bind -o ro {state} {state} && exec {' '.join(api_command())} --db {workspace.db_path} --port {port}"
    log = open(tmp_path / "api.log", "wb")
    api = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=log, stderr=log, env=clean_env())

    def events(execution_id):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/sessions/{execution_id}/events") as r:
                return len(json.loads(r.read())["items"])
        except OSError:
            return -1

    try:
        wait_for(lambda: events("run-1") == 1, timeout=30, what="the API on a read-only folder")
        workspace.append_events("run-1", [fx.tool_input_line("t", at=1)])
        wait_for(lambda: events("run-1") == 2, timeout=15, what="a line committed after the API opened")
        assert daemon.stop() == 0
        wait_for(lambda: events("run-1") == 2, timeout=15, what="reading with the daemon stopped")
    finally:
        api.terminate()
        api.wait(10)
        log.close()
