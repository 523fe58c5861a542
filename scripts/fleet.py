"""`make fleet`: the scale-out on one machine, to see it work before deploying it (docs/fleet.md).

    .venv/bin/python scripts/fleet.py [--port 3001] [--sessions 20] [--every 5]

Starts, in one throwaway folder (printed; removed at the end):
- a PostgreSQL cluster of its own (tests/pgcluster.py: a Unix socket in the folder, no TCP port,
  so it runs beside any other, CI's included), set up by deploy/postgresql/roles.sql: the
  database `reev`, owned by the daemons' role `reev_writer`, read by the API's `reev_reader`;
- three daemons as three runner hosts would run them: `--source host-a` (host-b, host-c), each
  on a sessions folder of its own holding `--sessions` generated runs, all three on the
  repository's benchmarks/ (the same definitions on every host: one benchmark each);
- one API on 127.0.0.1:`--port`, as `reev_reader`;
then writes a new run into the next host's folder every `--every` seconds (0: none), so the
event stream has something to show.

Ctrl-C (SIGINT or SIGTERM), or any one program exiting, stops the programs, then the cluster, and
deletes the folder. Exit status 0 after a stop asked for, 1 when a program exited by itself
(its log's last lines are printed) or something failed to start. If this script is killed
(SIGKILL) the programs get SIGTERM from the kernel, but the cluster and the folder stay:
`python3 tests/pgcluster.py stop FOLDER/pg; rm -rf FOLDER`.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from perf.corpus import AGENTS, session_doc, session_lines  # noqa: E402
from tests import pgcluster  # noqa: E402

BIN = Path(sys.executable).parent
HOSTS = ("host-a", "host-b", "host-c")
BENCHMARKS = ROOT / "benchmarks"
ROLES_SQL = ROOT / "deploy" / "postgresql" / "roles.sql"
DATABASE = "reev"
STOP_SECONDS = 20             # what a program gets after SIGTERM before SIGKILL (the units' TimeoutStopSec)
READY_SECONDS = 120
PR_SET_PDEATHSIG = 1          # prctl(2)


class Stop(Exception):
    """SIGINT or SIGTERM: stop everything."""


def _stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def say(text: str = ""):
    print(text, flush=True)


# ------------------------------------------------------------------------------ the runs

def load_benchmarks() -> list[dict]:
    """The repository's benchmarks as perf/corpus.py's generator takes them."""
    found = []
    for path in sorted(BENCHMARKS.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        found.append({"id": doc["id"], "prompt": doc.get("prompt", ""), "flow": bool(doc.get("flow"))})
    return found


def write_run(sessions: Path, execution_id: str, rng: random.Random, benchmarks: list[dict], finished: bool):
    """One run as reev's runner leaves it: its event log, then (finished) its session file."""
    bench, agent = rng.choice(benchmarks), rng.choice(AGENTS)
    start = datetime.now(UTC)
    lines, end = session_lines(rng, execution_id, bench, start, finished=finished)
    (sessions / f"enhanced_otel_{execution_id}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    if finished:
        doc = session_doc(rng, execution_id, bench, agent, start, end, final=True)
        (sessions / f"session_{execution_id}.json").write_text(json.dumps(doc, indent=2))


def run_id(host: str, n: int) -> str:
    return f"{host}-{n:04d}"


# ------------------------------------------------------------------------------ the programs

def _die_with_parent():
    """preexec_fn: SIGTERM to the program when this script dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def role_url(cluster: pgcluster.Cluster, role: str) -> str:
    """The `reev` database on the cluster's socket, as `role` (local connections are trusted)."""
    return f"postgresql:///{DATABASE}?" + urllib.parse.urlencode({"host": str(cluster.socket_dir), "user": role},
                                                                  safe="/")


def start_program(name: str, argv: list[str], logs: Path) -> subprocess.Popen:
    log = open(logs / f"{name}.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REEV_")} | {"PYTHONUNBUFFERED": "1"}
    with log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent)


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def served(port: int, execution_id: str) -> bool:
    try:
        return get(port, f"/api/v1/sessions/{execution_id}")[0] == 200
    except (OSError, http.client.HTTPException):     # (not answering yet, or cut off)
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"({e})"


def stop_programs(programs: dict[str, subprocess.Popen]):
    for proc in programs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for name, proc in programs.items():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"fleet: {name} still running {STOP_SECONDS} s after SIGTERM: SIGKILL")
            proc.kill()
            proc.wait()


def remove(work: Path) -> bool:
    """Stop the cluster (if it was made) and delete the folder; False: the cluster would not stop."""
    if (work / "pg").exists():
        try:
            pgcluster.stop(work / "pg")
        except pgcluster.ClusterError as e:
            say(f"fleet: {e}\nfleet: {work} left as it is: its cluster may still run")
            return False
    shutil.rmtree(work, ignore_errors=True)
    say(f"fleet: stopped; {work} deleted")
    return True


