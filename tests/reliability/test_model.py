"""Model-based test of the event-log reader, in the style of Vector's file-watcher tests.

A hypothesis state machine drives random sequences of file-system actions on the event logs
of a temporary sessions folder, against the real `reev-ingestd` (live, `--rescan-interval`
0.3 s) and the real `reev-api`; at each check it compares what the API shows with a small
model of the files. One database, one daemon and one API per example.

Actions (rules)
    new_file       a new `enhanced_otel_<id>.jsonl` (a new execution id), maybe ending in a
                   partial line
    append         whole lines in one write (first finishing a pending partial line)
    append_many    hundreds of lines in one write (so a kill can land mid-batch)
    write_partial  the first piece of a line, cut anywhere (inside a UTF-8 character too);
                   maybe a check while only that piece is there (the daemon read in between)
    finish_partial the rest of that line
    truncate       to zero, or to a shorter prefix at a line boundary
    rewrite        truncate-and-rewrite in place (same inode) with new content
    rotate         rename to `enhanced_otel_<id>.jsonl.1` (not watched), then a new file of
                   the same name; maybe with a check while the name is absent
    delete         unlink the file
    recreate       a deleted file's name written again with new content
    restart        SIGTERM (exit status must be 0) or SIGKILL, then a new daemon
    restart_while_reading  the same, a few ms after appending hundreds of lines
    stop / start   the daemon down for a while: file actions meanwhile happen "while it
                   was not looking"
    check          wait until the API equals the model (below), within a deadline

Model semantics (docs/design.md, "What it does with each file"): for a file that exists, the database
mirrors its complete lines: the bytes up to its last newline, numbered from 1, each with its
byte offset; blank lines are skipped but counted; a bad line (invalid JSON) is one row in
`ingest_errors` (path, line, offset) and no event, and so is a line over `--max-line-bytes`
(2000 here; lines of exactly 2000 and 2001 bytes are generated). Bytes after the last
newline are not a line yet, unless they are already over the limit: then they are that bad
line at once (counted, consumed, no pending bytes) and the rest of it is skipped when it
comes. Whatever happened to the file before (truncated, rewritten in place, replaced by a
rotation, deleted and written again, with the daemon watching, stopped or killed), its rows
are exactly those of its current content, with no duplicates. Tool calls (docs/formats.md §3a), the
step count, the first/last event times and the recorded session id (the `session_id` of the
first event line: there are no session files here) are derived from those lines. A deleted
file keeps its rows, marked `missing` (nothing is deleted because a file disappeared).

That last rule is only deterministic if we know what the daemon had seen when the file went:
so `delete` first waits for a check (or, with the daemon stopped, is only allowed when no
change was made since the last successful check), and the model keeps the content at
deletion. `rotate` needs no such care: its new file replaces the old one, whose content no
longer matters (unless it checks in between, which it then does after a check too).

The generated lines make the reader's identity check sound for the model: every line carries
a sequence number that is never reused, in its timestamp (its first bytes) and as its last
field (its last bytes), so content that replaced what the daemon read always differs from it
in the fingerprinted head or in the 256 bytes before the checkpoint. (A rewrite that keeps
both windows and changes only the middle would go unnoticed by design; these files never
contain one.)

A check compares, for every execution: the summary (recorded session id, status, created /
updated / last-event times), the counts, the source file row (state, lines and bytes read,
size), every event (paged with the cursor) and every tool call; the set of executions; the
ingest errors; and the pending bytes of /api/v1/ingest/status (the partial lines of the files
still there). It polls
until two reads in a row equal the model; past the deadline it fails with the last diff and
the daemon's log. Every example ends with a check (starting the daemon if it is stopped).

CI runs 20 examples of up to 20 steps (about 40 s); REEV_RELIABILITY_LONG=1 runs 150 of up
to 40 (about 7 min). Real bugs found become plain regression tests at the end of this file.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hypothesis import HealthCheck, event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from tests import fixtures as fx
from tests.api_client import Api
from tests.conftest import Daemon, Workspace, start_daemon
from tests.reliability.conftest import scale

RESCAN_SECONDS = 0.3
CHECK_SECONDS = 15.0
MAX_FILES = 4
MANY_LINES = scale(300, 1000)
MAX_BYTES = scale(1 << 20, 4 << 20)     # append_many stops there: a check reads everything back
FIRST_PAGE, PAGE = 7, 500    # a small first page: every listing of more than 7 goes through the cursor
NL = b"\n"

# ------------------------------------------------------------------------------ lines

MAX_LINE = 2000             # the daemon's --max-line-bytes: generated lines are shorter, except these
SIZED = {"at_limit": MAX_LINE, "over_limit": MAX_LINE + 1, "long": 3 * MAX_LINE}
KINDS = ("Prompt", "ToolInput", "ToolInput", "ToolOutput", "ToolOutput", "StepComplete", "Other",
         "blank", "bad", *SIZED)
PAD_CHARS = "aé€🙂"          # 1 to 4 UTF-8 bytes each


def line_bytes(kind: str, seq: int, inner: str, pad: str) -> bytes:
    """One line with its newline. `seq` is unique: it is in the timestamp (the first bytes)
    and in the last field (the last bytes)."""
    if kind == "blank":
        return b"\n"
    if kind == "bad":
        return f"{{bad json {pad} seq={seq}".encode() + b"\n"
    meta = {"pad": pad, "seq": seq}
    common = {"at": float(seq), "session_id": inner}
    if kind in SIZED:            # an event line of exactly this many bytes (without its newline)
        bare = len(fx.line_text(fx.event_line("LlmReasoning", metadata={"pad": "", "seq": seq}, **common)))
        meta["pad"] = "a" * (SIZED[kind] - bare)
        kind = "Other"
    if kind == "Prompt":
        doc = fx.prompt_line(f"task {seq}", metadata=meta, **common)
    elif kind == "ToolInput":
        doc = fx.event_line("ToolInput", tool_input={"tool_name": f"tool_{seq % 3}", "tool_args": {"seq": seq}},
                            metadata=meta, **common)
    elif kind == "ToolOutput":
        doc = fx.event_line("ToolOutput", tool_output={"success": seq % 2 == 0, "results": {"seq": seq},
                                                       "error_message": None}, metadata=meta, **common)
    elif kind == "StepComplete":
        doc = fx.event_line("StepComplete", metadata={"step_name": f"step-{seq}", **meta}, **common)
    else:
        doc = fx.event_line("LlmReasoning", metadata=meta, **common)
    return fx.line_text(doc) + b"\n"


def unix_of(text: str | None) -> float | None:
    return None if text is None else round(datetime.fromisoformat(text).timestamp(), 3)


def mirror(content: bytes) -> dict:
    """What the database should hold for an event log with this content (the model)."""
    end = content.rfind(b"\n") + 1
    events, errors, calls, open_calls = [], [], [], []
    steps, offset, number, inner = 0, 0, 0, None
    for raw in content[:end].split(b"\n")[:-1]:
        number += 1
        at, offset = offset, offset + len(raw) + 1
        if len(raw) > MAX_LINE:
            errors.append((number, at))
            continue
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            errors.append((number, at))
            continue
        ts = unix_of(doc["timestamp"])
        kind = doc["event_type"]
        events.append({"line": number, "byte_offset": at, "event_type": kind, "ts": ts, "data": doc})
        inner = inner or doc["session_id"]
        if kind == "StepComplete":
            steps += 1
        elif kind == "ToolInput":
            call = {"tool_name": doc["tool_input"]["tool_name"], "started_at": ts, "ended_at": None,
                    "duration_ms": None, "input": doc["tool_input"]["tool_args"], "output": None,
                    "success": None}
            calls.append(call)
            open_calls.append(call)
        elif kind == "ToolOutput":
            out = doc["tool_output"]
            if open_calls:       # completes the most recent input still open
                call = open_calls.pop()
                call.update(ended_at=ts, duration_ms=round((ts - call["started_at"]) * 1000, 1))
            else:
                call = {"tool_name": None, "started_at": None, "ended_at": ts, "duration_ms": None,
                        "input": None}
                calls.append(call)
            call.update(output=out["results"], success=out["success"])
    if len(content) - end > MAX_LINE:
        # An unfinished line already over the limit is bad input at once; its bytes, and
        # the rest of it when it comes, are consumed without being kept.
        number += 1
        errors.append((number, end))
        end = len(content)
    times = [e["ts"] for e in events]
    return {"events": events, "errors": errors, "tool_calls": calls, "steps": steps, "inner": inner,
            "first": min(times, default=None), "last": max(times, default=None),
            "lines": number, "complete": end, "size": len(content)}


# ------------------------------------------------------------------------------ the harness


@dataclass
class LogFile:
    exec_id: str
    path: Path
    inner: str                  # the session_id written in its lines (new with each new content)
    content: bytes = b""        # on disk; for a deleted file, what was there when it went
    exists: bool = True
    rest: bytes = b""           # the rest of the pending partial line (with its newline)


class Harness:
    """The folders, the processes and the model; the state machine and the regression tests
    both drive it."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="reev-model-"))
        self.ws = Workspace(root=self.root, sessions=self.root / "logs" / "sessions",
                            benchmarks=self.root / "benchmarks", db_path=self.root / "state" / "reev.db")
        self.ws.sessions.mkdir(parents=True)
        self.ws.benchmarks.mkdir(parents=True)
        self.files: dict[str, LogFile] = {}
        self.daemons: list[Daemon] = []
        self.daemon: Daemon | None = None
        self.api: Api | None = None
        self.seq = 0
        self.generations = 0
        self.synced = True          # nothing changed since the last successful check
        self.stops = {"SIGTERM": 0, "SIGKILL": 0}

    # processes

    def start(self):
        assert self.daemon is None
        stderr = self.root / f"reev-ingestd-{len(self.daemons) + 1}.stderr"
        d = start_daemon(self.ws, stderr, "--max-line-bytes", str(MAX_LINE), rescan=RESCAN_SECONDS,
                         ready=False)
        self.daemons.append(d)
        d.wait_ready()
        self.daemon = d
        if self.api is None:
            self.api = Api(self.ws.db_path, self.root / "reev-api.log")

    def stop(self, kill: bool):
        d, self.daemon = self.daemon, None
        sig = signal.SIGKILL if kill else signal.SIGTERM
        self.stops[sig.name] += 1
        rc = d.stop(sig)
        if not kill:
            assert rc == 0, f"reev-ingestd exited with {rc} on SIGTERM:\n{d.stderr()[-4000:]}"

    def close(self):
        try:
            for d in self.daemons:
                d.close()
            if self.api is not None:
                self.api.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.daemon is not None

    # writing

    def _lines(self, f: LogFile, specs) -> bytes:
        out = []
        for kind, n, char in specs:
            self.seq += 1
            out.append(line_bytes(kind, self.seq, f.inner, char * n))
        return b"".join(out)

    def _new_inner(self) -> str:
        self.generations += 1
        return f"inner-{self.generations}"

    def _write(self, f: LogFile, data: bytes, flags: int):
        fd = os.open(f.path, os.O_WRONLY | flags, 0o644)
        try:
            if data:
                os.write(fd, data)
        finally:
            os.close(fd)
        self.synced = False

    def _partial(self, f: LogFile, spec, cut: int) -> bytes:
        """The first piece of one new line; its rest is remembered."""
        line = self._lines(f, [spec])
        k = 1 + cut % (len(line) - 1)    # at least one byte each side
        f.rest = line[k:]
        return line[:k]

    def _fresh(self, f: LogFile, specs, partial, flags: int):
        f.inner, f.rest = self._new_inner(), b""
        data = self._lines(f, specs)
        if partial is not None:
            data += self._partial(f, partial[0], partial[1])
        f.content, f.exists = data, True
        self._write(f, data, flags)

    def new_file(self, specs, partial=None) -> str:
        n = len(self.files) + 1
        exec_id = ("run.%d" % n, "7d1e0b4a-93c2-4f5e-8a6b-0c1d2e3f4a5%d" % n, "x_%d-y" % n, "%d" % n)[n % 4]
        f = LogFile(exec_id, self.ws.events_path(exec_id), "")
        self.files[exec_id] = f
        self._fresh(f, specs, partial, os.O_CREAT | os.O_EXCL)
        return exec_id

    def append(self, exec_id: str, specs):
        f = self.files[exec_id]
        data = f.rest + self._lines(f, specs)
        f.rest = b""
        f.content += data
        self._write(f, data, os.O_APPEND)

    def append_many(self, exec_id: str, count: int):
        self.append(exec_id, [(KINDS[i % 7], i % 50, "a") for i in range(count)])  # no bad lines

    def write_partial(self, exec_id: str, spec, cut: int, look: bool):
        f = self.files[exec_id]
        assert not f.rest
        data = self._partial(f, spec, cut)
        f.content += data
        self._write(f, data, os.O_APPEND)
        if look and self.running:
            self.check("with only the first piece of the line written")

    def truncate(self, exec_id: str, which: int):
        """To a line boundary shorter than the file (0 included)."""
        f = self.files[exec_id]
        bounds = [0] + [i + 1 for i, b in enumerate(f.content) if b == 0x0A]
        bounds = [b for b in bounds if b < len(f.content)]
        if not bounds:
            return
        size = bounds[which % len(bounds)]
        os.truncate(f.path, size)
        f.content, f.rest = f.content[:size], b""
        self.synced = False

    def rewrite(self, exec_id: str, specs, partial=None):
        self._fresh(self.files[exec_id], specs, partial, os.O_TRUNC)

    def rotate(self, exec_id: str, specs, look: bool):
        f = self.files[exec_id]
        if look and self.running:
            self.check("before the rotation")
        os.rename(f.path, f.path.with_name(f.path.name + ".1"))
        self.synced = False
        if look and self.running:
            f.exists = False
            self.check("with the file rotated away")
        self._fresh(f, specs, None, os.O_CREAT | os.O_EXCL)

    def delete(self, exec_id: str):
        if self.running:
            self.check("before the deletion")
        assert self.synced, "deleting a file whose last content the daemon may not have seen"
        f = self.files[exec_id]
        os.unlink(f.path)
        f.exists, f.rest = False, b""
        self.synced = False

    def recreate(self, exec_id: str, specs):
        self._fresh(self.files[exec_id], specs, None, os.O_CREAT | os.O_EXCL)

    # the check

    def expected(self) -> dict:
        runs, errors, pending = {}, [], 0
        for exec_id, f in self.files.items():
            m = mirror(f.content)
            errors += [(f.path.name, line, at) for line, at in m["errors"]]
            if f.exists:        # the lag: a file gone will never give its partial line
                pending += m["size"] - m["complete"]
            runs[exec_id] = {
                "summary": {"recorded_session_id": m["inner"], "status": "Running", "created_at": m["first"],
                            "updated_at": m["last"], "last_event_at": m["last"]},
                "event_count": len(m["events"]), "tool_call_count": len(m["tool_calls"]),
                "step_count": m["steps"],
                "files": [{"path": f.path.name, "kind": "events", "state": "ok" if f.exists else "missing",
                           "lines_read": m["lines"], "bytes_read": m["complete"], "size": m["size"]}],
                "events": m["events"], "tool_calls": m["tool_calls"]}
        return {"runs": runs, "errors": sorted(errors), "pending_bytes": pending}

    def _paged(self, path: str) -> list:
        items, cursor = [], None
        while True:
            sep = "&" if "?" in path else "?"
            page = self.api.get(f"{path}{sep}limit={PAGE if cursor else FIRST_PAGE}"
                                + (f"&cursor={cursor}" if cursor else ""))
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def observe(self) -> dict:
        api = self.api
        runs = {}
        for item in self._paged("/api/v1/sessions"):
            exec_id = item["execution_id"]
            reply = api.request(f"/api/v1/sessions/{exec_id}")
            if reply.status == 404:
                continue
            assert reply.status == 200, (exec_id, reply.status, reply.body[:300])
            d = reply.json()
            s = d["summary"]
            runs[exec_id] = {
                "summary": {"recorded_session_id": s["recorded_session_id"], "status": s["status"],
                            "created_at": unix_of(s["created_at"]), "updated_at": unix_of(s["updated_at"]),
                            "last_event_at": unix_of(s["last_event_at"])},
                "event_count": d["event_count"], "tool_call_count": d["tool_call_count"],
                "step_count": d["step_count"],
                "files": [{k: f[k] for k in ("path", "kind", "state", "lines_read", "bytes_read", "size")}
                          for f in d["files"]],
                "events": [{"line": e["line"], "byte_offset": e["byte_offset"], "event_type": e["event_type"],
                            "ts": unix_of(e["timestamp"]), "data": e["data"]}
                           for e in self._paged(f"/api/v1/sessions/{exec_id}/events")],
                "tool_calls": [{"tool_name": c["tool_name"], "started_at": unix_of(c["started_at"]),
                                "ended_at": unix_of(c["ended_at"]),
                                "duration_ms": None if c["duration_ms"] is None else round(c["duration_ms"], 1),
                                "input": c["input"], "output": c["output"], "success": c["success"]}
                               for c in self._paged(f"/api/v1/sessions/{exec_id}/tool-calls")]}
        errors = sorted((e["path"], e["line"], e["byte_offset"]) for e in self._paged("/api/v1/ingest/errors"))
        status = api.get("/api/v1/ingest/status")
        return {"runs": runs, "errors": errors, "pending_bytes": status["pending_bytes"]}

    def check(self, when: str = "at a check"):
        """Poll until the API shows the model (twice in a row), or fail with the diff."""
        assert self.running
        expected = self.expected()
        deadline = time.monotonic() + CHECK_SECONDS
        matches = 0
        while True:
            self.daemon.check_alive()
            self.api.check_alive()
            actual = self.observe()
            if actual == expected:
                matches += 1
                if matches == 2:
                    self.synced = True
                    return
            else:
                matches = 0
                if time.monotonic() > deadline:
                    raise AssertionError(self._report(when, expected, actual))
            time.sleep(0.05)

    def _report(self, when: str, expected: dict, actual: dict) -> str:
        def lines(v):
            return json.dumps(v, indent=1, sort_keys=True, ensure_ascii=False, default=str).splitlines()
        diff = list(difflib.unified_diff(lines(expected), lines(actual), "model", "api", n=2, lineterm=""))
        files = "\n".join(f"  {f.path.name}: {'exists' if f.exists else 'deleted'}, {len(f.content)} bytes,"
                          f" {f.content.count(NL)} lines" for f in self.files.values())
        return (f"the API does not show the model {when} after {CHECK_SECONDS} s\nfiles:\n{files}\n"
                + "\n".join(diff[:200]) + ("\n..." if len(diff) > 200 else "")
                + f"\n--- reev-ingestd stderr (tail) ---\n{self.daemon.stderr()[-6000:]}")


