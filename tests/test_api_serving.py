"""How `reev-api` serves under load and under systemd: READY=1 only once the port accepts
connections, one server per port (a second one refuses to start), the whole server stopping
when a worker dies, idle and silent connections closed after the keep-alive time, connections per
worker bounded below the file limit, the stream limit held under a burst, and health
answering within a second through all of it. Real processes, real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from api.serving import FD_RESERVE, KEEP_ALIVE_SECONDS, MAX_CONNECTIONS_PER_WORKER
from tests import fixtures as fx
from tests.api_client import (Api, allow_open_files, api_command, close_all, closed_by_server, free_port,
                              idle_connections, read_reply, send_get)
from tests.conftest import alive, clean_env, daemon_command, wait_for

FLOOD = 1100          # more than the 1 024 connections the server used to take per worker


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    """A database the daemon wrote (one run), so that event streams can start."""
    root = tmp_path_factory.mktemp("serving")
    sessions, benchmarks, db = root / "sessions", root / "benchmarks", root / "state" / "reev.db"
    sessions.mkdir()
    benchmarks.mkdir()
    (sessions / "enhanced_otel_run-1.jsonl").write_bytes(fx.jsonl([fx.prompt_line("p")]))
    subprocess.run(daemon_command() + ["--sessions-dir", str(sessions), "--benchmarks-dir", str(benchmarks),
                                       "--db", str(db), "--once"], check=True, env=clean_env(), timeout=60,
                   capture_output=True)
    return db


def health_within(api: Api, seconds: float) -> float:
    """Time /api/v1/health takes on a new connection; fails past `seconds`."""
    started = time.monotonic()
    reply = api.request("/api/v1/health", timeout=seconds)
    took = time.monotonic() - started
    assert reply.status == 200
    return took


# ---------------------------------------------------------------------- READY=1


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_means_a_connection_made_at_that_instant_is_accepted(tmp_path, workers):
    """systemd starts the units ordered after reev-api as soon as READY=1 arrives: a connection
    made at that instant must be accepted, and answered."""
    for attempt in range(5):
        notify_path = tmp_path / f"notify-{attempt}.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(30)
        port = free_port()
        log = open(tmp_path / f"api-{attempt}.log", "wb")
        proc = subprocess.Popen(api_command() + ["--db", str(tmp_path / "none.db"), "--port", str(port),
                                                 "--workers", str(workers)],
                                stdout=log, stderr=log, env=clean_env() | {"NOTIFY_SOCKET": str(notify_path)})
        try:
            while "READY=1" not in notify.recv(65536).decode().split("\n"):
                pass
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            except ConnectionRefusedError:
                pytest.fail(f"attempt {attempt + 1}: READY=1 arrived before port {port} accepted connections")
            with conn:
                send_get(conn, "/api/v1/health")
                assert read_reply(conn).status == 200
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                log.close()
                notify.close()


# ---------------------------------------------------------------------- one server per port


def second_api(db: Path, port: int, *extra: str) -> subprocess.CompletedProcess:
    """A reev-api started on a port already in use; fails the test if it is still running after
    10 s (it started, and shares the port)."""
    command = api_command() + ["--db", str(db), "--port", str(port), *extra]
    try:
        return subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=10,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{extra}: a second reev-api started on port {port}, in use:\n{e.stderr}")


def refused_in_one_line(proc: subprocess.CompletedProcess, address: str):
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " INFO " not in line]
    assert errors == [errors[0]] and f"CRITICAL reev.api: cannot listen on {address}: Address already in use" in \
        errors[0], proc.stderr


@pytest.mark.parametrize("extra", [(), ("--workers", "2")], ids=["one worker", "two workers"])
def test_a_second_api_on_a_port_in_use_refuses_to_start(db, tmp_path, extra):
    """Granian's workers each bound their own socket with SO_REUSEPORT, which lets any process of
    the same user bind the port too: a second reev-api said `Listening at` and took every other
    connection, serving its own database. Now it refuses with one line and exit status 1,
    whatever its address or workers, and the first one still serves all the connections."""
    first = Api(db, tmp_path / "api.log", *extra)
    try:
        other = tmp_path / "other" / "reev.db"
        for more in ((), ("--workers", "2"), ("--host", "0.0.0.0")):
            address = f"{'0.0.0.0' if '--host' in more else '127.0.0.1'}:{first.port}"
            refused_in_one_line(second_api(other, first.port, *more), address)
        for _ in range(20):       # each on a new connection: every one is the first's
            assert first.get("/api/v1/health")["database"]["reachable"] is True
        first.check_alive()
    finally:
        first.close()


def test_an_api_refuses_a_port_another_program_shares_with_so_reuseport(tmp_path):
    """A listener with SO_REUSEPORT (another server of the same user) would have let each of our
    workers join its socket group and share its connections."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        refused_in_one_line(second_api(tmp_path / "reev.db", port), f"127.0.0.1:{port}")


def test_when_a_worker_dies_the_whole_api_stops_with_exit_status_1(db, tmp_path):
    """A worker killed (SIGKILL, the OOM killer) stops the server and its other workers, exit
    status 1: systemd's Restart=on-failure starts the API again whole, rather than it serving on
    with fewer workers."""
    api = Api(db, tmp_path / "api.log", "--workers", "2")
    try:
        workers = wait_for(lambda: len(kids := api.workers()) == 2 and kids, what="two workers")
        os.kill(workers[0], signal.SIGKILL)
        assert api.proc.wait(30) == 1
        assert "Unexpected exit from worker" in api.log_path.read_text()
        wait_for(lambda: not any(alive(w) for w in workers), timeout=10, what="the other worker to stop")
    finally:
        api.close()