# ------------------------------------------------------------------------------ the fleet

def instructions(port: int, work: Path, reader: str, writer: str) -> str:
    api = f"http://127.0.0.1:{port}/api/v1"
    return f"""
fleet: ready. The throwaway data lives in {work} while this runs (deleted at the end):
  {work}/host-a|host-b|host-c/sessions   each runner host's folder (write runs there)
  {work}/pg                              the PostgreSQL cluster (socket in pg/socket)
  {work}/logs                            each program's log
  the daemons write as reev_writer:  {writer}
  the API reads as reev_reader:      {reader}

Try:
  curl -s {api}/health
  curl -s '{api}/sessions?limit=5'
  curl -s {api}/sessions/host-b-0001
  curl -s {api}/ingest/status
  curl -s {api}/agent-performance
  curl -N {api}/stream                  # a new run every few seconds, from each host in turn
  {BIN}/reev-ingestd status --db '{reader}'
  psql '{writer}' -c 'SELECT source, to_timestamp(heartbeat_at) AS heartbeat FROM sources'

Ctrl-C stops the daemons, the API and the cluster, and deletes {work}.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=3001, help="the API's port on 127.0.0.1 (default 3001)")
    p.add_argument("--sessions", type=int, default=20, help="runs generated in each host's folder at start")
    p.add_argument("--every", type=float, default=5.0, help="seconds between new runs once started (0: none)")
    args = p.parse_args(argv)
    programs_dir = pgcluster.bindir()
    if programs_dir is None:
        say("fleet: PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
        return 1
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    work = Path(tempfile.mkdtemp(prefix="reev-fleet-"))
    work.chmod(0o711)               # the server's user (postgres, when we are root) enters pg/ inside
    logs = work / "logs"
    logs.mkdir()
    programs: dict[str, subprocess.Popen] = {}
    status = 0
    try:
        say(f"fleet: throwaway data in {work}")
        rng = random.Random()
        benchmarks = load_benchmarks()
        for host in HOSTS:
            sessions = work / host / "sessions"
            sessions.mkdir(parents=True)
            for n in range(1, args.sessions + 1):
                write_run(sessions, run_id(host, n), rng, benchmarks, finished=rng.random() < 0.8)
        say(f"fleet: {args.sessions} runs in each of {', '.join(HOSTS)}; starting PostgreSQL")
        cluster = pgcluster.start(work / "pg")
        subprocess.run([str(programs_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", cluster.url(),
                        "-f", str(ROLES_SQL)], check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        writer, reader = role_url(cluster, "reev_writer"), role_url(cluster, "reev_reader")
        for host in HOSTS:
            programs[host] = start_program(host, [str(BIN / "reev-ingestd"), "--source", host, "--db", writer,
                                                  "--sessions-dir", str(work / host / "sessions"),
                                                  "--benchmarks-dir", str(BENCHMARKS)], logs)
        programs["api"] = start_program("api", [str(BIN / "reev-api"), "--db", reader, "--port", str(args.port)], logs)
        say("fleet: started reev-ingestd " + ", ".join(f"{h} (pid {programs[h].pid})" for h in HOSTS)
            + f" and reev-api (pid {programs['api'].pid}) on 127.0.0.1:{args.port}")
        ready_by = time.monotonic() + READY_SECONDS
        waiting = set(HOSTS)
        counters = {host: itertools.count(args.sessions + 1) for host in HOSTS}
        next_host = itertools.cycle(HOSTS)
        next_run = None
        while True:
            for name, proc in programs.items():
                if proc.poll() is not None:
                    say(f"fleet: {name} exited (status {proc.returncode}); its log ({logs / name}.log) ends:")
                    say(tail(logs / f"{name}.log"))
                    status = 1
            if status:
                break
            if waiting:
                waiting = {h for h in waiting if not served(args.port, run_id(h, 1))}
                if not waiting:
                    say(instructions(args.port, work, reader, writer))
                    next_run = time.monotonic() + args.every if args.every > 0 else None
                elif time.monotonic() > ready_by:
                    say(f"fleet: after {READY_SECONDS} s the API serves nothing yet from {', '.join(sorted(waiting))}:"
                        f" see {logs}")
                    ready_by = float("inf")
            elif next_run is not None and time.monotonic() >= next_run:
                host = next(next_host)
                write_run(work / host / "sessions", run_id(host, next(counters[host])), rng, benchmarks, finished=True)
                next_run += args.every
            time.sleep(0.2)
    except Stop as e:
        say(f"\nfleet: {e}: stopping")
    except (OSError, subprocess.CalledProcessError, pgcluster.ClusterError) as e:
        detail = getattr(e, "stderr", "") or ""
        say(f"fleet: {e}{': ' + detail.strip() if detail else ''}")
        status = 1
    finally:
        # a second Ctrl-C must not cut the cleaning short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_programs(programs)
        if not remove(work):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