# ------------------------------------------------------------------------------ the state machine

line_spec = st.tuples(st.sampled_from(KINDS), st.integers(0, 300), st.sampled_from(PAD_CHARS))
some_lines = st.lists(line_spec, max_size=6)
piece = st.tuples(line_spec.filter(lambda s: s[0] != "blank"), st.integers(0, 10_000))
index = st.integers(0, MAX_FILES - 1)


def pick(files: list[str], i: int) -> str:
    return files[i % len(files)]


class ReaderMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.h: Harness | None = None

    def existing(self) -> list[str]:
        return [k for k, f in self.h.files.items() if f.exists]

    def with_partial(self) -> list[str]:
        return [k for k, f in self.h.files.items() if f.exists and f.rest]

    def without_partial(self) -> list[str]:
        return [k for k, f in self.h.files.items() if f.exists and not f.rest]

    def deleted(self) -> list[str]:
        return [k for k, f in self.h.files.items() if not f.exists]

    @initialize(specs=some_lines)
    def boot(self, specs):
        self.h = Harness()
        self.h.start()
        self.h.new_file(specs)

    @precondition(lambda self: len(self.h.files) < MAX_FILES)
    @rule(specs=some_lines, partial=st.none() | piece)
    def new_file(self, specs, partial):
        self.h.new_file(specs, partial)

    @precondition(lambda self: self.existing())
    @rule(i=index, specs=some_lines)
    def append(self, i, specs):
        self.h.append(pick(self.existing(), i), specs)

    @precondition(lambda self: self.existing()
                  and sum(len(f.content) for f in self.h.files.values()) < MAX_BYTES)
    @rule(i=index)
    def append_many(self, i):
        self.h.append_many(pick(self.existing(), i), MANY_LINES)

    @precondition(lambda self: self.without_partial())
    @rule(i=index, spec=piece, look=st.booleans())
    def write_partial(self, i, spec, look):
        self.h.write_partial(pick(self.without_partial(), i), spec[0], spec[1], look)

    @precondition(lambda self: self.with_partial())
    @rule(i=index)
    def finish_partial(self, i):
        self.h.append(pick(self.with_partial(), i), [])

    @precondition(lambda self: self.existing())
    @rule(i=index, which=st.integers(0, 1000))
    def truncate(self, i, which):
        self.h.truncate(pick(self.existing(), i), which)

    @precondition(lambda self: self.existing())
    @rule(i=index, specs=some_lines, partial=st.none() | piece)
    def rewrite(self, i, specs, partial):
        self.h.rewrite(pick(self.existing(), i), specs, partial)

    @precondition(lambda self: self.existing())
    @rule(i=index, specs=some_lines, look=st.booleans())
    def rotate(self, i, specs, look):
        self.h.rotate(pick(self.existing(), i), specs, look)

    @precondition(lambda self: self.existing() and (self.h.running or self.h.synced))
    @rule(i=index)
    def delete(self, i):
        self.h.delete(pick(self.existing(), i))

    @precondition(lambda self: self.deleted())
    @rule(i=index, specs=some_lines)
    def recreate(self, i, specs):
        self.h.recreate(pick(self.deleted(), i), specs)

    @precondition(lambda self: self.h.running)
    @rule(kill=st.booleans())
    def restart(self, kill):
        self.h.stop(kill)
        self.h.start()

    @precondition(lambda self: self.h.running and self.existing()
                  and sum(len(f.content) for f in self.h.files.values()) < MAX_BYTES)
    @rule(i=index, kill=st.booleans(), delay=st.sampled_from([0.0, 0.005, 0.02, 0.05]))
    def restart_while_reading(self, i, kill, delay):
        """Hundreds of lines, then the signal while the daemon is (likely) in that batch."""
        self.h.append_many(pick(self.existing(), i), MANY_LINES)
        time.sleep(delay)
        self.h.stop(kill)
        self.h.start()

    @precondition(lambda self: self.h.running)
    @rule(kill=st.booleans())
    def stop(self, kill):
        self.h.stop(kill)

    @precondition(lambda self: not self.h.running)
    @rule()
    def start(self):
        self.h.start()

    @precondition(lambda self: self.h.running)
    @rule()
    def check(self):
        self.h.check()

    def teardown(self):
        if self.h is None:
            return
        try:
            if sys.exc_info()[0] is None:      # the example passed so far: one last check
                if not self.h.running:
                    self.h.start()
                self.h.check("at the end")
                self._coverage()
        finally:
            self.h.close()

    def _coverage(self):
        """What the daemon went through, for --hypothesis-show-statistics."""
        log = "".join(d.stderr() for d in self.h.daemons)
        for what in ("replaced", "truncated", "rewritten", "file is gone", "longer than"):
            if what in log:
                event(f"daemon log: {what}")
        for sig, n in self.h.stops.items():
            if n:
                event(f"daemon: {sig}")


