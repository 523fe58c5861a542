"""Database faults: a full disk (SQLITE_FULL at COMMIT and in the heartbeat) and a database
locked by another process for longer than the daemon's busy timeout. The daemon logs, backs
off without spinning, retries, never moves a checkpoint without its rows, and catches up
exactly once when the fault goes away."""

import contextlib
import errno
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from core.heartbeat import WRITE_EVERY_SECONDS as HEARTBEAT
from tests import fixtures as fx
from tests.conftest import Db, missing_precondition
from tests.reliability.conftest import scale
from tests.reliability.support import (cpu_seconds, dump, event_logs_consistent, hold_database, once_db,
                                       wait_same_dump)

BUSY_TIMEOUT = 5.0          # daemon/storage/sqlite/engine.py BUSY_TIMEOUT_MS


@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    """A tmpfs of `size` mounted on `path` (root only); unmounted afterwards."""
    if shutil.which("mount") is None:
        missing_precondition("no mount(8) here: cannot make a small filesystem for the disk-full scenario")
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        missing_precondition(f"cannot mount a {size} tmpfs for the disk-full scenario (needs root or"
                             f" CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem has no byte left; returns it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = 1 << 16
    try:
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    return filler


class Input:
    """Event logs that only ever get complete, valid lines, and finished session files."""

    def __init__(self, workspace, prefix: str):
        self.ws, self.prefix = workspace, prefix
        self.lines: dict[str, int] = {}
        self.sessions = 0

    def add(self, runs: int = 6, lines: int = 5, new_session: bool = True):
        for r in range(runs):
            eid = f"{self.prefix}-{r:02d}"
            k = self.lines.get(eid, 0)
            items = [fx.prompt_line(f"task {r}", at=0)] if k == 0 else []
            items += [fx.tool_input_line("sol_transfer", {"k": k + j, "pad": "x" * 300}, at=k + j)
                      for j in range(lines - len(items))]
            self.ws.append_events(eid, items)
            self.lines[eid] = k + len(items)
        if new_session:
            self.sessions += 1
            self.ws.write_session(f"{self.prefix}-{self.sessions - 1:02d}",
                                  fx.session_doc(success=self.sessions % 2 == 0))

    @property
    def total(self) -> int:
        return sum(self.lines.values())

    def logs(self) -> list[Path]:
        """The event logs written so far."""
        return [self.ws.events_path(eid) for eid in self.lines]


def warnings_of(d, kind: str) -> int:
    return sum(1 for line in d.stderr().splitlines() if "database error" in line and kind in line)


def backoff_warnings(d) -> list[tuple[str, float]]:
    """(error text, announced backoff in s) of every database warning so far."""
    return [(m.group(1), float(m.group(2))) for m in
            re.finditer(r"database error \((.*)\); retrying in ([\d.]+) s", d.stderr())]


def caught_up(d, db: Db, data, run_once, workspace, tmp_path, *, cleared: tuple[float, float], ingest_timeout: float,
              heartbeat_timeout: float) -> float:
    """Once the fault is cleared (at `cleared`: monotonic and wall time): everything ingested,
    the heartbeat going again, and the database the same as a clean --once makes. Returns how
    long the daemon took to catch up."""
    d.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == data.total, timeout=ingest_timeout,
               what="everything ingested once the fault is cleared")
    took = time.monotonic() - cleared[0]
    d.wait_for(lambda: db.meta("heartbeat_at") >= cleared[1], timeout=heartbeat_timeout,
               what="the heartbeat to resume")
    once_db(run_once, workspace, tmp_path / "once.db")
    wait_same_dump(dump(tmp_path / "once.db"), workspace.db_path, timeout=10, alive=d.check_alive)
    return took


