"""The live side: the event stream (SSE), /metrics and `reev-ingestd status`, against a real
daemon and a real API process."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from pathlib import Path
import urllib.parse

import apsw
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import fixtures as fx
from tests.api_client import Api
from tests.conftest import Db, alive, children, clean_env, daemon_command, wait_for


class StreamClient:
    """Reads an event stream in a thread, keeping every event and comment in arrival order."""

    def __init__(self, api: Api, query: str = "", last_event_id: str | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", "/api/v1/stream" + query, headers=headers)
        self.response = self.conn.getresponse()
        self.events: list[dict] = []
        self.comments = 0
        self.ended = False
        if self.response.status == 200:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self):
        event: dict = {}
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in event:
                        event["data"] = json.loads(event["data"])
                        self.events.append(event)
                    event = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    key, _, value = line.partition(": ")
                    event[key] = value
        except (OSError, ValueError, AttributeError):   # AttributeError: closed under our feet by close()
            pass
        self.ended = True

    def statuses(self) -> list[tuple[str, str]]:
        return [(e["data"]["execution_id"], e["data"]["status"]) for e in self.events if e["event"] == "execution"]

    def close(self):
        self.conn.close()


def seq(event: dict) -> int:
    """The number of an event's change in its database (its id is `<database id>:<seq>`)."""
    return int(event["id"].rpartition(":")[2])


@pytest.fixture
def feed(workspace, live_daemon, tmp_path):
    """A live daemon and a live API on the workspace."""
    daemon = live_daemon()
    api = Api(workspace.db_path, tmp_path / "api.log", "--stream-heartbeat", "0.5")
    yield daemon, api
    api.close()


def run(workspace, execution_id: str, success: bool | None, at: float):
    """An execution as reev writes it: an event line (Running), then maybe its session file."""
    workspace.append_events(execution_id, [fx.prompt_line("p", at=at)])
    if success is not None:
        workspace.write_session(execution_id, fx.session_doc(execution_id, success=success, start_time=1_761_000_000 + int(at)))


def test_stream_sees_every_status_change_once_in_order_across_a_reconnect(workspace, feed):
    daemon, api = feed
    first = StreamClient(api)
    wait_for(lambda: first.comments >= 1, what="the stream to be open (a heartbeat)")
    expected = []
    for i, ok in enumerate([True, False, True]):
        eid = f"exec-{i}"
        workspace.append_events(eid, [fx.prompt_line("p", at=i)])
        expected.append((eid, "Running"))
        daemon.wait_for(lambda: first.statuses() == expected, what=f"{eid} Running on the stream")
        workspace.write_session(eid, fx.session_doc(eid, success=ok))
        expected.append((eid, "Completed" if ok else "Failed"))
        daemon.wait_for(lambda: first.statuses() == expected, what=f"{eid} finished on the stream")
    last_id = first.events[-1]["id"]
    first.close()                                        # the client drops ...
    workspace.write_session("exec-1", fx.session_doc("exec-1", success=True))    # ... changes meanwhile
    run(workspace, "exec-3", None, 3)
    expected_after = [("exec-1", "Completed"), ("exec-3", "Running")]
    daemon.wait_for(lambda: workspace.db.execution("exec-3") is not None)
    second = StreamClient(api, last_event_id=last_id)    # ... and resumes
    wait_for(lambda: second.statuses() == expected_after, what="the changes made while disconnected")
    workspace.append_events("exec-3", [fx.tool_input_line("t", at=4)])   # no status change: no event
    workspace.write_session("exec-3", fx.session_doc("exec-3", success=True))
    expected_after.append(("exec-3", "Completed"))
    wait_for(lambda: second.statuses() == expected_after, what="exec-3 Completed")
    database_id = workspace.db.meta("database_id")
    assert all(e["id"].startswith(f"{database_id}:") for e in first.events + second.events)
    ids = [seq(e) for e in first.events + second.events]
    assert ids == sorted(set(ids)), "event ids increase, no repeats"
    second.close()


