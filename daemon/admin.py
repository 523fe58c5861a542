"""The operator's subcommands of reev-ingestd, both read-only:
`reev-ingestd status` (a one-screen summary) and `reev-ingestd dump` (canonical JSON lines)."""

import contextlib
import os
import sys
import time
from pathlib import Path

import msgspec

from core import dburl, heartbeat
from core.logs import escape
from core.readonly import CannotOpen, NotAFile
from core.timestamps import iso
from daemon.lock import holder
from daemon.storage import StorageError, open_reports


def daemon_problems(db: Path | str, pid: int | None | str, age: float | None, standby: bool = False) -> list[str]:
    """What is wrong with the daemon, if anything: `pid` is the process that holds the database's
    writer lock (None: no process does; a str: why that could not be told; True: some daemon
    holds a PostgreSQL database's source lock), `age` the age of its heartbeat. Holding the lock
    says a daemon runs now; the heartbeat says it is not stuck. `standby`: a PostgreSQL hot
    standby, where no lock can be seen, and a fresh heartbeat alone says a daemon runs."""
    if pid is None and standby:
        return [f"no daemon's heartbeat in {dburl.shown(db)} is under {heartbeat.STALE_AFTER_SECONDS:.0f} s old"
                " (a hot standby: its daemons are judged by their heartbeats): none is running, or the standby"
                " lags behind its primary"]
    if pid is None:
        return [f"no reev-ingestd holds the writer lock of {dburl.shown(db)}: it is not running"]
    if not heartbeat.is_stale(age):
        return []
    if age is None:
        return ["the daemon has never written a heartbeat"]
    running = ("is reev-ingestd running?" if isinstance(pid, str) else "is reev-ingestd stuck?" if pid is True
               else f"is reev-ingestd (pid {pid}) stuck?")
    return [f"the daemon's heartbeat is {age:.0f} s old: {running}"]


def summarise(db: Path | str) -> dict:
    """The status as data (times in RFC 3339, as the API gives them); `healthy` is False when
    the database can't be read, no daemon holds it, or the daemon's heartbeat is missing or stale.
    NotAFile when the path is not a database file at all. On PostgreSQL, each source's daemon
    is listed (running: it holds its source's lock now; on a hot standby, which can't see the
    locks, its heartbeat is fresh: `daemon_liveness` says which); the heartbeat is the latest source's."""
    now = time.time()
    name = dburl.shown(db)
    try:
        reports = open_reports(db)
    except NotAFile:
        raise
    except (CannotOpen, StorageError) as e:
        return {"database": name, "healthy": False, "problems": [str(e)]}
    try:
        r = reports.status()
    except StorageError as e:
        return {"database": name, "healthy": False, "problems": [f"cannot read {name}: {e}"]}
    finally:
        reports.close()
    sources = r.get("sources")
    standby = r.get("standby", False)
    if sources is not None and standby:     # the primary's locks are not replicated: a fresh heartbeat says it runs
        for s in sources:
            s["running"] = not heartbeat.is_stale(heartbeat.age(s["heartbeat_at"], now))
    pid: int | None | str | bool
    if sources is not None:
        pid = True if any(s["running"] for s in sources) else None
    else:
        try:
            pid = holder(Path(db))
        except OSError as e:      # (the lock file is the daemon's; an operator may not read it)
            pid = f"cannot tell: {e.strerror}"
    meta = r["meta"]
    beat = meta.get("heartbeat_at")
    age = heartbeat.age(beat, now)
    age = None if age is None else round(age, 1)
    problems = daemon_problems(db, pid, age, standby)
    if sources is None:
        path = Path(db)
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    else:
        size = r["database_bytes"]
    files: dict[str, dict[str, int]] = {}
    for kind, state, n in r["files"]:
        files.setdefault(kind, {})[state] = n
    summary = {
        "database": name, "database_bytes": size, "healthy": not problems, "problems": problems,
        "daemon_running": None if isinstance(pid, str) else pid is not None,
        "daemon_pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        "heartbeat_at": iso(beat), "heartbeat_age_seconds": age, "data_generation": meta.get("data_generation"),
        "last_ingest_at": iso(meta.get("last_ingest_at")), "files": files, "lag_bytes": r["lag_bytes"],
        "executions": dict(r["statuses"]), "error_count": r["error_count"],
        "last_errors": [{"path": p, "line": line, "byte_offset": off, "reason": reason}
                        for p, line, off, reason, _ in r["errors"]],
        "lines_ingested_total": meta.get("lines_ingested_total"),
        # batches a busy or unreachable database rolled back, run again (a database older than
        # the counter: none counted yet)
        "retried_batches_total": meta.get("retried_batches_total") or 0,
    }
    if sources is not None:
        # how `running` was told: the sources' locks on a primary, their heartbeats on a standby
        summary["daemon_liveness"] = "heartbeat" if standby else "lock"
        summary["sources"] = [{"source": s["source"], "running": s["running"], "started_at": iso(s["started_at"]),
                               "heartbeat_at": iso(s["heartbeat_at"]),
                               "heartbeat_age_seconds": heartbeat.age(s["heartbeat_at"], now),
                               "retried_batches_total": s["retried_batches_total"]} for s in sources]
    return summary


