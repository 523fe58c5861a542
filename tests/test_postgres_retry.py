"""The daemon against a PostgreSQL server that makes a batch fail (issue 18): a batch that loses
a conflict (a lock not granted in time, a deadlock) or the server restarting is rolled back and
run again, by `--once` too, and counted (`reev-ingestd status`, the logs); a daemon started while
the server is down waits for it; `status` on a hot standby judges the daemons by their
heartbeats. Real daemons, real servers: conflicts come from a second real connection."""

import json
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests import pgcluster
from tests import fixtures as fx
from tests.conftest import Db, clean_env, daemon_command, fresh_database, missing_precondition, wait_for
from tests.test_postgres_sources import PROMPT, Host, stop
from tests.test_systemd import notify_socket  # noqa: F401  (a fixture)


@pytest.fixture
def url(pg_server) -> str:
    with fresh_database(pg_server) as u:
        yield u


def status(url: str) -> dict:
    proc = subprocess.run(daemon_command() + ["status", "--json", "--db", url], capture_output=True, text=True,
                          env=clean_env(), timeout=30)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def retry_warnings(log: str, error: str) -> list[str]:
    return [line for line in log.splitlines() if f"database error ({error}" in line and "retrying in" in line]


def start_once(host: Host) -> subprocess.Popen:
    return subprocess.Popen(host.args("--once", "--log-level", "info"), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(host.logs, "ab"), env=clean_env())


def test_once_runs_again_a_batch_that_waited_too_long_for_a_row_lock_and_counts_it(tmp_path, url, pg_server):
    """Another session holds the row the batch must update (the source's counters) past the
    daemon's lock_timeout (set on the database: 55P03, Busy): `--once` rolls the batch back,
    backs off and runs it again, until the lock is let go; exit 0, every line once, and the
    batches it ran again counted in `status` (per source and in all) and in its last log line."""
    host = Host(tmp_path, "runner-1", url)
    host.run("first")
    host.once()
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} SET lock_timeout = '100ms'").format(
            sql.Identifier(pgcluster.dbname_of(url))))
    host.run("second", 4)
    with psycopg.connect(url) as holder:          # (a transaction, open until the rollback)
        holder.execute("SELECT 1 FROM sources WHERE source = 'runner-1' FOR UPDATE")
        once = start_once(host)
        try:
            wait_for(lambda: len(retry_warnings(host.logs.read_text(), "LockNotAvailable")) >= 3, timeout=30,
                     what="the batch to fail and be run again",
                     alive=lambda: once.poll() is None or pytest.fail(host.logs.read_text()[-3000:]))
        finally:
            holder.rollback()
        assert once.wait(60) == 0, host.logs.read_text()[-3000:]
    log = host.logs.read_text()
    retried = len(retry_warnings(log, "LockNotAvailable"))
    db = Db(url)
    assert db.event_count("second") == 4 and db.event_count("first") == 3
    report = status(url)
    assert report["retried_batches_total"] == retried
    assert [(s["source"], s["retried_batches_total"]) for s in report["sources"]] == [("runner-1", retried)]
    [done] = [line for line in log.splitlines() if "--once:" in line]
    assert f"; {retried} batches retried since start" in done, done
    assert "Traceback" not in log and "--once stopped" not in log


def test_a_deadlock_with_the_batch_is_not_the_users_problem(tmp_path, url):
    """A genuine deadlock (40P01): a session holds the file's checkpoint row, the daemon's batch
    (which has added its counters to the source's row: checkpoints are written at the batch's
    end) waits for it, and that session then waits for the source's row. The server aborts the
    daemon's transaction (its deadlock_timeout, the default 1 s, runs out first); the daemon
    runs the batch again once the other session is done: exit 0, every line once, one batch
    retried."""
    host = Host(tmp_path, "runner-1", url)
    host.run("first")
    host.once()
    host.run("first", 6)                        # (more lines: its checkpoint row is updated)
    db = Db(url)
    with psycopg.connect(url) as other:
        other.execute("SET deadlock_timeout = '30s'")     # the daemon is the one that finds the deadlock
        other.execute("SELECT 1 FROM files WHERE source = 'runner-1' FOR UPDATE")
        once = start_once(host)
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'reev-ingestd:runner-1'" \
                  " AND wait_event_type = 'Lock'"
        wait_for(lambda: db.scalar(waiting) == 1, timeout=30, what="the daemon's batch to wait for the checkpoint row",
                 alive=lambda: once.poll() is None or pytest.fail(host.logs.read_text()[-3000:]))
        # this waits for the source's row the daemon's batch holds, until the server aborts that batch
        other.execute("UPDATE sources SET heartbeat_at = heartbeat_at WHERE source = 'runner-1'")
        other.rollback()
        assert once.wait(60) == 0, host.logs.read_text()[-3000:]
    log = host.logs.read_text()
    assert len(retry_warnings(log, "DeadlockDetected")) == 1, log[-3000:]
    assert db.event_count("first") == 6
    assert status(url)["retried_batches_total"] == 1