def test_stream_filters_and_error_events(workspace, feed):
    daemon, api = feed
    only_b = StreamClient(api, "?execution_id=exec-b")
    errors = StreamClient(api, "?types=ingest-error")
    wait_for(lambda: only_b.comments >= 1 and errors.comments >= 1)
    run(workspace, "exec-a", True, 0)
    run(workspace, "exec-b", False, 1)
    workspace.append_raw(workspace.events_path("exec-a"), b"{broken\n")
    daemon.wait_for(lambda: errors.events, what="an ingest-error event")
    wait_for(lambda: only_b.statuses() and only_b.statuses()[-1] == ("exec-b", "Failed"))
    assert {eid for eid, _ in only_b.statuses()} == {"exec-b"}
    assert errors.events[0]["event"] == "ingest-error"
    assert errors.events[0]["data"]["line"] == 2 and "JSON" in errors.events[0]["data"]["reason"]
    assert all(e["event"] == "ingest-error" for e in errors.events)
    only_b.close()
    errors.close()


def test_stream_resumes_from_further_back_than_the_watcher_keeps(workspace, feed):
    """The watcher keeps the newest RECENT changes in memory; a client resuming from before them
    reads its backlog from the database, then goes on from memory: every change after its
    Last-Event-ID once, in order, as the `changes` table has them."""
    from api.stream import RECENT

    daemon, api = feed
    live = StreamClient(api)
    wait_for(lambda: live.comments >= 1, what="the stream to be open")
    n = RECENT + 300
    for i in range(n):                           # one change each: a new execution, Running
        workspace.append_events(f"many-{i:05d}", [fx.prompt_line("p", at=i)])
    daemon.wait_for(lambda: len(live.events) == n, timeout=120, what=f"{n} changes on the open stream")
    resume_after = seq(live.events[9])
    feed_rows = workspace.db.rows("SELECT seq, execution_id FROM changes WHERE seq > ? ORDER BY seq", (resume_after,))
    assert len(feed_rows) == n - 10
    resumed = StreamClient(api, last_event_id=live.events[9]["id"])
    wait_for(lambda: len(resumed.events) >= n - 10, timeout=60, what="the backlog")
    assert [(seq(e), e["data"]["execution_id"]) for e in resumed.events] == feed_rows
    run(workspace, "after-resume", None, 0)      # and then what comes next, from memory
    daemon.wait_for(lambda: resumed.statuses()[-1:] == [("after-resume", "Running")], what="the next change")
    assert len(resumed.events) == n - 10 + 1
    live.close()
    resumed.close()


def test_stream_resume_past_pruned_changes_starts_at_the_oldest_kept(workspace, run_once, tmp_path):
    """The daemon keeps the newest 100 000 changes. A client resuming from one pruned since gets
    every change still kept, from the oldest, in order (what was pruned cannot be sent)."""
    for i in range(30):
        workspace.append_events(f"p-{i:02d}", [fx.prompt_line("p", at=i)])
    run_once()
    seqs = [r[0] for r in workspace.db.rows("SELECT seq FROM changes ORDER BY seq")]
    assert len(seqs) == 30
    conn = apsw.Connection(str(workspace.db_path))     # as the daemon's pruning would leave it
    conn.execute("DELETE FROM changes WHERE seq <= ?", (seqs[19],))
    conn.close()          # (the last connection out removes -wal and -shm: the daemon's next run
    run_once()            # makes them again, and the API opens only a database that has them)
    api = Api(workspace.db_path, tmp_path / "api.log", "--stream-heartbeat", "0.5")
    try:
        client = StreamClient(api, last_event_id=str(seqs[4]))
        wait_for(lambda: len(client.events) >= 10 and client.comments >= 1, what="the kept changes")
        kept = workspace.db.rows("SELECT seq, execution_id FROM changes ORDER BY seq")
        assert [(seq(e), e["data"]["execution_id"]) for e in client.events] == kept
        assert [seq for seq, _ in kept] == seqs[20:]
        client.close()
    finally:
        api.close()


