"""`make bench`: build the inputs, run every measurement, print one Markdown table and write
it to perf/RESULTS.md (with the date, the machine, and the exact commands).

    BENCH_SIZE=small|large .venv/bin/python perf/bench.py

Optional overrides (for running part of `large` within a time budget; RESULTS.md says which
were used): BENCH_ONLY=backfill,live,api,scale,memory,profile,pg,pgscale (default: all; pg: the PostgreSQL
backends against SQLite, on a throwaway cluster, perf/pgperf.py; pgscale: the scale benchmark
on PostgreSQL, 6i to 6k); BENCH_CORPUS=N (sessions of
the back-fill corpus); BENCH_PG_CORPUS=N (of the PostgreSQL step's); BENCH_SCALE=10000,100000,1000000;
BENCH_PG_SCALE=10000,100000;
BENCH_BIGLOG_MB=512,1024; BENCH_WATCH=50000,100000; BENCH_REPS=3.

Generated data lives in perf/data/<size>/ (gitignored) and is reused when its parameters
match (a stamp file per input). Every load is bounded in count and time and goes to
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import apsw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PERF = ROOT / "perf"
BIN = Path(sys.executable).parent
PY = str(BIN / "python")
TIME = "/usr/bin/time"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
# Every daemon run here: quiet, and without the stale rule. The corpora are built once and
# reused, so how many of their runs without a session file (a fifth of the back-fill corpus,
# every file of the watched ones) would time out depends on how old the copy is; timing them
# out is not what these figures measure, and the runs before the rule did not do it.
# (Measured apart: 2 035 runs timed out in 0.08 s, 40 us each, after a 10 000-session back-fill.)
DAEMON_FLAGS = ["--log-level", "warning", "--stale-after", "0"]

PROFILES = {
    # sessions in the back-fill corpus; live-latency run length; wrk run length; API scale sizes
    # (the first size >= 10 000 is the baseline); big event log sizes; watched file counts; sessions
    # of the PostgreSQL step's corpus (its live catch-ups are slow: see docs/performance.md).
    "small": dict(corpus=1_000, reps=3, live_seconds=10, live_reps=3, wrk_seconds=5, scale_seconds=2,
                  scale=[10_000, 30_000, 100_000], scale_events_upto=0, biglog_mb=[64, 128], watch=[5_000, 10_000],
                  profile_seconds=8, pg_corpus=1_000, pg_scale=[10_000, 100_000]),
    "large": dict(corpus=100_000, reps=3, live_seconds=30, live_reps=3, wrk_seconds=10, scale_seconds=3,
                  scale=[10_000, 100_000, 1_000_000], scale_events_upto=100_000, biglog_mb=[512, 1024],
                  watch=[50_000, 100_000], profile_seconds=15, pg_corpus=10_000, pg_scale=[10_000, 1_000_000]),
}

COMMANDS: list[str] = []     # every command run, in order (for RESULTS.md)
NOTES: list[str] = []


# ------------------------------------------------------------------------------ helpers

def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def shown(cmd: list) -> str:
    text = " ".join(shlex.quote(str(c)) for c in cmd)
    return text.replace(str(ROOT) + "/", "").replace(str(BIN) + "/", ".venv/bin/")


def note_cmd(cmd: list, env: dict | None = None):
    prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    text = (prefix + " " if prefix else "") + shown(cmd)
    if text not in COMMANDS:
        COMMANDS.append(text)


def run(cmd: list, timeout: float, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    note_cmd(cmd, env)
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(c) for c in cmd], timeout=timeout, env=full_env, **kw)


class TreeRss:
    """The peak of the summed RSS of a process's descendants (the daemon and its read-ahead
    worker: /usr/bin/time -v reports the largest single process, not their sum), sampled."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.peak_mb = pid, interval, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _descendants(self, pid: int) -> list[int]:
        try:
            kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []
        return kids + [d for k in kids for d in self._descendants(k)]

    def _run(self):
        while not self._done.wait(self.interval):
            total = 0
            for pid in self._descendants(self.pid):
                with contextlib.suppress(OSError, AttributeError):
                    total += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
            self.peak_mb = max(self.peak_mb, total / 1024)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak_mb


def time_v_rss(tfile: Path) -> float:
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tfile.read_text()).group(1)) / 1024


def timed(cmd: list, timeout: float, tmp: Path, env: dict | None = None, check=True) -> dict:
    """Run under /usr/bin/time -v: wall seconds, peak RSS (MB: the larger of time's figure and
    the sampled sum over its processes), exit status, stderr tail."""
    tfile = tmp / "time.txt"
    cmd = [TIME, "-v", "-o", tfile] + cmd
    note_cmd(cmd, env)
    with subprocess.Popen([str(c) for c in cmd], env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as popen:
        sampler = TreeRss(popen.pid)
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            raise
        finally:
            tree_mb = sampler.stop()
    p = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    t = tfile.read_text()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = max(time_v_rss(tfile), tree_mb)
    if check and p.returncode != 0:
        raise RuntimeError(f"{shown(cmd)} exited {p.returncode}: {p.stderr[-2000:]}")
    return {"wall": wall, "rss_mb": rss, "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-4000:]}


def rm_db(path: Path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout=2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_until(cond, timeout: float, what: str, interval=0.1, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive.alive():
            raise RuntimeError(f"{what}: the process exited; see {alive.log_path}")
        try:
            v = cond()
            if v:
                return v
        except Exception:      # noqa: BLE001 - "not yet"
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def is_url(db) -> bool:
    return str(db).startswith(("postgresql://", "postgres://"))


def query(db: Path | str, sql: str, params=()) -> list:
    """Rows of `sql` (`?` parameters) on a SQLite file, read-only, or a PostgreSQL URL."""
    if is_url(db):
        from perf import pgperf
        return pgperf.query(str(db), sql.replace("?", "%s"), params)
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.set_busy_timeout(2000)
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(x: float, digits: int = 0) -> str:
    if x is None or x != x:
        return "n/a"
    if digits == 0:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:,.{digits}f}".replace(",", " ")


def fmt_ms(x: float) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else "**PASS**" if ok else "**FAIL**"


def add_row(rows: list, num: str, measurement: str, figure: str, target: str = "", ok: bool | None = None,
            headline: str = ""):
    """One line of the results table; `headline` is its figure in a few characters (the table
    that puts the small and the large run side by side), `ok` None for a row without a target."""
    rows.append({"id": num, "measurement": measurement, "figure": figure, "target": target, "ok": ok,
                 "headline": headline or figure})


class Proc:
    """A background process we started (killed by its own pid only)."""

    def __init__(self, cmd: list, log_path: Path, env: dict | None = None, timed_rss: Path | None = None):
        self.timed = timed_rss is not None
        if self.timed:
            cmd = [TIME, "-v", "-o", timed_rss] + cmd
        note_cmd(cmd, env)
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen([str(c) for c in cmd], stdout=self.log, stderr=subprocess.STDOUT,
                                  env={**os.environ, **(env or {})}, start_new_session=True)
        self.pid = self.p.pid
        self.tree_rss = TreeRss(self.pid) if self.timed else None

    def child_pid(self) -> int:
        """The program's pid when started under /usr/bin/time (its only child)."""
        if not self.timed:
            return self.pid
        kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return int(kids[0]) if kids else self.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30.0) -> int | None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child_pid(), sig)     # under `time`: the program; time then exits
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)     # our own process group only
                self.p.wait(10)
        self.log.close()
        if self.tree_rss is not None:
            self.tree_rss.stop()
        return self.p.returncode


def start_api(db: Path, tmp: Path, name="api") -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([BIN / "reev-api", "--db", db, "--port", port, "--log-level", "warning"], tmp / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_get(base + "/api/v1/benchmarks")[0] == 200, 60, f"reev-api on {base}", alive=proc)
    return proc, base


def start_daemon(sessions: Path, benchmarks: Path, db: Path, tmp: Path, name="daemon",
                 timed_rss: Path | None = None) -> Proc:
    return Proc([BIN / "reev-ingestd", "--sessions-dir", sessions, "--benchmarks-dir", benchmarks, "--db", db,
                 *DAEMON_FLAGS], tmp / f"{name}.log", timed_rss=timed_rss)