@pytest.fixture
def own_cluster():
    """A cluster of the test's own, to stop and restart (not the shared one): (cluster, its
    database `reev`'s URL)."""
    if pgcluster.bindir() is None:
        missing_precondition("PostgreSQL's server programs, for a cluster of this test's own")
    root = Path(tempfile.mkdtemp(prefix="reev-test-retry-"))
    try:
        cluster = pgcluster.start(root)
        with psycopg.connect(cluster.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE reev")
        yield cluster, cluster.url("reev")
    finally:
        pgcluster.stop(root)
        shutil.rmtree(root, ignore_errors=True)


def back_fill(workspace, runs: int = 250, lines: int = 100):
    workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml("301-test-transfer", prompt=PROMPT))
    for i in range(runs):
        items = [fx.prompt_line(PROMPT, at=0)] + [fx.tool_input_line("t", {"i": j}, at=j) for j in range(1, lines)]
        workspace.append_events(f"bf-{i:03d}", items)
        if i % 2:
            workspace.write_session(f"bf-{i:03d}", fx.session_doc(f"inner-{i}", score=i / runs))


def same_dump(url: str, sqlite_db: Path):
    dump = [daemon_command() + ["dump", "--db", str(d)] for d in (url, sqlite_db)]
    got, want = (subprocess.run(c, capture_output=True, text=True, check=True, env=clean_env()).stdout for c in dump)
    assert got.splitlines() == want.splitlines()


def test_a_server_restart_mid_back_fill_loses_and_duplicates_nothing(tmp_path, own_cluster, run_once, workspace):
    """`pg_ctl restart -m immediate` (a crash of the server) while the live daemon back-fills: it
    reconnects with backoff, takes its source lock again and goes on from the committed
    checkpoints; the database then dumps exactly as a SQLite --once run over the same files."""
    cluster, url = own_cluster
    back_fill(workspace)
    host = Host(tmp_path, "restarted", url)
    host.sessions, host.benchmarks = workspace.sessions, workspace.benchmarks
    daemon = host.start("--log-level", "info")
    try:
        db = Db(url)
        alive = lambda: daemon.poll() is None or pytest.fail(host.logs.read_text()[-3000:])   # noqa: E731
        wait_for(lambda: (db.scalar("SELECT count(*) FROM events") or 0) > 1000, timeout=60,
                 what="the back-fill to be under way", alive=alive)
        cluster.ctl("restart", "-m", "immediate")
        wait_for(lambda: db.scalar("SELECT count(*) FROM events") == 250 * 100, timeout=60,
                 what="the back-fill to finish after the restart", alive=alive)
        run_once()
        same_dump(url, workspace.db_path)
    finally:
        assert stop(daemon) == 0
    log = host.logs.read_text()
    assert "reconnected to the database" in log and "Traceback" not in log, log[-3000:]


def test_once_rides_out_a_server_restart(tmp_path, own_cluster, run_once, workspace):
    """`pg_ctl restart -m immediate` while `--once` back-fills: the batch in hand is lost with the
    connection; the run reconnects once the server is back and goes on from the committed
    checkpoints, exit 0, and the database dumps as a SQLite `--once` over the same files."""
    cluster, url = own_cluster
    back_fill(workspace)
    host = Host(tmp_path, "restarted", url)
    host.sessions, host.benchmarks = workspace.sessions, workspace.benchmarks
    once = start_once(host)
    db = Db(url)
    wait_for(lambda: (db.scalar("SELECT count(*) FROM events") or 0) > 1000, timeout=60,
             what="the back-fill to be under way", alive=lambda: once.poll() is None or pytest.fail(
                 f"--once ended (status {once.returncode}) before the restart: make the back-fill bigger"))
    cluster.ctl("restart", "-m", "immediate")
    assert once.wait(120) == 0, host.logs.read_text()[-3000:]
    log = host.logs.read_text()
    assert "reconnected to the database" in log and "Traceback" not in log, log[-3000:]
    assert db.scalar("SELECT count(*) FROM events") == 250 * 100
    run_once()
    same_dump(url, workspace.db_path)
    retried = status(url)["retried_batches_total"]
    assert retried >= 1 and f"; {retried} batch" in log.splitlines()[-1], log[-2000:]


