"""Write a realistic corpus in reev's formats: benchmarks, event logs and session files.

    python perf/corpus.py SESSIONS_DIR BENCHMARKS_DIR N_SESSIONS [--seed S] [--jobs J]
    python perf/corpus.py --big-log PATH BYTES          # one event log of about BYTES bytes
    python perf/corpus.py --many-files DIR N            # N small event logs (a watched folder)
    python perf/corpus.py --concat SESSIONS_DIR OUT     # every event log into one JSON-lines file

What it writes (docs/formats.md §1 to §4):

- 20 benchmarks (`benchmarks/<id>.yml`), 5 agents;
- per session an `enhanced_otel_<id>.jsonl` of 3 to 50 lines: one `Prompt` line carrying 1 to
  10 KB of text, `ToolInput`/`ToolOutput` pairs of a few hundred bytes, `StepComplete` lines,
  and a summary line at the end of about a third of the finished runs;
- a mix of finished and running executions: about 75% finished (a `session_<id>.json` with a
  `final_result`, success or failure), about 5% with a session file that has no `final_result`
  yet, and the rest with an event log only, which often ends on a `ToolInput` still open.

Sessions are generated in chunks, one seeded random generator per chunk, spread over `--jobs`
processes: the output depends only on --seed and N, not on the number of jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import uuid
from datetime import datetime, timedelta, timezone
from multiprocessing import Pool
from pathlib import Path

import msgspec

AGENTS = ["deterministic", "local", "glm-4.6", "glm-4.6-coding", "gemini-2.5-flash-lite"]
TOOLS = ["sol_transfer", "spl_transfer", "jupiter_swap", "get_account_balance", "jupiter_lend_earn_deposit"]
WORDS = ("solana agent swap lend deposit wallet usdc sol transfer balance route slippage token"
         " program account signer lamports mint owner instruction jupiter quote amount").split()
N_BENCHMARKS = 20
CHUNK = 500                      # sessions per chunk (one random generator each)
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
_ENC = msgspec.json.Encoder()

# A pool of prompt text, sliced at random offsets (generating 10 KB of random words per line
# with random.choice would dominate the generator's time).
_POOL_RNG = random.Random(12345)
TEXT_POOL = " ".join(_POOL_RNG.choice(WORDS) for _ in range(40_000))


def benchmarks(n: int = N_BENCHMARKS) -> list[dict]:
    return [{"id": f"{100 + i:03d}-generated-{WORDS[i % len(WORDS)]}",
             "description": f"Generated benchmark {i}", "tags": ["generated", WORDS[i % len(WORDS)]],
             "prompt": f"Generated task {i}: {' '.join(WORDS[:(i % 7) + 3])}",
             "flow": i % 5 == 4}           # every fifth benchmark is multi-step
            for i in range(n)]


def benchmark_yaml(b: dict) -> str:
    text = (f"id: {b['id']}\ndescription: {b['description']}\ntags: {json.dumps(b['tags'])}\n"
            f"prompt: {json.dumps(b['prompt'])}\n"
            "initial_state:\n  - pubkey: USER_WALLET_PUBKEY\n    owner: 11111111111111111111111111111111\n"
            "    lamports: 1000000000\n"
            "ground_truth:\n  final_state_assertions:\n    - type: SolBalance\n      pubkey: RECIPIENT\n"
            "      expected: 100000000\n      weight: 1.0\n")
    if b["flow"]:
        text += "flow:\n" + "".join(
            f"  - step: {s}\n    description: step {s}\n    prompt: \"do step {s}\"\n    critical: true\n"
            f"    timeout: 60\n    depends_on: []\n" for s in range(1, 4))
    return text


def ts_text(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(sid: str, ts: datetime, kind: str, **fields) -> bytes:
    line = {"timestamp": ts_text(ts), "session_id": sid,
            "reev_runner_version": "0.1.0", "reev_agent_version": "0.1.0", "event_type": kind,
            "prompt": None, "tool_input": None, "tool_output": None,
            "timing": {"flow_timeuse_ms": 0, "step_timeuse_ms": 0}, "metadata": {}}
    line.update(fields)
    return _ENC.encode(line)


def prompt_text(rng: random.Random) -> str:
    """1 to 10 KB of prompt text."""
    size = rng.randint(1000, 10_000)
    start = rng.randrange(0, len(TEXT_POOL) - size)
    return TEXT_POOL[start:start + size]


def prompt_line(rng: random.Random, sid: str, ts: datetime, bench: dict) -> bytes:
    return event(sid, ts, "Prompt", prompt={"tool_name_list": TOOLS, "user_prompt": bench["prompt"],
                                            "final_prompt": prompt_text(rng)})


def tool_input_line(rng: random.Random, sid: str, ts: datetime, tool: str) -> bytes:
    return event(sid, ts, "ToolInput", tool_input={"tool_name": tool, "tool_args": {
        "amount": rng.randint(1, 10**9), "user_pubkey": uuid.UUID(int=rng.getrandbits(128)).hex,
        "mint": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"}})


def tool_output_line(rng: random.Random, sid: str, ts: datetime) -> bytes:
    ok = rng.random() < 0.85
    return event(sid, ts, "ToolOutput", tool_output={
        "success": ok,
        "results": json.dumps({"signature": uuid.UUID(int=rng.getrandbits(128)).hex, "slot": rng.randint(1, 10**8)})
        if ok else {"error": "RPC error: blockhash not found"},
        "error_message": None if ok else "RPC error: blockhash not found"})


def session_lines(rng: random.Random, sid: str, bench: dict, start: datetime, finished: bool) -> tuple[list[bytes], datetime]:
    """3 to 50 lines: Prompt, tool pairs, StepComplete(s), maybe a summary line."""
    n = rng.randint(3, 50)
    ts = start
    lines = [prompt_line(rng, sid, ts, bench)]
    steps = 3 if bench["flow"] else 1
    pairs = max(0, (n - 1 - steps) // 2)
    per_step = max(1, pairs // steps) if pairs else 0
    done_pairs = 0
    for step in range(1, steps + 1):
        k = per_step if step < steps else pairs - done_pairs
        for _ in range(max(0, k)):
            ts += timedelta(milliseconds=rng.randint(5, 3000))
            lines.append(tool_input_line(rng, sid, ts, rng.choice(TOOLS)))
            ts += timedelta(milliseconds=rng.randint(1, 1500))
            lines.append(tool_output_line(rng, sid, ts))
            done_pairs += 1
        lines.append(event(sid, ts, "StepComplete", metadata={"step_name": f"step-{step}"}))
    if finished and len(lines) < n:
        tools = (len(lines) - 1 - steps) // 2
        lines.append(_ENC.encode({"failed_tools": rng.randint(0, tools), "logged_at": ts_text(ts),
                                  "session_id": sid, "successful_tools": tools, "tool_calls": tools,
                                  "total_events": len(lines)}))
    while len(lines) < n:       # odd counts: one more StepComplete
        lines.append(event(sid, ts, "StepComplete", metadata={"step_name": "final"}))
    lines = lines[:n]
    if not finished and len(lines) > 3 and rng.random() < 0.5:
        # a run still going: its last tool has not returned yet
        ts += timedelta(milliseconds=rng.randint(5, 3000))
        lines[-1] = tool_input_line(rng, sid, ts, rng.choice(TOOLS))
    return lines, ts


def session_doc(rng: random.Random, sid: str, bench: dict, agent: str, start: datetime, end: datetime,
                final: bool) -> dict:
    ms = max(1000, int((end - start).total_seconds() * 1000))
    ok = rng.random() < 0.7
    score = 1.0 if ok else round(rng.random() * 0.75, 3)
    doc = {"session_id": sid, "benchmark_id": bench["id"] if rng.random() < 0.9 else f"benchmarks/{bench['id']}.yml",
           "agent_type": agent, "start_time": int(start.timestamp()), "events": [], "metadata": {"interface": "cli"}}
    if not final:
        doc["end_time"] = None
        doc["final_result"] = None
        return doc
    doc["end_time"] = int(start.timestamp()) + ms // 1000
    doc["final_result"] = {
        "success": ok, "score": score, "status": "Succeeded" if ok else "Failed", "execution_time_ms": ms,
        "data": {"prompt": bench["prompt"], "steps": [{
            "thought": None,
            "action": [{"program_id": "11111111111111111111111111111111",
                        "accounts": [{"pubkey": uuid.UUID(int=rng.getrandbits(128)).hex, "is_signer": True,
                                      "is_writable": True},
                                     {"pubkey": uuid.UUID(int=rng.getrandbits(128)).hex, "is_signer": False,
                                      "is_writable": True}],
                        "data": "3Bxs411Dtc7pkFQj"}],
            "observation": {"last_transaction_status": "Success" if ok else "Failure",
                            "last_transaction_error": None if ok else "custom program error: 0x1",
                            "last_transaction_logs": ["Program 11111111111111111111111111111111 invoke [1]",
                                                      "Program 11111111111111111111111111111111 success"],
                            "account_states": {"USER_WALLET_PUBKEY": {"lamports": rng.randint(1, 10**9),
                                                                      "owner": "11111111111111111111111111111111",
                                                                      "executable": False, "data_len": 0}},
                            "key_map": {"USER_WALLET_PUBKEY": uuid.UUID(int=rng.getrandbits(128)).hex}},
            "info": {}} for _ in range(3 if bench["flow"] else 1)]}}
    return doc


def _chunk(args) -> tuple[int, int, int, int]:
    """Write sessions [first, first+count) of the corpus; returns (lines, event bytes, doc bytes, files)."""
    sessions_dir, first, count, seed, n_benchmarks = args
    sessions_dir = Path(sessions_dir)
    rng = random.Random(f"{seed}:{first}")
    benches = benchmarks(n_benchmarks)
    n_lines = ev_bytes = doc_bytes = files = 0
    for i in range(first, first + count):
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        bench, agent = rng.choice(benches), rng.choice(AGENTS)
        start = BASE + timedelta(seconds=i * 37, milliseconds=rng.randint(0, 999))
        r = rng.random()
        kind = "finished" if r < 0.75 else "unfinished_doc" if r < 0.80 else "running"
        lines, end = session_lines(rng, sid, bench, start, finished=kind == "finished")
        data = b"\n".join(lines) + b"\n"
        (sessions_dir / f"enhanced_otel_{sid}.jsonl").write_bytes(data)
        n_lines += len(lines)
        ev_bytes += len(data)
        files += 1
        if kind != "running":
            doc = json.dumps(session_doc(rng, sid, bench, agent, start, end, kind == "finished"), indent=2).encode()
            (sessions_dir / f"session_{sid}.json").write_bytes(doc)
            doc_bytes += len(doc)
            files += 1
    return n_lines, ev_bytes, doc_bytes, files


def write_benchmarks(benchmarks_dir: Path, n: int = N_BENCHMARKS) -> list[dict]:
    benchmarks_dir.mkdir(parents=True, exist_ok=True)
    benches = benchmarks(n)
    for b in benches:
        (benchmarks_dir / f"{b['id']}.yml").write_text(benchmark_yaml(b))
    return benches


def write_corpus(sessions_dir: Path, benchmarks_dir: Path, n: int, seed: int = 1, n_benchmarks: int = N_BENCHMARKS,
                 jobs: int | None = None) -> dict:
    """Write the corpus; returns its totals (sessions, lines, event_bytes, doc_bytes, files).
    Processes are used only for more than one chunk (the tests call this from a threaded process)."""
    sessions_dir.mkdir(parents=True, exist_ok=True)
    write_benchmarks(benchmarks_dir, n_benchmarks)
    tasks = [(str(sessions_dir), first, min(CHUNK, n - first), seed, n_benchmarks) for first in range(0, n, CHUNK)]
    jobs = jobs or min(os.cpu_count() or 1, 4)
    if jobs > 1 and len(tasks) > 1:
        with Pool(jobs) as pool:
            results = pool.map(_chunk, tasks, chunksize=1)
    else:
        results = [_chunk(t) for t in tasks]
    lines, ev, doc, files = (sum(col) for col in zip(*results)) if results else (0, 0, 0, 0)
    return {"sessions": n, "lines": lines, "event_bytes": ev, "doc_bytes": doc, "files": files}


def write_big_log(path: Path, target_bytes: int, seed: int = 7) -> dict:
    """One event log of about `target_bytes`: prompt lines (1 to 10 KB) every ~20 lines, the
    rest tool pairs, as one very long run would write."""
    rng = random.Random(seed)
    sid = str(uuid.UUID(int=rng.getrandbits(128)))
    bench = benchmarks()[0]
    ts = BASE
    written = lines = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        while written < target_bytes:
            buf = []
            for k in range(200):
                ts += timedelta(milliseconds=rng.randint(1, 500))
                if k % 20 == 0:
                    buf.append(prompt_line(rng, sid, ts, bench))
                elif k % 2:
                    buf.append(tool_input_line(rng, sid, ts, rng.choice(TOOLS)))
                else:
                    buf.append(tool_output_line(rng, sid, ts))
            data = b"\n".join(buf) + b"\n"
            f.write(data)
            written += len(data)
            lines += len(buf)
    return {"path": str(path), "bytes": written, "lines": lines}


def write_many_files(sessions_dir: Path, n: int, seed: int = 11) -> dict:
    """N small event logs (3 tool-sized lines each): a folder with many files to watch."""
    rng = random.Random(seed)
    sessions_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        sid = f"watch-{i:07d}"
        ts = BASE + timedelta(seconds=i)
        tool = TOOLS[i % len(TOOLS)]
        data = b"\n".join([tool_input_line(rng, sid, ts, tool), tool_output_line(rng, sid, ts + timedelta(milliseconds=40)),
                           event(sid, ts, "StepComplete", metadata={"step_name": "main"})]) + b"\n"
        (sessions_dir / f"enhanced_otel_{sid}.jsonl").write_bytes(data)
        total += len(data)
    return {"files": n, "bytes": total, "lines": 3 * n}


def concat_event_logs(sessions_dir: Path, out: Path) -> dict:
    """Every event line of the corpus into one JSON-lines file (summary lines and blank lines
    included, as they are in the logs)."""
    lines = size = 0
    with open(out, "wb") as f:
        for entry in sorted(os.scandir(sessions_dir), key=lambda e: e.name):
            if entry.name.startswith("enhanced_otel_") and entry.name.endswith(".jsonl"):
                data = Path(entry.path).read_bytes()
                f.write(data)
                lines += data.count(b"\n")
                size += len(data)
    return {"lines": lines, "bytes": size}


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--big-log"]:
        print(json.dumps(write_big_log(Path(argv[1]), int(float(argv[2])))))
        return
    if argv[:1] == ["--many-files"]:
        print(json.dumps(write_many_files(Path(argv[1]), int(argv[2]))))
        return
    if argv[:1] == ["--concat"]:
        print(json.dumps(concat_event_logs(Path(argv[1]), Path(argv[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sessions_dir", type=Path)
    p.add_argument("benchmarks_dir", type=Path)
    p.add_argument("sessions", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=None)
    args = p.parse_args(argv)
    totals = write_corpus(args.sessions_dir, args.benchmarks_dir, args.sessions, args.seed, jobs=args.jobs)
    print(f"{totals['sessions']} sessions, {totals['lines']} event lines, "
          f"{(totals['event_bytes'] + totals['doc_bytes']) / 1e6:.1f} MB in {totals['files']} files")


if __name__ == "__main__":
    main()
