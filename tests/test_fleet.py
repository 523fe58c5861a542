"""`make fleet` for real (scripts/fleet.py): its own PostgreSQL cluster beside any other (CI's
included), three daemons under three sources, one API reading as the read-only role of
deploy/postgresql/roles.sql; and a Ctrl-C (SIGINT to the whole process group, as a terminal
sends it) that leaves no process, no server and no throwaway folder behind. And the guide
(docs/fleet.md) shows the roles file the fleet runs as it is."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import psycopg
import psycopg.errors
import pytest

from tests import pgcluster
from tests.api_client import free_port
from tests.conftest import alive, children, clean_env, missing_precondition, wait_for

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ("host-a", "host-b", "host-c")


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def served(port: int, execution_id: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/sessions/{execution_id}", timeout=5) as r:
            return json.load(r)["summary"]["execution_id"] == execution_id
    except (OSError, http.client.HTTPException):     # (not answering yet, or cut off)
        return False


def test_make_fleet_serves_three_sources_and_ctrl_c_leaves_nothing_behind():
    if pgcluster.bindir() is None:
        missing_precondition("PostgreSQL's server programs (Debian: apt-get install postgresql)")
    if shutil.which("make") is None:
        missing_precondition("make")
    port = free_port()
    # the venv this suite runs in (-o install: not reinstalled); a process group of its own, as
    # a terminal's foreground job
    make = subprocess.Popen(["make", "-C", str(ROOT), "-o", "install", "fleet", f"BIN={Path(sys.executable).parent}",
                             f"FLEET_ARGS=--port {port} --sessions 3 --every 0.5"],
                            env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(make.stdout), daemon=True)
    reader.start()

    def said(pattern: str):
        def found():
            m = re.search(pattern, "".join(output))
            if m is None and make.poll() is not None:
                raise AssertionError(f"make fleet exited ({make.returncode}):\n{''.join(output)}")
            return m
        return found

    processes: list[int] = []
    try:
        work = Path(wait_for(said(r"throwaway data in (\S+)"), timeout=60).group(1))
        wait_for(said(r"fleet: ready"), timeout=180, what="the fleet ready")
        writer_url = re.search(r"write as reev_writer: +(\S+)", "".join(output)).group(1)
        reader_url = re.search(r"reads as reev_reader: +(\S+)", "".join(output)).group(1)
        # every run of every host's folder served, and a run the fleet writes meanwhile
        for host in HOSTS:
            for n in (1, 2, 3):
                wait_for(lambda h=host, n=n: served(port, f"{h}-{n:04d}"), timeout=60, what=f"{host}'s run {n}")
        wait_for(lambda: any(served(port, f"{h}-0004") for h in HOSTS), timeout=60, what="a run written live")
        with psycopg.connect(writer_url) as conn:
            owners = dict(conn.execute("SELECT execution_id, source FROM executions").fetchall())
        assert all(owners[f"{h}-{n:04d}"] == h for h in HOSTS for n in (1, 2, 3)), owners
        # the API's role reads, and may not write even in a read-write transaction
        with psycopg.connect(reader_url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM executions").fetchone()[0] >= 9
            for statement in ("UPDATE meta SET data_generation = 0", "CREATE TEMP TABLE t (x int)",
                              "CREATE TABLE t (x int)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    with conn.transaction():
                        conn.execute("SET TRANSACTION READ WRITE")
                        conn.execute(statement)
        postmaster = int((work / "pg" / "data" / "postmaster.pid").read_text().split()[0])
        processes = [*descendants(make.pid), postmaster, *descendants(postmaster)]
        assert len([p for p in processes if alive(p)]) >= 4 + 1 + 3, processes   # 3 daemons, the API, server
    finally:
        os.killpg(make.pid, signal.SIGINT)          # Ctrl-C
        try:
            make.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
            pytest.fail(f"make fleet still running 90 s after SIGINT:\n{''.join(output)}")
        reader.join(timeout=10)
    # make waits for the fleet, then ends by the signal itself, as after a Ctrl-C in a terminal
    assert make.returncode == -signal.SIGINT, "".join(output)
    assert "exited (status" not in "".join(output), "a program stopped before the Ctrl-C:\n" + "".join(output)
    assert re.search(r"fleet: SIGINT: stopping\nfleet: stopped; \S+ deleted", "".join(output)), "".join(output)
    left = [p for p in processes if alive(p)]
    assert not left, f"still running after the fleet stopped: {left}"
    assert not work.exists(), f"{work} left behind"


def test_the_guide_shows_the_roles_file_the_fleet_runs():
    guide = (ROOT / "docs" / "fleet.md").read_text()
    blocks = re.findall(r"^```sql\n(.*?)^```$", guide, re.M | re.S)
    assert (ROOT / "deploy" / "postgresql" / "roles.sql").read_text() in blocks