def render(s: dict) -> str:
    out = [f"reev-ingestd: {'healthy' if s['healthy'] else 'DEGRADED'}", f"database   {s['database']}"]
    for problem in s["problems"]:
        out.append(f"  ! {problem}")
    if "files" not in s:
        return "\n".join(out)
    out[-1 - len(s["problems"])] += f"  ({s['database_bytes'] / 1e6:.1f} MB, generation {s['data_generation']})"
    running = s["daemon_running"]
    out.append("daemon     " + ("unknown" if running is None else "not running" if not running
                                else f"running (pid {s['daemon_pid']})" if s["daemon_pid"] else "running"))
    if s.get("daemon_liveness") == "heartbeat":
        out.append(f"  (a hot standby: the primary's locks can't be seen here; a daemon counts as running while"
                   f" its heartbeat is under {heartbeat.STALE_AFTER_SECONDS:.0f} s old)")
    for source in s.get("sources", ()):
        age = source["heartbeat_age_seconds"]
        out.append(f"  source {source['source']}: {'running' if source['running'] else 'not running'},"
                   f" heartbeat {'never' if age is None else f'{age:.1f} s ago'},"
                   f" {source['retried_batches_total']} batches retried")
    age = s["heartbeat_age_seconds"]
    out.append(f"heartbeat  {'never' if age is None else f'{age:.1f} s ago'}")
    for kind in ("events", "session", "benchmark"):
        states = s["files"].get(kind, {})
        detail = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
        out.append(f"{kind + ' files':<17}{detail}")
    out.append(f"lag        {s['lag_bytes']} bytes not ingested yet")
    runs = ", ".join(f"{n} {status}" for status, n in sorted(s["executions"].items())) or "none"
    out.append(f"executions {runs}")
    out.append(f"lines      {s['lines_ingested_total']} ingested in all")
    out.append(f"batches    {s['retried_batches_total']} retried in all (rolled back by a busy or unreachable"
               " database, run again)")
    out.append(f"errors     {s['error_count']} recorded" + (", the latest:" if s["last_errors"] else ""))
    for e in s["last_errors"]:
        out.append(escape(f"  {e['path']}:{e['line']} (byte {e['byte_offset']}): {e['reason'][:120]}"))
    return "\n".join(out)


def status(db: Path | str, as_json: bool) -> int:
    """`reev-ingestd status [--json]`: exit 0 healthy, 1 degraded, 2 when --db names no file a
    database can be (a FIFO, a device, a folder)."""
    try:
        s = summarise(db)
    except NotAFile as e:
        print(f"reev-ingestd status: {dburl.shown(db)}: {e}", file=sys.stderr)
        return 2
    with stdout_to_a_pipe():
        print(msgspec.json.encode(s).decode() if as_json else render(s))
    return 0 if s["healthy"] else 1


def dump(db: Path | str) -> int:
    """`reev-ingestd dump`: the ingested data as canonical JSON lines, for comparing two
    databases with diff, whichever backends hold them (dump_record)."""
    name = dburl.shown(db)
    try:
        reports = open_reports(db)
    except (CannotOpen, StorageError) as e:
        print(f"reev-ingestd dump: {name}: {e}", file=sys.stderr)
        return 2
    try:
        with stdout_to_a_pipe():
            for record in reports.dump():
                sys.stdout.write(msgspec.json.encode(dump_record(record)).decode() + "\n")
    except StorageError as e:
        print(f"reev-ingestd dump: cannot read {name}: {e}", file=sys.stderr)
        return 2
    finally:
        reports.close()
    return 0


def dump_record(record: dict) -> dict:
    """A record as dumped: a tool call's input and output, JSON taken out of its line by the
    database, in one form (SQLite's JSON functions minify it, PostgreSQL's keep the line's
    spacing): decoded and encoded again, so the same files dump alike on either backend."""
    if record["table"] == "tool_call":
        for key in ("input", "output"):
            if record[key] is not None:
                record[key] = msgspec.json.encode(msgspec.json.decode(record[key])).decode()
    return record


@contextlib.contextmanager
def stdout_to_a_pipe():
    """`| head` closing the pipe early is not an error."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