def parse_wrk(out: str) -> dict:
    def dur(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s|m)", text)
        v, unit = float(m.group(1)), m.group(2)
        return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]

    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for q in ("50", "90", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        r[f"p{q}"] = dur(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["bad"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"status_counts 200=(\d+) 304=(\d+) other=(\d+)", out)
    r["n200"], r["n304"], r["nother"] = (int(x) for x in m.groups()) if m else (0, 0, 0)
    r["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    return r


def wrk(base: str, paths: list[str], seconds: float, conns=64, threads=2, etag=False) -> dict:
    cmd = [WRK, f"-t{threads}", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "5s", "--latency",
           "-s", PERF / "polling.lua", base, "--"] + paths
    env = {"ETAG": "1" if etag else "0"}
    p = run(cmd, seconds + 60, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return parse_wrk(p.stdout)


def stamp_ok(stamp: Path, params: dict) -> bool:
    return stamp.exists() and json.loads(stamp.read_text()) == params


def generated(folder: Path, params: dict, what: str, cmd: list, build):
    """Inputs are kept between runs: write `folder` again (`build()`, which `cmd` does from a
    shell) only when its stamp does not record these `params`."""
    stamp = folder / "stamp.json"
    if stamp_ok(stamp, params):
        return
    shutil.rmtree(folder, ignore_errors=True)
    log(f"writing {what} ...")
    note_cmd(cmd)
    build()
    stamp.write_text(json.dumps(params))


# ------------------------------------------------------------------------------ inputs

def build_corpus(data: Path, n: int) -> dict:
    corpus = data / f"corpus-{n}"
    stamp = corpus / "stamp.json"
    params = {"sessions": n, "generator": (PERF / "corpus.py").stat().st_size}
    if stamp_ok(stamp, params):
        info = json.loads((corpus / "totals.json").read_text())
        remove_live_logs(corpus / "sessions")      # left by an interrupted API step
        log(f"corpus of {n} sessions: reused ({info['lines']} lines)")
        return {**info, "dir": corpus}
    shutil.rmtree(corpus, ignore_errors=True)
    log(f"building a corpus of {n} sessions ...")
    started = time.monotonic()
    from perf.corpus import concat_event_logs, write_corpus
    note_cmd([PY, "perf/corpus.py", corpus / "sessions", corpus / "benchmarks", n])
    totals = write_corpus(corpus / "sessions", corpus / "benchmarks", n)
    note_cmd([PY, "perf/corpus.py", "--concat", corpus / "sessions", corpus / "all-events.jsonl"])
    concat_event_logs(corpus / "sessions", corpus / "all-events.jsonl")
    (corpus / "totals.json").write_text(json.dumps(totals))
    stamp.write_text(json.dumps(params))
    log(f"corpus built in {time.monotonic() - started:.0f} s: {totals}")
    return {**totals, "dir": corpus}


def remove_live_logs(sessions: Path):
    """The logs perf/live.py added to a corpus folder (enhanced_otel_live-*.jsonl)."""
    for p in sessions.glob("enhanced_otel_live-*.jsonl"):
        p.unlink()


def build_scale_db(data: Path, n: int, events: bool) -> Path:
    db = data / f"scale-{n}{'' if events else '-noevents'}.db"
    stamp = Path(str(db) + ".stamp")
    params = {"sessions": n, "events": events, "generator": (PERF / "dbgen.py").stat().st_size,
              "schema": len((ROOT / "schema.sql").read_text())}
    if stamp_ok(stamp, params) and db.exists():
        log(f"direct DB of {n} sessions: reused")
        return db
    log(f"generating a direct DB of {n} sessions (events: {'yes' if events else 'no'}) ...")
    p = run([PY, PERF / "dbgen.py", db, n, "--events", "full" if events else "none"], 3 * 3600,
            stdout=subprocess.PIPE, text=True, check=True)
    log(f"  {p.stdout.strip()}")
    # The daemon keeps -wal/-shm (PERSIST_WAL); a fresh file without them opens read-only as well.
    stamp.write_text(json.dumps(params))
    return db


def warm(path: Path):
    """Read a folder's files once so every timed run starts with the same (warm) page cache."""
    for entry in os.scandir(path):
        if entry.is_file():
            with open(entry.path, "rb") as f:
                while f.read(1 << 20):
                    pass


# ------------------------------------------------------------------------------ 1. back-fill

def bench_backfill(cfg: dict, data: Path, tmp: Path, rows: list, extra: dict):
    corpus = build_corpus(data, cfg["corpus"])
    sessions, benchmarks = corpus["dir"] / "sessions", corpus["dir"] / "benchmarks"
    all_events = corpus["dir"] / "all-events.jsonl"
    total_bytes = corpus["event_bytes"] + corpus["doc_bytes"]
    warm(sessions)
    warm(corpus["dir"])
    res = defaultdict(list)
    (tmp / "backfill").mkdir(exist_ok=True)
    db = tmp / "backfill" / "reev.db"      # named reev.db: Datasette's URLs use the file's stem
    fdb, sdb, tdb = tmp / "floor.db", tmp / "sqlite-utils.db", tmp / "sqlite-utils-tuned.db"
    timeout = max(600, cfg["corpus"] * 0.1)
    # The four contenders run interleaved, once per repetition, so that the machine's noise
    # falls on all of them alike.
    contenders = [
        ("reev", db, [BIN / "reev-ingestd", "--sessions-dir", sessions, "--benchmarks-dir", benchmarks, "--db", db,
                      "--once", *DAEMON_FLAGS], timeout),
        ("floor", fdb, [PY, PERF / "floor.py", sessions, fdb], timeout),
        ("su_tuned", tdb, [PY, PERF / "sqlite_utils_tuned.py", tdb, "events", all_events], timeout * 3),
        ("su", sdb, [BIN / "sqlite-utils", "insert", sdb, "events", all_events, "--nl"], timeout * 3),
    ]
    for rep in range(cfg["reps"]):
        for name, path, cmd, limit in contenders:
            rm_db(path)
            r = timed(cmd, limit, tmp)
            res[name].append(r["wall"])
            res[f"{name}_rss"].append(r["rss_mb"])
        log(f"back-fill rep {rep + 1}: " + ", ".join(f"{name} {res[name][-1]:.2f} s" for name, *_ in contenders))
    stored = query(db, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM executions),"
                       " (SELECT count(*) FROM ingest_errors)")[0]
    if stored[0] != corpus["lines"] or stored[1] != corpus["sessions"]:
        NOTES.append(f"back-fill check: the database holds {stored[0]} events and {stored[1]} executions for "
                     f"{corpus['lines']} lines and {corpus['sessions']} sessions ({stored[2]} ingest errors)")
    for name, table, path in (("floor", "lines", fdb), ("sqlite-utils (tuned)", "events", tdb),
                              ("sqlite-utils", "events", sdb)):
        n = query(path, f"SELECT count(*) FROM {table}")[0][0]
        if n != corpus["lines"]:
            NOTES.append(f"back-fill check: {name} stored {n} lines of {corpus['lines']}")
    n_lines, n_sessions = corpus["lines"], corpus["sessions"]
    reev, floor, su, tuned = med(res["reev"]), med(res["floor"]), med(res["su"]), med(res["su_tuned"])
    extra["backfill"] = {"corpus": {k: v for k, v in corpus.items() if k != "dir"}, "walls": dict(res)}
    extra["backfill_db"] = db
    extra["corpus"] = corpus
    size = f"{fmt(n_sessions)} sessions, {fmt(n_lines)} lines, {total_bytes / 1e6:.0f} MB"
    add_row(rows, "1", f"Back-fill `reev-ingestd --once` ({size})",
            f"{fmt(n_lines / reev)} lines/s, {fmt(total_bytes / 1e6 / reev, 1)} MB/s, "
            f"{fmt(n_sessions / reev)} sessions/s ({reev:.2f} s, peak RSS {med(res['reev_rss']):.0f} MB)",
            headline=f"{fmt(n_lines / reev)} lines/s ({reev:.2f} s)")
    ratio = floor / reev
    add_row(rows, "1a", "Floor `perf/floor.py` (msgspec + APSW executemany; the key in the rowid, no index; "
                        "2 000 rows/tx; WAL, synchronous=NORMAL)",
            f"{fmt(n_lines / floor)} lines/s ({floor:.2f} s); reev = **{ratio:.2f} ×** floor",
            "reev ≥ 0.6 × floor", ratio >= 0.6, f"{ratio:.2f} ×")
    ratio = tuned / reev
    add_row(rows, "1b", "sqlite-utils tuned (`perf/sqlite_utils_tuned.py`: its `insert --nl` with WAL, "
                        "synchronous=NORMAL, batch size 100 000; one concatenated file, insert timed)",
            f"{fmt(n_lines / tuned)} lines/s ({tuned:.2f} s); reev = **{ratio:.2f} ×** sqlite-utils tuned",
            "reev ≥ 2 × sqlite-utils tuned", ratio >= 2, f"{ratio:.2f} ×")
    ratio = su / reev
    add_row(rows, "1c", "`sqlite-utils insert --nl` as shipped (rollback journal, synchronous=FULL, a commit "
                        "per batch of ≤ 100 rows)",
            f"{fmt(n_lines / su)} lines/s ({su:.2f} s); reev = **{ratio:.2f} ×** sqlite-utils as shipped",
            headline=f"{ratio:.2f} ×")


# ------------------------------------------------------------------------------ 2. live latency

def bench_live(cfg: dict, data: Path, tmp: Path, rows: list, extra: dict):
    live = live_latency(cfg, tmp, "live")
    extra["live"] = live["runs"]
    add_row(rows, "2", live_measurement(cfg, live), live_figure(live), "p50 < 10 ms, p99 < 50 ms",
            live["p50"] < 10 and live["p99"] < 50 and not live["missed"],
            f"p50 {fmt_ms(live['p50'])}, p99 {fmt_ms(live['p99'])}")


def live_latency(cfg: dict, tmp: Path, name: str, db: str | None = None, during=contextlib.nullcontext) -> dict:
    """The live daemon and the API on an empty database (`db`: a PostgreSQL URL, or by default a
    SQLite file in tmp/NAME), perf/live.py's writers and pollers `live_reps` times, each run
    inside `during()` (what else is measured over the same runs)."""
    work = tmp / name
    shutil.rmtree(work, ignore_errors=True)
    (work / "sessions").mkdir(parents=True)
    from perf.corpus import write_benchmarks
    write_benchmarks(work / "benchmarks")
    db = db or work / "reev.db"
    daemon = start_daemon(work / "sessions", work / "benchmarks", db, tmp, f"{name}-daemon")
    api = None
    runs = []
    try:
        wait_until(lambda: query(db, "SELECT count(*) FROM benchmarks")[0][0] == 20, 60, "the daemon's first scan",
                   alive=daemon)
        api, base = start_api(db, tmp, f"{name}-api")
        for rep in range(cfg["live_reps"]):
            with during():
                p = run([PY, PERF / "live.py", "--sessions-dir", work / "sessions", "--api", base, "--writers", 50,
                         "--rate", 2000, "--sampled", 5, "--sample-every", 4, "--duration", cfg["live_seconds"],
                         "--warmup", 2, "--tag", f"r{rep}"], cfg["live_seconds"] + 120,
                        stdout=subprocess.PIPE, text=True, check=True)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            runs.append(r)
            log(f"{name} rep {rep + 1}: {r}")
    finally:
        if api:
            api.stop()
        daemon.stop()
    samples = sum(r["samples"] for r in runs)
    return {"runs": runs, "p50": med([r["p50_ms"] for r in runs]), "p99": med([r["p99_ms"] for r in runs]),
            "rate": med([r["rate"] for r in runs]), "samples": samples, "missed": sum(r["missed"] for r in runs),
            "polls": sum(r["polls"] for r in runs) / max(1, samples), "max": max(r["max_ms"] or 0 for r in runs),
            "lines": sum(r["lines_written"] for r in runs)}


def live_measurement(cfg: dict, live: dict, engine: str = "") -> str:
    missed = f", {live['missed']} missed" if live["missed"] else ""
    return (f"Live latency{engine}, write → visible via API (50 writers, {fmt(live['rate'])} lines/s total; "
            f"{live['samples']} samples on 5 logs, {live['polls']:.1f} polls each, {cfg['live_reps']} runs × "
            f"{cfg['live_seconds']} s{missed})")


def live_figure(live: dict) -> str:
    return f"p50 {fmt_ms(live['p50'])}, p99 {fmt_ms(live['p99'])} (max {fmt_ms(live['max'])})"


# ------------------------------------------------------------------------------ 3. API under load

def pick_ids(db: Path) -> dict:
    n = query(db, "SELECT count(*) FROM executions WHERE success IS NOT NULL")[0][0]
    row = query(db, "SELECT id, execution_id, benchmark_id FROM executions WHERE success IS NOT NULL"
                    " AND tool_call_count > 5 ORDER BY id LIMIT 1 OFFSET ?", (n // 2,))
    row = row or query(db, "SELECT id, execution_id, benchmark_id FROM executions WHERE success IS NOT NULL"
                           " ORDER BY id LIMIT 1")
    rid, eid, bench = row[0]
    return {"rowid": rid, "execution_id": eid, "benchmark_id": bench,
            "status": f"/api/v1/benchmarks/{bench}/status/{eid}", "benchmark": f"/api/v1/benchmarks/{bench}",
            "agents": "/api/v1/agent-performance", "logs": f"/api/v1/execution-logs/{bench}?execution_id={eid}"}


def bench_api(cfg: dict, data: Path, tmp: Path, rows: list, extra: dict):
    corpus = extra.get("corpus") or build_corpus(data, cfg["corpus"])
    db = extra.get("backfill_db")
    if db is None or not Path(db).exists():
        (tmp / "backfill").mkdir(exist_ok=True)
        db = tmp / "backfill" / "reev.db"
        rm_db(db)
        timed([BIN / "reev-ingestd", "--sessions-dir", corpus["dir"] / "sessions", "--benchmarks-dir",
               corpus["dir"] / "benchmarks", "--db", db, "--once", *DAEMON_FLAGS], 7200, tmp)
    ids = pick_ids(db)
    # each path with the scope letter of its ETag (perf/polling.lua)
    mix = ["e=" + ids["status"], "b=" + ids["benchmark"], "r=" + ids["agents"], "e=" + ids["logs"]]
    daemon = start_daemon(corpus["dir"] / "sessions", corpus["dir"] / "benchmarks", db, tmp, "api-daemon")
    writer = api = ds = None
    res = defaultdict(list)
    seconds = cfg["wrk_seconds"]
    n_runs = 5
    try:
        time.sleep(2)
        api, base = start_api(db, tmp, "load-api")
        ds_port = free_port()
        ds = Proc([BIN / "datasette", "serve", db, "--host", "127.0.0.1", "--port", ds_port,
                   "--setting", "sql_time_limit_ms", "2000"], tmp / "datasette.log")
        ds_base = f"http://127.0.0.1:{ds_port}"
        ds_row = f"/reev/executions/{ids['rowid']}.json"
        ds_filter = f"/reev/executions.json?execution_id={ids['execution_id']}&_shape=array"
        wait_until(lambda: http_get(ds_base + ds_row)[0] == 200, 120, "datasette", alive=ds)
        status, body = http_get(ds_base + ds_filter)
        if status != 200 or ids["execution_id"].encode() not in body:
            NOTES.append(f"datasette filter lookup answered {status}")
        # First with nothing being written (the daemon live but idle): the ETag holds still.
        for rep in range(cfg["reps"]):
            res["quiet200"].append(wrk(base, mix, seconds, etag=False))
            res["quiet304"].append(wrk(base, mix, seconds, etag=True))
            log("api quiet rep %d: mix %.0f/s, mix+etag %.0f/s (%d 304s)" % (
                rep + 1, res["quiet200"][-1]["rps"], res["quiet304"][-1]["rps"], res["quiet304"][-1]["n304"]))
        # Background ingest for the rest: 50 running agents, 200 lines/s in all.
        total = cfg["reps"] * n_runs * (seconds + 2) + 30
        writer = Proc([PY, PERF / "live.py", "--sessions-dir", corpus["dir"] / "sessions", "--api", base,
                       "--writers", 50, "--rate", 200, "--duration", total, "--no-poll", "--tag", "bg"],
                      tmp / "bg-writer.log")
        gen0 = query(db, "SELECT value FROM meta WHERE key = 'data_generation'")[0][0]
        time.sleep(2)
        for rep in range(cfg["reps"]):
            res["mix200"].append(wrk(base, mix, seconds, etag=False))
            res["mix304"].append(wrk(base, mix, seconds, etag=True))
            res["status"].append(wrk(base, [ids["status"]], seconds, etag=False))
            res["ds_row"].append(wrk(ds_base, [ds_row], seconds))
            res["ds_filter"].append(wrk(ds_base, [ds_filter], seconds))
            log("api rep %d: mix %.0f/s, mix+etag %.0f/s (%d 304s), status %.0f/s, datasette row %.0f/s, "
                "filter %.0f/s" % (rep + 1, res["mix200"][-1]["rps"], res["mix304"][-1]["rps"],
                                   res["mix304"][-1]["n304"], res["status"][-1]["rps"], res["ds_row"][-1]["rps"],
                                   res["ds_filter"][-1]["rps"]))
        gen1 = query(db, "SELECT value FROM meta WHERE key = 'data_generation'")[0][0]
    finally:
        for p in (writer, ds, api):
            if p:
                p.stop()
        daemon.stop()
        remove_live_logs(corpus["dir"] / "sessions")     # the corpus stays as generated
    extra["api"] = {k: v for k, v in res.items()}
    extra["api_ids"] = ids

    def m(key, field):
        return med([r[field] for r in res[key]])

    share304 = sum(r["n304"] for r in res["mix304"]) / max(1, sum(r["requests"] for r in res["mix304"]))
    bad = sum(r["bad"] + r["socket_errors"] for k in res for r in res[k] if not k.startswith("ds"))
    ingest = f"daemon ingesting 200 lines/s ({gen1 - gen0} generations during the runs)"
    add_row(rows, "3a", f"API polling mix (status, benchmark, agent-performance, execution-logs), wrk -t2 -c64, "
                        f"{ingest}",
            f"{fmt(m('mix200', 'rps'))} req/s, p50 {fmt_ms(m('mix200', 'p50'))}, p99 {fmt_ms(m('mix200', 'p99'))}"
            + (f"; {bad} errors" if bad else ""), headline=f"{fmt(m('mix200', 'rps'))} req/s")
    ratio = m("mix304", "rps") / m("mix200", "rps")
    add_row(rows, "3b", "… same with If-None-Match (`ETAG=1`)",
            f"{fmt(m('mix304', 'rps'))} req/s, p50 {fmt_ms(m('mix304', 'p50'))}, p99 {fmt_ms(m('mix304', 'p99'))}"
            f" ({share304:.0%} answered 304); **{ratio:.2f} ×** the 200 path", "304 path ≥ 1.5 × 200 path",
            ratio >= 1.5, f"{ratio:.2f} ×")
    share = sum(r["n304"] for r in res["quiet304"]) / max(1, sum(r["requests"] for r in res["quiet304"]))
    ratio = m("quiet304", "rps") / m("quiet200", "rps")
    add_row(rows, "3b′", "… polling mix with the daemon idle (nothing written: the ETag holds still), without → "
                         "with If-None-Match",
            f"{fmt(m('quiet200', 'rps'))} → {fmt(m('quiet304', 'rps'))} req/s, p50 {fmt_ms(m('quiet200', 'p50'))} → "
            f"{fmt_ms(m('quiet304', 'p50'))} ({share:.0%} answered 304); **{ratio:.2f} ×**",
            "304 path ≥ 1.5 × 200 path", ratio >= 1.5, f"{ratio:.2f} ×")
    best_ds = max(m("ds_row", "rps"), m("ds_filter", "rps"))
    ratio = m("status", "rps") / best_ds
    add_row(rows, "3c", "Status route alone (`/api/v1/benchmarks/{id}/status/{execution_id}`), wrk -t2 -c64",
            f"{fmt(m('status', 'rps'))} req/s, p50 {fmt_ms(m('status', 'p50'))}, p99 {fmt_ms(m('status', 'p99'))}; "
            f"**{ratio:.2f} ×** Datasette", "≥ 3 × Datasette", ratio >= 3, f"{ratio:.2f} ×")
    add_row(rows, "3d", "Datasette `datasette serve reev.db` (mutable = `?mode=ro`), same file, same load",
            f"row page `/reev/executions/ID.json` {fmt(m('ds_row', 'rps'))} req/s (p50 {fmt_ms(m('ds_row', 'p50'))}); "
            f"filter `executions.json?execution_id=…&_shape=array` {fmt(m('ds_filter', 'rps'))} req/s "
            f"(p50 {fmt_ms(m('ds_filter', 'p50'))})", headline=f"{fmt(best_ds)} req/s")


# ------------------------------------------------------------------------------ 4. scale

def bench_scale(cfg: dict, data: Path, tmp: Path, rows: list, extra: dict):
    sizes = cfg["scale"]
    dbs = {n: build_scale_db(data, n, n <= cfg["scale_events_upto"]) for n in sizes}
    result = extra["scale"] = scale_p50(cfg, dbs, tmp, "scale")
    starred = {n for n in sizes if n > cfg["scale_events_upto"]}
    scale_rows(rows, ("4a", "4b", "4c"), result, "direct DB", starred)
    if starred:
        NOTES.append("Scale sizes marked * were generated with `--events none` (executions, tool calls, stats, "
                     "files and meta, but an empty events table) to fit the time budget: the 1 000 000-session DB "
                     "with its ~26 M event rows would be ~28 GB and ~10 more minutes to write (`perf/dbgen.py DB "
                     "1000000` does it). The three routes measured read no events.")


SCALE_ROUTES = {"status": "status", "benchmark": "benchmark detail", "agents": "agent-performance"}


def scale_p50(cfg: dict, dbs: dict, tmp: Path, name: str) -> dict:
    """p50, p99 and req/s of the status, benchmark detail and agent-performance routes, one
    request at a time (wrk -t1 -c1), on each of `dbs` (size → database)."""
    sizes = list(dbs)
    # One API per size, all up at once, and the repetitions interleaved across sizes, so that
    # the machine's noise falls on every size alike.
    apis, ids = {}, {}
    per = defaultdict(lambda: defaultdict(list))
    try:
        for n in sizes:
            ids[n] = pick_ids(dbs[n])
            apis[n] = start_api(dbs[n], tmp, f"{name}-api-{n}")
        for n in sizes:
            for route in SCALE_ROUTES:
                wrk(apis[n][1], [ids[n][route]], 1, conns=1, threads=1)     # warm the page cache
        for rep in range(cfg["reps"]):
            for n in sizes:
                for route in SCALE_ROUTES:
                    per[n][route].append(wrk(apis[n][1], [ids[n][route]], cfg["scale_seconds"], conns=1, threads=1))
    finally:
        for proc, _ in apis.values():
            proc.stop()
    result = {}
    for n in sizes:
        result[n] = {route: {"p50": med([r["p50"] for r in v]), "p99": med([r["p99"] for r in v]),
                             "rps": med([r["rps"] for r in v])} for route, v in per[n].items()}
        log(f"{name} {n}: " + ", ".join(f"{k} p50 {v['p50']:.2f} ms" for k, v in result[n].items()))
    return result


def scale_rows(rows: list, ids: tuple, result: dict, how: str, starred: set = frozenset()):
    """A row per route: p50 at the largest size against p50 at the first size of 10 000 or more."""
    sizes = list(result)
    base_n = next((n for n in sizes if n >= 10_000), sizes[0])
    top = sizes[-1]
    for num, (route, label) in zip(ids, SCALE_ROUTES.items(), strict=True):
        figs = ", ".join(f"{n:,}".replace(",", " ") + f"{'*' if n in starred else ''}: "
                         f"{fmt_ms(result[n][route]['p50'])}" for n in sizes)
        ratio = result[top][route]["p50"] / result[base_n][route]["p50"]
        target = f"p50 at {top:,} ≤ 1.5 × p50 at {base_n:,}".replace(",", " ")
        ok = ratio <= 1.5
        if route == "agents":
            target += "; < 50 ms"
            ok = ok and result[top][route]["p50"] < 50
        add_row(rows, num, f"Scale: {label} p50 (wrk -t1 -c1, {how})",
                f"{figs} → **{ratio:.2f} ×**", target, ok, f"{ratio:.2f} × ({fmt_ms(result[top][route]['p50'])})")


# ------------------------------------------------------------------------------ 5. memory

def bench_memory(cfg: dict, data: Path, tmp: Path, rows: list, extra: dict):
    from perf.corpus import write_benchmarks, write_big_log, write_many_files
    bench_dir = data / "benchmarks-only"
    write_benchmarks(bench_dir)
    big = []
    for mb in cfg["biglog_mb"]:
        d = data / f"biglog-{mb}"
        log_path = d / "sessions" / "enhanced_otel_big.jsonl"
        generated(d, {"mb": mb, "generator": (PERF / "corpus.py").stat().st_size}, f"a {mb} MB event log",
                  [PY, "perf/corpus.py", "--big-log", log_path, mb << 20],
                  lambda: (d / "info.json").write_text(json.dumps(write_big_log(log_path, mb << 20))))
        info = json.loads((d / "info.json").read_text())
        db = tmp / "biglog.db"
        rm_db(db)
        r = timed([BIN / "reev-ingestd", "--sessions-dir", d / "sessions", "--benchmarks-dir", bench_dir, "--db", db,
                   "--once", *DAEMON_FLAGS], 3600, tmp)
        stored = query(db, "SELECT count(*) FROM events")[0][0]
        big.append({"mb": info["bytes"] / 2**20, "lines": info["lines"], "rss": r["rss_mb"], "wall": r["wall"],
                    "stored": stored})
        log(f"big log {mb} MB: peak RSS {r['rss_mb']:.0f} MB, {r['wall']:.1f} s, {stored} lines stored")
        rm_db(db)
    watch = []
    for n in cfg["watch"]:
        d = data / f"watch-{n}"
        generated(d, {"files": n, "generator": (PERF / "corpus.py").stat().st_size}, f"{n} event logs to watch",
                  [PY, "perf/corpus.py", "--many-files", d / "sessions", n],
                  lambda: write_many_files(d / "sessions", n))
        db = tmp / "watch.db"
        rm_db(db)
        tfile = tmp / f"watch-{n}.time"
        started = time.monotonic()
        daemon = start_daemon(d / "sessions", bench_dir, db, tmp, f"watch-daemon-{n}", timed_rss=tfile)
        try:
            wait_until(lambda: query(db, "SELECT count(*) FROM files WHERE kind = 'events'")[0][0] >= n,
                       max(600, n / 50), f"{n} files ingested", interval=0.5, alive=daemon)
            caught_up = time.monotonic() - started
            time.sleep(2)
            os.kill(daemon.child_pid(), signal.SIGHUP)      # a full reconcile scan, as every 30 s
            time.sleep(max(3, n / 20_000))
            # Then a few appends to watched files while it watches them all.
            for i in range(0, n, max(1, n // 50)):
                with open(d / "sessions" / f"enhanced_otel_watch-{i:07d}.jsonl", "ab") as f:
                    f.write(b'{"event_type":"StepComplete","timestamp":"2026-01-02T00:00:00Z","metadata":{}}\n')
            time.sleep(3)
        finally:
            daemon.stop()
            # restore the files for the next run (remove the appended line)
            for i in range(0, n, max(1, n // 50)):
                p = d / "sessions" / f"enhanced_otel_watch-{i:07d}.jsonl"
                lines = p.read_bytes().split(b"\n")
                if len(lines) > 4:
                    p.write_bytes(b"\n".join(lines[:3]) + b"\n")
        rss = max(time_v_rss(tfile), daemon.tree_rss.peak_mb)
        watch.append({"files": n, "rss": rss, "catch_up": caught_up})
        log(f"watching {n} files: peak RSS {rss:.0f} MB (caught up in {caught_up:.0f} s)")
        rm_db(db)
    extra["memory"] = {"biglog": big, "watch": watch}
    a, b = big[0], big[-1]
    growth = b["rss"] / a["rss"]
    ok = max(x["rss"] for x in big) < 150 and growth <= 1.2
    add_row(rows, "5a", "Daemon peak RSS ingesting one event log (`--once`, /usr/bin/time -v)",
            " / ".join(f"{x['mb']:.0f} MB log: {x['rss']:.0f} MB ({x['mb'] / x['wall']:.0f} MB/s)" for x in big)
            + f" → ×{growth:.2f} for ×{b['mb'] / a['mb']:.0f} input",
            "< 150 MB, flat (≤ 1.2× growth)", ok, f"{max(x['rss'] for x in big):.0f} MB, ×{growth:.2f}")
    a, b = watch[0], watch[-1]
    growth = b["rss"] / a["rss"]
    ok = max(x["rss"] for x in watch) < 150 and growth <= 1.2
    add_row(rows, "5b", "Daemon peak RSS watching N files (live: catch-up, SIGHUP rescan, appends)",
            " / ".join(f"{x['files']:,} files: {x['rss']:.0f} MB".replace(",", " ") for x in watch)
            + f" → ×{growth:.2f} for ×{b['files'] / a['files']:.0f} files",
            "< 150 MB, flat (≤ 1.2× growth)", ok, f"{max(x['rss'] for x in watch):.0f} MB, ×{growth:.2f}")


# ------------------------------------------------------------------------------ 6. PostgreSQL

# A primary's budget in the capacity rows (6h): the share of its cores the server may use.
PRIMARY_BUSY = 0.7
LIVE_HOST_RATE = 2000      # lines/s of one runner host in 6h: the live benchmark's load (50 agents)


class ServerCost:
    """What the PostgreSQL server spent inside the `with cost(url):` blocks, summed: the
    execution time of the statements on that database (pg_stat_statements) and the CPU time of
    the server's processes (/proc). Nothing else may use the server meanwhile."""

    def __init__(self, pg):
        self.pg, self.statements, self.cpu, self.calls = pg, 0.0, 0.0, 0

    @contextlib.contextmanager
    def __call__(self, url: str):
        self.pg.reset_statements()
        cpu = self.pg.cpu_seconds()
        yield
        self.cpu += self.pg.cpu_seconds() - cpu
        seconds, calls = self.pg.statement_seconds(url)
        self.statements += seconds
        self.calls += calls

    def per(self, count: float, unit: float) -> str:
        """Both figures per `unit` of `count` things done."""
        return (f"{self.statements / count * unit:.2f} s in statements, {self.cpu / count * unit:.2f} s of server "
                f"CPU")


def bench_pg(cfg: dict, data: Path, tmp: Path, rows: list, extra: dict):
    """The PostgreSQL backends against SQLite (issue 18's figures 1 to 5), on one throwaway
    cluster. Each part runs even when one before it failed; the failures are raised at the end."""
    from perf import pgperf
    same = extra.get("corpus") and extra["corpus"]["sessions"] == cfg["pg_corpus"]
    corpus = extra["corpus"] if same else build_corpus(data, cfg["pg_corpus"])
    warm(corpus["dir"] / "sessions")
    warm(corpus["dir"])
    failed = []
    with pgperf.Server() as pg:
        log(f"PostgreSQL cluster in {pg.root}")
        load = []
        for part in (pg_backfill, pg_fleet, pg_live, pg_api, pg_capacity):
            before = os.getloadavg()[0]
            try:
                part(cfg, pg, corpus, data, tmp, rows, extra)
            except Exception as e:      # noqa: BLE001 - one failed measurement must not lose the others
                failed.append(f"{part.__name__}: {type(e).__name__}: {e}")
                log(f"{part.__name__} failed: {e}")
            load.append(f"{part.__name__} {before:.2f} → {os.getloadavg()[0]:.2f}")
    NOTES.append("The PostgreSQL step's parts, 1-minute load average before → after each: " + ", ".join(load))
    extra["pg_profiles"] = profile_tables(extra.pop("pg_spied", [])) + extra.pop("pg_statements", [])
    if failed:
        raise RuntimeError("; ".join(failed))


def statements_table(title: str, statements: list) -> str:
    """pg_stat_statements' rows (calls, total ms, text) as a Markdown table, for the run's record."""
    lines = [f"**{title}** — pg_stat_statements, the statements that took longest in all\n",
             "| calls | total ms | mean ms | statement |", "|---|---|---|---|"]
    for calls, total, text in statements:
        shown = text if len(text) <= 110 else text[:107] + "..."
        lines.append(f"| {calls} | {total:.1f} | {total / max(1, calls):.3f} | `{shown.replace('|', '&#124;')}` |")
    return "\n".join(lines) + "\n"


def check_stored(db, corpus: dict, what: str):
    """A note when `db` does not hold every line and session of the corpus."""
    events, executions = query(db, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM executions)")[0]
    if events != corpus["lines"] or executions != corpus["sessions"]:
        NOTES.append(f"{what}: the database holds {events} events and {executions} executions for "
                     f"{corpus['lines']} lines and {corpus['sessions']} sessions")


def pg_backfill(cfg: dict, pg, corpus: dict, data: Path, tmp: Path, rows: list, extra: dict):
    """6a: `--once` over the corpus into an empty SQLite file and an empty PostgreSQL database,
    interleaved, once per repetition."""
    sessions, benchmarks = corpus["dir"] / "sessions", corpus["dir"] / "benchmarks"
    (tmp / "pg-sqlite").mkdir(exist_ok=True)
    sdb = tmp / "pg-sqlite" / "reev.db"
    timeout = max(600, cfg["corpus"] * 0.2)
    walls = defaultdict(list)
    cost = ServerCost(pg)
    for rep in range(cfg["reps"]):
        rm_db(sdb)
        walls["sqlite"].append(timed([BIN / "reev-ingestd", "--sessions-dir", sessions, "--benchmarks-dir", benchmarks,
                                      "--db", sdb, "--once", *DAEMON_FLAGS], timeout, tmp)["wall"])
        url = pg.fresh("backfill")
        with cost(url):
            walls["pg"].append(timed([BIN / "reev-ingestd", "--sessions-dir", sessions, "--benchmarks-dir",
                                      benchmarks, "--db", url, "--once", *DAEMON_FLAGS], timeout, tmp)["wall"])
        log(f"pg back-fill rep {rep + 1}: SQLite {walls['sqlite'][-1]:.2f} s, PostgreSQL {walls['pg'][-1]:.2f} s")
    extra.setdefault("pg_statements", []).append(statements_table(
        f"Back-fill into PostgreSQL (the last timed run: {fmt(corpus['files'])} files)", pg.top_statements(url)))
    check_stored(sdb, corpus, "PostgreSQL back-fill, SQLite's run")
    check_stored(url, corpus, "PostgreSQL back-fill")
    raw = data / "profiles" / "pg-backfill.txt"      # one more, profiled (not timed)
    raw.parent.mkdir(parents=True, exist_ok=True)
    run([BIN / "py-spy", "record", "--format", "raw", "-r", "250", "-o", raw, "--", BIN / "reev-ingestd",
         "--sessions-dir", sessions, "--benchmarks-dir", benchmarks, "--db", pg.fresh("profiled"), "--once",
         *DAEMON_FLAGS], timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    extra.setdefault("pg_spied", []).append(("Back-fill into PostgreSQL (`reev-ingestd --once`, not timed)", raw))
    extra["pg_sqlite_db"], extra["pg_url"] = sdb, url
    lines = corpus["lines"]
    lite, post = med(walls["sqlite"]), med(walls["pg"])
    ratio = lite / post
    extra["pg_backfill"] = {"walls": dict(walls), "statements_s": cost.statements, "cpu_s": cost.cpu,
                            "lines": lines * cfg["reps"]}
    add_row(rows, "6a", f"Back-fill `reev-ingestd --once` into PostgreSQL against SQLite (the same "
                        f"{fmt(corpus['sessions'])} sessions, {fmt(lines)} lines; interleaved)",
            f"PostgreSQL {fmt(lines / post)} lines/s ({post:.2f} s), SQLite {fmt(lines / lite)} lines/s "
            f"({lite:.2f} s): **{ratio:.2f} ×**", "PostgreSQL ≥ 0.5 × SQLite", ratio >= 0.5, f"{ratio:.2f} ×")
    add_row(rows, "6f", "PostgreSQL server time per million lines back-filled (pg_stat_statements' execution "
                        "time; the server processes' CPU from /proc)",
            cost.per(lines * cfg["reps"], 1e6), headline=f"{cost.cpu / (lines * cfg['reps']) * 1e6:.1f} s CPU")


def split_corpus(corpus: dict, parts: int) -> list[Path]:
    """The corpus's sessions folder as `parts` folders (hard links), a run's event log and
    session file in the same one: the runner hosts of a fleet."""
    root = corpus["dir"] / f"split-{parts}"
    folders = [root / f"part-{k}" for k in range(parts)]

    def build():
        for folder in folders:
            folder.mkdir(parents=True)
        names = sorted(os.listdir(corpus["dir"] / "sessions"))
        sids = sorted({re.sub(r"^(enhanced_otel_|session_)|\.jsonl?$", "", n) for n in names})
        part = {sid: k % parts for k, sid in enumerate(sids)}
        for n in names:
            os.link(corpus["dir"] / "sessions" / n,
                    folders[part[re.sub(r"^(enhanced_otel_|session_)|\.jsonl?$", "", n)]] / n)

    generated(root, {"sessions": corpus["sessions"], "parts": parts}, f"the corpus in {parts} folders",
              [PY, "perf/bench.py  # split_corpus", corpus["dir"] / "sessions", parts], build)
    return folders


def fleet_run(pg, folders: list[Path], benchmarks: Path, url: str, tmp: Path, name: str, once: bool,
              timeout: float) -> dict:
    """One daemon per folder (its own --source), started together on an empty database: with
    `once`, the seconds until the last `--once` exits (each must exit 0); else the seconds until
    every live daemon has logged that it caught up. And the batches they retried (rolled back by
    a lost conflict or the server, run again: the sources' retried_batches_total, which
    `reev-ingestd status` shows), with the first few "database error (...); retrying" log lines
    that say why; and the seconds they waited for advisory locks (pg_stat_statements: the lock's statement, one
    for both locks): the change feed's, which puts every source's commits in one order (a wait
    per batch), and the schema's while the first daemon creates it."""
    pg.reset_statements()
    started = time.monotonic()
    procs = [Proc([BIN / "reev-ingestd", "--sessions-dir", folder, "--benchmarks-dir", benchmarks, "--db", url,
                   "--source", f"{name}-{k}", *(["--once"] if once else []), *DAEMON_FLAGS,
                   "--log-level", "info"],        # (the last --log-level counts)
                  tmp / f"{name}-{k}.log") for k, folder in enumerate(folders)]
    try:
        waiting = set(range(len(procs)))
        while waiting:
            for k in list(waiting):
                if once and not procs[k].alive():
                    if procs[k].p.returncode != 0:
                        raise RuntimeError(f"{name}: a daemon exited {procs[k].p.returncode}; see {procs[k].log_path}")
                    waiting.discard(k)
                elif not once and "caught up:" in procs[k].log_path.read_text(errors="replace"):
                    waiting.discard(k)
                elif not procs[k].alive():
                    raise RuntimeError(f"{name}: a daemon exited; see {procs[k].log_path}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{name}: not done after {timeout} s")
            time.sleep(0.01)
        wall = time.monotonic() - started
    finally:
        for proc in procs:
            proc.stop()
    retried = query(url, "SELECT coalesce(sum(retried_batches_total), 0)::bigint FROM sources")[0][0]
    why = [line for proc in procs for line in proc.log_path.read_text(errors="replace").splitlines()
           if "database error (" in line]
    lock_wait, tails = pg.statement_seconds(url, "pg_advisory_xact_lock")
    return {"wall": wall, "retried": retried, "retry_lines": why[:5], "lock_wait": lock_wait, "tails": tails}


def pg_fleet(cfg: dict, pg, corpus: dict, data: Path, tmp: Path, rows: list, extra: dict):
    """6b, 6b′: three daemons on the corpus split in three, one database, against one daemon on
    the whole corpus; `--once` (6b) and live until caught up (6b′), alternated."""
    parts = split_corpus(corpus, 3)
    whole = [corpus["dir"] / "sessions"]
    benchmarks = corpus["dir"] / "benchmarks"
    timeout = max(600, cfg["corpus"] * 0.2)
    runs = defaultdict(list)
    for rep in range(cfg["reps"]):
        for mode, once in (("once", True), ("live", False)):
            for count, folders in (("one", whole), ("three", parts)):
                url = pg.fresh("fleet")
                runs[f"{mode}-{count}"].append(
                    fleet_run(pg, folders, benchmarks, url, tmp, f"fleet-{mode}-{count}", once, timeout))
                check_stored(url, corpus, f"{count} daemon(s) ({mode}) into PostgreSQL")
        log(f"pg fleet rep {rep + 1}: " + ", ".join(f"{k} {v[-1]['wall']:.2f} s ({v[-1]['retried']} retried)"
                                                      for k, v in runs.items()))
    extra["pg_fleet"] = dict(runs)
    for r in (r for v in runs.values() for r in v):
        NOTES.extend(f"retried batch: {line}" for line in r["retry_lines"])
    lines = corpus["lines"]
    for num, mode, how in (("6b", "once", "`--once`"), ("6b′", "live", "live, start → every daemon caught up")):
        one, three = (med([r["wall"] for r in runs[f"{mode}-{n}"]]) for n in ("one", "three"))
        retried, retried_one = (sum(r["retried"] for r in runs[f"{mode}-{n}"]) for n in ("three", "one"))
        lock_wait = med([r["lock_wait"] for r in runs[f"{mode}-three"]])
        tails = med([r["tails"] for r in runs[f"{mode}-three"]])
        ratio = one / three
        add_row(rows, num, f"Three daemons (three folders, three --source) into one PostgreSQL against one daemon "
                           f"with all the files ({how})",
                f"three: {fmt(lines / three)} lines/s in all ({three:.2f} s), one: {fmt(lines / one)} lines/s "
                f"({one:.2f} s): **{ratio:.2f} ×**; batches retried: {retried} in {cfg['reps']} three-daemon runs "
                f"({retried_one} with one daemon); the three waited {lock_wait:.2f} s in all for the advisory locks "
                f"(the change feed's, {fmt(tails)} commit tails; the schema's at start)",
                "three ≥ 1.0 × one", ratio >= 1.0, f"{ratio:.2f} ×, {retried} retried")


def pg_live(cfg: dict, pg, corpus: dict, data: Path, tmp: Path, rows: list, extra: dict):
    """6c: the live benchmark (2) with the database a PostgreSQL one."""
    url = pg.fresh("live")
    cost = ServerCost(pg)
    live = live_latency(cfg, tmp, "pg-live", url, during=lambda: cost(url))
    extra.setdefault("pg_statements", []).append(statements_table(
        "Live on PostgreSQL (6c's last run; the API's polls included)", pg.top_statements(url)))
    ingested = query(url, "SELECT count(*) FROM events")[0][0]
    # the daemon's own counters (/metrics'): how many batches, so commits, and files in each
    batches, files = query(url, "SELECT sum(batches_total)::bigint, sum(files_read_total)::bigint FROM sources")[0]
    extra["pg_live"] = {**live, "statements_s": cost.statements, "cpu_s": cost.cpu, "ingested": ingested,
                        "batches": batches, "files": files}
    add_row(rows, "6c", live_measurement(cfg, live, " on PostgreSQL"),
            live_figure(live) + f"; {fmt(batches)} batches (commits), {files / max(1, batches):.1f} files each",
            "p50 < 20 ms, p99 < 100 ms", live["p50"] < 20 and live["p99"] < 100 and not live["missed"],
            f"p50 {fmt_ms(live['p50'])}, p99 {fmt_ms(live['p99'])}")
    add_row(rows, "6f′", f"PostgreSQL server time per million lines ingested live (6c: {fmt(ingested)} lines in "
                         "small batches, the pollers' API requests included)",
            cost.per(ingested, 1e6), headline=f"{cost.cpu / max(1, ingested) * 1e6:.1f} s CPU")


def pg_api(cfg: dict, pg, corpus: dict, data: Path, tmp: Path, rows: list, extra: dict):
    """6d, 6e, 6g: an API on the back-filled PostgreSQL database and one on the SQLite file of the
    same corpus (6a's last runs), both idle while the other is loaded; wrk as in 3."""
    sdb, url = extra["pg_sqlite_db"], extra["pg_url"]
    ids = pick_ids(sdb)                  # the same resources on both (the same corpus)
    mix = ["e=" + ids["status"], "b=" + ids["benchmark"], "r=" + ids["agents"], "e=" + ids["logs"]]
    seconds = cfg["wrk_seconds"]
    res = defaultdict(list)
    costs = {kind: ServerCost(pg) for kind in ("status", "mix200", "mix304")}
    apis = []
    try:
        apis.append(start_api(sdb, tmp, "pg-sqlite-api"))
        apis.append(start_api(url, tmp, "pg-api"))
        (_, lite), (_, post) = apis
        for path in (ids["status"], ids["benchmark"], ids["agents"], ids["logs"]):
            for base in (lite, post):
                status, body = http_get(base + path)
                if status != 200:
                    raise RuntimeError(f"{base}{path} answered {status}: {body[:200]!r}")
        for rep in range(cfg["reps"]):
            res["sqlite_status"].append(wrk(lite, [ids["status"]], seconds))
            with costs["status"](url):
                res["pg_status"].append(wrk(post, [ids["status"]], seconds))
            with costs["mix200"](url):
                res["pg_mix200"].append(wrk(post, mix, seconds, etag=False))
            with costs["mix304"](url):
                res["pg_mix304"].append(wrk(post, mix, seconds, etag=True))
            last = {k: v[-1] for k, v in res.items()}
            log(f"pg api rep {rep + 1}: status SQLite {last['sqlite_status']['rps']:.0f}/s, PostgreSQL "
                f"{last['pg_status']['rps']:.0f}/s; mix {last['pg_mix200']['rps']:.0f}/s, mix+etag "
                f"{last['pg_mix304']['rps']:.0f}/s ({last['pg_mix304']['n304']} 304s)")
        raw = data / "profiles" / "pg-api-status.txt"       # then profiled (not counted)
        raw.parent.mkdir(parents=True, exist_ok=True)
        secs = cfg["profile_seconds"]
        spy = Proc([BIN / "py-spy", "record", "--format", "raw", "-r", "250", "-d", secs + 1, "--subprocesses",
                    "-p", apis[1][0].pid, "-o", raw], tmp / "py-spy-pg-api.log")
        time.sleep(1)
        wrk(post, [ids["status"]], secs)
        spy.p.wait(secs + 60)
        extra.setdefault("pg_spied", []).append(("API on PostgreSQL, the status route (wrk -t2 -c64)", raw))
    finally:
        for proc, _ in apis:
            proc.stop()
    requests = {kind: sum(r["requests"] for r in res[f"pg_{kind}"]) for kind in costs}
    extra["pg_api"] = {"wrk": dict(res), "ids": ids, "requests": requests,
                       "costs": {k: {"statements_s": c.statements, "cpu_s": c.cpu, "calls": c.calls}
                                 for k, c in costs.items()}}

    def m(key, field="rps"):
        return med([r[field] for r in res[key]])

    bad = sum(r["bad"] + r["socket_errors"] for k in res for r in res[k])
    ratio = m("pg_status") / m("sqlite_status")
    add_row(rows, "6d", "Status route on PostgreSQL against the SQLite API (the same corpus, wrk -t2 -c64, "
                        "nothing being written)",
            f"PostgreSQL {fmt(m('pg_status'))} req/s (p50 {fmt_ms(m('pg_status', 'p50'))}, p99 "
            f"{fmt_ms(m('pg_status', 'p99'))}), SQLite {fmt(m('sqlite_status'))} req/s (p50 "
            f"{fmt_ms(m('sqlite_status', 'p50'))}): **{ratio:.2f} ×**" + (f"; {bad} errors" if bad else ""),
            "PostgreSQL ≥ 0.5 × SQLite", ratio >= 0.5 and not bad, f"{ratio:.2f} ×")
    share = sum(r["n304"] for r in res["pg_mix304"]) / max(1, requests["mix304"])
    ratio = m("pg_mix304") / m("pg_mix200")
    add_row(rows, "6e", "Polling mix on PostgreSQL (as 3b′), without → with If-None-Match",
            f"{fmt(m('pg_mix200'))} → {fmt(m('pg_mix304'))} req/s, p50 {fmt_ms(m('pg_mix200', 'p50'))} → "
            f"{fmt_ms(m('pg_mix304', 'p50'))} ({share:.0%} answered 304): **{ratio:.2f} ×**",
            "304 path ≥ 1.5 × 200 path", ratio >= 1.5, f"{ratio:.2f} ×")
    add_row(rows, "6g", "PostgreSQL server time per thousand API requests: status route; polling mix, 200 path; "
                        "polling mix, If-None-Match",
            "; ".join(f"{kind}: {costs[kind].per(requests[kind], 1e3)}" for kind in costs),
            headline=f"{costs['mix200'].cpu / max(1, requests['mix200']) * 1e3:.2f} s CPU (mix)")


def pg_capacity(cfg: dict, pg, corpus: dict, data: Path, tmp: Path, rows: list, extra: dict):
    """6h, on paper: how many runner hosts, or API replicas, a primary with this machine's cores
    carries at the server CPU 6f′ and 6g measured (the assumptions are in the row)."""
    live, api = extra.get("pg_live"), extra.get("pg_api")
    if not live or not api:
        raise RuntimeError("no figures to derive from (6c or 6d did not run)")
    budget = (os.cpu_count() or 1) * PRIMARY_BUSY
    per_line = live["cpu_s"] / max(1, live["ingested"])
    per_request = api["costs"]["mix200"]["cpu_s"] / max(1, api["requests"]["mix200"])
    replica_rps = med([r["rps"] for r in api["wrk"]["pg_mix200"]])
    hosts = budget / (per_line * LIVE_HOST_RATE)
    replicas = budget / (per_request * replica_rps)
    add_row(rows, "6h", f"On paper: a primary of {os.cpu_count()} cores at {PRIMARY_BUSY:.0%} busy, at 6f′'s and "
                        f"6g's CPU per line and per request",
            f"{hosts:.1f} runner hosts writing {fmt(LIVE_HOST_RATE)} lines/s each, or {replicas:.1f} API replicas "
            f"each serving the polling mix's 200 path flat out ({fmt(replica_rps)} req/s)",
            headline=f"{hosts:.1f} hosts or {replicas:.1f} replicas")


def bench_pg_scale(cfg: dict, data: Path, tmp: Path, rows: list, extra: dict):
    """6i to 6k: the scale benchmark (4) on PostgreSQL, on a throwaway cluster of its own (a step
    apart from `pg`: it needs no corpus, and at `large` its copy of a million sessions is most of
    its time): perf/dbgen.py's databases (without events) copied into databases a daemon made the
    schema of (perf/pgperf.copy_dbgen: the tables those routes read)."""
    from perf import pgperf
    with pgperf.Server() as pg:
        pg_scale(cfg, pg, data, tmp, rows, extra)


def pg_scale(cfg: dict, pg, data: Path, tmp: Path, rows: list, extra: dict):
    from perf import pgperf
    empty = tmp / "pg-scale-empty"
    empty.mkdir(exist_ok=True)
    dbs = {}
    for n in cfg["pg_scale"]:
        sdb = build_scale_db(data, n, False)
        url = dbs[n] = pg.fresh(f"scale{n}")
        run([BIN / "reev-ingestd", "--sessions-dir", empty, "--benchmarks-dir", empty, "--db", url, "--source",
             "bench-scale", "--once", *DAEMON_FLAGS], 120, check=True)
        started = time.monotonic()
        pgperf.copy_dbgen(sdb, url, "bench-scale")
        log(f"pg scale {n}: copied in {time.monotonic() - started:.1f} s")
    result = extra["pg_scale"] = scale_p50(cfg, dbs, tmp, "pg-scale")
    scale_rows(rows, ("6i", "6j", "6k"), result, "PostgreSQL, perf/dbgen.py's rows without events or tool calls")


# ------------------------------------------------------------------------------ profiles

# Innermost frames that mean "waiting", not working: a thread blocked on a lock, a queue, a
# selector or inotify's select() (py-spy cannot always tell them idle), and process-only stacks
# (Granian's Rust threads with no Python frame).
IDLE = re.compile(r"^(Condition\.wait|Event\.wait|Thread\.join|Queue\.get|_worker \(concurrent/futures/thread\.py\)|"
                  r"\w*Selector\.select|InotifyFD\._check_inotify_fd|DelayedQueue\.get|sleep|process \d+:)")


def hotspots(raw: Path, top: int = 10) -> tuple[list, list, int, int]:
    """From py-spy's raw (collapsed) output, idle stacks left out: (self %, function) and
    (inclusive %, function), percentages of the busy samples; busy and all sample counts."""
    self_t, incl, total, everything = defaultdict(int), defaultdict(int), 0, 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        everything += n
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";")]
        if IDLE.match(frames[-1]):
            continue
        total += n
        frames = [f.replace(str(ROOT) + "/", "").replace(str(BIN.parent) + "/lib/python3.11/site-packages/", "")
                  for f in frames]
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    skip = re.compile(r"^(<module>|main |run |Thread\._bootstrap|Thread\.run|serve |Granian|_run|worker|process \d+:|"
                      r"WorkerProcess|Popen|MPServer|BaseProcess|Service\.run_(once|live)|Service\.drain|"
                      r"BaseEventLoop\.run_|Runner\.run|run \(asyncio|.*\((granian/server/|multiprocessing/|asyncio/))")
    s = sorted(((v / total * 100, k) for k, v in self_t.items()), reverse=True)[:top]
    i = sorted(((v / total * 100, k) for k, v in incl.items() if not skip.match(k) and v < total), reverse=True)[:top]
    return s, i, total, everything


def bench_profile(cfg: dict, data: Path, tmp: Path, extra: dict) -> list[str]:
    out = []
    pyspy = str(BIN / "py-spy")
    prof = data / "profiles"
    prof.mkdir(parents=True, exist_ok=True)
    corpus = extra.get("corpus") or build_corpus(data, cfg["corpus"])
    # (1) back-fill
    db = tmp / "profile-backfill.db"
    rm_db(db)
    raw = prof / "backfill.txt"
    run([pyspy, "record", "--format", "raw", "-r", "250", "-o", raw, "--", BIN / "reev-ingestd", "--sessions-dir",
         corpus["dir"] / "sessions", "--benchmarks-dir", corpus["dir"] / "benchmarks", "--db", db, "--once",
         *DAEMON_FLAGS], 7200, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out.append(("Back-fill (`reev-ingestd --once` over the corpus)", raw))
    # (2) the live daemon under 2 000 lines/s, (3) the API under the polling mix (200 path)
    work = tmp / "profile-live"
    shutil.rmtree(work, ignore_errors=True)
    (work / "sessions").mkdir(parents=True)
    from perf.corpus import write_benchmarks
    write_benchmarks(work / "benchmarks")
    ldb = work / "reev.db"
    daemon = start_daemon(work / "sessions", work / "benchmarks", ldb, tmp, "profile-daemon")
    api = None
    try:
        wait_until(lambda: query(ldb, "SELECT count(*) FROM benchmarks")[0][0] == 20, 60, "first scan")
        api, base = start_api(ldb, tmp, "profile-api")
        secs = cfg["profile_seconds"]
        writer = Proc([PY, PERF / "live.py", "--sessions-dir", work / "sessions", "--api", base, "--duration",
                       secs + 4, "--rate", 2000], tmp / "profile-writer.log")
        time.sleep(2)
        raw = prof / "live-daemon.txt"
        run([pyspy, "record", "--format", "raw", "-r", "250", "-d", secs, "-p", daemon.pid, "-o", raw],
            secs + 60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(("Live daemon (50 writers, 2 000 lines/s, the latency test's load)", raw))
        writer.stop()
    finally:
        if api:
            api.stop()
        daemon.stop()
    db = extra.get("backfill_db") or tmp / "profile-backfill.db"
    ids = pick_ids(db)
    api, base = start_api(db, tmp, "profile-api2")
    try:
        secs = cfg["profile_seconds"]
        raw = prof / "api.txt"
        spy = Proc([pyspy, "record", "--format", "raw", "-r", "250", "-d", secs + 1, "--subprocesses", "-p", api.pid,
                    "-o", raw], tmp / "py-spy-api.log")
        time.sleep(1)
        wrk(base, [ids["status"], ids["benchmark"], ids["agents"], ids["logs"]], secs)
        spy.p.wait(secs + 60)
        out.append(("API under the polling mix, 200 path (wrk -t2 -c64)", raw))
    finally:
        api.stop()
    return profile_tables(out)


def profile_tables(out: list[tuple[str, Path]]) -> list[str]:
    """A Markdown table of hotspots for each (title, py-spy raw output)."""
    sections = []
    for title, raw in out:
        if not raw.exists():
            sections.append(f"**{title}**: no profile (py-spy failed)\n")
            continue
        s, i, total, everything = hotspots(raw)
        lines = [f"**{title}** — {total} busy samples of {everything} at 250 Hz (`{raw.relative_to(ROOT)}`)\n",
                 "| self % | function (file) | | inclusive % | function (file) |", "|---|---|---|---|---|"]
        for k in range(max(len(s), len(i))):
            a = s[k] if k < len(s) else (0, "")
            b = i[k] if k < len(i) else (0, "")
            lines.append(f"| {a[0]:.1f} | `{a[1]}` | | {b[0]:.1f} | `{b[1]}` |")
        sections.append("\n".join(lines) + "\n")
    return sections


# ------------------------------------------------------------------------------ main

RUNS = PERF / "runs"                 # the last run of each size, one JSON record each (kept in git)
RESULTS_DOC = ROOT / "docs" / "performance.md"
RESULTS_BEGIN = "<!-- bench:begin"   # the performance doc's results block, between these two lines
RESULTS_END = "<!-- bench:end -->"
OUTPUTS = ("docs/performance.md", "perf/RESULTS.md", "perf/runs/")  # what a run writes: not "uncommitted changes"
SHORT = {"1": "back-fill", "1a": "vs the floor", "1b": "vs sqlite-utils tuned", "1c": "vs sqlite-utils as shipped",
         "2": "live latency, write → visible", "3a": "API polling mix, 200 path", "3b": "304 vs 200, daemon ingesting",
         "3b′": "304 vs 200, daemon idle", "3c": "status route vs Datasette", "3d": "Datasette's faster lookup",
         "4a": "scale: status p50", "4b": "scale: benchmark detail p50", "4c": "scale: agent-performance p50",
         "5a": "peak RSS, one big event log", "5b": "peak RSS, N files watched",
         "6a": "PostgreSQL back-fill vs SQLite", "6b": "three daemons vs one, PostgreSQL, --once",
         "6b′": "three daemons vs one, PostgreSQL, live catch-up",
         "6c": "live latency, PostgreSQL", "6d": "status route, PostgreSQL vs SQLite",
         "6e": "304 vs 200, PostgreSQL", "6f": "server CPU per million lines, back-fill",
         "6f′": "server CPU per million lines, live", "6g": "server CPU per thousand requests",
         "6h": "one primary carries (on paper)", "6i": "scale on PostgreSQL: status p50",
         "6j": "scale on PostgreSQL: benchmark detail p50", "6k": "scale on PostgreSQL: agent-performance p50"}


def commit() -> str:
    """The checked-out commit, and whether the tree differs from it (outside what a run writes)."""
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    changed = [line[3:] for line in subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                                   capture_output=True, text=True).stdout.splitlines()
               if not line[3:].startswith(OUTPUTS)]
    return head + (f" + uncommitted changes ({', '.join(changed[:5])})" if changed else "")


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    cpu = re.search(r"model name\s+: (.*)", Path("/proc/cpuinfo").read_text())
    wrk_v = subprocess.run([WRK, "-v"], capture_output=True, text=True)
    from api.serving import EVENT_LOOP     # the loop reev-api names to Granian
    loop = str(EVENT_LOOP)
    return {"cores": os.cpu_count(), "mem_gib": round(mem, 1), "cpu": cpu.group(1) if cpu else platform.machine(),
            "kernel": platform.release(), "python": platform.python_version(), "sqlite": apsw.sqlite_lib_version(),
            "apsw": apsw.apsw_version(), "wrk": (wrk_v.stdout + wrk_v.stderr).split("\n")[0].strip(),
            "granian": installed("granian"), "granian_loop": loop, "datasette": installed("datasette"),
            "sqlite-utils": installed("sqlite-utils"), "postgresql": postgres_version(),
            "psycopg": installed("psycopg")}


def postgres_version() -> str:
    """The server's version, of the programs tests/pgcluster.py would run (or "not installed")."""
    from tests import pgcluster
    folder = pgcluster.bindir()
    if folder is None:
        return "not installed"
    return subprocess.run([folder / "postgres", "--version"], capture_output=True, text=True).stdout.split()[2]


def main() -> int:
    size = os.environ.get("BENCH_SIZE", "small")
    if size not in PROFILES:
        sys.exit(f"BENCH_SIZE must be one of {', '.join(PROFILES)}")
    cfg = dict(PROFILES[size])
    overrides = []
    for env, key, conv in (("BENCH_CORPUS", "corpus", int), ("BENCH_PG_CORPUS", "pg_corpus", int),
                           ("BENCH_REPS", "reps", int),
                           ("BENCH_SCALE", "scale", lambda v: [int(x) for x in v.split(",")]),
                           ("BENCH_PG_SCALE", "pg_scale", lambda v: [int(x) for x in v.split(",")]),
                           ("BENCH_BIGLOG_MB", "biglog_mb", lambda v: [int(x) for x in v.split(",")]),
                           ("BENCH_WATCH", "watch", lambda v: [int(x) for x in v.split(",")])):
        if os.environ.get(env):
            cfg[key] = conv(os.environ[env])
            overrides.append(f"{env}={os.environ[env]}")
    only = set((os.environ.get("BENCH_ONLY") or "backfill,live,api,scale,memory,profile,pg,pgscale").split(","))
    if os.environ.get("BENCH_ONLY"):
        overrides.append(f"BENCH_ONLY={os.environ['BENCH_ONLY']}")
    for tool in (TIME, WRK):
        if not Path(tool).exists():
            sys.exit(f"{tool} is missing (apt-get install -y time wrk)")
    data = PERF / "data" / size
    data.mkdir(parents=True, exist_ok=True)
    tmp = data / "run"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    started = time.monotonic()
    when = dt.datetime.now(dt.timezone.utc)
    commit_at_start = commit()
    rows: list[dict] = []
    extra: dict = {}
    load: dict = {}
    profile_sections: list[str] = []
    failures = []
    steps = [("backfill", bench_backfill), ("live", bench_live), ("api", bench_api), ("scale", bench_scale),
             ("memory", bench_memory), ("profile", None), ("pg", bench_pg),
             ("pgscale", bench_pg_scale)]
    # A run of some steps only (BENCH_ONLY) is kept beside the last whole run of its size, not over it.
    ran = [name for name, _ in steps if name in only]
    label = size if len(ran) == len(steps) else f"{size}-{'-'.join(ran)}"
    for name, fn in steps:
        if name not in only:
            continue
        before = os.getloadavg()[0]
        log(f"--- {name} (load average {before:.1f})")
        t = time.monotonic()
        try:
            if fn is None:
                profile_sections = bench_profile(cfg, data, tmp, extra)
            else:
                fn(cfg, data, tmp, rows, extra)
        except Exception as e:      # noqa: BLE001 - one failed measurement must not lose the others
            failures.append(f"{name}: {type(e).__name__}: {e}")
            log(f"{name} failed: {e}")
        load[name] = {"before": round(before, 2), "after": round(os.getloadavg()[0], 2)}
        extra.setdefault("durations", {})[name] = round(time.monotonic() - t)
    commit_at_end = commit()
    record = {
        "size": size, "name": label, "date": f"{when:%Y-%m-%d %H:%M}",
        "minutes": round((time.monotonic() - started) / 60, 1),
        "durations": extra.get("durations", {}), "commit": commit_at_start,
        "commit_at_end": commit_at_end if commit_at_end != commit_at_start else None,
        "machine": machine(), "load": load, "overrides": overrides, "corpus": cfg["corpus"], "reps": cfg["reps"],
        "live_reps": cfg["live_reps"], "rows": rows, "notes": NOTES, "failures": failures,
        "commands": [f"{' '.join([f'BENCH_SIZE={size}', *overrides])} make bench   # runs all of the below", *COMMANDS],
        "profiles": profile_sections + extra.pop("pg_profiles", []),
        "raw": _jsonable({k: v for k, v in extra.items() if k != "durations"})}
    RUNS.mkdir(exist_ok=True)
    (RUNS / f"{label}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    runs = last_runs()
    (PERF / "RESULTS.md").write_text(results_markdown(runs))
    write_results_block(runs)
    print("\n".join(figures_table(rows)))
    for f in failures:
        print(f"FAILED TO RUN: {f}")
    passed, failed = tally(rows)
    log(f"done in {record['minutes']} min: {passed} PASS, {failed} FAIL; perf/runs/{label}.json, perf/RESULTS.md "
        "and docs/performance.md's results written")
    return 0


# ------------------------------------------------------------------------------ reports

def last_runs() -> list[dict]:
    """The last whole run of each size, small first, each followed by the last runs of some of
    its steps (BENCH_ONLY: perf/runs/<size>-<steps>.json)."""
    paths = [path for size in PROFILES for path in (RUNS / f"{size}.json", *sorted(RUNS.glob(f"{size}-*.json")))]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def run_label(run: dict) -> str:
    """The size, and the steps when not all ran: small, small-pg."""
    return run.get("name", run["size"])


def tally(rows: list[dict]) -> tuple[int, int]:
    return sum(r["ok"] is True for r in rows), sum(r["ok"] is False for r in rows)


def run_name(run: dict) -> str:
    return f"{run_label(run)} ({run['date']} UTC, {run['commit'].split()[0]})"


def runs_table(runs: list[dict]) -> list[str]:
    """Which runs the figures come from: when, at which commit, on what, how loaded."""
    table = ["| run | date (UTC) | commit | back-fill corpus | 1-minute load average before → after each step"
             " | targets |", "|---|---|---|---|---|---|"]
    for size in PROFILES:
        if not any(r["size"] == size for r in runs):
            table.append(f"| {size} | not run yet: `BENCH_SIZE={size} make bench` | | | | |")
    for run in runs:
        passed, failed = tally(run["rows"])
        load = ", ".join(f"{k} {v['before']} → {v['after']}" for k, v in run["load"].items())
        overrides = f" ({', '.join(run['overrides'])})" if run["overrides"] else ""
        not_run = f", {len(run['failures'])} not run" if run["failures"] else ""
        table.append(f"| {run_label(run)} | {run['date']} ({run['minutes']} min) | {run['commit']} | "
                     f"{fmt(run['corpus'])} sessions{overrides} | {load} | {passed} PASS, {failed} FAIL{not_run} |")
    return table


def targets_table(runs: list[dict]) -> list[str]:
    """Every measurement with the figure of each size side by side: a target met at one size and
    missed at the other shows as both."""
    if not runs:
        return ["No figures: no run of either size yet."]
    ids = list(dict.fromkeys(r["id"] for run in runs for r in run["rows"]))
    table = ["| # | measurement | target | " + " | ".join(run_name(run) for run in runs) + " |",
             "|---|---|---|" + "---|" * len(runs)]
    for i in ids:
        found = [next((r for r in run["rows"] if r["id"] == i), None) for run in runs]
        target = next((r["target"] for r in found if r and r["target"]), "")
        label = SHORT.get(i) or next(r["measurement"] for r in found if r)
        cells = [f"{r['headline']} {verdict(r['ok'])}".strip() if r else "not run" for r in found]
        table.append(f"| {i} | {label} | {target} | " + " | ".join(cells) + " |")
    return table


def figures_table(rows: list[dict]) -> list[str]:
    return (["| # | measurement | figure (median) | target | result |", "|---|---|---|---|---|"]
            + [f"| {r['id']} | {r['measurement']} | {r['figure']} | {r['target']} | {verdict(r['ok'])} |" for r in rows])


def run_section(run: dict) -> list[str]:
    m = run["machine"]
    passed, failed = tally(run["rows"])
    md = [f"## The {run_label(run)} run", "",
          f"- date: {run['date']} UTC; total run time {run['minutes']} min"
          f" ({', '.join(f'{k} {v} s' for k, v in run['durations'].items())})",
          f"- commit {run['commit']}" + (f" at the start, {run['commit_at_end']} at the end (the tree changed during"
                                         " the run)" if run["commit_at_end"] else ""),
          f"- machine: {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB memory, Linux {m['kernel']}; 1-minute load"
          " average before → after each step: "
          + ", ".join(f"{k} {v['before']} → {v['after']}" for k, v in run["load"].items())
          + f" ({m['cores']} would mean every core busy before the step adds its own load)",
          f"- software: Python {m['python']}, SQLite {m['sqlite']} (APSW {m['apsw']}), Granian {m['granian']} (event "
          f"loop {m['granian_loop']}), Datasette {m['datasette']}, sqlite-utils {m['sqlite-utils']}, {m['wrk']}"
          + (f", PostgreSQL {m['postgresql']} (psycopg {m['psycopg']})" if "postgresql" in m else ""),
          f"- `BENCH_SIZE={run['size']}`" + (f" with {', '.join(run['overrides'])}" if run["overrides"] else "")
          + f"; figures are medians of {run['reps']} runs (live latency: {run['live_reps']} runs), ratios are between"
          f" figures of this same run; every figure: `perf/runs/{run_label(run)}.json`", "",
          f"**{passed} PASS, {failed} FAIL**" + (f", {len(run['failures'])} not run" if run["failures"] else ""), "",
          *figures_table(run["rows"]), ""]
    notes = run["notes"] + STANDING_NOTES + [f"could not run: {f}" for f in run["failures"]]
    md += [f"### Notes ({run_label(run)})", "", *[f"- {n}" for n in notes], ""]
    if run["profiles"]:
        md += [f"### Profiles ({run_label(run)}, py-spy)", "", "Self % = samples whose innermost Python frame is that "
               "function (time in SQLite's C code counts for the Python function that called it); inclusive % = "
               "samples with it anywhere on the stack.", "", *run["profiles"]]
    md += [f"### Commands ({run_label(run)})", "", "```sh", *run["commands"], "```", ""]
    return md


def results_markdown(runs: list[dict]) -> str:
    md = ["# reev-ingest benchmark results", "",
          "Written by `perf/bench.py` (`BENCH_SIZE=small make bench`, `BENCH_SIZE=large make bench`) from the last run "
          "of each size, `perf/runs/<size>.json`; every figure here and in docs/performance.md comes from one of these runs, "
          "named by its date, commit and the machine's load while it ran.", "", "## Runs", "", *runs_table(runs), "",
          "## Targets at each size", "", *targets_table(runs), ""]
    for run in runs:
        md += run_section(run)
    md += ["## How each figure was measured", "", METHOD.strip(), ""]
    return "\n".join(md)


def write_results_block(runs: list[dict]):
    """docs/performance.md's results: the runs and the targets at each size, between its two markers."""
    text = RESULTS_DOC.read_text()
    begin, end = text.find(RESULTS_BEGIN), text.find(RESULTS_END)
    if begin < 0 or end < begin:
        log(f"docs/performance.md has no {RESULTS_BEGIN} ... {RESULTS_END} block: not updated")
        return
    begin = text.index("\n", begin) + 1
    block = ["", *runs_table(runs), "", *targets_table(runs), ""]
    RESULTS_DOC.write_text(text[:begin] + "\n".join(block) + "\n" + text[end:])


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x.relative_to(ROOT)) if x.is_relative_to(ROOT) else str(x)
    return x


STANDING_NOTES = [
    "Noise: the load averages above say how busy the machine was before and after each step (other work "
    "on it adds to every figure); a large corpus (1.9 GB at 100 000 sessions, and its 1.7 GB concatenation "
    "for sqlite-utils) may not stay in the page cache (file pages reclaimed and re-read: "
    "`workingset_refault_file` in /proc/vmstat grows), so part of every back-fill contender's time can be "
    "disk reads. Ratios come from interleaved runs of the same repetition to share that noise.",
    "The If-None-Match figures under ingest (3b): the ETags are scoped (one execution, one benchmark, the "
    "finished results), so the background writers' new executions leave the polled execution's and the results' "
    "ETags alone. wrk's Lua is not told which request an answer belongs to, so `perf/polling.lua` files each "
    "ETag under the scope letter it carries and sends it with the paths of that letter; the mix names one "
    "resource per scope, so that is the ETag a client keeping one per URL would send.",
]


METHOD = """
1. **Back-fill.** `perf/corpus.py` writes the corpus (20 benchmarks, 5 agents, 3 to 50 lines per
   session, Prompt lines of 1 to 10 KB, tool lines of a few hundred bytes, 75% finished runs, 5%
   with a session file but no result yet, 20% running). Its files are read once before timing
   (warm page cache for every run). Each run starts from an empty database; wall time and peak
   RSS come from `/usr/bin/time -v` around the whole process (start-up included, as for the
   peers). lines/s counts event lines, MB/s the bytes of event logs and session files. The floor
   (`perf/floor.py`) is the least work that still decodes every line and inserts it: the same
   lines and session files decoded with msgspec, one row per line (raw text included) inserted
   with APSW executemany, its key (file number, line) packed into the rowid (no index),
   2 000 rows per transaction, WAL and synchronous=NORMAL like the daemon: the fastest of the
   layouts measured (its docstring lists them). sqlite-utils inserts the concatenation of the
   same event logs (built beforehand, not timed) into one table twice: tuned as a user who
   tunes it runs it (`perf/sqlite_utils_tuned.py`: its `insert --nl` code path with WAL,
   synchronous=NORMAL and a batch size of 100 000, which it caps at 999 bound variables), and
   as shipped (`sqlite-utils insert --nl`: rollback journal, synchronous=FULL, a commit per
   batch of at most 100 rows). The 2 × target is held against the tuned one. The four run
   interleaved, once per repetition.
2. **Live latency.** Daemon (live) and API on a fresh database. `perf/live.py` runs 50 writer
   threads in a child process, each appending one complete line per write to its own event log
   on a fixed schedule (2 000 lines/s in all). On 5 of the logs every 4th line is a sample: the
   wall-clock time right after write() returns goes to a poller thread, which then polls
   `GET /api/v1/sessions/{id}/events?limit=1&cursor=<line-1>` (first unconditionally, then with
   If-None-Match), 1 ms apart
   (after 10 ms of waiting, a tenth of the wait so far, at most 10 ms), until the line is in
   the answer. Polls happen only while a sample is outstanding. The first 2 s
   of each run are not sampled.
3. **API.** The back-filled database, the daemon live on the corpus plus 50 new logs growing at
   200 lines/s in all (`live.py --no-poll`), so the data generation moves all the time. wrk
   -t2 -c64 with `perf/polling.lua` rotating over an execution status, a benchmark detail,
   agent-performance and execution-logs; `ETAG=1` sends the last ETag seen for the route's
   scope (the share of 304 answers is counted by the script). Datasette serves the same file (`datasette serve`
   opens a mutable database with `?mode=ro`: read-only, sees the daemon's commits; `-i`/
   `--immutable` would assume the file never changes). The status route alone is compared with
   the faster of Datasette's two single-row lookups. One reev-api worker (the default), on
   Granian on the event loop `reev-api` names (`api.serving.EVENT_LOOP`; the software line says which).
4. **Scale.** `perf/dbgen.py` writes the database directly (schema.sql, APSW executemany,
   triggers keep agent_benchmark_stats; consistency checked against a full aggregate), rows in
   a shuffled order as a back-fill leaves them (ids and pages do not follow time). One API
   per size, wrk -t1 -c1 (one request at a time: the p50 is the service time) per route after a
   1 s warm-up.
5. **Memory.** Peak RSS of the daemon and its read-ahead worker together (the larger of
   `/usr/bin/time -v`'s figure, which is the largest single process, and the sum of their RSS
   sampled every 50 ms): `--once` over one event log of the given size;
   and the live daemon over a folder of N small event logs until it has caught up, then a SIGHUP
   full rescan and appends to 50 of the files, then SIGTERM.
6. **PostgreSQL** (`BENCH_ONLY=pg`). A throwaway cluster (tests/pgcluster.py: fsync and
   synchronous_commit on, shared_buffers 64 MB, pg_stat_statements loaded) on the same disk, a
   fresh database per run. 6a: `--once` over the back-fill corpus into SQLite and into
   PostgreSQL, interleaved. 6b, 6b′: the corpus split in three folders (hard links; a run's
   event log and session file together), three daemons with three `--source` names started at
   once on one empty database, against one daemon on the whole folder: `--once` until the last
   exits (6b), and live until the last logs "caught up" (6b′), wall time from starting the
   processes; the batches retried are the daemons' own count (`sources.retried_batches_total`).
   6c: the live benchmark (2) with `--db` a PostgreSQL URL. 6d, 6e: an API
   on 6a's PostgreSQL database and one on 6a's SQLite file, nothing being written, wrk as in 3
   (the status route on each; the polling mix with and without If-None-Match on PostgreSQL).
   6f, 6f′, 6g: pg_stat_statements' summed total_exec_time on that database (reset before each
   measured run; planning time not included) and the CPU time of the server's processes
   (/proc: the postmaster's own and reaped children's, plus its live children's) over the same
   runs, per million lines stored or per thousand requests answered. 6h divides a primary's
   budget (its cores at 70 %) by 6f′'s CPU per line at 2 000 lines/s per runner host (the
   live benchmark's load) and by 6g's CPU per request at the req/s one API worker serves.
   6i to 6k (`BENCH_ONLY=pgscale`, a step of its own with its own cluster): the scale benchmark
   (4) on PostgreSQL: perf/dbgen.py's databases without events,
   their tables that those three routes read (benchmarks, executions, session documents,
   per-agent statistics) copied (one COPY per table, then VACUUM ANALYZE) into databases whose
   schema a daemon made. After the timed runs the step profiles (py-spy) a back-fill into
   PostgreSQL and the API's status route on it, and keeps pg_stat_statements' longest statements
   of the last timed back-fill and the last live run: the "Profiles" of the run's section.
"""


if __name__ == "__main__":
    sys.exit(main())
