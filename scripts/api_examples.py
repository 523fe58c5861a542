"""Print docs/api.md's examples: ingest a small demo corpus with the real daemon, serve it
with the real API, and show each route's `curl` with its (shortened) output.

    .venv/bin/python scripts/api_examples.py > /tmp/examples.md
"""

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from perf.corpus import write_corpus  # noqa: E402

BIN = Path(sys.executable).parent
PORT = 3077


def fetch(path, method="GET", headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def shorten(value, depth=0):
    """Keep examples readable: long strings and lists are cut."""
    if isinstance(value, str) and len(value) > 90:
        return value[:87] + "..."
    if isinstance(value, list):
        cut = [shorten(v, depth + 1) for v in value[:2]]
        return cut + ([f"... {len(value) - 2} more"] if len(value) > 2 else [])
    if isinstance(value, dict):
        return {k: shorten(v, depth + 1) for k, v in value.items()}
    return value


def main():
    work = Path(tempfile.mkdtemp())
    sessions, benchmarks, db = work / "sessions", work / "benchmarks", work / "reev.db"
    write_corpus(sessions, benchmarks, 6, seed=3, n_benchmarks=3)
    subprocess.run([BIN / "reev-ingestd", "--sessions-dir", sessions, "--benchmarks-dir", benchmarks, "--db", db,
                    "--once"], check=True, capture_output=True)
    api = subprocess.Popen([BIN / "reev-api", "--db", db, "--port", str(PORT)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                fetch("/api/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        sessions_page = json.loads(fetch("/api/v1/sessions?limit=100")[2])["items"]
        done = next(s for s in sessions_page if s["status"] == "Completed")
        running = next(s for s in sessions_page if s["status"] == "Running")
        bench, eid, agent = done["benchmark_id"], done["execution_id"], done["agent_type"]
        examples = [
            ("GET", "/api/v1/health", {}),
            ("GET", "/api/v1/benchmarks", {}),
            ("GET", f"/api/v1/benchmarks/{bench}", {}),
            ("GET", f"/api/v1/benchmarks/{bench}/status/{eid}", {}),
            ("GET", f"/api/v1/benchmarks/{bench}/status?agent={agent}", {}),
            ("GET", "/api/v1/agent-performance?limit=2", {}),
            ("GET", f"/api/v1/agent-performance/{agent}/results?limit=1", {}),
            ("GET", "/api/v1/agents", {}),
            ("GET", f"/api/v1/execution-logs/{bench}?execution_id={eid}", {}),
            ("GET", f"/api/v1/transaction-logs/{bench}?execution_id={eid}", {}),
            ("GET", f"/api/v1/flows/{eid}", {}),
            ("GET", f"/api/v1/agents/config/{agent}", {}),
            ("GET", "/api/v1/sessions?limit=2", {}),
            ("GET", f"/api/v1/sessions/{running['execution_id']}", {}),
            ("GET", f"/api/v1/sessions/{eid}/events?limit=2", {}),
            ("GET", f"/api/v1/sessions/{eid}/tool-calls?limit=2", {}),
            ("GET", "/api/v1/ingest/status", {}),
            ("GET", "/api/v1/ingest/errors", {}),
            ("GET", "/api/v1/sessions?limit=banana", {}),
            ("POST", f"/api/v1/benchmarks/{bench}/run", {}),
            ("POST", "/api/v1/sync", {}),
        ]
        for method, path, headers in examples:
            status, hdrs, body = fetch(path, method, headers)
            flag = "" if method == "GET" else f"-X {method} "
            print(f"```console\n$ curl -s {flag}'http://127.0.0.1:3001{path}'")
            text = json.dumps(shorten(json.loads(body)), ensure_ascii=False) if body else ""
            print(f"# HTTP {status}" + (f", ETag: {hdrs.get('etag')}" if hdrs.get("etag") else ""))
            print(text + "\n```\n")
        trace = json.loads(fetch(f"/api/v1/execution-logs/{bench}?execution_id={eid}")[2])["trace"]
        print(f"The `trace` of that execution, as text:\n\n```text\n{trace}```\n")
        status, hdrs, _ = fetch("/api/v1/agent-performance")
        status2, _, body2 = fetch("/api/v1/agent-performance", headers={"If-None-Match": hdrs["etag"]})
        print(f"```console\n$ curl -s -i -H 'If-None-Match: {hdrs['etag']}' 'http://127.0.0.1:3001/api/v1/agent-performance'\n"
              f"HTTP/1.1 {status2} Not Modified\n```")
    finally:
        api.terminate()
        api.wait()


if __name__ == "__main__":
    main()