def test_ids_taken_in_a_batch_the_server_lost_are_not_handed_out_twice(own_cluster):
    """A crash of the server forgets how far the executions' sequence went in transactions that
    did not commit (its WAL need not have reached the disk): ids the daemon took in the batch
    lost (reserved for a back-fill's new runs, the block in hand) come from the sequence again.
    Kept past the reconnect, two runs of one batch had one id, and one run's lines were stored
    under the other (seen: a --once back-fill across `pg_ctl restart -m immediate`)."""
    from daemon.storage import Unavailable, open_store
    cluster, url = own_cluster
    with psycopg.connect(url, autocommit=True) as admin:    # (the WAL written only at commits)
        admin.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        admin.execute("SELECT pg_reload_conf()")
    store = open_store(url, "host-1")
    try:
        with store.batch():
            store.execution("first")
        reserved = [f"ahead-{i}" for i in range(250)]
        with pytest.raises(Unavailable):
            with store.batch():
                for execution_id in reserved:
                    store.reserve_execution_id(execution_id)
                cluster.ctl("restart", "-m", "immediate")
                store.execution("lost")
        with store.batch():
            ids = {e: store.execution(e).id for e in [*reserved, *(f"new-{i}" for i in range(250))]}
        assert len(set(ids.values())) == len(ids), "an id handed out twice"
        assert Db(url).scalar("SELECT count(*) FROM executions") == 1 + len(ids)
    finally:
        store.close()


