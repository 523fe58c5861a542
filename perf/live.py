"""Live latency: writers appending to event logs at a steady rate, pollers timing when each
sampled line becomes visible through the API.

    python perf/live.py --sessions-dir DIR --api http://127.0.0.1:PORT [--writers 50] [--rate 2000]
                        [--sampled 5] [--sample-every 4] [--duration 20] [--warmup 2] [--no-poll]

- `--writers` threads (in a child process, so the pollers' timing is not disturbed by them)
  each append to their own `enhanced_otel_<id>.jsonl`, one complete line per write, at
  rate/writers lines per second each on a fixed schedule (total `--rate` lines/s): a Prompt line
  of 1 to 10 KB first, then ToolInput/ToolOutput lines of a few hundred bytes with a
  StepComplete every 20 lines.
- `--sampled` of those logs are timed: every `--sample-every`-th line of each is a sample. The
  writer notes the wall-clock time right after write() returns and hands (line, time) to a
  poller thread (one per sampled log, in this process) which only then polls
  GET /api/v1/sessions/{id}/events?cursor=<line-1>&limit=1, the first time unconditionally and
  then with If-None-Match (the ETag of that same URL's last answer: a poll that finds nothing
  new is a 304), 1 ms apart (after 10 ms of waiting: a tenth of the wait so far,
  at most 10 ms), until the line is there. The latency is the time from the write to the
  response that shows the line; it includes up to one poll interval plus one request. Polling happens only while a sample is outstanding, so it
  does not dominate the load (about `sampled` × 1000/`sample-every`/40 samples per second).
- Bounded: the writers stop after `--duration` s; a sample not visible within 10 s is counted
  as missed. Traffic goes only to the --api address (127.0.0.1).

`--no-poll` only writes (background ingest for the API load test). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import queue
import random
import statistics
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from perf.corpus import TOOLS, prompt_text  # noqa: E402

VISIBLE_TIMEOUT = 10.0
POLL_SLEEP = 0.001
POLL_MAX_SLEEP = 0.010
_ENC = msgspec.json.Encoder()


def _line(sid: str, kind: str, n: int, rng: random.Random, **fields) -> bytes:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = {"timestamp": now, "session_id": sid, "reev_runner_version": "0.1.0", "reev_agent_version": "0.1.0",
           "event_type": kind, "prompt": None, "tool_input": None, "tool_output": None,
           "timing": {"flow_timeuse_ms": 0, "step_timeuse_ms": 0}, "metadata": {"bench_seq": n}}
    doc.update(fields)
    return _ENC.encode(doc) + b"\n"


def make_line(sid: str, n: int, rng: random.Random) -> bytes:
    """Line number n (from 1) of a live log."""
    if n == 1:
        return _line(sid, "Prompt", n, rng, prompt={"tool_name_list": TOOLS, "user_prompt": "live benchmark run",
                                                    "final_prompt": prompt_text(rng)})
    if n % 20 == 0:
        return _line(sid, "StepComplete", n, rng, metadata={"bench_seq": n, "step_name": f"step-{n // 20}"})
    if n % 2 == 0:
        return _line(sid, "ToolInput", n, rng, tool_input={"tool_name": rng.choice(TOOLS), "tool_args": {
            "amount": rng.randint(1, 10**9), "user_pubkey": uuid.UUID(int=rng.getrandbits(128)).hex}})
    return _line(sid, "ToolOutput", n, rng, tool_output={
        "success": True, "results": {"signature": uuid.UUID(int=rng.getrandbits(128)).hex}, "error_message": None})


def writer_process(paths: list[str], ids: list[str], rate: float, duration: float, warmup: float,
                   sampled: int, sample_every: int, samples: mp.Queue | None, counts: mp.Array):
    """One thread per log; a fixed schedule so the total rate is steady."""
    period = len(paths) / rate
    start = time.monotonic() + 0.2
    deadline = start + duration

    def write(i: int):
        rng = random.Random(i)
        fd = os.open(paths[i], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        n = 0
        next_at = start + period * i / len(paths)     # spread the writers over the period
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                if next_at > now:
                    time.sleep(next_at - now)
                n += 1
                os.write(fd, make_line(ids[i], n, rng))
                written = time.time()
                counts[i] = n
                if samples is not None and i < sampled and n > 1 and n % sample_every == 0 \
                        and time.monotonic() - start >= warmup:
                    samples.put((i, n, written))
                next_at += period
                if next_at < time.monotonic() - 1.0:    # fell more than 1 s behind: don't burst
                    next_at = time.monotonic()
        finally:
            os.close(fd)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if samples is not None:
        samples.put(None)


def cursor_after(line: int) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([line])).decode().rstrip("=")


class Poller(threading.Thread):
    def __init__(self, api: str, execution_id: str):
        super().__init__(daemon=True)
        u = urllib.parse.urlsplit(api)
        self.host, self.port = u.hostname, u.port
        self.execution_id = execution_id
        self.inbox: queue.Queue = queue.Queue()
        self.latencies: list[float] = []
        self.missed = 0
        self.polls = 0
        self.etag: str | None = None
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, bytes, str | None]:
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                headers = {"If-None-Match": self.etag} if self.etag else {}
                self.conn.request("GET", path, headers=headers)
                r = self.conn.getresponse()
                body = r.read()
                self.polls += 1
                return r.status, body, r.getheader("ETag")
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    return 0, b"", None
        return 0, b"", None

    def run(self):
        while True:
            item = self.inbox.get()
            if item is None:
                return
            line, written = item
            path = f"/api/v1/sessions/{self.execution_id}/events?limit=1&cursor={cursor_after(line - 1)}"
            # An ETag vouches for the URL it came with only: the first poll of each sample is
            # unconditional, the next ones send the ETag of that same URL's last answer.
            self.etag = None
            give_up = written + VISIBLE_TIMEOUT
            while True:
                status, body, etag = self.get(path)
                now = time.time()
                if status == 200:
                    self.etag = etag
                    items = msgspec.json.decode(body).get("items") or []
                    if items and items[0]["line"] == line:
                        self.latencies.append(now - written)
                        break
                elif status == 404:       # the execution is not known yet
                    self.etag = None
                if now > give_up:
                    self.missed += 1
                    if os.environ.get("LIVE_DEBUG"):
                        print(f"missed {self.execution_id}:{line}: last answer {status} {body[:300]!r}",
                              file=sys.stderr, flush=True)
                    break
                # 1 ms apart at first, then a tenth of the time waited so far (at most 10 ms):
                # at most ~10% of error, without hammering the API when the daemon lags.
                time.sleep(min(POLL_MAX_SLEEP, max(POLL_SLEEP, (now - written) / 10)))


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def run(sessions_dir: Path, api: str | None, writers: int, rate: float, sampled: int, sample_every: int,
        duration: float, warmup: float, poll: bool, tag: str | None = None) -> dict:
    tag = tag or uuid.uuid4().hex[:8]
    ids = [f"live-{tag}-{i:02d}" for i in range(writers)]
    paths = [str(sessions_dir / f"enhanced_otel_{x}.jsonl") for x in ids]
    ctx = mp.get_context("fork")
    samples = ctx.Queue() if poll else None
    counts = ctx.Array("l", writers, lock=False)
    pollers = [Poller(api, ids[i]) for i in range(min(sampled, writers))] if poll else []
    proc = ctx.Process(target=writer_process, args=(paths, ids, rate, duration, warmup, len(pollers), sample_every,
                                                     samples, counts))
    t0 = time.monotonic()
    proc.start()            # forked before any thread of ours exists
    for p in pollers:
        p.start()
    if poll:
        while True:
            try:
                item = samples.get(timeout=duration + 30)
            except queue.Empty:
                break
            if item is None:
                break
            i, line, written = item
            pollers[i].inbox.put((line, written))
    proc.join(duration + 30)
    if proc.is_alive():
        proc.terminate()
    elapsed = time.monotonic() - t0
    for p in pollers:
        p.inbox.put(None)
    for p in pollers:
        p.join(VISIBLE_TIMEOUT + 5)
    lat = [x for p in pollers for x in p.latencies]
    lines = sum(counts)
    return {"writers": writers, "target_rate": rate, "lines_written": lines,
            "rate": round(lines / max(duration, 1e-9), 1), "elapsed": round(elapsed, 2),
            "samples": len(lat), "missed": sum(p.missed for p in pollers), "polls": sum(p.polls for p in pollers),
            "p50_ms": round(percentile(lat, 0.50) * 1000, 2) if lat else None,
            "p90_ms": round(percentile(lat, 0.90) * 1000, 2) if lat else None,
            "p99_ms": round(percentile(lat, 0.99) * 1000, 2) if lat else None,
            "max_ms": round(max(lat) * 1000, 2) if lat else None,
            "mean_ms": round(statistics.mean(lat) * 1000, 2) if lat else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions-dir", type=Path, required=True)
    p.add_argument("--api", default="http://127.0.0.1:3001")
    p.add_argument("--writers", type=int, default=50)
    p.add_argument("--rate", type=float, default=2000.0, help="total lines per second")
    p.add_argument("--sampled", type=int, default=5)
    p.add_argument("--sample-every", type=int, default=4)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--no-poll", action="store_true")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    host = urllib.parse.urlsplit(args.api).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("--api must be a loopback address")
    print(json.dumps(run(args.sessions_dir, args.api, args.writers, args.rate, args.sampled, args.sample_every,
                         min(args.duration, 600.0), args.warmup, not args.no_poll, args.tag)), flush=True)


if __name__ == "__main__":
    main()
