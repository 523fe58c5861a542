"""Shared test machinery: a workspace of real folders, the real `reev-ingestd` process
(`--once` or live), polling with a deadline, and read-only access to the real database.

The database is read through tests/dbread.py alone (`Db` below is built on it), so that the
suite can be pointed at another backend there.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import apsw
import psycopg
import pytest
from psycopg import sql

from tests import dbread
from tests import fixtures as fx
from tests import pgcluster

# ------------------------------------------------------------------------------ the program


def daemon_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m daemon`."""
    script = Path(sys.executable).parent / "reev-ingestd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "daemon"]


def clean_env() -> dict[str, str]:
    """The environment without REEV_* settings (the tests pass everything explicitly)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REEV_") and k != "STATE_DIRECTORY"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ------------------------------------------------------------------------------ file permissions

PR_CAPBSET_DROP = 24                        # prctl(2)
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def without_permission_override():
    """preexec_fn: from the exec on, file permission bits apply to this process. The suite runs
    as root, whom they do not stop: the two capabilities that let root past them are dropped
    from the bounding set (`nobody` cannot even reach this interpreter under /root)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


def as_a_user(groups: list[int] = ()) -> dict:
    """subprocess arguments for a daemon to which permission bits apply, with these
    supplementary groups (as root; a plain user keeps its own, and chmod alone must do)."""
    if os.geteuid() != 0:
        return {}
    return {"preexec_fn": without_permission_override, "extra_groups": list(groups)}


# ------------------------------------------------------------------------------ preconditions

# CI's machine (root, Debian, systemd-analyze installed) has every precondition a test asks
# for, so there a missing one is a failure, not a skip nobody reads (.ci/run sets CI=true).
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_precondition(reason: str):
    """This test cannot run here: a skip on a developer's machine, a failure in CI."""
    if CI:
        pytest.fail(f"CI=true, and this machine lacks what the test needs: {reason}", pytrace=False)
    pytest.skip(reason)


_SKIPPED: list[tuple[str, str]] = []      # (test, why), in the order they ran


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_terminal_summary(terminalreporter):
    """The skipped tests and why, every run; with CI=true any skip fails the run."""
    if not _SKIPPED:
        return
    terminalreporter.section(f"{len(_SKIPPED)} skipped" + (" (CI=true: the run fails)" if CI else ""))
    for nodeid, reason in _SKIPPED:
        terminalreporter.line(f"{nodeid}: {reason}")


def pytest_sessionfinish(session):
    if CI and _SKIPPED and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------------------------ processes


def children(pid: int) -> list[int]:
    """The pids of a process's children (Linux /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------ waiting


class WaitTimeout(AssertionError):
    pass


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             what: str | None = None, alive: Callable[[], None] | None = None):
    """Poll `cond` every `interval` s until it returns something truthy; return that.

    A database that cannot be read inside `cond` (not created yet, schema not there yet:
    dbread.Unreadable) counts as "not yet".
    `alive`, if given, is called every round and should raise when waiting is pointless (the
    daemon died). On timeout the last value or exception is part of the failure message.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        if alive is not None:
            alive()
        try:
            last = cond()
            if last:
                return last
        except dbread.Unreadable as e:
            last = e
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what or getattr(cond, '__name__', 'condition')};"
                              f" last value: {last!r}")
        time.sleep(interval)


# ------------------------------------------------------------------------------ reading the database


OLD_RUN_EVENTS = [(1, "Prompt", 1.5, '{"event_type":"Prompt"}'), (2, "StepComplete", 2.5, '{"event_type":"StepComplete"}'),
                  (3, "ToolInput", 3.5, '{"event_type":"ToolInput","tool_input":{"tool_name":"sol_transfer","tool_args":{"lamports": 5}}}'),
                  (4, "ToolOutput", 4.5, '{"event_type":"ToolOutput","tool_output":{"success":true,"results":["sig"]}}')]
OLD_RUN_LOG = "/var/lib/reev/sessions/enhanced_otel_old-run.jsonl"   # its event log, as tracked