def test_streams_when_the_database_is_replaced(workspace, run_once, tmp_path):
    """Another database (rebuilt from the files, replaced, restored) numbers its changes from 1
    again. A client resuming with an id of the old one was told nothing until the new one got
    past that number; an open stream went silent. Now an id of another database starts over
    from the oldest change kept, and an open stream ends when its database is replaced, so its
    client comes back with its id and is told the same."""
    for i in range(2):
        run(workspace, f"a-{i}", True, i)
    run_once()
    other = tmp_path / "other"
    for i in range(6):          # more changes than the first: its numbers alone tell nothing
        (other / "sessions").mkdir(parents=True, exist_ok=True)
        (other / "sessions" / f"enhanced_otel_b-{i}.jsonl").write_bytes(fx.jsonl([fx.prompt_line("p", at=i)]))
    run_once(base_args=["--sessions-dir", str(other / "sessions"), "--benchmarks-dir", str(other),
                        "--db", str(other / "reev.db")])
    first_id, other_id = workspace.db.meta("database_id"), Db(other / "reev.db").meta("database_id")
    api = Api(workspace.db_path, tmp_path / "api.log", "--stream-heartbeat", "0.5")
    try:
        old = StreamClient(api, last_event_id="0")          # everything the first database keeps
        wait_for(lambda: {eid for eid, _ in old.statuses()} == {"a-0", "a-1"}, what="the first database's runs")
        last_id = old.events[-1]["id"]
        assert seq(old.events[-1]) <= Db(other / "reev.db").scalar("SELECT max(seq) FROM changes"), \
            "the other database has a change of that number"
        for suffix in ("-wal", "-shm", ""):                  # (the file last: the API reopens on its inode)
            os.replace(f"{other / 'reev.db'}{suffix}", f"{workspace.db_path}{suffix}")
        wait_for(lambda: old.ended, what="the open stream to end")
        assert last_id.startswith(f"{first_id}:"), last_id
        resumed = StreamClient(api, last_event_id=last_id)
        wait_for(lambda: {eid for eid, _ in resumed.statuses()} == {f"b-{i}" for i in range(6)},
                 what="the new database's changes, from its oldest")
        assert all(e["id"].startswith(f"{other_id}:") for e in resumed.events)
        beyond = StreamClient(api, last_event_id="999999")   # a bare number past the newest change
        wait_for(lambda: len(beyond.statuses()) == 6, what="every change kept, for an id past the newest")
        for client in (old, resumed, beyond):
            client.close()
    finally:
        api.close()


def test_a_stream_asked_for_before_the_database_can_be_read_waits_for_it(workspace, live_daemon, tmp_path):
    """EventSource gives up for good on any answer but 200: a stream asked for while the
    database cannot be read (before the daemon's first start, while it is rebuilt) starts, and
    tells what happens once it can be read."""
    api = Api(workspace.db_path, tmp_path / "api.log", "--stream-heartbeat", "0.2")
    try:
        client = StreamClient(api)
        assert client.response.status == 200
        daemon = live_daemon()
        wait_for(lambda: api.get("/api/v1/health")["database"]["reachable"], what="the database")
        seen = client.comments          # (the stream looks for the database before each heartbeat)
        wait_for(lambda: client.comments >= seen + 2, what="the stream to go on once the database is there")
        run(workspace, "late", None, 0)
        daemon.wait_for(lambda: client.statuses() == [("late", "Running")], what="the run on the stream")
        client.close()
    finally:
        api.close()


def _holder(client: "StreamClient", pids: list[int]) -> int | None:
    """Which of `pids` holds the server's end of a stream client's connection (its TCP socket's
    inode, found in /proc/net/tcp by the client's port, among each process's descriptors)."""
    port = f":{client.conn.sock.getsockname()[1]:04X}"
    inodes = {f"socket:[{line.split()[9]}]" for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
              if line.split()[2].endswith(port)}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None


def _a_stream_on_each_worker(api: Api, clients: list) -> dict[int, "StreamClient"]:
    """Open streams until each of the server's two workers holds one (the kernel hands each
    connection to one of them); worker pid → its stream. Every stream opened goes in `clients`."""
    workers = wait_for(lambda: len(kids := children(api.proc.pid)) == 2 and kids, what="two workers")
    by_worker: dict[int, StreamClient] = {}
    for _ in range(40):
        client = StreamClient(api)
        clients.append(client)
        assert client.response.status == 200
        holder = wait_for(lambda: _holder(client, workers), what="the worker holding the stream")
        by_worker.setdefault(holder, client)
        if len(by_worker) == 2:
            return by_worker
    raise AssertionError(f"one worker took all of {len(clients)} connections")


