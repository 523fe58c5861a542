"""Write a realistic corpus in reev's formats: benchmarks, event logs and session files.

    python perf/corpus.py SESSIONS_DIR BENCHMARKS_DIR N_SESSIONS [--seed S]

Event lines are sized like reev's: prompt lines carry 1 to 10 KB of text, tool lines a few
hundred bytes; sessions have 3 to 50 events; about 80% are finished.
"""

import argparse
import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

AGENTS = ["deterministic", "local", "glm-4.6", "glm-4.6-coding", "gemini-2.5-flash-lite"]
TOOLS = ["sol_transfer", "spl_transfer", "jupiter_swap", "get_account_balance", "jupiter_lend_earn_deposit"]
WORDS = "solana agent swap lend deposit wallet usdc sol transfer balance route slippage token".split()


def benchmarks(n: int) -> list[dict]:
    return [{"id": f"{100 + i:03d}-generated-{WORDS[i % len(WORDS)]}",
             "description": f"Generated benchmark {i}", "tags": ["generated", WORDS[i % len(WORDS)]],
             "prompt": f"Generated task {i}: {' '.join(WORDS[:(i % 7) + 3])}"} for i in range(n)]


def event(sid: str, ts: datetime, kind: str, **fields) -> str:
    line = {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "session_id": sid,
            "reev_runner_version": "0.1.0", "reev_agent_version": "0.1.0", "event_type": kind,
            "prompt": None, "tool_input": None, "tool_output": None,
            "timing": {"flow_timeuse_ms": 0, "step_timeuse_ms": 0}, "metadata": {}}
    line.update(fields)
    return json.dumps(line, separators=(",", ":"))


def session_lines(rng: random.Random, sid: str, bench: dict, start: datetime) -> list[str]:
    ts = start
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(150, 1500)))
    lines = [event(sid, ts, "Prompt", prompt={"tool_name_list": TOOLS, "user_prompt": bench["prompt"],
                                              "final_prompt": text})]
    for _ in range(rng.randint(1, 24)):
        ts += timedelta(milliseconds=rng.randint(5, 3000))
        tool = rng.choice(TOOLS)
        lines.append(event(sid, ts, "ToolInput", tool_input={"tool_name": tool, "tool_args": {
            "amount": rng.randint(1, 10**9), "user_pubkey": uuid.UUID(int=rng.getrandbits(128)).hex}}))
        ts += timedelta(milliseconds=rng.randint(1, 1500))
        ok = rng.random() < 0.85
        lines.append(event(sid, ts, "ToolOutput", tool_output={
            "success": ok, "results": {"signature": uuid.UUID(int=rng.getrandbits(128)).hex} if ok else {"error": "RPC error"},
            "error_message": None if ok else "RPC error"}))
    lines.append(event(sid, ts, "StepComplete", metadata={"step_name": "main"}))
    return lines[:50]


def session_doc(rng: random.Random, sid: str, bench: dict, agent: str, start: datetime, ms: int) -> dict:
    ok = rng.random() < 0.7
    score = 1.0 if ok else round(rng.random() * 0.5, 3)
    return {"session_id": sid, "benchmark_id": bench["id"], "agent_type": agent,
            "start_time": int(start.timestamp()), "end_time": int(start.timestamp()) + ms // 1000, "events": [],
            "final_result": {"success": ok, "score": score, "status": "Succeeded" if ok else "Failed",
                             "execution_time_ms": ms, "data": {"prompt": bench["prompt"], "steps": [{
                                 "thought": None, "action": [{"program_id": "11111111111111111111111111111111",
                                                              "accounts": [], "data": "3Bxs411Dtc7pkFQj"}],
                                 "observation": {"last_transaction_status": "Success" if ok else "Failure",
                                                 "last_transaction_error": None if ok else "custom program error: 0x1",
                                                 "last_transaction_logs": ["Program 11111111111111111111111111111111 invoke [1]"]},
                                 "info": {}}]}},
            "metadata": {}}


def write_corpus(sessions_dir: Path, benchmarks_dir: Path, n: int, seed: int = 1, n_benchmarks: int = 20) -> int:
    """Returns the number of event lines written."""
    rng = random.Random(seed)
    sessions_dir.mkdir(parents=True, exist_ok=True)
    benchmarks_dir.mkdir(parents=True, exist_ok=True)
    benches = benchmarks(n_benchmarks)
    for b in benches:
        (benchmarks_dir / f"{b['id']}.yml").write_text(
            f"id: {b['id']}\ndescription: {b['description']}\ntags: {json.dumps(b['tags'])}\n"
            f"prompt: {json.dumps(b['prompt'])}\n")
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    total = 0
    for i in range(n):
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        bench, agent = rng.choice(benches), rng.choice(AGENTS)
        start = base + timedelta(seconds=i * 37)
        lines = session_lines(rng, sid, bench, start)
        total += len(lines)
        (sessions_dir / f"enhanced_otel_{sid}.jsonl").write_text("\n".join(lines) + "\n")
        if rng.random() < 0.8:
            doc = session_doc(rng, sid, bench, agent, start, rng.randint(1000, 90000))
            (sessions_dir / f"session_{sid}.json").write_text(json.dumps(doc, indent=2))
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sessions_dir", type=Path)
    p.add_argument("benchmarks_dir", type=Path)
    p.add_argument("sessions", type=int)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    lines = write_corpus(args.sessions_dir, args.benchmarks_dir, args.sessions, args.seed)
    print(f"{args.sessions} sessions, {lines} event lines")


if __name__ == "__main__":
    main()