# ---------------------------------------------------------------------- connections


def test_idle_and_silent_connections_are_closed_after_the_keep_alive_time(db, tmp_path):
    """A keep-alive connection that asked once and went silent, and one that never sent a byte
    (slowloris), are both closed by the server after KEEP_ALIVE_SECONDS."""
    api = Api(db, tmp_path / "api.log")
    try:
        idle, = idle_connections(api.port, 1)
        silent = socket.create_connection(("127.0.0.1", api.port))
        half = socket.create_connection(("127.0.0.1", api.port))
        half.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")     # headers never finished
        limit = KEEP_ALIVE_SECONDS + 3
        for name, sock in (("idle", idle), ("silent", silent), ("half a request", half)):
            after = closed_by_server(sock, limit)
            assert after is not None, f"the {name} connection was still open after {limit} s"
            sock.close()
    finally:
        api.close()


@dataclass
class Clients:
    """A reev-api and the connections a test opened to it."""
    api: Api
    socks: list[socket.socket] = field(default_factory=list)

    def connect(self, n: int) -> list[socket.socket]:
        self.socks += [socket.create_connection(("127.0.0.1", self.api.port), timeout=10) for _ in range(n)]
        return self.socks


@pytest.fixture
def clients(db, tmp_path):
    """A reev-api on the database; it and every connection opened to it are closed after the test."""
    allow_open_files(FLOOD + 200)
    c = Clients(Api(db, tmp_path / "api.log"))
    yield c
    close_all(c.socks)
    c.api.close()


def test_health_answers_within_a_second_beside_a_flood_of_idle_connections(clients):
    clients.socks += idle_connections(clients.api.port, FLOOD, timeout=10)
    took = health_within(clients.api, 1.0)
    print(f"health beside {FLOOD} idle keep-alive connections: {took * 1000:.1f} ms")


def test_health_answers_within_a_second_beside_a_flood_of_event_streams(clients):
    socks = clients.connect(FLOOD)
    for s in socks:
        send_get(s, "/api/v1/stream")
    statuses = [read_reply(s, body=False).status for s in socks]
    assert statuses.count(200) == 100 and statuses.count(503) == FLOOD - 100, \
        {s: statuses.count(s) for s in set(statuses)}
    took = health_within(clients.api, 1.0)
    print(f"health beside {FLOOD} event streams asked for: {took * 1000:.1f} ms")


def test_a_burst_of_streams_is_held_to_the_stream_limit(clients):
    """400 streams asked for at the same moment, with the default limit of 100: exactly 100 are
    served, the others answered 503 (and their connections closed), and the gauge never shows
    more than the limit."""
    socks = clients.connect(400)
    burst = b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n"
    for s in socks:                      # every request on the wire before any answer is read
        s.sendall(burst)
    replies = [read_reply(s, body=False) for s in socks]
    statuses = [r.status for r in replies]
    assert statuses.count(200) == 100, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(503) == 300
    refused = next(i for i, r in enumerate(replies) if r.status == 503)
    assert replies[refused].headers["content-type"] == "application/json"
    assert "too many open event streams" in replies[refused].json()["message"]
    assert closed_by_server(socks[refused], 5) is not None, "a refused client keeps no connection"
    gauge = [line for line in clients.api.request("/metrics").body.decode().splitlines()
             if line.startswith("reev_api_open_streams ")]
    assert gauge == ["reev_api_open_streams 100.0"]


# ---------------------------------------------------------------------- the file limit


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files limit in /proc/{pid}/limits")


def test_the_soft_file_limit_is_raised_as_far_as_connections_need(db, tmp_path):
    """Started with a soft limit of 512, the server and its workers run with at least what
    MAX_CONNECTIONS_PER_WORKER connections need, where the hard limit allows it."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    wanted = MAX_CONNECTIONS_PER_WORKER + FD_RESERVE
    if hard < wanted:
        pytest.skip(f"the hard limit on open files here is {hard}")
    api = Api(db, tmp_path / "api.log", open_files=(512, hard))
    try:
        for pid in [api.proc.pid, *api.workers()]:
            soft, _ = open_files_limit(pid)
            assert soft >= wanted, (pid, soft)
    finally:
        api.close()


def test_connections_stay_below_a_low_file_limit(db, tmp_path):
    """With only 400 files allowed (soft and hard), 500 clients at once: a worker takes at most
    400 - FD_RESERVE connections, the others wait in the listen queue (instead of accept()
    failing with EMFILE) and are served as the first ones leave."""
    allow_open_files(800)
    api = Api(db, tmp_path / "api.log", open_files=(400, 400))
    socks = []
    try:
        socks = [socket.create_connection(("127.0.0.1", api.port), timeout=10) for _ in range(500)]
        started = time.monotonic()
        for s in socks:
            send_get(s, "/api/v1/health")
        statuses = []
        for s in socks:
            statuses.append(read_reply(s).status)
            s.close()
        print(f"500 clients against a cap of {400 - FD_RESERVE}: all answered in {time.monotonic() - started:.2f} s")
        assert statuses == [200] * len(socks)
        api.check_alive()
        log = api.log_path.read_text(errors="replace")
        assert "Too many open files" not in log, log[-3000:]
        assert health_within(api, 1.0) < 1.0
    finally:
        close_all(socks)
        api.close()
