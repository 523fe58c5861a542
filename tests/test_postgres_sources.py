"""Several daemons writing one PostgreSQL database, each under its --source (issue 18): one
daemon per source, each host's files its own, executions owned by the source that created them,
benchmarks shared when identical, and the shared rows (statistics, the change feed) exact while
daemons commit at once. Real daemons, a real server (the `pg_server` fixture)."""

import json
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests import dbread
from tests import fixtures as fx
from tests.conftest import Db, clean_env, daemon_command, fresh_database, wait_for

PROMPT = "Send 0.3 SOL to the second wallet."


@pytest.fixture
def url(pg_server) -> str:
    with fresh_database(pg_server) as u:
        yield u


class Host:
    """A runner host's folders under tmp_path, ingested into the database under its source."""

    def __init__(self, root: Path, source: str, url: str, benchmarks: Path | None = None):
        self.source, self.url = source, url
        self.sessions = root / source / "sessions"
        self.benchmarks = benchmarks or root / source / "benchmarks"
        self.sessions.mkdir(parents=True)
        self.benchmarks.mkdir(parents=True, exist_ok=True)
        self.logs = root / f"{source}.stderr"

    def args(self, *extra: str) -> list[str]:
        return daemon_command() + ["--sessions-dir", str(self.sessions), "--benchmarks-dir", str(self.benchmarks),
                                   "--db", self.url, "--source", self.source, *extra]

    def once(self, *extra: str, expect_rc: int | None = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.args("--once", *extra), capture_output=True, text=True, timeout=120,
                              env=clean_env(), stdin=subprocess.DEVNULL)
        if expect_rc is not None:
            assert proc.returncode == expect_rc, proc.stderr
        return proc

    def start(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(self.args("--rescan-interval", "0.3", "--settle-seconds", "0.2", *extra),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(self.logs, "ab"), env=clean_env())

    def run(self, execution_id: str, n_lines: int = 3, *, success: bool = True, score: float | None = None,
            agent: str = "deterministic", finished: bool = True):
        """An event log and (finished) a session file of one execution."""
        lines = [fx.prompt_line(PROMPT, at=0)] + [fx.step_complete_line(f"s{i}", at=i + 1) for i in range(n_lines - 1)]
        (self.sessions / f"enhanced_otel_{execution_id}.jsonl").write_bytes(fx.jsonl(lines))
        if finished:
            doc = fx.session_doc(f"inner-{execution_id}", success=success, score=score, agent_type=agent)
            (self.sessions / f"session_{execution_id}.json").write_bytes(fx.session_bytes(doc))


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(20)


def test_a_second_daemon_with_the_same_source_exits_2_naming_it_until_the_first_dies(tmp_path, url):
    host = Host(tmp_path, "runner-1", url)
    host.run("a")
    first = host.start()
    try:
        db = Db(url)
        wait_for(lambda: db.event_count("a") == 3, timeout=20, what="the first daemon to ingest")
        again = host.once(expect_rc=2)
        assert "source 'runner-1' is already running against this database" in again.stderr, again.stderr
        assert "reev-ingestd:runner-1" in again.stderr       # who holds it
        assert len([line for line in again.stderr.splitlines() if "ERROR" in line]) == 1
        other = Host(tmp_path, "runner-2", url)              # another source is welcome meanwhile
        other.run("b")
        other.once()
        assert db.event_count("b") == 3
    finally:
        stop(first, signal.SIGKILL)                          # its session ends: the lock goes with it
    host.run("c")
    host.once()
    assert Db(url).event_count("c") == 3


def test_two_sources_on_their_own_folders_keep_their_own_files(tmp_path, url):
    """Two hosts, the same paths on each (they often are), one database: each tracks its own
    files, and one host's scan never marks the other's files gone."""
    a = Host(tmp_path / "a", "host-a", url)
    b = Host(tmp_path / "b", "host-b", url)
    shared = tmp_path / "srv" / "sessions"          # the same path on both hosts
    shared.mkdir(parents=True)
    a.sessions = b.sessions = shared
    b.run("only-b")
    b.once()
    for f in shared.iterdir():                      # host a's folder at that path holds other files
        f.unlink()
    a.run("only-a")
    a.once()
    a.once()                                        # (a second scan: it finds fewer than ... its own)
    db = Db(url)
    files = db.dicts("SELECT source, path, state FROM files ORDER BY source, path")
    assert {(f["source"], Path(f["path"]).name, f["state"]) for f in files} == {
        ("host-a", "enhanced_otel_only-a.jsonl", "ok"), ("host-a", "session_only-a.json", "ok"),
        ("host-b", "enhanced_otel_only-b.jsonl", "ok"), ("host-b", "session_only-b.json", "ok")}
    assert db.scalar("SELECT source FROM executions WHERE execution_id = 'only-b'") == "host-b"
    assert db.event_count("only-a") == db.event_count("only-b") == 3


def test_an_execution_id_from_a_second_source_is_an_error_there_and_the_first_stays(tmp_path, url):
    a = Host(tmp_path, "host-a", url)
    b = Host(tmp_path, "host-b", url)
    a.run("shared-id", 3, success=True)
    a.once()
    b.run("shared-id", 5, success=False)
    proc = b.once()
    db = Db(url)
    run = db.execution("shared-id")
    assert (run["source"], run["status"], run["event_count"]) == ("host-a", "Completed", 3)
    errors = db.dicts("SELECT source, path, line, reason FROM ingest_errors ORDER BY path")
    assert [(e["source"], Path(e["path"]).name, e["line"]) for e in errors] == [
        ("host-b", "enhanced_otel_shared-id.jsonl", 0), ("host-b", "session_shared-id.json", 0)]
    assert all(e["reason"] == "execution 'shared-id' belongs to source 'host-a': not ingested from here"
               for e in errors)
    assert "belongs to source 'host-a'" in proc.stderr
    b.once()                                      # again: the same error, not a new one each time
    assert db.scalar("SELECT sum(count) FROM ingest_errors") == 2


def test_benchmarks_are_shared_when_identical_refused_when_different_removed_when_no_source_has_them(
        tmp_path, url):
    a = Host(tmp_path, "host-a", url)
    b = Host(tmp_path, "host-b", url)
    c = Host(tmp_path, "host-c", url)
    same = fx.benchmark_yaml("301-test-transfer", prompt=PROMPT)
    (a.benchmarks / "301-test-transfer.yml").write_text(same)
    (b.benchmarks / "301-test-transfer.yml").write_text(same)
    (c.benchmarks / "301-test-transfer.yml").write_text(fx.benchmark_yaml("301-test-transfer", prompt="other"))
    for host in (a, b, c):
        host.once()
    db = Db(url)
    assert db.scalar("SELECT count(*) FROM benchmarks") == 1
    assert db.benchmark("301-test-transfer")["prompt"] == PROMPT and db.benchmark("301-test-transfer")["removed"] == 0
    [error] = db.errors()
    assert error["source"] == "host-c" and "host-a" in error["reason"], error
    (a.benchmarks / "301-test-transfer.yml").unlink()
    a.once()
    assert db.benchmark("301-test-transfer")["removed"] == 0      # host-b still defines it
    assert Path(db.benchmark("301-test-transfer")["path"]).parent == b.benchmarks
    (b.benchmarks / "301-test-transfer.yml").unlink()
    b.once()
    assert db.benchmark("301-test-transfer")["removed"] == 1
    # host-c still defines it (its definition was refused while another stood): its next run
    # looks at its refused file again, and its definition is the benchmark now.
    c.once()
    assert db.benchmark("301-test-transfer")["removed"] == 0
    assert db.benchmark("301-test-transfer")["prompt"] == "other" and db.errors() == []


def test_a_benchmark_edited_on_every_host_is_the_new_definition_once_every_host_has_it(tmp_path, url):
    """The usual roll-out of an edit: host-a's daemon reads the new text while host-b still has
    the old one (refused there, for now), then host-b's; then host-a looks at its refused file
    again: one benchmark, the new text, no error left. (Before, both stayed refused for ever.)"""
    a, b = Host(tmp_path, "host-a", url), Host(tmp_path, "host-b", url)
    for text in ("v1", "v2"):
        for host in (a, b):
            (host.benchmarks / "200-x.yml").write_text(fx.benchmark_yaml("200-x", prompt=text))
            host.once()
    db = Db(url)
    assert db.benchmark("200-x")["prompt"] == "v2"
    [error] = db.errors()            # host-a's, from when host-b still had v1
    assert error["source"] == "host-a"
    a.once()
    assert db.benchmark("200-x")["prompt"] == "v2" and db.errors() == []
    assert db.scalar("SELECT count(*) FROM benchmark_sources") == 2


def test_live_daemons_take_an_edit_made_on_every_host(tmp_path, url):
    """The same with both daemons running: the refused host looks again once the benchmarks
    another source defines have changed (at its next heartbeat), without a restart."""
    a, b = Host(tmp_path, "host-a", url), Host(tmp_path, "host-b", url)
    for host in (a, b):
        (host.benchmarks / "200-x.yml").write_text(fx.benchmark_yaml("200-x", prompt="v1"))
    daemons = [a.start(), b.start()]
    try:
        db = Db(url)
        wait_for(lambda: db.scalar("SELECT count(*) FROM benchmark_sources") == 2, timeout=30,
                 what="both hosts to define 200-x")
        (a.benchmarks / "200-x.yml").write_text(fx.benchmark_yaml("200-x", prompt="v2"))
        wait_for(lambda: len(db.errors()) == 1, timeout=30, what="host-a's v2 refused while host-b has v1")
        (b.benchmarks / "200-x.yml").write_text(fx.benchmark_yaml("200-x", prompt="v2"))
        wait_for(lambda: db.benchmark("200-x")["prompt"] == "v2" and db.errors() == []
                 and db.scalar("SELECT count(*) FROM benchmark_sources") == 2, timeout=30,
                 what="v2 defined by both hosts, no error left")
    finally:
        for d in daemons:
            assert stop(d) == 0


def test_runs_known_by_their_prompt_follow_benchmarks_another_source_changed(tmp_path, url):
    """A run without a session file is linked to the benchmark whose prompt it has, as one
    SQLite daemon over every host's files links it: also when another source's files are what
    add or remove that benchmark. (Before, only the source that wrote a benchmark re-linked its
    runs: host-a's run stayed linked to a benchmark removed on every host, and stayed unlinked
    from one that host-b alone defined after the run was stored.)"""
    a, b = Host(tmp_path, "host-a", url), Host(tmp_path, "host-b", url)
    (a.sessions / "enhanced_otel_run-a.jsonl").write_bytes(fx.jsonl([fx.prompt_line(PROMPT)]))
    a.once()
    db = Db(url)

    def benchmark_of_run_a():
        return db.scalar("SELECT benchmark_id FROM executions WHERE execution_id = 'run-a'")
    assert benchmark_of_run_a() is None
    (b.benchmarks / "301-x.yml").write_text(fx.benchmark_yaml("301-x", prompt=PROMPT))
    b.once()
    a.once()
    assert benchmark_of_run_a() == "301-x"
    (b.benchmarks / "301-x.yml").unlink()
    b.once()
    assert db.benchmark("301-x")["removed"] == 1
    a.once()
    assert benchmark_of_run_a() is None


def _feed_is_in_commit_order(db: Db):
    """Every change once, numbered in commit order: generations never go back along the feed,
    and each generation's changes are contiguous."""
    rows = db.rows("SELECT seq, generation FROM changes ORDER BY seq")
    generations = [g for _, g in rows]
    assert generations == sorted(generations), "a later change number with an earlier generation"
    assert len({s for s, _ in rows}) == len(rows)


def test_three_daemons_at_once_give_the_statistics_and_feed_one_daemon_gives(tmp_path, url, run_once, workspace):
    """Three hosts commit into one database at the same time; the per-agent statistics equal
    those of one SQLite daemon over all the files, and the change feed holds every execution's
    last state, in commit order."""
    hosts = [Host(tmp_path, f"host-{i}", url, benchmarks=workspace.benchmarks) for i in range(3)]
    workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml("301-test-transfer", prompt=PROMPT))
    for i in range(60):
        host = hosts[i % 3]
        host.run(f"run-{i:02d}", 2 + i % 4, success=i % 3 != 0, score=None if i % 3 else 0.25,
                 agent=["deterministic", "local"][i % 2], finished=i % 5 != 0)
        for f in host.sessions.iterdir():
            shutil.copy2(f, workspace.sessions / f.name)
    daemons = [h.start() for h in hosts]
    try:
        db = Db(url)
        wait_for(lambda: db.scalar("SELECT count(*) FROM events") == sum(2 + i % 4 for i in range(60)), timeout=60,
                 what="the three daemons to ingest")
        # and then more, while all three run: appended lines, finished runs
        for i in range(0, 60, 5):
            doc = fx.session_doc(f"inner-run-{i:02d}", success=True, score=0.5)
            for d in (hosts[i % 3].sessions, workspace.sessions):
                (d / f"session_run-{i:02d}.json").write_bytes(fx.session_bytes(doc))
        wait_for(lambda: db.scalar("SELECT count(*) FROM executions WHERE status = 'Running'") == 0, timeout=60,
                 what="the late session files")
    finally:
        for d in daemons:
            assert stop(d) == 0
    for h in hosts:
        text = h.logs.read_text()
        assert "Traceback" not in text and "ERROR" not in text, text[-3000:]
    run_once()                                   # one SQLite daemon over every file
    stats_sql = "SELECT agent_type, benchmark_id, finished, succeeded, scored, score_sum FROM agent_benchmark_stats" \
                " ORDER BY agent_type, benchmark_id"
    assert db.rows(stats_sql) == dbread.query(workspace.db_path, stats_sql)
    _feed_is_in_commit_order(db)
    last = {}
    for eid, status, score in db.rows("SELECT execution_id, status, score FROM changes WHERE kind = 'execution'"
                                      " ORDER BY seq"):
        last[eid] = (status, score)
    assert last == {r[0]: (r[1], r[2]) for r in db.rows("SELECT execution_id, status, score FROM executions")}
    assert db.meta("data_generation") == db.scalar("SELECT max(generation) FROM changes")


