"""Helpers shared by the reliability scenarios: canonical dumps, their first difference,
CPU time of a process, latency percentiles, a process holding the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import clean_env, daemon_command


def dump(db_path: Path) -> list[str]:
    """`reev-ingestd dump --db PATH`: the ingested data as canonical JSON lines."""
    proc = subprocess.run(daemon_command() + ["dump", "--db", str(db_path)], capture_output=True,
                          text=True, timeout=120, env=clean_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"dump of {db_path} failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout.splitlines()


def first_difference(want: list[str], got: list[str]) -> str | None:
    """None when equal, else where and how the two dumps first differ (for failure messages)."""
    if want == got:
        return None
    for i, (a, b) in enumerate(zip(want, got)):
        if a != b:
            ra, rb = json.loads(a), json.loads(b)
            keys = [k for k in dict.fromkeys([*ra, *rb]) if ra.get(k) != rb.get(k)]
            ident = {k: ra.get(k) for k in ("table", "execution_id", "path", "id", "line") if k in ra}
            fields = "\n".join(f"    {k}: --once {str(ra.get(k))[:300]!s} | live {str(rb.get(k))[:300]!s}"
                               for k in keys)
            return (f"first difference at record {i} of {len(want)} (clean --once) vs {len(got)} (live),"
                    f" {ident}:\n{fields}")
    i = min(len(want), len(got))
    extra, side = (want[i], "--once only") if len(want) > len(got) else (got[i], "live only")
    return (f"one dump is a prefix of the other ({len(want)} records from --once, {len(got)} live);"
            f" record {i} ({side}): {extra[:1500]}")


def once_db(run_once, workspace, db_path: Path, timeout: float = 120):
    """A clean `--once` run over the workspace's files into another database."""
    return run_once(base_args=["--sessions-dir", str(workspace.sessions), "--benchmarks-dir",
                               str(workspace.benchmarks), "--db", str(db_path)], timeout=timeout)


def wait_same_dump(reference: list[str], live_db: Path, timeout: float, alive=None) -> float:
    """Poll until the live database dumps exactly like `reference`; returns the seconds it took.
    Fails with the first difference."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if alive is not None:
            alive()
        got = dump(live_db)
        diff = first_difference(reference, got)
        if diff is None:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise AssertionError(f"the live database never matched a clean --once run within {timeout} s; {diff}")
        time.sleep(0.3)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def event_logs_consistent(db, logs) -> list[str]:
    """Problems with the exactly-once invariant (for logs without bad lines): each of `logs` (the
    event logs known to be ingested, by path) has a checkpoint, and every checkpointed event log
    covers exactly the rows stored, lines 1..line_no, its offset the byte just after line
    line_no of the file. A log missing from the database is a problem: an empty database does
    not pass."""
    problems = []
    rows = db.rows(
        "SELECT f.path, f.offset, f.line_no, count(e.line), coalesce(max(e.line), 0) FROM files f"
        " LEFT JOIN executions x ON x.execution_id = f.subject_id LEFT JOIN events e ON e.exec_id = x.id"
        " WHERE f.kind = 'events' GROUP BY f.path, f.offset, f.line_no")   # (path is unique)
    problems += [f"{path}: no checkpoint" for path in sorted(set(map(str, logs)) - {row[0] for row in rows})]
    for path, offset, line_no, count, top in rows:
        if (count, top) != (line_no, line_no):
            problems.append(f"{path}: checkpoint at line {line_no} but {count} rows up to line {top}")
            continue
        data = Path(path).read_bytes()
        end = -1
        for _ in range(line_no):
            end = data.find(b"\n", end + 1)
            if end < 0:
                break
        want = end + 1
        if offset != want:
            problems.append(f"{path}: checkpoint offset {offset}, but line {line_no} ends at {want}")
    return problems


HOLD_SCRIPT = textwrap.dedent("""
    import sys, time, apsw
    db, mode, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
    flags = apsw.SQLITE_OPEN_READONLY if mode == "READ" else apsw.SQLITE_OPEN_READWRITE
    conn = apsw.Connection(db, flags=flags)
    conn.set_busy_timeout(10000)
    if mode == "READ":
        # One read transaction: its snapshot, then a recursive CTE that runs without end
        # until the progress handler stops it after `hold` seconds.
        conn.execute("BEGIN").fetchall()
        before = conn.execute("SELECT count(*) FROM events").fetchall()[0][0]
        print("holding", before, flush=True)
        deadline = time.monotonic() + hold
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 10000)
        try:
            conn.execute("WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r)"
                         " SELECT count(*) FROM r").fetchall()
        except apsw.InterruptError:
            pass
        conn.set_progress_handler(None)
        after = conn.execute("SELECT count(*) FROM events").fetchall()[0][0]
        conn.execute("COMMIT").fetchall()
        print("released", before, after, flush=True)
    else:
        conn.execute(f"BEGIN {mode}").fetchall()      # WAL: the one write lock, readers go on
        print("holding", flush=True)
        time.sleep(hold)
        conn.execute("COMMIT").fetchall()
        print("released", flush=True)
""")


def hold_database(db_path: Path, mode: str, seconds: float) -> subprocess.Popen:
    """Another process holding the database: mode READ (a long read transaction running a
    query), IMMEDIATE or EXCLUSIVE (the write lock), for `seconds`. It prints `holding` once it
    holds it and `released` when done."""
    return subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(db_path), mode, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=clean_env())
