"""Readers and the writer: the API under the UI's polling from many concurrent clients while
the daemon back-fills thousands of files and tails live ones; and a long read transaction
held by another process, which must not make the daemon fail or stall (WAL)."""

import http.client
import json
import random
import threading
import time

from perf.corpus import write_corpus
from tests import fixtures as fx
from tests.api_client import Api
from tests.reliability.conftest import scale
from tests.reliability.support import hold_database, percentile

POLL_SECONDS = 2.0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.by_status: dict[int, int] = {}
        self.server_errors: list[str] = []
        self.failures: list[str] = []      # connection errors, timeouts, unreadable bodies
        self.client_errors: set[str] = set()   # 4xx: shown, not failures (a run without a benchmark)

    def add(self, path: str, status: int, seconds: float, body: bytes):
        with self.lock:
            self.latencies.append(seconds)
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if status >= 500:
                self.server_errors.append(f"{status} {path}: {body[:300]!r}")
            elif status >= 400:
                self.client_errors.add(f"{status} {path.split('?')[0]}")

    def fail(self, text: str):
        with self.lock:
            self.failures.append(text)


class UiClient(threading.Thread):
    """One browser tab of the reev UI: every 2 s the routes it polls (with If-None-Match, as a
    browser revalidates), and now and then a burst of detail views, over one keep-alive
    connection to 127.0.0.1. Bounded by `max_cycles` and the stop event."""

    def __init__(self, port: int, seed: int, stats: Stats, stop: threading.Event, max_cycles: int):
        super().__init__(daemon=True)
        self.port, self.stats, self.stop, self.max_cycles = port, stats, stop, max_cycles
        self.rng = random.Random(seed)
        self.etags: dict[str, str] = {}
        self.runs: list[dict] = []          # from the last sessions page
        self.benchmarks: list[str] = []
        self.conn = None

    def get(self, path: str, revalidate: bool = True):
        headers = {"If-None-Match": self.etags[path]} if revalidate and path in self.etags else {}
        for attempt in (1, 2):              # a closed keep-alive connection is retried once
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            started = time.perf_counter()
            try:
                self.conn.request("GET", path, headers=headers)
                reply = self.conn.getresponse()
                body = reply.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    self.stats.fail(f"GET {path}: {e!r}")
                continue
            except OSError as e:
                self.conn.close()
                self.conn = None
                self.stats.fail(f"GET {path}: {e!r}")
                return None
            self.stats.add(path, reply.status, time.perf_counter() - started, body)
            if reply.getheader("ETag"):
                self.etags[path] = reply.getheader("ETag")
            if reply.status == 200:
                try:
                    return json.loads(body)
                except ValueError as e:
                    self.stats.fail(f"GET {path}: body is not JSON ({e}): {body[:200]!r}")
            return None
        return None

    def run(self):
        try:
            for _ in range(self.max_cycles):
                if self.stop.is_set():
                    break
                started = time.monotonic()
                self.poll()
                if self.rng.random() < 0.35:
                    self.burst()
                self.stop.wait(max(0.0, started + POLL_SECONDS - time.monotonic()))
        except Exception as e:       # a bug in the client is a failure too
            self.stats.fail(f"client crashed: {e!r}")
        finally:
            if self.conn is not None:
                self.conn.close()

    def poll(self):
        self.get("/api/v1/health")
        benchmarks = self.get("/api/v1/benchmarks")
        if benchmarks:
            self.benchmarks = [b["id"] for b in benchmarks]
        self.get("/api/v1/agent-performance")
        page = self.get("/api/v1/sessions?limit=20", revalidate=False)
        if page:
            self.runs = page["items"]
        if self.runs:
            run = self.rng.choice(self.runs)
            self.get(f"/api/v1/benchmarks/{run['benchmark_id'] or 'none'}/status/{run['execution_id']}")
        self.get("/api/v1/ingest/status")

    def burst(self):
        if not self.runs:
            return
        for _ in range(self.rng.randint(4, 10)):
            run = self.rng.choice(self.runs)
            eid, bench = run["execution_id"], run["benchmark_id"] or "none"
            path = self.rng.choice([
                f"/api/v1/benchmarks/{bench}", f"/api/v1/benchmarks/{bench}/status",
                f"/api/v1/execution-logs/{bench}?execution_id={eid}",
                f"/api/v1/transaction-logs/{bench}?execution_id={eid}", f"/api/v1/flows/{eid}",
                f"/api/v1/sessions/{eid}", f"/api/v1/sessions/{eid}/events?limit=100",
                f"/api/v1/sessions/{eid}/tool-calls", "/api/v1/agents", "/api/v1/ingest/errors",
                f"/api/v1/agent-performance/{run['agent_type'] or 'none'}/results?limit=20"])
            self.get(path, revalidate=self.rng.random() < 0.5)