def started(host: Host, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(host.args("--log-level", "info", "--rescan-interval", "0.3", "--settle-seconds", "0.2",
                                      *extra), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(host.logs, "ab"), env=env or clean_env())


def unreachable_lines(host: Host) -> list[str]:
    return [line for line in host.logs.read_text().splitlines() if "cannot reach the database" in line]


def test_a_live_daemon_started_while_the_server_is_down_waits_for_it_and_tells_systemd(
        tmp_path, own_cluster, notify_socket):
    """Started with the server stopped: no exit 2, but a wait with backoff, a line per step (the
    URL without its password), systemd told why and its start timeout extended; once the
    server is up, the daemon starts for real (READY=1) and ingests."""
    cluster, url = own_cluster
    secret = url.replace("postgresql:///", "postgresql://postgres:hunter2@/", 1)
    host = Host(tmp_path, "waiting", secret)
    host.run("a")
    cluster.ctl("stop", "-m", "fast")
    daemon = started(host, env=clean_env() | {"NOTIFY_SOCKET": notify_socket.path})
    try:
        alive = lambda: daemon.poll() is None or pytest.fail(host.logs.read_text()[-3000:])   # noqa: E731
        wait_for(lambda: len(unreachable_lines(host)) >= 3, timeout=30, what="the daemon to wait", alive=alive)
        fields = notify_socket.fields()
        assert any(f.startswith("STATUS=cannot reach the database postgresql://postgres:***@/reev") for f in fields)
        assert any(f.startswith("EXTEND_TIMEOUT_USEC=") for f in fields) and "READY=1" not in fields
        delays = [float(re.search(r"trying again in ([\d.]+) s", line).group(1)) for line in unreachable_lines(host)]
        assert delays == sorted(delays) and delays[0] < delays[-1], delays      # backing off
        cluster.ctl("start")
        notify_socket.wait_for_field("READY=1", timeout=30)
        wait_for(lambda: Db(url).event_count("a") == 3, timeout=30, what="the run to be ingested", alive=alive)
    finally:
        assert stop(daemon) == 0
    log = host.logs.read_text()
    assert "hunter2" not in log and "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_a_signal_ends_the_wait_for_the_server(tmp_path, own_cluster, notify_socket):
    cluster, url = own_cluster
    host = Host(tmp_path, "waiting", url)
    cluster.ctl("stop", "-m", "fast")
    daemon = started(host, env=clean_env() | {"NOTIFY_SOCKET": notify_socket.path})
    try:
        wait_for(lambda: unreachable_lines(host), timeout=30, what="the daemon to wait",
                 alive=lambda: daemon.poll() is None or pytest.fail(host.logs.read_text()[-3000:]))
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(5) == 0
    finally:
        stop(daemon, signal.SIGKILL)
    notify_socket.wait_for_field("STOPPING=1")
    assert "stopped while waiting for the database" in host.logs.read_text()


def test_once_started_while_the_server_is_down_waits_for_it(tmp_path, own_cluster):
    """--once (cron, a CI step) rides out a server that is restarting when it starts, as it
    does one that restarts while it runs (for ONCE_PATIENCE_SECONDS in a row at most)."""
    cluster, url = own_cluster
    host = Host(tmp_path, "cron", url)
    host.run("a")
    cluster.ctl("stop", "-m", "fast")
    once = start_once(host)
    wait_for(lambda: unreachable_lines(host), timeout=30, what="--once to wait for the server",
             alive=lambda: once.poll() is None or pytest.fail(host.logs.read_text()[-3000:]))
    cluster.ctl("start")
    assert once.wait(60) == 0, host.logs.read_text()[-3000:]
    assert Db(url).event_count("a") == 3


@pytest.mark.parametrize("how", ["a database that does not exist", "a role that does not exist",
                                 "a parameter libpq refuses"])
def test_a_server_that_refuses_the_daemon_is_not_waited_for(tmp_path, url, how):
    """What waiting does not mend exits 2 at once, live too, with one line."""
    bad = {"a database that does not exist": pgcluster.database_url(url, "no_such_database"),
           "a role that does not exist": url.replace("user=postgres", "user=nobody_here"),
           "a parameter libpq refuses": url + "&sslmode=sometimes"}[how]
    host = Host(tmp_path, "refused", bad)
    daemon = started(host)
    try:
        assert daemon.wait(15) == 2
    finally:
        stop(daemon, signal.SIGKILL)
    log = host.logs.read_text()
    [line] = [line for line in log.splitlines() if "ERROR" in line]
    assert "cannot open the database" in line and not unreachable_lines(host), log


def test_status_on_a_hot_standby_judges_the_daemons_by_their_heartbeats(tmp_path, url, pg_standby):
    """A standby can't see the primary's advisory locks: there a daemon counts as running while
    its heartbeat is fresh, and the output says so."""
    host = Host(tmp_path, "runner-1", url)
    host.run("a")
    standby = pg_standby(url)
    daemon = host.start()
    try:
        wait_for(lambda: Db(standby).event_count("a") == 3, timeout=60, what="the standby to replay the run")
        report = wait_for(lambda: (r := status(standby))["healthy"] and r, timeout=30,
                          what="a healthy status on the standby")
        assert report["daemon_running"] is True and report["daemon_liveness"] == "heartbeat"
        assert [(s["source"], s["running"]) for s in report["sources"]] == [("runner-1", True)]
        text = subprocess.run(daemon_command() + ["status", "--db", standby], capture_output=True, text=True,
                              env=clean_env(), timeout=30).stdout
        assert "a hot standby" in text and "source runner-1: running" in text, text
        assert status(url)["daemon_liveness"] == "lock"        # (the primary: by its lock)
    finally:
        assert stop(daemon) == 0
    with psycopg.connect(url, autocommit=True) as conn:       # a heartbeat a minute old: the daemon gone
        conn.execute("UPDATE sources SET heartbeat_at = heartbeat_at - 60")
        beat = conn.execute("SELECT heartbeat_at FROM sources").fetchone()[0]
    wait_for(lambda: Db(standby).scalar("SELECT heartbeat_at FROM sources") == beat, timeout=60,
             what="the standby to replay the old heartbeat")
    report = status(standby)
    assert report["daemon_running"] is False and not report["healthy"]
    assert "a hot standby" in report["problems"][0], report["problems"]


def test_a_schema_1_database_gets_the_retried_batches_column(tmp_path, url):
    """Schema 2 added sources.retried_batches_total: a database the daemon of schema 1 made
    (the column dropped, the version set back) is migrated at the next start, its data kept."""
    host = Host(tmp_path, "runner-1", url)
    host.run("a")
    host.once()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE sources DROP COLUMN retried_batches_total")
        conn.execute("UPDATE meta SET schema_version = 1")
    host.run("b")
    proc = host.once("--log-level", "info")
    assert "migrating the database schema from version 1 to 2" in proc.stderr, proc.stderr
    db = Db(url)
    assert db.scalar("SELECT schema_version FROM meta") == 2 and db.event_count("a") == db.event_count("b") == 3
    assert status(url)["retried_batches_total"] == 0