def write_old_database(path: Path, version: int, session_doc: dict, filler_events: int = 0):
    """A database as schema version 2, 3, 4, 5 or 6 left it (tests/data/schema_v<version>.sql),
    holding one finished run, `old-run` of 301-test-transfer by `deterministic`, with this
    session document, the event lines OLD_RUN_EVENTS (its log's checkpoint at OLD_RUN_LOG) and
    the tool call of lines 3 and 4, its JSON copied as versions before 5 did; and `filler_events`
    lines of a run `filler` (for a migration that takes a while)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path))
    try:
        with conn:
            conn.execute((Path(__file__).parent / "data" / f"schema_v{version}.sql").read_text()).fetchall()
            conn.execute(f"PRAGMA user_version = {version}").fetchall()
            final = session_doc["final_result"]
            docs = (json.dumps(session_doc), json.dumps(final))
            kept_in_executions = version == 2      # later versions keep the session file apart
            conn.execute(
                "INSERT INTO executions (execution_id, benchmark_id, session_benchmark_id, agent_type, status,"
                f" success, score{', session_doc, result_doc' if kept_in_executions else ''})"
                " VALUES ('old-run', '301-test-transfer', '301-test-transfer', 'deterministic', 'Completed',"
                f" ?, ?{', ?, ?' if kept_in_executions else ''})",
                (int(final["success"]), final["score"], *(docs if kept_in_executions else ())))
            exec_id = conn.last_insert_rowid()
            if not kept_in_executions:
                conn.execute("INSERT INTO session_docs (exec_id, session_doc, result_doc) VALUES (?, ?, ?)",
                             (exec_id, *docs))
            lines = [(exec_id, n, 100 * n, kind, ts, doc) for n, kind, ts, doc in OLD_RUN_EVENTS]
            if filler_events:
                conn.execute("INSERT INTO executions (execution_id) VALUES ('filler')")
                filler = conn.last_insert_rowid()
                lines += [(filler, n, 100 * n, "StepComplete", n, "{}") for n in range(1, filler_events + 1)]
            conn.executemany("INSERT INTO events (exec_id, line, byte_offset, kind, event_type, ts, doc)"
                             " VALUES (?, ?, ?, 'event', ?, ?, ?)", lines)
            copies = version < 5
            conn.execute("INSERT INTO tool_calls (exec_id, line, source, output_line, tool_name, started_at, ended_at,"
                         f" duration_ms{', input, output' if copies else ''}, success) VALUES (?, 3, 'input', 4,"
                         f" 'sol_transfer', 3.5, 4.5, 1000{', ?, ?' if copies else ''}, 1)",
                         (exec_id, *(('{"lamports": 5}', '["sig"]') if copies else ())))
            conn.execute("INSERT INTO files (path, kind, subject_id, offset, line_no, size, first_seen_at)"
                         " VALUES (?, 'events', 'old-run', 400, 4, 400, 1.0)", (OLD_RUN_LOG,))
    finally:
        conn.close()


@dataclass
class Db:
    """Read-only views of the daemon's database used across the tests."""

    path: Path | str      # a SQLite file, or a PostgreSQL database's URL

    def rows(self, sql: str, params: dbread.Params = ()) -> list[tuple]:
        return dbread.query(self.path, sql, params)

    def dicts(self, sql: str, params: dbread.Params = ()) -> list[dict]:
        return dbread.dicts(self.path, sql, params)

    def one(self, sql: str, params: dbread.Params = ()) -> dict | None:
        return dbread.one(self.path, sql, params)

    def scalar(self, sql: str, params: dbread.Params = ()):
        return dbread.value(self.path, sql, params)

    def exists(self) -> bool:
        return dbread.is_postgres(self.path) or Path(self.path).exists()

    # the daemon's tables, by the keys the tests know

    def meta(self, key: str):
        return dbread.meta(self.path, key)

    def generation(self) -> int:
        return self.meta("data_generation")

    # an execution with its session file, as the daemon keeps them in two tables
    _EXECUTION = ("SELECT x.*, d.session_doc, d.result_doc FROM executions x"
                  " LEFT JOIN session_docs d ON d.exec_id = x.id")

    def execution(self, execution_id: str) -> dict | None:
        return self.one(self._EXECUTION + " WHERE x.execution_id = ?", (execution_id,))

    def executions(self) -> list[dict]:
        return self.dicts(self._EXECUTION + " ORDER BY x.execution_id")

    def events(self, execution_id: str) -> list[dict]:
        return self.dicts("SELECT e.* FROM events e JOIN executions x ON x.id = e.exec_id"
                          " WHERE x.execution_id = ? ORDER BY e.line", (execution_id,))

    def event_count(self, execution_id: str) -> int:
        return self.scalar("SELECT count(*) FROM events e JOIN executions x ON x.id = e.exec_id"
                           " WHERE x.execution_id = ?", (execution_id,)) or 0

    def tool_calls(self, execution_id: str) -> list[dict]:
        return self.dicts("SELECT t.* FROM tool_calls_io t JOIN executions x ON x.id = t.exec_id"
                          " WHERE x.execution_id = ? ORDER BY t.line", (execution_id,))

    def errors(self, path: Path | str | None = None) -> list[dict]:
        if path is None:
            return self.dicts("SELECT * FROM ingest_errors ORDER BY path, line")
        return self.dicts("SELECT * FROM ingest_errors WHERE path = ? ORDER BY line", (str(path),))

    def file(self, path: Path | str) -> dict | None:
        return self.one("SELECT * FROM files WHERE path = ?", (str(path),))

    def benchmark(self, bench_id: str) -> dict | None:
        return self.one("SELECT * FROM benchmarks WHERE id = ?", (bench_id,))