def test_two_workers_both_serve_streams_and_stop_together(workspace, live_daemon, tmp_path):
    """`reev-api --workers 2`: two worker processes, each serving connections with its own
    watcher of the database; SIGTERM stops both, open streams and all; SIGKILL of the server
    leaves neither serving alone."""
    daemon = live_daemon()
    clients: list[StreamClient] = []
    api = Api(workspace.db_path, tmp_path / "api.log", "--workers", "2", "--stream-heartbeat", "0.5")
    try:
        by_worker = _a_stream_on_each_worker(api, clients)
        workspace.append_events("w-1", [fx.prompt_line("p")])
        for client in by_worker.values():
            daemon.wait_for(lambda: client.statuses() == [("w-1", "Running")], what="the change on each worker")
        assert api.close() == 0
        wait_for(lambda: not any(alive(w) for w in by_worker), timeout=10, what="both workers to exit")
        wait_for(lambda: all(c.ended for c in by_worker.values()), what="the streams to end")

        api = Api(workspace.db_path, tmp_path / "api-2.log", "--workers", "2", "--stream-heartbeat", "0.5")
        by_worker = _a_stream_on_each_worker(api, clients)      # (both workers serving by now)
        api.proc.kill()
        api.proc.wait()
        wait_for(lambda: not any(alive(w) for w in by_worker), timeout=10, what="both workers to exit")
    finally:
        for client in clients:
            client.close()
        api.close()


def test_stream_bad_parameters_and_the_stream_limit(workspace, live_daemon, tmp_path):
    live_daemon()
    api = Api(workspace.db_path, tmp_path / "api.log", "--max-streams", "2")
    try:
        assert "types" in api.get("/api/v1/stream?types=nonsense", expect=400)["message"]
        assert "last_event_id" in api.get("/api/v1/stream?last_event_id=abc", expect=400)["message"]
        a, b = StreamClient(api), StreamClient(api)
        wait_for(lambda: a.response.status == 200 and b.response.status == 200)
        third = StreamClient(api)
        assert third.response.status == 503
        assert "too many" in json.loads(third.response.read())["message"]
        a.close()
        wait_for(lambda: StreamClient(api).response.status == 200, what="a slot once a client left")
    finally:
        api.close()


def test_crafted_last_event_ids_are_400_before_the_stream_starts(workspace, run_once, tmp_path):
    """A Last-Event-ID (header or `last_event_id`) is an event id or a 400 that names it, before
    any byte of the stream is sent: past its 200 a stream can only end."""
    run(workspace, "exec-0", True, 0)
    run_once()
    api = Api(workspace.db_path, tmp_path / "api.log", "--stream-heartbeat", "0.2")
    try:
        crafted = ["-99999999999999999999", "99999999999999999999", "9223372036854775808", "-1", "+5", "1e3",
                   "0x10", "1_000", "1.0", "abc", "٣", " 5", "5\t", "9" * 5000, ":5", "0123456789abcdef:",
                   "0123456789ABCDEF:5", "0123456789abcde:5", "0123456789abcdef:-1", "0123456789abcdef:5:5"]
        for value in crafted:
            for client in (lambda: StreamClient(api, last_event_id=value) if value.isascii() and value.strip() == value
                           else None,
                           lambda: StreamClient(api, "?last_event_id=" + urllib.parse.quote(value))):
                stream = client()
                if stream is None:
                    continue
                assert stream.response.status == 400, (value, stream.response.status)
                body = json.loads(stream.response.read())
                assert "`last_event_id`" in body["message"] and len(body["message"]) < 300, body
                stream.close()
        # The ends of the range: streams that go on. One past the newest change is of another
        # database (rebuilt, restored): it starts over from the oldest change kept, as 0 does.
        for value in ("0", "007", "9223372036854775807"):
            stream = StreamClient(api, last_event_id=value)
            assert stream.response.status == 200
            wait_for(lambda: stream.comments >= 2 or stream.ended, what=f"heartbeats after Last-Event-ID {value}")
            assert not stream.ended
            assert stream.statuses() == [("exec-0", "Completed")], stream.events
            stream.close()
    finally:
        api.close()


