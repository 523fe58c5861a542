"""How many concurrent event streams one API worker holds with write-to-event latency under
100 ms: a live daemon and API on a temp folder, N streaming clients (asyncio, raw HTTP), one
execution written per round, the time from the write to each client seeing its event.

    .venv/bin/python perf/streams.py [N ...]     (default 10 50 100 200 400)
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
ROUNDS = 15


def line(i: int) -> bytes:
    return (json.dumps({"timestamp": "2026-01-01T00:00:00Z", "session_id": f"s{i}", "event_type": "Prompt",
                        "prompt": {"user_prompt": "hi"}}) + "\n").encode()


async def client(port: int, seen: dict, ready: asyncio.Event, counter: list):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    counter[0] += 1
    if counter[0] == counter[1]:
        ready.set()
    while True:
        raw = await reader.readline()
        if not raw:
            return
        if raw.startswith(b"data: "):
            eid = json.loads(raw[6:])["execution_id"]
            seen.setdefault(eid, []).append(time.monotonic())


async def measure(port: int, sessions: Path, n: int) -> list[float]:
    seen: dict[str, list[float]] = {}
    ready = asyncio.Event()
    counter = [0, n]
    tasks = [asyncio.create_task(client(port, seen, ready, counter)) for _ in range(n)]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(1.0)          # every stream has sent its first read
    latencies = []
    for r in range(ROUNDS):
        eid = f"n{n}-r{r}"
        written = time.monotonic()
        with open(sessions / f"enhanced_otel_{eid}.jsonl", "ab") as f:
            f.write(line(r))
        deadline = written + 10
        while len(seen.get(eid, [])) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        latencies += [(t - written) * 1000 for t in seen.get(eid, [])]
        latencies += [10_000.0] * (n - len(seen.get(eid, [])))     # missed: counted as 10 s
    for t in tasks:
        t.cancel()
    return latencies


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [10, 50, 100, 200, 400]
    work = Path(tempfile.mkdtemp())
    sessions, benchmarks, db = work / "sessions", work / "benchmarks", work / "reev.db"
    sessions.mkdir()
    benchmarks.mkdir()
    port = 3071
    daemon = subprocess.Popen([BIN / "reev-ingestd", "--sessions-dir", sessions, "--benchmarks-dir", benchmarks,
                               "--db", db, "--log-level", "warning"], stderr=subprocess.DEVNULL)
    api = subprocess.Popen([BIN / "reev-api", "--db", db, "--port", str(port), "--max-streams", "100000",
                            "--log-level", "warning"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        print(f"| concurrent streams | p50 ms | p99 ms | max ms | events | ({os.cpu_count()} cores, 1 worker) |")
        print("|---|---|---|---|---|---|")
        for n in sizes:
            ms = sorted(asyncio.run(measure(port, sessions, n)))
            p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
            print(f"| {n} | {statistics.median(ms):.1f} | {p99:.1f} | {ms[-1]:.1f} | {len(ms)} | |", flush=True)
    finally:
        api.terminate()
        daemon.terminate()
        api.wait()
        daemon.wait()


if __name__ == "__main__":
    main()