def test_disk_full_backs_off_keeps_checkpoints_with_rows_and_recovers(workspace, live_daemon, run_once, tmp_path):
    started: list = []
    with small_filesystem(tmp_path / "small-fs", "32m") as fs:
        workspace.db_path = fs / "reev.db"
        workspace.db = db = Db(workspace.db_path)
        try:
            d = live_daemon()
            started.append(d)
            data = Input(workspace, "full")
            data.add()
            d.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == data.total, what="the first lines")
            stored = db.scalar("SELECT count(*) FROM events")
            ingested = data.logs()

            filler = fill(fs)
            full_at = time.monotonic()
            assert os.statvfs(fs).f_bavail == 0
            # Nothing is waiting to be ingested: the writes that fail are the heartbeat's, and
            # they back off like any other.
            d.wait_for(lambda: len(backoff_warnings(d)) >= 1, timeout=HEARTBEAT + 5,
                       what="the heartbeat to fail with SQLITE_FULL")
            heartbeat_failed_after = time.monotonic() - full_at
            d.wait_for(lambda: len(backoff_warnings(d)) >= 3, timeout=5, what="the heartbeat to fail again")

            # A batch bigger than SQLite's page cache spills to the WAL before COMMIT: SQLITE_FULL
            # in the middle of a statement, which rolls back the whole transaction.
            big = workspace.events_path("full-big")
            big.write_bytes(fx.jsonl([fx.prompt_line("big", at=0)] + [
                fx.tool_input_line("sol_transfer", {"k": k, "pad": "y" * 3000}, at=k) for k in range(1, 500)]))
            data.lines["full-big"] = 500
            data.add(lines=3)
            d.wait_for(lambda: len(backoff_warnings(d)) >= 5, timeout=10, what="batches to fail")

            # While it backs off (input keeps coming), it sleeps: its CPU time over most of a
            # backoff of 1.6 s (a long window: a spinning loop takes a core, a sleeping one a few
            # ticks of 10 ms, however loaded the machine is).
            window = 0.0
            while window < 1.0:        # (seen late, a backoff leaves too short a window: the next one)
                warned = len(backoff_warnings(d))
                d.wait_for(lambda: len(backoff_warnings(d)) > warned and backoff_warnings(d)[-1][1] >= 1.6,
                           timeout=40, what="a backoff of 1.6 s or more")
                warned, backoff = len(backoff_warnings(d)), backoff_warnings(d)[-1][1]
                cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
                while time.monotonic() < t0 + backoff * 0.8 and len(backoff_warnings(d)) == warned:
                    data.add(runs=2, lines=1, new_session=False)
                    time.sleep(0.1)
                window = time.monotonic() - t0
            cpu = (cpu_seconds(d.pid) - cpu0) / window
            assert event_logs_consistent(db, ingested) == []
            assert db.scalar("SELECT count(*) FROM events") == stored, "a batch committed on a full disk"
            d.check_alive()

            filler.unlink()
            recovered = caught_up(d, db, data, run_once, workspace, tmp_path,
                                  cleared=(time.monotonic(), time.time()),
                                  ingest_timeout=30 + 10, heartbeat_timeout=HEARTBEAT + 5)
            assert db.scalar("PRAGMA quick_check") == "ok"
            assert "Traceback" not in d.stderr()
            warnings = backoff_warnings(d)
        finally:
            for x in started:
                x.close()
    print(f"\ndisk full: the heartbeat failed {heartbeat_failed_after:.1f} s after the disk filled; {len(warnings)}"
          f" database warnings, backoffs {[b for _, b in warnings]} s; daemon CPU {cpu * 100:.0f}% during a"
          f" {backoff} s backoff; caught up {recovered:.2f} s after space was freed")
    assert cpu < 0.15, f"the daemon used {cpu * 100:.0f}% CPU while backing off: it spins"
    assert [b for _, b in warnings] == [round(min(0.1 * 2 ** i, 30.0), 1) for i in range(len(warnings))], \
        "the backoff does not double from 0.1 s"
    assert all(text.startswith("FullError") for text, _ in warnings), \
        f"errors other than SQLITE_FULL reported: {sorted({t for t, _ in warnings})}"


@pytest.mark.parametrize("mode", scale(["EXCLUSIVE"], ["EXCLUSIVE", "IMMEDIATE"]))
def test_database_locked_by_another_process(workspace, live_daemon, run_once, db, tmp_path, mode):
    hold = scale(BUSY_TIMEOUT + 3, 4 * BUSY_TIMEOUT)
    d = live_daemon()
    data = Input(workspace, "locked")
    data.add()
    d.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == data.total, what="the first lines")
    ingested = data.logs()

    holder = hold_database(workspace.db_path, mode, hold)
    try:
        assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
        locked_at, locked_wall = time.monotonic(), time.time()
        stored = db.scalar("SELECT count(*) FROM events")
        while holder.poll() is None and time.monotonic() < locked_at + hold - 1:
            data.add(lines=2)                               # input keeps arriving
            time.sleep(0.5)
            assert event_logs_consistent(db, ingested) == []
        d.wait_log("database error (BusyError", timeout=hold)
        assert db.scalar("SELECT count(*) FROM events") == stored, "a batch committed past the lock"
        heartbeat_locked = db.meta("heartbeat_at")
        out, err = holder.communicate(timeout=hold + 10)
        released_at, released_wall = time.monotonic(), time.time()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 0 and "released" in out, err
    assert heartbeat_locked < locked_wall + 1, "the heartbeat was written while another process held the lock"

    took = caught_up(d, db, data, run_once, workspace, tmp_path, cleared=(released_at, released_wall),
                     ingest_timeout=BUSY_TIMEOUT + 30, heartbeat_timeout=HEARTBEAT + 30)
    busy = warnings_of(d, "BusyError")
    assert "Traceback" not in d.stderr()
    print(f"\nBEGIN {mode} held {released_at - locked_at:.1f} s: {busy} busy warnings; caught up"
          f" {took:.2f} s after the release")
