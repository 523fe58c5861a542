"""Property-based fuzzing of what schemathesis cannot see from the OpenAPI document: the
opaque cursors (any JSON a client could put in one, numbers past 64 bits and past any float
among them) and the headers (Last-Event-ID, If-None-Match, CORS), against a real server over
real sockets. Properties: never a 5xx; every error is JSON; a bad cursor or Last-Event-ID is a
400 that names it; a stream that answered 200 keeps going."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests import fixtures as fx
from tests.api_client import Api, read_reply
from tests.conftest import clean_env, daemon_command, wait_for

RUN = "fuzz-run"
CURSOR_ROUTES = ["/api/v1/sessions", "/api/v1/agent-performance/deterministic/results", "/api/v1/ingest/errors",
                 f"/api/v1/sessions/{RUN}/events", f"/api/v1/sessions/{RUN}/tool-calls"]
ROUTES = [*CURSOR_ROUTES, "/api/v1/health", "/api/v1/benchmarks", "/api/v1/benchmarks/301-test-transfer",
          f"/api/v1/benchmarks/x/status/{RUN}", "/api/v1/agent-performance", "/api/v1/ingest/status",
          f"/api/v1/flows/{RUN}", "/api/v1/sessions/nope", "/api/v1/nothing", "/metrics"]


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    sessions = root / "sessions"
    sessions.mkdir()
    (sessions / f"enhanced_otel_{RUN}.jsonl").write_bytes(
        fx.jsonl([fx.prompt_line("p", at=0), fx.tool_input_line("sol_transfer", at=1),
                  fx.tool_output_line(True, at=2)]) + b"{broken\n")
    (sessions / f"session_{RUN}.json").write_bytes(fx.session_bytes(fx.session_doc(RUN)))
    subprocess.run(daemon_command() + ["--sessions-dir", str(sessions), "--benchmarks-dir", str(root),
                                       "--db", str(root / "reev.db"), "--once"],
                   check=True, capture_output=True, env=clean_env(), timeout=60)
    server = Api(root / "reev.db", root / "api.log", "--stream-heartbeat", "0.1", "--cors-origin", "http://ui.example")
    yield server
    server.check_alive()
    assert server.close() == 0


def exchange(api: Api, method: str, target: str, headers: dict[str, bytes]):
    """One request with these exact header bytes on a new connection; the reply (a stream's
    without its body) and the socket, still open."""
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers.items())
    sock.sendall(head + b"\r\n")
    streaming = target.startswith("/api/v1/stream")
    return read_reply(sock, body=method != "HEAD" and not streaming), sock


def check_error_shape(reply, method: str):
    assert reply.status < 500, (reply.status, reply.body[:300])
    if reply.status >= 400 and method != "HEAD":
        assert reply.headers.get("content-type") == "application/json", reply
        body = json.loads(reply.body)
        assert set(body) == {"error", "message"} and body["message"], body


# ---------------------------------------------------------------------- cursors

# JSON text a client could put in a cursor: numbers written out (any size, exponents past a
# double's range), strings, literals, nested arrays and objects.
big_numbers = st.one_of(st.integers(min_value=-(10 ** 400), max_value=10 ** 400).map(str),
                        st.integers(min_value=-400, max_value=400).map(lambda e: f"1e{e}"),
                        st.floats(allow_nan=False).map(lambda f: json.dumps(f) if abs(f) != float("inf") else "1e999"))
atoms = st.one_of(big_numbers, st.text(max_size=20).map(json.dumps), st.sampled_from(["true", "false", "null"]))
json_texts = st.recursive(atoms, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.dictionaries(st.text(max_size=4), inner, max_size=2).map(
        lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}")), max_leaves=6)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


cursors = st.one_of(json_texts.map(b64), st.lists(big_numbers, min_size=1, max_size=2).map(
    lambda xs: b64("[" + ",".join(xs) + "]")), st.binary(max_size=40).map(b64), st.text(max_size=40))


@fuzz(300)
@given(route=st.sampled_from(CURSOR_ROUTES), cursor=cursors)
def test_any_cursor_is_a_page_or_a_400_naming_it(api, route, cursor):
    reply, sock = exchange(api, "GET", f"{route}?cursor={urllib.parse.quote(cursor)}", {})
    sock.close()
    check_error_shape(reply, "GET")
    assert reply.status in (200, 400), reply
    if reply.status == 400:
        assert "`cursor`" in json.loads(reply.body)["message"]


# ---------------------------------------------------------------------- headers

# What a header value can hold on the wire (anything else the HTTP layer refuses before the app).
header_text = st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]) | st.just("\t"), max_size=60)
event_ids = st.one_of(st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str), header_text,
                      st.integers(min_value=0, max_value=2 ** 63 - 1).map(str),
                      st.integers(min_value=2 ** 63 - 2, max_value=2 ** 65).map(str),       # around 64 bits
                      st.integers(min_value=-(2 ** 65), max_value=-(2 ** 63) + 2).map(str))


@fuzz(60)
@given(value=event_ids)
def test_any_last_event_id_is_a_stream_that_goes_on_or_a_400_naming_it(api, value):
    reply, sock = exchange(api, "GET", "/api/v1/stream", {"Last-Event-ID": value.encode("latin-1")})
    with sock:
        check_error_shape(reply, "GET")
        if reply.status == 400:
            assert "`last_event_id`" in json.loads(reply.body)["message"]
            return
        assert reply.status == 200, reply
        # the stream goes on past its first read: two keep-alive comments come (0.1 s apart)
        received = reply.body
        deadline = time.monotonic() + 10
        while received.count(b": keep-alive") < 2:
            assert time.monotonic() < deadline, f"no heartbeats after Last-Event-ID {value!r}: {received[-300:]!r}"
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended after Last-Event-ID {value!r}: {received[-300:]!r}"
            received += chunk


header_names = st.sampled_from(["If-None-Match", "Origin", "Access-Control-Request-Method",
                                "Access-Control-Request-Headers", "Last-Event-ID", "Accept", "Cookie",
                                "Content-Type", "X-Forwarded-For"])


@fuzz(200)
@given(method=st.sampled_from(["GET", "HEAD", "OPTIONS", "POST", "DELETE"]), route=st.sampled_from(ROUTES),
       headers=st.dictionaries(header_names, header_text, max_size=4))
def test_any_headers_get_no_5xx_and_json_errors(api, method, route, headers):
    reply, sock = exchange(api, method, route, {k: v.encode("latin-1") for k, v in headers.items()})
    sock.close()
    check_error_shape(reply, method)


def test_the_server_is_still_answering_after_the_fuzzing(api):
    wait_for(lambda: api.request("/api/v1/health").status == 200, timeout=5)
    assert "Traceback" not in api.log_path.read_text(errors="replace")