def test_streams_end_cleanly_when_the_api_stops(workspace, feed):
    """A server drains open requests before it stops, and a stream never ends by itself: on
    SIGTERM the streams end and the server exits 0 (Api.close waits 10 s, then kills: -9),
    without having to kill a worker that would not stop: whatever event loop is installed
    (the test extra installs uvloop, which Granian's "auto" would pick)."""
    _, api = feed
    client = StreamClient(api)
    wait_for(lambda: client.comments >= 1)
    assert api.close() == 0
    wait_for(lambda: client.ended, what="the stream to end")
    log = api.log_path.read_text()
    assert "refused to gracefully stop" not in log, log


def test_each_write_becomes_an_event_on_the_stream(workspace, feed):
    """Each new execution reaches an open stream, within a deadline; how fast is measured by
    perf/streams.py and perf/live.py (the figure here is printed, not held to a target)."""
    daemon, api = feed
    client = StreamClient(api)
    wait_for(lambda: client.comments >= 1)
    latencies = []
    for i in range(20):
        written = time.monotonic()
        workspace.append_events(f"lat-{i}", [fx.prompt_line("p", at=i)])
        wait_for(lambda: len(client.events) == i + 1, interval=0.001, what=f"the event of lat-{i}",
                 alive=daemon.check_alive)
        latencies.append((time.monotonic() - written) * 1000)
    assert client.statuses() == [(f"lat-{i}", "Running") for i in range(20)]
    latencies.sort()
    print(f"write-to-event latency over 20 runs: p50 {latencies[10]:.1f} ms, max {latencies[-1]:.1f} ms")
    client.close()


# ---------------------------------------------------------------------- /metrics

def scrape(api: Api) -> dict[str, float]:
    reply = api.request("/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for s in family.samples:
            key = s.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}" if s.labels else "")
            samples[key] = s.value
    return samples


def test_metrics_parse_and_count_exactly_the_lines_written(workspace, feed):
    daemon, api = feed
    workspace.append_events("m-1", [fx.prompt_line("p")])
    daemon.wait_for(lambda: workspace.db.event_count("m-1") == 1)
    before = scrape(api)
    lines = [fx.tool_input_line(f"t{i}", at=i) for i in range(37)]
    workspace.append_events("m-1", lines[:20])
    workspace.append_events("m-2", lines[20:])
    workspace.append_raw(workspace.events_path("m-2"), b"not json\n")
    daemon.wait_for(lambda: workspace.db.event_count("m-1") == 21 and workspace.db.event_count("m-2") == 17)
    after = wait_for(lambda: (s := scrape(api))["reev_ingest_bad_lines_total"] == before["reev_ingest_bad_lines_total"] + 1 and s)
    assert after["reev_ingest_lines_total"] - before["reev_ingest_lines_total"] == 37
    assert after["reev_ingest_read_bytes_total"] > before["reev_ingest_read_bytes_total"]
    assert after["reev_ingest_batches_total"] > before["reev_ingest_batches_total"]
    assert after["reev_ingest_files_tracked{kind=events,state=ok}"] == 2
    assert after["reev_ingest_database_up"] == 1 and after["reev_ingest_heartbeat_age_seconds"] < 30
    assert after["reev_ingest_errors"] == 1
    api.request("/api/v1/benchmarks")
    tag = api.request("/api/v1/benchmarks").etag
    assert api.request("/api/v1/benchmarks", headers={"If-None-Match": tag}).status == 304
    api.request("/api/v1/sessions/nope")
    final = scrape(api)
    assert final["reev_api_requests_total{method=GET,route=/api/v1/benchmarks,status=200}"] == 2
    assert final["reev_api_requests_total{method=GET,route=/api/v1/benchmarks,status=304}"] == 1
    assert final["reev_api_requests_total{method=GET,route=/api/v1/sessions/{execution_id},status=404}"] == 1
    assert final["reev_api_not_modified_total"] == after["reev_api_not_modified_total"] + 1
    assert final["reev_api_request_duration_seconds_count{route=/api/v1/benchmarks}"] == 3
    client = StreamClient(api)
    wait_for(lambda: client.comments >= 1)
    assert scrape(api)["reev_api_open_streams"] == 1
    client.close()


def test_metrics_before_the_database_exists(tmp_path):
    api = Api(tmp_path / "none.db", tmp_path / "api.log")
    try:
        assert scrape(api)["reev_ingest_database_up"] == 0
    finally:
        api.close()