class LiveRuns(threading.Thread):
    """Runs still going: one line every few milliseconds into a few event logs, now and then
    in two writes."""

    def __init__(self, workspace, n: int, stop: threading.Event, max_lines: int):
        super().__init__(daemon=True)
        self.ws, self.stop, self.max_lines = workspace, stop, max_lines
        self.ids = [f"live-{i:02d}" for i in range(n)]
        self.written = {i: 0 for i in self.ids}
        self.rng = random.Random(5)

    def run(self):
        for n in range(self.max_lines):
            if self.stop.is_set():
                break
            eid = self.ids[n % len(self.ids)]
            k = self.written[eid]
            item = fx.prompt_line("a live run", at=0) if k == 0 else fx.tool_input_line("sol_transfer", {"k": k}, at=k)
            data = fx.line_text(item) + b"\n"
            if self.rng.random() < 0.2:
                cut = len(data) // 2
                self.ws.append_raw(self.ws.events_path(eid), data[:cut])
                time.sleep(0.01)
                self.ws.append_raw(self.ws.events_path(eid), data[cut:])
            else:
                self.ws.append_raw(self.ws.events_path(eid), data)
            self.written[eid] = k + 1
            self.stop.wait(0.02)


def bad_log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if "BusyError" in line or "locked" in line or "Traceback" in line or "database error" in line]


def test_api_under_polling_while_the_daemon_backfills_and_tails(workspace, live_daemon, db, tmp_path):
    waves, per_wave = scale(4, 10), scale(500, 1000)
    n_clients = scale(24, 64)
    d = live_daemon(log_level="info")
    api = Api(workspace.db_path, tmp_path / "api.log")
    stats, stop = Stats(), threading.Event()
    clients = [UiClient(api.port, seed, stats, stop, max_cycles=scale(40, 200)) for seed in range(n_clients)]
    live = LiveRuns(workspace, scale(4, 12), stop, max_lines=scale(2000, 20000))
    started = time.monotonic()
    try:
        live.start()
        for c in clients:
            c.start()
        lines = 0
        for wave in range(waves):                                   # back-fill, wave after wave
            lines += write_corpus(workspace.sessions, workspace.benchmarks, per_wave, seed=100 + wave, jobs=1)["lines"]
            d.wait_for(lambda: db.scalar("SELECT count(*) FROM executions WHERE execution_id NOT LIKE 'live-%'")
                       >= per_wave * (wave + 1) * 0.8, timeout=60, what=f"wave {wave + 1} mostly ingested")
        backfill = time.monotonic() - started
        total = waves * per_wave
        d.wait_for(lambda: db.scalar("SELECT count(*) FROM executions WHERE execution_id NOT LIKE 'live-%'") == total
                   and db.scalar("SELECT count(*) FROM events e JOIN executions x ON x.id = e.exec_id"
                                 " WHERE x.execution_id NOT LIKE 'live-%'") == lines,
                   timeout=60, what=f"{total} sessions and {lines} lines")
        backfill = time.monotonic() - started
        stop.wait(scale(5, 20))                                      # the live runs alone for a while
    finally:
        stop.set()
        for c in clients:
            c.join(30)
        live.join(10)
    polled = time.monotonic() - started
    for eid, n in live.written.items():
        d.wait_for(lambda: db.event_count(eid) == n, timeout=10, what=f"the {n} lines of {eid}")
    api.check_alive()
    d.check_alive()
    api_log = api.log_path.read_text(errors="replace")
    api.close()

    lat = sorted(stats.latencies)
    n = len(lat)
    print(f"\n{n_clients} clients, {n} requests in {polled:.1f} s ({n / polled:.0f}/s); statuses {stats.by_status};"
          f" latency p50 {percentile(lat, 50) * 1000:.1f} ms, p95 {percentile(lat, 95) * 1000:.1f} ms,"
          f" p99 {percentile(lat, 99) * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms; back-fill of {total} sessions"
          f" ({lines} lines) done {backfill:.1f} s after the start; live lines {sum(live.written.values())};"
          f" 4xx: {sorted(stats.client_errors)[:5]}")
    assert all(not c.is_alive() for c in clients)
    assert n >= n_clients * 3, "the clients hardly got to ask anything"
    assert stats.server_errors == [], f"{len(stats.server_errors)} 5xx answers: {stats.server_errors[:10]}"
    assert stats.failures == [], f"{len(stats.failures)} failed requests: {stats.failures[:10]}"
    assert bad_log_lines(d.stderr()) == []
    assert bad_log_lines(api_log) == []