def test_status_shows_each_source_and_no_password(tmp_path, url):
    host = Host(tmp_path, "runner-9", url)
    host.run("x")
    host.once()
    proc = subprocess.run(daemon_command() + ["status", "--json", "--db", url], capture_output=True, text=True,
                          env=clean_env(), timeout=30)
    report = json.loads(proc.stdout)
    assert [s["source"] for s in report["sources"]] == ["runner-9"] and report["sources"][0]["running"] is False
    assert report["executions"] == {"Completed": 1} and report["daemon_running"] is False
    secret = url.replace("postgresql:///", "postgresql://postgres:hunter2@/", 1)
    proc = subprocess.run(daemon_command() + ["status", "--db", secret], capture_output=True, text=True,
                          env=clean_env(), timeout=30)
    assert "hunter2" not in proc.stdout + proc.stderr and "postgres:***@" in proc.stdout, proc.stdout
    proc = subprocess.run(daemon_command() + ["--db", secret, "--once", "--sessions-dir", str(host.sessions),
                                              "--benchmarks-dir", str(host.benchmarks), "--log-level", "debug",
                                              "--source", "runner-9"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert "hunter2" not in proc.stdout + proc.stderr
    with psycopg.connect(url) as conn:      # (the password was not needed: the test server trusts local users)
        assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == 1


def test_a_batch_numbers_its_changes_only_once_it_holds_the_feed_lock(tmp_path, url):
    """The change feed is numbered in the commit tail, under the feed's advisory lock: while
    another session holds it, a daemon's whole batch waits unseen (no number taken, nothing
    visible), and once it gets the lock its changes come after every change committed before."""
    from daemon.storage.postgres.connection import FEED_KEY
    a, b = Host(tmp_path, "host-a", url), Host(tmp_path, "host-b", url)
    a.run("first")
    a.once()
    db = Db(url)
    before = db.rows("SELECT seq, generation FROM changes ORDER BY seq")
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (FEED_KEY,))
        b.run("second")
        waiting = subprocess.Popen(b.args("--once"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=open(b.logs, "ab"), env=clean_env())
        try:
            wait_for(lambda: db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                     == 1, timeout=30, what="the daemon's commit tail to wait for the feed lock",
                     alive=lambda: waiting.poll() is None or pytest.fail(b.logs.read_text()[-3000:]))
            assert db.rows("SELECT seq, generation FROM changes ORDER BY seq") == before
            assert db.execution("second") is None
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (FEED_KEY,))
        assert waiting.wait(30) == 0
    after = db.rows("SELECT seq, generation, execution_id FROM changes ORDER BY seq")
    new = [r for r in after if r[2] == "second"]
    assert new and all(seq > before[-1][0] and generation == before[-1][1] + 1 for seq, generation, _ in new)