# ---------------------------------------------------------------------- reev-ingestd status

def status(db_path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(daemon_command() + ["status", "--db", str(db_path), *extra], capture_output=True,
                          text=True, env=clean_env(), timeout=30)


def dump(db_path) -> subprocess.CompletedProcess:
    return subprocess.run(daemon_command() + ["dump", "--db", str(db_path)], capture_output=True, text=True,
                          env=clean_env(), timeout=30)


def test_status_and_dump_create_no_file(workspace, run_once, tmp_path):
    """A copy of a daemon's reev.db alone (a backup, say): status and dump open it read-only as
    the API does, so they create no -wal or -shm beside it (SQLite would, read-only as it is):
    status says why it cannot read it (degraded), dump fails; with the two files, both read it."""
    workspace.append_events("run-1", [fx.prompt_line("p")])
    run_once()
    copy = tmp_path / "copy" / "reev.db"
    copy.parent.mkdir()
    copy.write_bytes(workspace.db_path.read_bytes())
    proc = status(copy)
    assert proc.returncode == 1 and "reev-ingestd has not opened the database reev.db" in proc.stdout, proc
    proc = dump(copy)
    assert proc.returncode == 2 and proc.stdout == "" and "has not opened" in proc.stderr, proc
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert os.listdir(copy.parent) == ["reev.db"], "no file created"
    before = sorted(os.listdir(workspace.db_path.parent))
    assert status(workspace.db_path).returncode == 1          # (degraded: no daemon runs)
    assert '"run-1"' in dump(workspace.db_path).stdout
    assert sorted(os.listdir(workspace.db_path.parent)) == before


@pytest.mark.parametrize("make", ["fifo", "folder", "fifo beside"])
def test_status_and_dump_refuse_what_is_not_a_database_file(workspace, run_once, tmp_path, make):
    """A FIFO as --db made status wait for ever (SQLite's open() of a FIFO waits for a writer);
    a folder, or a FIFO where the -wal should be, are no database either: one line, exit 2,
    at once."""
    if make == "fifo beside":
        run_once()
        db = workspace.db_path
        os.unlink(f"{db}-wal")
        os.mkfifo(f"{db}-wal")
    else:
        db = tmp_path / "reev.db"
        os.mkfifo(db) if make == "fifo" else db.mkdir()
    what = {"fifo": "reev.db is a FIFO", "folder": "reev.db is a folder", "fifo beside": "reev.db-wal is a FIFO"}[make]
    for proc in (status(db), dump(db)):
        assert proc.returncode == 2 and proc.stdout == "", proc
        assert len(proc.stderr.splitlines()) == 1 and what in proc.stderr and str(db) in proc.stderr, proc.stderr


def test_status_healthy_with_a_running_daemon(workspace, live_daemon):
    daemon = live_daemon()
    workspace.append_events("s-1", [fx.prompt_line("p")])
    workspace.append_raw(workspace.events_path("s-1"), b"{oops\n" + b'{"partial": ')
    daemon.wait_for(lambda: workspace.db.errors())
    proc = status(workspace.db_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "healthy" in proc.stdout and "1 Running" in proc.stdout and ":2" in proc.stdout
    report = json.loads(status(workspace.db_path, "--json").stdout)
    assert report["healthy"] is True and report["executions"] == {"Running": 1}
    assert report["files"] == {"events": {"ok": 1}} and report["error_count"] == 1
    assert report["lag_bytes"] == len(b'{"partial": '), "the unfinished line is not ingested yet"


def test_status_degraded_without_database_or_heartbeat(workspace, run_once, tmp_path):
    proc = status(tmp_path / "missing.db")
    assert proc.returncode == 1 and "DEGRADED" in proc.stdout and "does not exist" in proc.stdout
    run_once()
    conn = apsw.Connection(str(workspace.db_path))     # a daemon last seen an hour ago
    try:        # (open while status reads: the last connection out would remove -wal and -shm)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'heartbeat_at'", (time.time() - 3600,))
        proc = status(workspace.db_path)
        assert proc.returncode == 1 and "heartbeat" in proc.stdout
        assert json.loads(status(workspace.db_path, "--json").stdout)["healthy"] is False
    finally:
        conn.close()