def test_a_long_read_transaction_does_not_stall_the_daemon(workspace, live_daemon, db):
    """Another process keeps one read transaction open, running a recursive CTE for several
    seconds (not through the API): the daemon keeps committing new lines meanwhile, back-fills
    a corpus past the WAL's auto-checkpoint size, and never fails."""
    hold = scale(6.0, 20.0)
    d = live_daemon(log_level="info")
    live = "long-reader-live"
    workspace.append_events(live, [fx.prompt_line("live while a reader holds a snapshot")])
    d.wait_for(lambda: db.event_count(live) == 1)

    reader = hold_database(workspace.db_path, "READ", hold)
    try:
        first = reader.stdout.readline().split()
        assert first[:1] == ["holding"], (first, reader.stderr.read())
        held_at = time.monotonic()
        lines = write_corpus(workspace.sessions, workspace.benchmarks, scale(300, 1500), seed=7, jobs=1)["lines"]
        commits, written = [], 1            # commit latency of lines seen while the reader still held
        while time.monotonic() < held_at + hold - 1.0:
            workspace.append_events(live, [fx.tool_input_line("sol_transfer", {"n": written}, at=written)])
            written += 1
            t0 = time.monotonic()
            d.wait_for(lambda: db.event_count(live) == written, timeout=5,
                       what=f"line {written} committed while the reader holds its snapshot")
            if reader.poll() is None:
                commits.append(time.monotonic() - t0)
            time.sleep(0.05)
        out, err = reader.communicate(timeout=hold + 30)
        held = time.monotonic() - held_at
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    released = out.split()
    assert released[0] == "released" and released[1] == released[2] == first[1], \
        f"the reader's snapshot moved: {first} then {released}"
    assert held >= hold - 0.5
    d.wait_for(lambda: db.scalar("SELECT count(*) FROM events") == lines + written, timeout=30,
               what="the corpus back-filled")
    heartbeat_after = time.time()
    d.wait_for(lambda: db.meta("heartbeat_at") >= heartbeat_after - 0.01, timeout=10, what="a fresh heartbeat")
    wal = workspace.db_path.with_name(workspace.db_path.name + "-wal")
    print(f"\nreader held its snapshot {held:.1f} s; {len(commits)} lines committed meanwhile, commit latency "
          f"max {max(commits) * 1000:.0f} ms, median {sorted(commits)[len(commits) // 2] * 1000:.0f} ms;"
          f" {lines} back-filled lines; WAL {wal.stat().st_size / 1e6:.1f} MB")
    assert len(commits) >= scale(5, 20)
    assert bad_log_lines(d.stderr()) == []