# ------------------------------------------------------------------------------ the workspace


@dataclass
class Workspace:
    """A sessions folder, a benchmarks folder and a database path, all under tmp_path."""

    root: Path
    sessions: Path
    benchmarks: Path
    db_path: Path
    db: Db = field(init=False)
    url: str | None = None          # a PostgreSQL database's URL in place of db_path (`backend`)

    def __post_init__(self):
        self.db = Db(self.db_path)

    def use_database(self, url: str):
        self.url, self.db = url, Db(url)

    @property
    def db_target(self) -> Path | str:
        """What --db says: the URL if there is one, else db_path (which a test may change)."""
        return self.url or self.db_path

    def args(self) -> list[str]:
        return ["--sessions-dir", str(self.sessions), "--benchmarks-dir", str(self.benchmarks),
                "--db", str(self.db_target)]

    # paths

    def events_path(self, execution_id: str) -> Path:
        return self.sessions / f"enhanced_otel_{execution_id}.jsonl"

    def session_path(self, execution_id: str) -> Path:
        return self.sessions / f"session_{execution_id}.json"

    def benchmark_path(self, name: str) -> Path:
        return self.benchmarks / (name if name.endswith((".yml", ".yaml")) else f"{name}.yml")

    # writing, as reev does

    def append_events(self, execution_id: str, items) -> Path:
        """Append complete lines (see fixtures.jsonl) in one write, flushed."""
        path = self.events_path(execution_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(fx.jsonl(items))
        return path

    def append_raw(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
        return path

    def write_session(self, execution_id: str, doc: dict | bytes | str) -> Path:
        """Truncate and rewrite in place (open(truncate) + write + flush), like reev."""
        path = self.session_path(execution_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = doc if isinstance(doc, bytes) else doc.encode() if isinstance(doc, str) else fx.session_bytes(doc)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def write_benchmark(self, name: str, text: str | bytes) -> Path:
        path = self.benchmark_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    ws = Workspace(root=tmp_path, sessions=tmp_path / "logs" / "sessions",
                   benchmarks=tmp_path / "benchmarks", db_path=tmp_path / "state" / "reev.db")
    ws.sessions.mkdir(parents=True)
    ws.benchmarks.mkdir(parents=True)
    return ws


@pytest.fixture(autouse=True)
def _no_api_left_running():
    """An API server a test started and did not close (it failed first) is stopped with it.
    Servers started before the test (by a module's fixture, shared by its tests) are not its
    to stop; a fixture of the test's own closes its server before this runs."""
    from tests.api_client import STARTED     # (api_client imports this module)
    before = set(STARTED)
    yield
    for api in STARTED - before:
        api.close()


# ------------------------------------------------------------------------------ reports on failure

_OUTPUTS = pytest.StashKey[list]()


def _remember_output(request, title: str, path_or_text: Path | str):
    request.node.stash.setdefault(_OUTPUTS, []).append((title, path_or_text))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for title, source in item.stash.get(_OUTPUTS, []):
            text = source.read_text(errors="replace") if isinstance(source, Path) and source.exists() else str(source)
            report.sections.append((title, text[-20000:]))


# ------------------------------------------------------------------------------ --once


@pytest.fixture
def run_once(workspace, request):
    """Run `reev-ingestd --once` on the workspace; returns the CompletedProcess (text).

    Fails the test when the exit status is not `expect_rc` (None: don't check)."""

    def run(*extra: str, expect_rc: int | None = 0, timeout: float = 60,
            base_args: list[str] | None = None) -> subprocess.CompletedProcess:
        args = daemon_command() + (workspace.args() if base_args is None else base_args) + ["--once", *extra]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=clean_env(),
                              stdin=subprocess.DEVNULL)
        _remember_output(request, f"reev-ingestd --once {' '.join(extra)} (rc {proc.returncode}) stderr",
                         proc.stderr)
        if expect_rc is not None:
            assert proc.returncode == expect_rc, f"exit status {proc.returncode}; stderr:\n{proc.stderr}"
        return proc

    return run


# ------------------------------------------------------------------------------ the live daemon


class Daemon:
    """One live `reev-ingestd` process on a workspace; stderr goes to a file in tmp_path."""

    def __init__(self, workspace: Workspace, args: list[str], stderr_path: Path, **popen):
        """`popen`: more arguments for subprocess.Popen (who the process runs as)."""
        self.workspace = workspace
        self.args = args
        self.stderr_path = stderr_path
        self.launched_at = time.time()
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(daemon_command() + workspace.args() + args, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr, env=clean_env(), **popen)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def check_alive(self):
        rc = self.proc.poll()
        if rc is not None:
            raise AssertionError(f"reev-ingestd exited early with status {rc}; stderr:\n{self.stderr()[-5000:]}")

    def wait_for(self, cond, timeout: float = 10.0, what: str | None = None):
        """wait_for that gives up as soon as the daemon has died."""
        return wait_for(cond, timeout=timeout, what=what, alive=self.check_alive)

    def wait_ready(self, timeout: float = 15.0):
        """Until this process is watching: it sets daemon_started_at (and the heartbeat) once its
        file watcher runs, just before its first scan."""
        db = self.workspace.db
        self.wait_for(lambda: (db.meta("daemon_started_at") or 0) >= self.launched_at
                      and db.meta("heartbeat_at") is not None,
                      timeout=timeout, what="the daemon to start")
        return self

    def wait_log(self, text: str, count: int = 1, timeout: float = 10.0) -> str:
        """Until `text` occurs at least `count` times in its stderr."""
        return self.wait_for(lambda: self.stderr().count(text) >= count and self.stderr(),
                             timeout=timeout, what=f"{count}× {text!r} in the daemon's log")

    def send(self, sig: int):
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and wait for the exit; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if not self._stderr.closed:
            self._stderr.close()

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc):
        self.close()


def start_daemon(workspace: Workspace, stderr_path: Path, *extra: str, rescan: float = 0.5,
                 settle: float = 0.5, log_level: str = "debug", ready: bool = True) -> Daemon:
    """Start a live `reev-ingestd` on the workspace (a context manager: killed on exit)."""
    args = ["--rescan-interval", str(rescan), "--settle-seconds", str(settle), "--log-level", log_level, *extra]
    d = Daemon(workspace, args, stderr_path)
    if ready:
        try:
            d.wait_ready()
        except BaseException:
            d.close()
            raise
    return d


@pytest.fixture
def live_daemon(workspace, request, tmp_path):
    """Factory: live_daemon(*extra, rescan=0.5, settle=0.5, log_level="debug", ready=True) starts
    `reev-ingestd` on the workspace (waiting until it is watching, unless ready=False). Every
    process started is killed at teardown; its stderr is shown when the test fails."""
    started: list[Daemon] = []

    def start(*extra: str, rescan: float = 0.5, settle: float = 0.5, log_level: str = "debug",
              ready: bool = True) -> Daemon:
        n = len(started) + 1
        stderr_path = tmp_path / f"reev-ingestd-{n}.stderr"
        _remember_output(request, f"reev-ingestd #{n} stderr", stderr_path)
        d = start_daemon(workspace, stderr_path, *extra, rescan=rescan, settle=settle,
                         log_level=log_level, ready=False)
        started.append(d)
        if ready:
            d.wait_ready()
        return d

    yield start
    for d in started:
        d.close()


@pytest.fixture
def db(workspace, request) -> Db:
    if "backend" in request.fixturenames:
        request.getfixturevalue("backend")     # (first: it may point the workspace at PostgreSQL)
    return workspace.db


# ------------------------------------------------------------------------------ PostgreSQL

# The tests that need a PostgreSQL server take `pg_url` (a database of their own) and
# `pg_standby`. The server: REEV_TEST_PG, the URL of a superuser on a throwaway server (.ci/run
# starts one), else a cluster this session starts (tests/pgcluster.py) when the server's programs
# are installed. Without either the tests are skipped, and fail in CI.


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The URL of the test server's maintenance database `postgres`, as its superuser."""
    url = os.environ.get("REEV_TEST_PG")
    if url:
        yield url
        return
    if pgcluster.bindir() is None:
        missing_precondition("PostgreSQL's server programs (Debian: apt-get install postgresql), or REEV_TEST_PG")
    root = Path(tempfile.mkdtemp(prefix="reev-test-pg-"))    # not tmp_path: `postgres` must enter it
    try:
        yield pgcluster.start(root).url()
    finally:
        pgcluster.stop(root)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str):
    """A new empty database on the server (from template0, which nobody connects to, so any
    number can be created at once): its URL. Dropped afterwards, with the sessions still in it."""
    name = f"reev_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield pgcluster.database_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# Tests of what the daemon stores take `backend`: they run once on SQLite (the workspace's file)
