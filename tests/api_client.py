"""A real `reev-api` process on 127.0.0.1 and a small HTTP client for it (stdlib only)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import clean_env, wait_for


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


class Api:
    def __init__(self, db_path: Path | None, log_path: Path, *extra: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        """`env`: added to the environment without REEV_* settings. Without `db_path` there is
        no --db, and with REEV_API_PORT in `env` no --port: the API takes them from there."""
        env = clean_env() | (env or {})
        self.port = int(env.get("REEV_API_PORT") or free_port())
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")
        self.log_path = log_path
        flags = ([] if db_path is None else ["--db", str(db_path)]) + (
            [] if "REEV_API_PORT" in env else ["--port", str(self.port)])
        self.proc = subprocess.Popen(api_command() + flags + list(extra), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, env=env, cwd=cwd)
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

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
