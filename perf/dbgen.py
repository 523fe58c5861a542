"""Write a reev-ingest database directly (no files, no daemon): for the API's scaling tests.

    python perf/dbgen.py DB N_SESSIONS [--seed S] [--events full|none] [--order backfill|time]

The schema is the repository's schema.sql, applied as the daemon applies it, with
`PRAGMA user_version` set to the daemon's schema version, so the API (and the daemon) accept
the file as their own. Rows are what ingesting perf/corpus.py's corpus would give, inserted
with APSW executemany in large transactions:

- executions: 20 benchmarks, 5 agents, about 75% finished (Completed/Failed with score and
  result document), 5% with a session file but no result yet, 20% running (event log only,
  benchmark linked by the prompt); session and result documents of realistic size;
- events: 3 to 50 lines per execution, a Prompt line of 1 to 10 KB, tool lines of a few
  hundred bytes, StepComplete lines (`--events none` leaves the table empty, for a quick DB);
- tool_calls: one per ToolInput/ToolOutput pair;
- agent_benchmark_stats: one aggregate over the finished executions at the end (the daemon's
  store keeps it row by row; schema.sql has no triggers for it), checked against the table;
- files: the two files of each execution with their checkpoints; meta: generation, heartbeat.

Row order: `--order backfill` (the default) inserts the executions in a shuffled order, as a
back-fill does (the daemon meets the files in directory order, so ids and table pages do not
follow time, and "newest first" reads jump around the table); `--order time` inserts them
oldest first, as a daemon that followed every run live would. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from perf.corpus import AGENTS, BASE, TEXT_POOL, TOOLS, benchmark_yaml, benchmarks  # noqa: E402

SESSIONS_PER_TX = 5_000
SCHEMA = Path(__file__).resolve().parent.parent / "schema.sql"
T0 = BASE.timestamp()


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def schema_version() -> int:
    try:
        from daemon.storage.sqlite import SCHEMA_VERSION
        return SCHEMA_VERSION
    except Exception:       # noqa: BLE001 - a broken product tree must not stop the generator
        return 1


_EVENT = ('{{"timestamp":"{ts}","session_id":"{sid}","reev_runner_version":"0.1.0","reev_agent_version":"0.1.0",'
          '"event_type":"{kind}","prompt":{prompt},"tool_input":{tin},"tool_output":{tout},'
          '"timing":{{"flow_timeuse_ms":0,"step_timeuse_ms":0}},"metadata":{meta}}}')
_TOOLS_LIST = json.dumps(TOOLS, separators=(",", ":"))


def _doc(sid: str, ts: float, kind: str, prompt="null", tin="null", tout="null", meta="{}") -> str:
    return _EVENT.format(ts=iso(ts), sid=sid, kind=kind, prompt=prompt, tin=tin, tout=tout, meta=meta)


def session_rows(rng: random.Random, i: int, exec_id: int, benches: list[dict], events: bool):
    """(execution row, event rows, tool-call rows, file rows) of execution number i."""
    sid = str(uuid.UUID(int=rng.getrandbits(128)))
    bench, agent = rng.choice(benches), rng.choice(AGENTS)
    start = T0 + i * 37 + rng.randint(0, 999) / 1000
    r = rng.random()
    kind = "finished" if r < 0.75 else "unfinished_doc" if r < 0.80 else "running"
    n = rng.randint(3, 50)
    steps = 3 if bench["flow"] else 1
    pairs = max(0, (n - 1 - steps) // 2)
    ev, calls = [], []
    ts = start
    offset = 0
    line = 1
    text_len = rng.randint(1000, 10_000)
    if events:
        p0 = rng.randrange(0, len(TEXT_POOL) - text_len)
        prompt = ('{"tool_name_list":' + _TOOLS_LIST + ',"user_prompt":' + json.dumps(bench["prompt"]) +
                  ',"final_prompt":"' + TEXT_POOL[p0:p0 + text_len] + '"}')
        doc = _doc(sid, ts, "Prompt", prompt=prompt)
        ev.append((exec_id, line, offset, "event", "Prompt", ts, doc))
        offset += len(doc) + 1
    line += 1
    succeeded_calls = 0
    for k in range(pairs):
        ts += rng.randint(5, 3000) / 1000
        tool = rng.choice(TOOLS)
        args = ('{"amount":%d,"user_pubkey":"%032x","mint":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"}'
                % (rng.randint(1, 10**9), rng.getrandbits(128)))
        t_in = ts
        ts += rng.randint(1, 1500) / 1000
        ok = rng.random() < 0.85
        succeeded_calls += ok
        out = ('"{\\"signature\\": \\"%032x\\", \\"slot\\": %d}"' % (rng.getrandbits(128), rng.randint(1, 10**8))
               if ok else '{"error":"RPC error: blockhash not found"}')
        if events:
            doc = _doc(sid, t_in, "ToolInput", tin='{"tool_name":"%s","tool_args":%s}' % (tool, args))
            ev.append((exec_id, line, offset, "event", "ToolInput", t_in, doc))
            offset += len(doc) + 1
            doc = _doc(sid, ts, "ToolOutput", tout='{"success":%s,"results":%s,"error_message":%s}' % (
                "true" if ok else "false", out, "null" if ok else '"RPC error: blockhash not found"'))
            ev.append((exec_id, line + 1, offset, "event", "ToolOutput", ts, doc))
            offset += len(doc) + 1
        calls.append((exec_id, line, "input", line + 1, tool, t_in, ts, round((ts - t_in) * 1000, 3),
                      int(ok), None, None if ok else "RPC error: blockhash not found"))
        line += 2
    for s in range(steps):
        if events:
            doc = _doc(sid, ts, "StepComplete", meta='{"step_name":"step-%d"}' % (s + 1))
            ev.append((exec_id, line, offset, "event", "StepComplete", ts, doc))
            offset += len(doc) + 1
        line += 1
    n_lines = line - 1
    finished = kind == "finished"
    ok = rng.random() < 0.7
    score = 1.0 if ok else round(rng.random() * 0.75, 3)
    ms = max(1000, int((ts - start) * 1000))
    result_doc = session_doc = None
    if kind != "running":
        result = ({"success": ok, "score": score, "status": "Succeeded" if ok else "Failed", "execution_time_ms": ms,
                   "data": {"prompt": bench["prompt"], "steps": [{
                       "thought": None, "action": [{"program_id": "11111111111111111111111111111111", "accounts": [
                           {"pubkey": "%032x" % rng.getrandbits(128), "is_signer": True, "is_writable": True}],
                           "data": "3Bxs411Dtc7pkFQj"}],
                       "observation": {"last_transaction_status": "Success" if ok else "Failure",
                                       "last_transaction_error": None if ok else "custom program error: 0x1",
                                       "last_transaction_logs": ["Program 11111111111111111111111111111111 invoke [1]"]},
                       "info": {}} for _ in range(steps)]}} if finished else None)
        result_doc = json.dumps(result) if result else None
        session_doc = json.dumps({"session_id": sid, "benchmark_id": bench["id"], "agent_type": agent,
                                  "start_time": int(start), "end_time": int(start) + ms // 1000 if finished else None,
                                  "events": [], "final_result": result, "metadata": {"interface": "cli"}}, indent=2)
    has_doc = kind != "running"
    status = ("Completed" if ok else "Failed") if finished else "Running"
    end_time = int(start) + ms // 1000 if finished else None
    created = float(int(start)) if has_doc else start
    execution = {
        "id": exec_id, "execution_id": sid, "recorded_session_id": sid, "benchmark_id": bench["id"],
        "session_benchmark_id": bench["id"] if has_doc else None, "first_prompt": bench["prompt"],
        "agent_type": agent if has_doc else None, "status": status,
        "success": int(ok) if finished else None, "score": score if finished else None,
        "final_status": ("Succeeded" if ok else "Failed") if finished else None,
        "execution_time_ms": ms if finished else None,
        "start_time": float(int(start)) if has_doc else None, "end_time": end_time,
        "first_event_at": start, "last_event_at": ts, "created_at": created,
        "updated_at": max(ts, end_time or 0, created), "finished_at": ts + 1 if finished else None,
        "event_count": n_lines, "tool_call_count": pairs, "step_count": steps, "changed_generation": 1}
    docs = [(exec_id, session_doc, result_doc)] if session_doc else []
    files = [(f"/var/lib/reev/sessions/enhanced_otel_{sid}.jsonl", "events", sid, offset, n_lines, offset, ts)]
    if has_doc:
        files.append((f"/var/lib/reev/sessions/session_{sid}.json", "session", sid, 0, 0, len(session_doc), ts))
    return execution, ev, calls, files, docs


EXEC_COLUMNS = ["id", "execution_id", "recorded_session_id", "benchmark_id", "session_benchmark_id", "first_prompt",
                "agent_type", "status", "success", "score", "final_status", "execution_time_ms", "start_time",
                "end_time", "first_event_at", "last_event_at", "created_at", "updated_at", "finished_at",
                "event_count", "tool_call_count", "step_count", "changed_generation"]


def generate(db: Path, n: int, seed: int = 1, events: bool = True, order: str = "backfill") -> dict:
    started = time.monotonic()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA journal_mode = OFF").fetchall()     # a build, not a service: no journal
    conn.execute("PRAGMA synchronous = OFF").fetchall()
    conn.execute("PRAGMA cache_size = -262144").fetchall()    # 256 MB
    with conn:
        conn.execute(SCHEMA.read_text()).fetchall()
    conn.execute(f"PRAGMA user_version = {schema_version()}").fetchall()
    benches = benchmarks()
    now = time.time()
    with conn:
        conn.executemany(
            "INSERT INTO benchmarks (id, path, description, tags, prompt, flow_steps, yaml_text, removed, updated_at)"
            " VALUES (?,?,?,?,?,?,?,0,?)",
            [(b["id"], f"/var/lib/reev/benchmarks/{b['id']}.yml", b["description"], json.dumps(b["tags"]), b["prompt"],
              3 if b["flow"] else 0, benchmark_yaml(b), now) for b in benches])
        conn.executemany(
            "INSERT INTO files (path, kind, subject_id, offset, line_no, size, mtime_ns, state, first_seen_at,"
            " ingested_at) VALUES (?, 'benchmark', ?, 0, 0, ?, 0, 'ok', ?, ?)",
            [(f"/var/lib/reev/benchmarks/{b['id']}.yml", b["id"], len(benchmark_yaml(b)), now, now) for b in benches])
    rng = random.Random(seed)
    when = list(range(n))          # when = the session's place in time; position = insertion order
    if order == "backfill":
        random.Random(seed + 1).shuffle(when)
    exec_sql = (f"INSERT INTO executions ({', '.join(EXEC_COLUMNS)}) VALUES ({', '.join(':' + c for c in EXEC_COLUMNS)})")
    totals = {"executions": 0, "events": 0, "tool_calls": 0}
    for first in range(0, n, SESSIONS_PER_TX):
        xs, evs, calls, files, docs = [], [], [], [], []
        for k in range(first, min(n, first + SESSIONS_PER_TX)):
            x, e, c, f, d = session_rows(rng, when[k], k + 1, benches, events)
            xs.append(x)
            docs.extend(d)
            evs.extend(e)
            calls.extend(c)
            files.extend(f)
        with conn:
            conn.executemany(exec_sql, xs)
            conn.executemany("INSERT INTO session_docs (exec_id, session_doc, result_doc) VALUES (?,?,?)", docs)
            conn.executemany("INSERT INTO events (exec_id, line, byte_offset, kind, event_type, ts, doc)"
                             " VALUES (?,?,?,?,?,?,?)", evs)
            conn.executemany("INSERT INTO tool_calls (exec_id, line, source, output_line, tool_name, started_at,"
                             " ended_at, duration_ms, success, status, error_message)"
                             " VALUES (?,?,?,?,?,?,?,?,?,?,?)", calls)
            conn.executemany("INSERT INTO files (path, kind, subject_id, offset, line_no, size, mtime_ns, state,"
                             " first_seen_at, ingested_at) VALUES (?,?,?,?,?,?,0,'ok',?,?)",
                             [(p, k, s, o, ln, sz, t, t) for p, k, s, o, ln, sz, t in files])
        totals["executions"] += len(xs)
        totals["events"] += len(evs)
        totals["tool_calls"] += len(calls)
    with conn:
        # the change feed keeps its newest rows only (daemon/storage/sqlite/unit_of_work.py), if this schema has one
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'changes'").fetchall():
            try:
                from daemon.storage.sqlite import CHANGES_KEPT
            except Exception:   # noqa: BLE001
                CHANGES_KEPT = 100_000
            conn.execute("DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?", (CHANGES_KEPT,))
            conn.execute("UPDATE changes SET generation = 1")
        conn.execute("INSERT INTO agent_benchmark_stats (agent_type, benchmark_id, finished, succeeded, scored,"
                     " score_sum) SELECT coalesce(agent_type, ''), coalesce(benchmark_id, ''), count(*), sum(success),"
                     " sum(score IS NOT NULL), sum(coalesce(score, 0)) FROM executions WHERE success IS NOT NULL"
                     " GROUP BY 1, 2")
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'data_generation'")
        for key in ("heartbeat_at", "last_ingest_at", "daemon_started_at"):
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (now, key))
    stats = conn.execute("SELECT count(*), coalesce(sum(finished), 0) FROM agent_benchmark_stats").fetchall()[0]
    direct = conn.execute("SELECT count(*) FROM executions WHERE success IS NOT NULL").fetchall()[0][0]
    mismatch = conn.execute(
        "SELECT count(*) FROM (SELECT coalesce(agent_type, '') a, coalesce(benchmark_id, '') b, count(*) f,"
        " sum(success) s, sum(score IS NOT NULL) c, sum(coalesce(score, 0)) ss FROM executions"
        " WHERE success IS NOT NULL GROUP BY 1, 2) x LEFT JOIN agent_benchmark_stats t"
        " ON t.agent_type = x.a AND t.benchmark_id = x.b"
        " WHERE t.finished IS NOT x.f OR t.succeeded IS NOT x.s OR t.scored IS NOT x.c"
        " OR abs(t.score_sum - x.ss) > 1e-6").fetchall()[0][0]
    if mismatch or stats[1] != direct:
        raise SystemExit(f"agent_benchmark_stats inconsistent: {mismatch} groups differ")
    conn.execute("PRAGMA journal_mode = WAL").fetchall()   # as the daemon leaves it
    conn.close()
    totals.update(stats_rows=stats[0], finished=direct, order=order, bytes=db.stat().st_size,
                  seconds=round(time.monotonic() - started, 1))
    return totals


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("db", type=Path)
    p.add_argument("sessions", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--events", choices=["full", "none"], default="full")
    p.add_argument("--order", choices=["backfill", "time"], default="backfill")
    args = p.parse_args(argv)
    print(json.dumps(generate(args.db, args.sessions, args.seed, args.events == "full", args.order)))


if __name__ == "__main__":
    main()
