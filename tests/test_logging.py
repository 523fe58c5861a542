"""One log format for both programs: every line of the daemon, the API server and its worker
processes is a record line or a traceback's continuation line; under journald each carries
its `<N>` priority; no input can forge a line; paths are absolute in both programs' logs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from core.logs import CONTINUATION, LineFormatter
from tests import fixtures as fx
from tests.api_client import Api
from tests.conftest import clean_env, daemon_command, wait_for

RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
JOURNAL_RECORD = re.compile(r"<[2-7]>[\w.]+: ")
FORGED = "2026-12-06 03:23:39,000 CRITICAL reev.daemon: forged"


def assert_one_format(text: str, journal: bool = False) -> list[str]:
    """Every line is a record or a continuation line of the one before; returns the lines."""
    lines = text.splitlines()
    assert lines, "nothing logged"
    for n, line in enumerate(lines):
        if journal:
            assert re.match(r"<[2-7]>", line), f"line {n + 1} has no priority: {line!r}"
            body = line[3:]
            ok = JOURNAL_RECORD.match(line) or (n > 0 and body.startswith(CONTINUATION))
        else:
            ok = RECORD.match(line) or (n > 0 and line.startswith(CONTINUATION))
        assert ok, f"line {n + 1} is in another format: {line!r}\n{text}"
    return lines


def journal_env(f) -> dict[str, str]:
    """$JOURNAL_STREAM naming the file `f` as stderr, as systemd names its journal socket."""
    st = os.fstat(f.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


# ---------------------------------------------------------------------- the API: server and workers


def test_every_line_of_the_api_and_its_workers_in_one_format(workspace, run_once, tmp_path):
    run_once()
    api = Api(workspace.db_path, tmp_path / "api.log", "--workers", "2")
    api.get("/api/v1/health")
    # Both workers up before the stop (a worker still starting at SIGTERM holds the stop up
    # for 20 s: Granian's, not what this test is about).
    wait_for(lambda: "Started worker-1" in api.log_path.read_text() and "Started worker-2" in api.log_path.read_text(),
             what="both workers to start")
    assert api.close() == 0
    lines = assert_one_format(api.log_path.read_text())
    assert any(" INFO _granian.serve: Started worker-2" in line for line in lines), "the workers' own lines"


def test_every_line_of_the_api_and_its_workers_carries_a_priority_under_journald(workspace, run_once, tmp_path):
    run_once()
    path = tmp_path / "journal.txt"
    with open(path, "wb") as f:
        api = Api(workspace.db_path, path, env=journal_env(f))
    api.get("/api/v1/health")
    assert api.close() == 0
    lines = assert_one_format(path.read_text(), journal=True)
    assert "<6>_granian.serve: Started worker-1" in lines, lines


# ---------------------------------------------------------------------- forged lines


def test_a_file_name_cannot_forge_a_log_line(workspace, run_once, tmp_path):
    name = f"x\n{FORGED}.yml"
    workspace.write_benchmark(name, "id: [unclosed\n")
    os.utime(workspace.benchmark_path(name), (1, 1))     # settled: an error at once
    proc = run_once("--log-level", "debug")
    assert FORGED not in [line[:len(FORGED)] for line in proc.stderr.splitlines()]
    assert_one_format(proc.stderr)
    assert f"x\\n{FORGED}.yml: invalid YAML" in proc.stderr, proc.stderr
    # Under journald a priority could be forged too.
    forged_priority = "y\n<2>reev.daemon: forged.yml"
    workspace.write_benchmark(forged_priority, "id: [unclosed\n")
    os.utime(workspace.benchmark_path(forged_priority), (1, 1))
    path = tmp_path / "journal.txt"
    with open(path, "wb") as f:
        subprocess.run(daemon_command() + workspace.args() + ["--once"], stderr=f, env=clean_env() | journal_env(f),
                       check=True, timeout=60)
    lines = assert_one_format(path.read_text(), journal=True)
    assert not any(line.startswith("<2>") for line in lines), lines
    assert any("y\\n<2>reev.daemon: forged.yml: invalid YAML" in line for line in lines), lines


def _record(msg: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("reev.test", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_control_characters_in_message_and_arguments_are_escaped():
    text = LineFormatter().format(_record("file %s:\r%d\x1b[31m", "a\nb\u2028c\x85", 3))
    assert "\n" not in text
    assert text.endswith("ERROR reev.test: file a\\nb\\u2028c\\x85:\\r3\\x1b[31m"), text


def test_a_traceback_is_continuation_lines_of_its_record():
    try:
        raise ValueError(f"bad\n{FORGED}\r")
    except ValueError as e:
        exc = e
    for journal in (False, True):
        lines = LineFormatter(journal).format(_record("it failed", exc=exc)).split("\n")
        prefix = "<3>" if journal else ""
        assert lines[0].startswith(prefix) and lines[0].endswith("reev.test: it failed")
        assert all(line.startswith(prefix + CONTINUATION) for line in lines[1:]), lines
        assert lines[1] == prefix + CONTINUATION + "Traceback (most recent call last):"
        assert lines[-2:] == [prefix + CONTINUATION + "ValueError: bad", prefix + CONTINUATION + FORGED + "\\r"]


def test_an_uncaught_exception_is_one_logged_record(tmp_path):
    """In the main thread and in others, through the programs' logging (core/logs.py), so
    journald gets it with its priority."""
    script = ("import threading\n"
              "from core.logs import setup_logging\n"
              "setup_logging('info')\n"
              "t = threading.Thread(target=lambda: 1 / 0, name='worker')\n"
              "t.start(); t.join()\n"
              f"raise RuntimeError({'boom' + chr(10) + FORGED!r})\n")
    path = tmp_path / "journal.txt"
    with open(path, "wb") as f:
        proc = subprocess.run([sys.executable, "-c", script], stderr=f, env=clean_env() | journal_env(f),
                              cwd=Path(__file__).resolve().parent.parent, timeout=30)
    assert proc.returncode == 1
    lines = assert_one_format(path.read_text(), journal=True)
    records = [line for line in lines if not line[3:].startswith(CONTINUATION)]
    assert records == ["<2>reev: uncaught ZeroDivisionError in thread worker",
                       "<2>reev: uncaught RuntimeError: the program stops"], lines
    assert lines[-2:] == ["<2>" + CONTINUATION + "RuntimeError: boom", "<2>" + CONTINUATION + FORGED]


# ---------------------------------------------------------------------- paths


def test_both_programs_log_the_database_path_absolute(workspace, tmp_path):
    """Given relative, as `make run` gives it: the daemon, `status` and the API all name the
    same absolute file."""
    workspace.append_events("run-1", [fx.prompt_line("p")])
    absolute = str(tmp_path / "state" / "reev.db")
    args = ["--sessions-dir", "logs/sessions", "--benchmarks-dir", "benchmarks", "--db", "state/reev.db"]
    with open(tmp_path / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(daemon_command() + args, cwd=tmp_path, env=clean_env(), stdout=log, stderr=log)
    try:
        wait_for(lambda: "caught up" in (tmp_path / "daemon.log").read_text(), timeout=20, what="the daemon's start")
        status = subprocess.run(daemon_command() + ["status", "--db", "state/reev.db"], cwd=tmp_path, env=clean_env(),
                                capture_output=True, text=True, timeout=30)
        api = Api(Path("state/reev.db"), tmp_path / "api.log", cwd=tmp_path)
        # answers name the database by its file name only (no host layout); the log says which
        assert api.get("/api/v1/health")["database"]["name"] == "reev.db"
        api.close()
    finally:
        daemon.terminate()
        daemon.wait(10)
    assert f"database {absolute}" in (tmp_path / "daemon.log").read_text()
    assert f"database   {absolute}" in status.stdout
    assert f"serving {absolute} on http://127.0.0.1:{api.port}" in api.log_path.read_text()
