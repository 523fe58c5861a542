"""Configuration of both programs: each setting declared once, its option and its REEV_*
variable checked alike (one line and exit status 2 for a bad value of either); the real
programs configured from the environment alone, deploy/systemd/reev-ingest.env's contents and
$STATE_DIRECTORY included; `reev-ingestd status` and `dump` on either side of their options;
`make run` failing when a program fails; and the README's tables against the declarations."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.config import SETTINGS as API_SETTINGS, api_arguments
from daemon.config import SETTINGS as DAEMON_SETTINGS, daemon_arguments
from tests import fixtures as fx
from tests.api_client import Api, api_command, free_port
from tests.conftest import clean_env, daemon_command, wait_for
from tests.test_live_feed import StreamClient

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / "deploy" / "systemd" / "reev-ingest.env"

# A valid value of each setting, other than its default, as an operator would write it.
SAMPLES = {
    "REEV_SESSIONS_DIR": "/srv/reev/logs/sessions", "REEV_BENCHMARKS_DIR": "/srv/reev/benchmarks",
    "REEV_DB": "/var/lib/reev-ingest/reev.db", "REEV_RESCAN_INTERVAL": "0.5", "REEV_LOG_LEVEL": "WARNING",
    "REEV_MAX_LINE_BYTES": "500", "REEV_SETTLE_SECONDS": "0.25", "REEV_API_HOST": "::1", "REEV_API_PORT": "8080",
    "REEV_API_WORKERS": "3", "REEV_API_CORS_ORIGINS": "http://ui.example", "REEV_API_QUERY_TIMEOUT": "0.5",
    "REEV_API_MAX_STREAMS": "7", "REEV_API_STREAM_HEARTBEAT": "0.2", "REEV_STALE_AFTER": "0",
    "REEV_SOURCE": "runner-3.example",
}


def run(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a program to its end; one that is still running after `timeout` s (it took a value it
    should have refused, and serves) fails the test."""
    try:
        return subprocess.run(command, capture_output=True, text=True, env=clean_env() | (env or {}), cwd=cwd,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{command} still running after {timeout} s: it accepted its settings; stderr:\n{e.stderr}")


# ---------------------------------------------------------------------- the declarations


def test_every_setting_has_a_variable_and_the_variable_means_what_the_option_means():
    """For each declared setting: the option and the variable, given the same text, give the
    same value, and that value is not the default (so the setting reached the namespace)."""
    for settings, parse in ((DAEMON_SETTINGS, daemon_arguments), (API_SETTINGS, api_arguments)):
        for s in settings:
            assert s.env.startswith("REEV_") and s.env in SAMPLES, f"{s.flag}: declare a variable and a sample"
            from_flag = getattr(parse([s.flag, SAMPLES[s.env]], {}), s.name)
            from_env = getattr(parse([], {s.env: SAMPLES[s.env]}), s.name)
            assert from_flag == from_env != getattr(parse([], {}), s.name), s.flag
            both = getattr(parse([s.flag, SAMPLES[s.env]], {s.env: "nonsense"}), s.name)
            assert both == from_flag, f"{s.flag} wins over {s.env} (whose bad value is then not read)"
    shared = {s.env for s in DAEMON_SETTINGS} & {s.env for s in API_SETTINGS}
    assert shared == {"REEV_DB", "REEV_LOG_LEVEL"}


def test_the_database_is_found_alike_by_both_programs_and_status():
    state = {"STATE_DIRECTORY": "/var/lib/reev-ingest:/var/lib/other"}
    for parse, argv in ((daemon_arguments, []), (daemon_arguments, ["status"]), (daemon_arguments, ["dump"]),
                        (api_arguments, [])):
        assert parse(argv, {}).db == Path("state/reev.db").absolute()
        assert parse(argv, state).db == Path("/var/lib/reev-ingest/reev.db")
        assert parse(argv, state | {"REEV_DB": "x.db"}).db == Path("x.db").absolute()
        assert parse(argv + ["--db", "/y.db"], state | {"REEV_DB": "x.db"}).db == Path("/y.db")


def test_the_database_is_a_path_or_a_postgresql_url_and_nothing_else_chooses():
    """`--db` with a postgresql:// or postgres:// URL (libpq's form, a socket folder as ?host=)
    names a PostgreSQL database, kept as written; anything else is a SQLite file's path. The
    same for both programs."""
    for url in ("postgresql://reev:secret@db.example:5432/reev?sslmode=require",
                "postgres:///reev?host=/run/postgresql"):
        for argv in ([], ["status"], ["dump"]):
            assert daemon_arguments(argv + ["--db", url], {}).db == url
            assert daemon_arguments(argv, {"REEV_DB": url}).db == url
        assert api_arguments(["--db", url], {}).db == url
        assert api_arguments([], {"REEV_DB": url}).db == url
    assert daemon_arguments(["--db", "postgresql.db"], {}).db == Path("postgresql.db").absolute()
    assert api_arguments(["--db", "postgresql.db"], {}).db == Path("postgresql.db").absolute()


def test_a_database_url_is_shown_without_its_password():
    from core.dburl import shown
    assert shown("postgresql://reev:s3cret@db.example:5432/reev?sslmode=require&password=other") == \
        "postgresql://reev:***@db.example:5432/reev?sslmode=require&password=***"
    assert shown("postgres:///reev?host=/run/postgresql") == "postgres:///reev?host=/run/postgresql"
    assert shown(Path("/var/lib/reev/reev.db")) == "/var/lib/reev/reev.db"


# libpq decodes a URL's percent escapes and, when one is bad, puts the raw token in its error:
# a password with a bare '%' (`s3cr%et`) was shown in full in the daemon's log, `status`, `dump`,
# and in the API's health route and every error answer.
BAD_ESCAPES = ["postgresql://reev:s3cr%et@/reev?host=/run/postgresql",
               "postgresql://reev:s3cr%00et@db.example/reev",
               "postgresql://reev:s3cret%@db.example/reev",
               "postgres:///reev?host=/run/postgresql&password=s3cr%4x",
               "postgresql://reev@db.example/reev?password=s3cr%et&sslmode=require"]


@pytest.mark.parametrize("url", BAD_ESCAPES)
def test_a_url_whose_percent_escapes_libpq_refuses_is_refused_before_it_and_its_password_not_shown(url):
    for command in (daemon_command() + ["--once"], daemon_command() + ["status"], daemon_command() + ["dump"],
                    api_command() + ["--port", str(free_port())]):
        proc = run(command + ["--db", url], {}, timeout=20)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "--db" in proc.stderr and "s3cr" not in proc.stderr, (command, proc.stderr)


@pytest.mark.parametrize("url", ["POSTGRESQL://reev:s3cret@db.example/reev", "Postgres:///reev?host=/run/postgresql",
                                 "mysql://reev:s3cret@db.example/reev", "postgresql:/reev?host=/run/postgresql"])
def test_a_url_of_another_scheme_or_case_is_refused_not_taken_for_a_sqlite_path(tmp_path, url):
    """Only `postgresql://` and `postgres://` (libpq compares them as written) are URLs: anything
    else was a SQLite path, so `POSTGRESQL:///reev?host=...` made a folder `POSTGRESQL:` and a
    SQLite database in it, and `status` showed the password of `POSTGRESQL://reev:s3cret@...`."""
    for command in (daemon_command() + ["--once"], daemon_command() + ["status"], api_command() + ["--port", str(free_port())]):
        proc = subprocess.run(command + ["--db", url, "--log-level", "debug"], cwd=tmp_path, capture_output=True,
                              text=True, env=clean_env(), timeout=20, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2 and "--db" in proc.stderr and "s3cret" not in proc.stderr, (command, proc.stderr)
        assert list(tmp_path.iterdir()) == [], (command, list(tmp_path.iterdir()))


def test_the_source_defaults_to_the_host_name():
    import socket
    assert daemon_arguments([], {}).source == socket.gethostname()


# ---------------------------------------------------------------------- refusing bad values


DAEMON_REFUSES = [
    ([], {"REEV_RESCAN_INTERVAL": "0"}, "REEV_RESCAN_INTERVAL"),
    ([], {"REEV_RESCAN_INTERVAL": "30s"}, "REEV_RESCAN_INTERVAL"),
    (["--rescan-interval", "0"], {}, "--rescan-interval"),
    (["--rescan-interval", "inf"], {}, "--rescan-interval"),
    (["--max-line-bytes", "-1"], {}, "--max-line-bytes"),
    ([], {"REEV_MAX_LINE_BYTES": "8MB"}, "REEV_MAX_LINE_BYTES"),
    ([], {"REEV_SETTLE_SECONDS": "nan"}, "REEV_SETTLE_SECONDS"),
    (["--settle-seconds", "0"], {}, "--settle-seconds"),
    ([], {"REEV_STALE_AFTER": "30m"}, "REEV_STALE_AFTER"),
    (["--stale-after", "-1"], {}, "--stale-after"),
    (["--log-level", "verbose"], {}, "--log-level"),
    ([], {"REEV_LOG_LEVEL": "verbose"}, "REEV_LOG_LEVEL"),
    # every number has an upper bound (--once with a settle time of 1e308 waited for ever on a
    # session file that stayed invalid)
    (["--settle-seconds", "1e308"], {}, "--settle-seconds"),
    ([], {"REEV_SETTLE_SECONDS": "3601"}, "REEV_SETTLE_SECONDS"),
    (["--rescan-interval", "86401"], {}, "--rescan-interval"),
    ([], {"REEV_STALE_AFTER": "604801"}, "REEV_STALE_AFTER"),
    (["--max-line-bytes", "67108865"], {}, "--max-line-bytes"),
    # plain ASCII decimals only, as in every other setting
    ([], {"REEV_MAX_LINE_BYTES": "1_000"}, "REEV_MAX_LINE_BYTES"),
    ([], {"REEV_RESCAN_INTERVAL": "1_0"}, "REEV_RESCAN_INTERVAL"),
    (["--max-line-bytes", "٣"], {}, "--max-line-bytes"),
    # a source is a bounded name; a PostgreSQL URL must parse
    (["--source", "two words"], {}, "--source"),
    ([], {"REEV_SOURCE": "x" * 64}, "REEV_SOURCE"),
    ([], {"REEV_SOURCE": "-leading-dash"}, "REEV_SOURCE"),
    (["--db", "postgresql://host:port/db"], {}, "--db"),
    (["--db", "postgres://h/db#fragment"], {}, "--db"),
]
API_REFUSES = [
    ([], {"REEV_API_PORT": "abc"}, "REEV_API_PORT"),
    (["--port", "99999"], {}, "--port"),
    (["--port", "0"], {}, "--port"),
    ([], {"REEV_API_HOST": "localhost"}, "REEV_API_HOST"),
    (["--max-streams", "0"], {}, "--max-streams"),
    ([], {"REEV_API_MAX_STREAMS": "-5"}, "REEV_API_MAX_STREAMS"),
    (["--query-timeout", "-1"], {}, "--query-timeout"),
    (["--workers", "0"], {}, "--workers"),
    ([], {"REEV_API_WORKERS": "two"}, "REEV_API_WORKERS"),
    (["--stream-heartbeat", "0"], {}, "--stream-heartbeat"),
    ([], {"REEV_API_STREAM_HEARTBEAT": "0"}, "REEV_API_STREAM_HEARTBEAT"),
    (["--log-level", "verbose"], {}, "--log-level"),
    ([], {"REEV_LOG_LEVEL": "verbose"}, "REEV_LOG_LEVEL"),
    (["--query-timeout", "61"], {}, "--query-timeout"),
    ([], {"REEV_API_STREAM_HEARTBEAT": "3601"}, "REEV_API_STREAM_HEARTBEAT"),
    (["--max-streams", "1000001"], {}, "--max-streams"),
    ([], {"REEV_API_PORT": "3_001"}, "REEV_API_PORT"),
    (["--workers", "1e1"], {}, "--workers"),
    # a PostgreSQL URL must parse
    (["--db", "postgresql://host:port/db"], {}, "--db"),
]


def test_every_value_is_read_alike_surrounding_whitespace_ignored():
    """One rule for every setting, option or variable: surrounding whitespace is ignored (a
    variable written `REEV_LOG_LEVEL= info` was refused while `REEV_RESCAN_INTERVAL= 5 ` was
    taken), and a blank variable is unset."""
    env = {"REEV_RESCAN_INTERVAL": " 5 ", "REEV_LOG_LEVEL": " info", "REEV_MAX_LINE_BYTES": "1000 ",
           "REEV_DB": " /x.db ", "REEV_STALE_AFTER": "   "}
    args = daemon_arguments([], env)
    assert (args.rescan_interval, args.log_level, args.max_line_bytes, args.db, args.stale_after) == (
        5.0, "info", 1000, Path("/x.db"), 1800.0)
    args = api_arguments(["--log-level", " WARNING ", "--port", " 8080", "--host", "::1 "], {})
    assert (args.log_level, args.port, args.host) == ("warning", 8080, "::1")


@pytest.mark.parametrize("program", ["reev-ingestd --once", "reev-ingestd status", "reev-api"])
def test_a_deleted_working_directory_is_one_line_and_exit_status_2(tmp_path, program):
    """`mkdir d; cd d; rmdir ../d; reev-ingestd --once`: a relative path (the defaults are)
    names nothing there. One line, not a traceback."""
    gone = tmp_path / "gone"
    gone.mkdir()
    command = {"reev-ingestd --once": daemon_command() + ["--once"],
               "reev-ingestd status": daemon_command() + ["status"],
               "reev-api": api_command() + ["--port", str(free_port())]}[program]
    try:
        proc = subprocess.run(command, cwd=gone, preexec_fn=lambda: os.rmdir(gone), capture_output=True, text=True,
                              env=clean_env(), timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{program} ran from a deleted folder: {e.stderr}")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "the working directory no longer exists" in proc.stderr, proc.stderr


def _refused_in_one_line(proc: subprocess.CompletedProcess, program: str, name: str, value: str):
    assert proc.returncode == 2, f"exit status {proc.returncode}; stderr:\n{proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"one line, not:\n{proc.stderr}"
    assert lines[0].startswith(f"{program}: error: ") and name in lines[0] and repr(value) in lines[0], lines[0]


@pytest.mark.parametrize("argv, env, name", DAEMON_REFUSES, ids=lambda v: v if isinstance(v, str) else None)
def test_daemon_refuses_a_bad_value_of_an_option_or_a_variable_alike(workspace, argv, env, name):
    proc = run(daemon_command() + workspace.args() + argv + ["--once"], env)
    _refused_in_one_line(proc, "reev-ingestd", name, argv[-1] if argv else env[name])
    assert not workspace.db_path.exists(), "refused before anything started"


@pytest.mark.parametrize("argv, env, name", API_REFUSES, ids=lambda v: v if isinstance(v, str) else None)
def test_api_refuses_a_bad_value_of_an_option_or_a_variable_alike(tmp_path, argv, env, name):
    port = [] if "--port" in argv or "REEV_API_PORT" in env else ["--port", str(free_port())]
    proc = run(api_command() + ["--db", str(tmp_path / "reev.db"), *port, *argv], env, timeout=10)
    _refused_in_one_line(proc, "reev-api", name, argv[-1] if argv else env[name])


def test_help_names_every_variable_and_the_subcommands():
    for command, settings in ((daemon_command(), DAEMON_SETTINGS), (api_command(), API_SETTINGS)):
        text = run(command + ["--help"]).stdout
        for s in settings:
            assert s.flag in text and s.env in text, (command, s.flag)
    usage = run(daemon_command() + ["--help"]).stdout.split("\n\n")[0]
    assert "{status,dump}" in usage, usage


# ---------------------------------------------------------------------- log levels as people type them


def test_log_levels_in_any_case_in_both_programs(workspace, tmp_path):
    workspace.append_events("run-1", [fx.prompt_line("p")])
    workspace.append_raw(workspace.events_path("run-1"), b"{bad json\n")
    for n, (argv, env) in enumerate(((["--log-level", "WARNING"], {}), ([], {"REEV_LOG_LEVEL": "Warning"}))):
        proc = run(daemon_command() + workspace.args() + ["--once", "--db", str(tmp_path / f"{n}.db"), *argv], env)
        assert proc.returncode == 0, proc.stderr
        assert " WARNING reev.ingest: " in proc.stderr and " INFO " not in proc.stderr, proc.stderr
    for n, (argv, env) in enumerate(((["--log-level", "WARNING"], {}), ([], {"REEV_LOG_LEVEL": "WARNING"}))):
        api = Api(tmp_path / f"{n}.db", tmp_path / f"api-{n}.log", *argv, env=env)
        try:
            assert api.get("/api/v1/sessions/run-1")["summary"]["execution_id"] == "run-1"
        finally:
            assert api.close() == 0
        log = api.log_path.read_text()
        assert " INFO " not in log and "Traceback" not in log, log


# ---------------------------------------------------------------------- the real programs from REEV_* alone


def _env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads this file (comments and blank lines
    skipped); commented-out settings as well, under the key `#KEY`."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(#?)([A-Z_]+)=(.*)", line.strip())
        if m:
            out[m[1] + m[2]] = m[3]
    return out


def test_the_deploy_environment_file_names_every_setting_and_only_settings():
    entries = _env_file(ENV_FILE.read_text())
    declared = {s.env for s in DAEMON_SETTINGS + API_SETTINGS}
    assert {key.lstrip("#") for key in entries} == declared
    for s in DAEMON_SETTINGS + API_SETTINGS:
        value = entries.get(s.env, entries.get("#" + s.env))
        assert value == "" or s.from_environment({s.env: value}) is not None, (s.env, value)


def _deployed_env(tmp_path: Path) -> dict[str, str]:
    """deploy/systemd/reev-ingest.env's settings, with its folders moved under tmp_path and a
    free port."""
    env = {k: v for k, v in _env_file(ENV_FILE.read_text()).items() if not k.startswith("#")}
    for key, value in env.items():
        if value.startswith("/"):
            env[key] = str(tmp_path / value.lstrip("/"))
    env["REEV_API_PORT"] = str(free_port())
    return env


def test_both_programs_run_from_the_deploy_environment_file_alone(tmp_path):
    env = _deployed_env(tmp_path)
    assert env["REEV_API_HOST"] == "127.0.0.1"
    sessions, benchmarks, db = Path(env["REEV_SESSIONS_DIR"]), Path(env["REEV_BENCHMARKS_DIR"]), Path(env["REEV_DB"])
    (sessions.mkdir(parents=True), benchmarks.mkdir(parents=True), db.parent.mkdir(parents=True))
    (sessions / "enhanced_otel_deployed.jsonl").write_bytes(fx.jsonl([fx.prompt_line("p")]))
    (benchmarks / "001-sol-transfer.yml").write_text(fx.benchmark_yaml("001-sol-transfer"))
    cwd = tmp_path / "elsewhere"         # where the defaults would put things
    cwd.mkdir()
    with open(tmp_path / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(daemon_command(), cwd=cwd, env=clean_env() | env, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=log)
    api = None
    try:
        wait_for(lambda: status_of(env).get("executions") == {"Running": 1}, timeout=20,
                 what="the daemon to ingest into REEV_DB", alive=lambda: daemon.poll() is None or pytest.fail(
                     (tmp_path / "daemon.log").read_text()))
        api = Api(None, tmp_path / "api.log", env=env)
        assert api.get("/api/v1/health")["database"]["name"] == db.name
        assert f"serving {db} on" in api.log_path.read_text()
        assert api.get("/api/v1/sessions/deployed")["summary"]["execution_id"] == "deployed"
        assert [b["id"] for b in api.get("/api/v1/benchmarks")] == ["001-sol-transfer"]
    finally:
        if api is not None:
            api.close()
        daemon.terminate()
        assert daemon.wait(10) == 0
    assert list(cwd.iterdir()) == [], "nothing on the defaults"
    for log in ("daemon.log", "api.log"):
        assert " INFO " in (tmp_path / log).read_text(), "REEV_LOG_LEVEL=info from the file"


def status_of(env: dict[str, str], *argv: str) -> dict:
    proc = run(daemon_command() + [*argv, "status", "--json"], env)
    return json.loads(proc.stdout)


def test_state_directory_is_where_the_daemon_api_and_status_find_the_database(tmp_path, workspace):
    """As systemd's StateDirectory= sets it (several folders are colon-separated: the first)."""
    state = tmp_path / "var" / "lib" / "reev-ingest"
    state.mkdir(parents=True)
    env = {"STATE_DIRECTORY": f"{state}:{tmp_path / 'other'}", "REEV_SESSIONS_DIR": str(workspace.sessions),
           "REEV_BENCHMARKS_DIR": str(workspace.benchmarks)}
    workspace.append_events("run-1", [fx.prompt_line("p")])
    proc = run(daemon_command() + ["--once"], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (state / "reev.db").exists() and not (tmp_path / "state").exists()
    report = status_of(env)
    assert report["database"] == str(state / "reev.db") and report["executions"] == {"Running": 1}
    api = Api(None, tmp_path / "api.log", env=env)
    try:
        assert api.get("/api/v1/health")["database"]["name"] == "reev.db"
        assert f"serving {state / 'reev.db'} on" in api.log_path.read_text()
    finally:
        api.close()


def test_daemon_settings_from_the_environment_take_effect(workspace):
    workspace.append_events("long", [fx.prompt_line("x" * 600), fx.prompt_line("short")])
    proc = run(daemon_command() + ["--once"], {
        "REEV_SESSIONS_DIR": str(workspace.sessions), "REEV_BENCHMARKS_DIR": str(workspace.benchmarks),
        "REEV_DB": str(workspace.db_path), "REEV_MAX_LINE_BYTES": "500", "REEV_LOG_LEVEL": "DEBUG"})
    assert proc.returncode == 0, proc.stderr
    assert [e["reason"] for e in workspace.db.errors()] == ["line longer than 500 bytes"]
    assert workspace.db.event_count("long") == 1
    assert " DEBUG " in proc.stderr


def test_api_settings_from_the_environment_take_effect(workspace, run_once, tmp_path):
    run_once()
    env = {"REEV_DB": str(workspace.db_path), "REEV_API_HOST": "127.0.0.1", "REEV_API_PORT": str(free_port()),
           "REEV_API_WORKERS": "2", "REEV_API_MAX_STREAMS": "1", "REEV_API_STREAM_HEARTBEAT": "0.2",
           "REEV_API_CORS_ORIGINS": "http://a.example, http://b.example"}
    api = Api(None, tmp_path / "api.log", env=env)
    try:
        wait_for(lambda: all(f"Started worker-{n}" in api.log_path.read_text() for n in (1, 2)),
                 what="two worker processes")
        # One stream per worker: with two workers, a third stream finds both full.
        streams = [StreamClient(api), StreamClient(api)]
        wait_for(lambda: all(s.comments >= 3 for s in streams if s.response.status == 200), timeout=5,
                 what="keep-alives every 0.2 s")
        if all(s.response.status == 200 for s in streams):
            assert StreamClient(api).response.status == 503
        else:
            assert sorted(s.response.status for s in streams) == [200, 503]
        for origin, allowed in (("http://b.example", True), ("http://c.example", False)):
            reply = api.request("/api/v1/benchmarks", method="OPTIONS", headers={
                "Origin": origin, "Access-Control-Request-Method": "GET"})
            assert (reply.headers.get("access-control-allow-origin") == origin) is allowed, (origin, reply.headers)
        for s in streams:
            s.close()
    finally:
        api.close()


# ---------------------------------------------------------------------- a port already taken, make run


def test_a_port_already_taken_is_one_line_and_a_failure(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run(api_command() + ["--db", str(tmp_path / "reev.db"), "--port", str(port)], timeout=20)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "backtrace" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1 and f"CRITICAL reev.api: cannot listen on 127.0.0.1:{port}: Address already in use" in \
        errors[0], proc.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("broken", ["api", "daemon"])
def test_make_run_fails_when_either_program_fails_to_start(workspace, broken):
    env = {"REEV_SESSIONS_DIR": str(workspace.sessions), "REEV_BENCHMARKS_DIR": str(workspace.benchmarks),
           "REEV_DB": str(workspace.db_path), "REEV_API_PORT": str(free_port())}
    if broken == "daemon":
        env["REEV_RESCAN_INTERVAL"] = "0"
    with socket.socket() as holder:
        if broken == "api":
            holder.bind(("127.0.0.1", int(env["REEV_API_PORT"])))
            holder.listen()
        # The venv this suite runs in (-o install: not reinstalled); a session of its own, so
        # that a make run that does not stop is stopped with both its programs.
        make = subprocess.Popen(["make", "-C", str(ROOT), "-o", "install", "run", f"BIN={Path(sys.executable).parent}"],
                                env=clean_env() | env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, stderr = make.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGTERM)
            make.communicate(timeout=30)
            pytest.fail(f"make run still running after 60 s with a broken {broken}")
    assert make.returncode != 0, stderr
    expected = "cannot listen on" if broken == "api" else "REEV_RESCAN_INTERVAL"
    assert expected in stderr, stderr


# ---------------------------------------------------------------------- status and dump


def test_status_and_dump_take_their_options_on_either_side(workspace, run_once):
    workspace.append_events("run-1", [fx.prompt_line("p")])
    run_once()
    db = str(workspace.db_path)
    for argv in (["--db", db, "status"], ["status", "--db", db], ["--db", "/nowhere.db", "status", "--db", db]):
        proc = run(daemon_command() + argv)
        # (exit 1, degraded: after --once no daemon holds the database)
        assert proc.returncode == 1 and f"database   {db}" in proc.stdout and "daemon     not running" in proc.stdout, (
            argv, proc.stdout, proc.stderr)
    for argv in (["--db", db, "dump"], ["dump", "--db", db]):
        proc = run(daemon_command() + argv)
        assert proc.returncode == 0 and '"run-1"' in proc.stdout, (argv, proc.stderr)
    proc = run(daemon_command() + ["--once", "status", "--db", db])
    assert proc.returncode == 2 and "--once" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_status_json_gives_times_in_rfc3339_like_the_api(workspace, run_once):
    workspace.append_events("run-1", [fx.prompt_line("p")])
    run_once()
    report = status_of({"REEV_DB": str(workspace.db_path)})
    for key in ("heartbeat_at", "last_ingest_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", report[key]), (key, report[key])
    beat = time.mktime(time.strptime(report["heartbeat_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(time.time() - report["heartbeat_age_seconds"] - beat) < 5


# ---------------------------------------------------------------------- the README


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}")
    return text[start:text.index("\n## ", start + 1)]


@pytest.mark.parametrize("title, settings", [("The daemon: `reev-ingestd`", DAEMON_SETTINGS),
                                             ("The API: `reev-api`", API_SETTINGS)])
def test_readme_synopsis_and_table_list_every_declared_setting(title, settings):
    section = _readme_section(title)
    synopsis = section.split("```")[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `--") and len(cells) == 3:
            rows[re.match(r"`(--[a-z-]+)`", cells[0])[1]] = cells
    assert set(rows) == {s.flag for s in settings}, "one row per declared setting, no other"
    for s in settings:
        assert f"[{s.flag} " in synopsis, f"{s.flag} missing from the synopsis"
        _, env, default = rows[s.flag]
        assert env.startswith(f"`{s.env}`"), (s.flag, env)
        assert default.replace("`", "").startswith(s.shown_default), (s.flag, default, s.shown_default)
        if s.bounds:             # every number's range, as the declaration gives it
            assert f"({s.bounds}" in default.replace("`", ""), (s.flag, default, s.bounds)


def test_the_api_does_not_import_the_daemon():
    """What both programs share lives in core/; the API loads nothing of the writer (it loaded
    the store and ingestion through the daemon's command line once)."""
    for module in ("api.cli", "api.app"):
        script = (f"import sys, {module}; "
                  "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('core', 'daemon'))))")
        loaded = set(run([sys.executable, "-c", script], cwd=ROOT).stdout.split())
        assert "core.run_status" in loaded and not {m for m in loaded if m.startswith("daemon")}, (module, loaded)