TestReaderModel = ReaderMachine.TestCase
TestReaderModel.settings = settings(
    max_examples=scale(20, 150), stateful_step_count=scale(20, 40), deadline=None,
    suppress_health_check=list(HealthCheck), print_blob=True)


# ------------------------------------------------------------------------------ regression tests


def scenario(steps):
    """Run `steps(h)` on a fresh harness (daemon and API started), then a last check."""
    h = Harness()
    try:
        h.start()
        steps(h)
        if not h.running:
            h.start()
        h.check("at the end")
    finally:
        h.close()


def test_replaced_log_takes_the_recorded_session_id_of_its_new_lines():
    """Found by the model: a rotated (or rewritten) log's rows were replaced, but the run kept
    the `session_id` of the old file's lines as its recorded session id
    (fixed in store.Store.reset_event_log)."""
    def steps(h):
        x = h.new_file([("Prompt", 29, "a"), ("Prompt", 0, "a")])
        h.check()
        h.rotate(x, [("Prompt", 222, "a"), ("bad", 108, "€"), ("StepComplete", 259, "€")], look=False)
        h.check()
        h.rewrite(x, [("Other", 3, "a")])
        h.check()
        h.rewrite(x, [("bad", 1, "a"), ("blank", 0, "a")])          # no event line: no recorded id
    scenario(steps)


def test_replaced_log_keeps_the_recorded_session_id_of_the_session_file():
    """The other side of that fix: a session file's `session_id` wins over the lines', also
    after its log was replaced."""
    h = Harness()
    try:
        h.start()
        x = h.new_file([("Prompt", 1, "a")])
        h.ws.write_session(x, fx.session_doc("from-the-session-file"))

        def summary():
            reply = h.api.request(f"/api/v1/sessions/{x}")
            return reply.json() if reply.status == 200 else {"summary": {}, "event_count": None}

        h.daemon.wait_for(lambda: summary()["summary"].get("status") == "Completed", what="the session file")
        assert summary()["summary"]["recorded_session_id"] == "from-the-session-file"
        h.rewrite(x, [("Other", 1, "a"), ("Other", 2, "a")])
        h.daemon.wait_for(lambda: summary()["event_count"] == 2, what="the rewritten log")
        assert summary()["summary"]["recorded_session_id"] == "from-the-session-file"
    finally:
        h.close()