# and once on PostgreSQL (a new database of the test server). A test that checks something of
# SQLite's own (its file, its migrations) and takes `backend` anyway is marked `sqlite_only`.

def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("backend", ["sqlite"] if only else ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def backend(request, workspace) -> str:
    """"sqlite" or "postgres": the workspace's --db (and its `db` reader) is then the backend's."""
    if request.param == "postgres":
        with fresh_database(request.getfixturevalue("pg_server")) as url:
            workspace.use_database(url)
            yield "postgres"
    else:
        yield "sqlite"


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a new empty database for this test."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def pg_standby(pg_server):
    """Factory: pg_standby(url) makes a streaming standby of the test server (pg_basebackup -R,
    tests/pgcluster.py), starts it and returns `url`'s database on it (read-only; it replays
    what the primary commits). Stopped and deleted after the test."""
    made: list[Path] = []

    def make(url: str) -> str:
        if pgcluster.bindir() is None:
            missing_precondition("PostgreSQL's server programs, for pg_basebackup and the standby's server")
        root = Path(tempfile.mkdtemp(prefix="reev-test-standby-"))
        made.append(root)
        standby = pgcluster.make_standby(pg_server, root)
        return standby.url(pgcluster.dbname_of(url))

    yield make
    for root in made:
        pgcluster.stop(root)
        shutil.rmtree(root, ignore_errors=True)
