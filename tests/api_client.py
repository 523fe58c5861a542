"""A real `reev-api` process on 127.0.0.1 and a small HTTP client for it (stdlib only)."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import alive, children, clean_env, wait_for


def api_command() -> list[str]:
    script = Path(sys.executable).parent / "reev-api"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]     # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


# Every server started and not closed yet: a test that fails before its close() would leave
# one running after the suite (tests/conftest.py closes what a test left open).
STARTED: set["Api"] = set()


class Api:
    def __init__(self, db_path: Path | None, log_path: Path, *extra: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None, open_files: tuple[int, int] | None = None):
        """`env`: added to the environment without REEV_* settings. Without `db_path` there is
        no --db, and with REEV_API_PORT in `env` no --port: the API takes them from there.
        `open_files`: the (soft, hard) limit on open files the server starts with."""
        env = clean_env() | (env or {})
        self.port = int(env.get("REEV_API_PORT") or free_port())
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")
        self.log_path = log_path
        flags = ([] if db_path is None else ["--db", str(db_path)]) + (
            [] if "REEV_API_PORT" in env else ["--port", str(self.port)])
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, open_files)) if open_files else None
        self.proc = subprocess.Popen(api_command() + flags + list(extra), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, env=env, cwd=cwd, preexec_fn=limit)
        STARTED.add(self)
        wait_for(lambda: self._up(), timeout=30, what="reev-api to answer", alive=self.check_alive)

    def _up(self) -> bool:
        try:
            return self.request("/api/v1/health").status == 200
        except OSError:
            return False

    def check_alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"reev-api exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")

    def request(self, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
                timeout: float = 10) -> Reply:
        req = urllib.request.Request(self.base + path, method=method, headers=headers or {}, data=body)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path: str, expect: int = 200, **kw):
        reply = self.request(path, **kw)
        assert reply.status == expect, f"GET {path}: {reply.status} {reply.body[:500]!r}"
        return reply.json() if reply.body else None

    def workers(self) -> list[int]:
        """The server's worker processes."""
        return children(self.proc.pid)

    def close(self) -> int | None:
        STARTED.discard(self)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# ---------------------------------------------------------------------- raw connections
# For what urllib hides: keep-alive connections left open, requests sent all at once,
# headers as given, and the exact status line and body the server sent.


def allow_open_files(n: int):
    """Raise this process's soft limit on open files to at least n (skip the test if the hard
    limit does not allow it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"needs {n} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def send_get(sock: socket.socket, path: str, headers: dict[str, str] | None = None):
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def read_reply(sock: socket.socket, body: bool = True) -> Reply:
    """One HTTP/1.1 answer: the status line and headers, and (if `body`) a Content-Length body;
    a streamed answer's body is left to the caller."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole answer: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", 0)) if body else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Reply(int(status_line.split()[1]), headers, rest)


def idle_connections(port: int, n: int, path: str = "/api/v1/health", timeout: float = 30) -> list[socket.socket]:
    """n keep-alive connections that each asked one thing, read the answer, and went silent."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        socks.append(s)
        send_get(s, path)
        read_reply(s)
    return socks


def close_all(socks):
    for s in socks:
        s.close()


def closed_by_server(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed this (silent) connection, or None if it did not within
    `timeout`."""
    started = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


# ---------------------------------------------------------------------- processes


