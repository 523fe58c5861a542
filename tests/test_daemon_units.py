"""Pure unit tests of the daemon's parsing, incremental reading and status rules."""

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import msgspec
import pytest

from daemon import identity, parse, reader
from core import run_status as status
from core.ids import Refused, classify_benchmark_file, classify_session_file, normalise_benchmark_id, shown
from daemon.parse import BadInput
from daemon.reader import Checkpoint, Line
from tests import dbread
from tests import fixtures as fx
from tests.conftest import missing_precondition

# ------------------------------------------------------------------------------ parse: event lines


@pytest.mark.parametrize("raw", [b"", b"   ", b"\t \r"])
def test_blank_lines_parse_to_none(raw):
    assert parse.parse_event_line(raw) is None


def test_event_line_kinds():
    event = parse.parse_event_line(fx.line_text(fx.tool_input_line("sol_transfer", {"amount": 5}, at=1)))
    assert (event.kind, event.event_type, event.session_id) == ("event", "ToolInput", "inner-session")
    assert event.ts == pytest.approx(fx.unix(1))
    assert event.fields.tool_input.tool_name == "sol_transfer"
    assert json.loads(parse.raw_json_text(event.fields.tool_input.tool_args)) == {"amount": 5}

    legacy = parse.parse_event_line(fx.line_text(fx.legacy_call_line("jupiter_swap", {"a": 1}, at=2)))
    assert (legacy.kind, legacy.event_type, legacy.fields.tool_name) == ("tool_call", None, "jupiter_swap")

    bare = parse.parse_event_line(fx.line_text(fx.summary_line(at=3)))
    assert (bare.kind, bare.ts) == ("summary", pytest.approx(fx.unix(3)))

    body = fx.dumps(fx.legacy_summary_body(at=4))
    legacy_summary = parse.parse_event_line(("# SESSION_SUMMARY: " + body + "\r").encode())
    assert (legacy_summary.kind, legacy_summary.doc) == ("summary", body)
    assert legacy_summary.ts == pytest.approx(fx.unix(4))


def test_event_line_doc_is_the_line_as_written():
    raw = b'  {"event_type": "Prompt",  "extra": {"k": [1, 2]}, "timestamp": "2025-10-30T03:44:17Z"}  '
    line = parse.parse_event_line(raw)
    assert line.doc == raw.strip().decode()


@pytest.mark.parametrize("raw, reason", [
    (b'{"event_type": "Prom', "invalid JSON"),
    (b'{"event_type": "Prompt"} tail', "invalid JSON"),
    (b'{"x": "\xc3\x28"}', "invalid UTF-8 at byte 7"),
    (b"[1, 2]", "Expected `object`, got `array`"),
    (b'"text"', "Expected `object`, got `str`"),
    (b"42", "Expected `object`, got `int`"),
    (b"null", "Expected `object`, got `null`"),
    (b"NaN", "invalid JSON"),
    (b"\xef\xbb\xbf{}", "invalid"),
    (b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
])
def test_bad_event_lines_raise_with_a_reason(raw, reason):
    with pytest.raises(BadInput, match=reason):
        parse.parse_event_line(raw)


def test_event_line_with_a_field_of_the_wrong_type_names_it():
    raw = fx.dumps({"timestamp": 1761795857.5, "event_type": "Prompt", "prompt": "text"}).encode()
    with pytest.raises(BadInput, match=r"\$\.prompt"):
        parse.parse_event_line(raw)


def test_event_line_with_a_numeric_timestamp_is_kept():
    raw = fx.dumps({"timestamp": 1761795857.5, "event_type": "Prompt", "session_id": "s"}).encode()
    line = parse.parse_event_line(raw)
    assert (line.kind, line.event_type, line.ts, line.session_id) == ("event", "Prompt", 1761795857.5, "s")
    assert line.doc == raw.decode()


@pytest.mark.parametrize("text, expected", [
    ("2025-10-30T03:44:17.796472Z", fx.unix(0)),
    ("2025-10-30T03:44:17.796472+00:00", fx.unix(0)),
    ("2025-10-30T05:44:17.796472+02:00", fx.unix(0)),
    ("2025-10-30T03:44:17.796472123Z", fx.unix(0)),        # nanoseconds (chrono) are cut to micro
    ("2025-10-30T03:44:17.796472", fx.unix(0)),            # no offset: UTC
    (1761795857.796472, fx.unix(0)),                       # a number: Unix seconds
    (1761795857796.472, fx.unix(0)),                       # ... or milliseconds
    ("yesterday", None),
    ("", None),
    (None, None),
    (float("inf"), None),
])
def test_parse_timestamp(text, expected):
    got = parse.parse_timestamp(text)
    assert got == (pytest.approx(expected, abs=1e-6) if expected is not None else None)


@pytest.mark.parametrize("nanoseconds", ["796472623", "796472999", "999999999"])
def test_a_time_field_with_nanoseconds_is_cut_to_microseconds_not_rounded(nanoseconds):
    """(the fast C parser rounds; what the daemon stores must not depend on which parser ran)"""
    raw = msgspec.Raw(f'"2025-10-30T03:44:17.{nanoseconds}Z"'.encode())
    micro = msgspec.Raw(f'"2025-10-30T03:44:17.{nanoseconds[:6]}Z"'.encode())
    assert parse.time_field(raw, "$.timestamp") == parse.time_field(micro, "$.timestamp")
    assert parse.time_field(raw, "$.timestamp") == parse.parse_timestamp(f"2025-10-30T03:44:17.{nanoseconds}Z")


# ------------------------------------------------------------------------------ parse: documents


def test_parse_session_file_finished_and_unfinished():
    doc = fx.session_doc(benchmark_id="benchmarks/301-test-transfer.yml", success=False, score=0.5)
    s = parse.parse_session_file(fx.session_bytes(doc))
    assert (s.recorded_session_id, s.benchmark_id, s.agent_type) == ("inner-session", "301-test-transfer", "deterministic")
    assert (s.start_time, s.end_time) == (doc["start_time"], doc["end_time"])
    assert (s.final.success, s.final.score, s.final.status, s.final.execution_time_ms) == (False, 0.5, "Failed", 37000)
    assert json.loads(s.final_doc) == doc["final_result"]
    assert json.loads(s.doc) == doc

    running = parse.parse_session_file(fx.session_bytes(fx.session_doc(finished=False)))
    assert (running.final, running.final_doc, running.end_time) == (None, None, None)

    bare = parse.parse_session_file(b'{"session_id": "s"}')
    assert (bare.benchmark_id, bare.final, bare.start_time) == (None, None, None)


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty file"),
    (b"  \n", "empty file"),
    (b'{"session_id": "s", "final_result": {', "invalid JSON"),
    (b"[]", "wrong shape"),
    (b'{"final_result": "done"}', "wrong shape"),
    (b'{"start_time": "yesterday"}', "wrong shape"),
    (b'{"session_id": "\xff"}', "invalid UTF-8"),
])
def test_parse_session_file_rejects(raw, reason):
    with pytest.raises(BadInput, match=reason):
        parse.parse_session_file(raw)


def test_parse_benchmark():
    text = fx.benchmark_yaml("401-flow", description="Two steps.", tags=["a", "b"], prompt="Do both.",
                             flow=[{"step": 1}, {"step": 2}])
    b = parse.parse_benchmark(text.encode(), "file-stem")
    assert (b.id, b.description, b.tags, b.prompt, b.flow_steps, b.yaml_text) == (
        "401-flow", "Two steps.", ["a", "b"], "Do both.", 2, text)
    assert parse.parse_benchmark(fx.benchmark_yaml(None).encode(), "302-from-name").id == "302-from-name"
    assert parse.parse_benchmark(b"id: 123\nprompt: p\n", "x").id == "123"
    minimal = parse.parse_benchmark(b"prompt: only a prompt\n", "303-min")
    assert (minimal.id, minimal.description, minimal.tags, minimal.flow_steps) == ("303-min", "", [], 0)


@pytest.mark.parametrize("raw, reason", [
    (b"id: [unclosed\n", "invalid YAML"),
    (b"- a\n- b\n", "mapping"),
    (b"", "mapping"),
    (b"id: x\ntags: just-a-string\n", "tags"),
    (b"id: x\nprompt: [1, 2]\n", "prompt"),
    (b"id: x\nflow: {step: 1}\n", "flow"),
    (b"id: ''\n", "id"),
    (b"id: x\ndescription: \xff\n", "UTF-8"),
])
def test_parse_benchmark_rejects(raw, reason):
    with pytest.raises(BadInput, match=reason):
        parse.parse_benchmark(raw, "stem")


@pytest.mark.parametrize("value, expected", [
    ("001-sol-transfer", "001-sol-transfer"),
    ("benchmarks/001-sol-transfer.yml", "001-sol-transfer"),
    ("./benchmarks/001-sol-transfer.yaml", "001-sol-transfer"),
    ("C:\\reev\\benchmarks\\001-sol-transfer.yml", "001-sol-transfer"),
    (" 001-sol-transfer.yml ", "001-sol-transfer"),
])
def test_normalise_benchmark_id(value, expected):
    assert normalise_benchmark_id(value) == expected


@pytest.mark.parametrize("name, expected", [
    ("session_abc-1.json", ("session", "abc-1")),
    ("enhanced_otel_300-swap-test.jsonl", ("events", "300-swap-test")),
    ("enhanced_otel_a.b_c.jsonl", ("events", "a.b_c")),
    ("otel_abc.jsonl", None), ("session_abc.json.tmp", None), (".session_abc.json.swp", None),
    ("enhanced_otel_abc.json", None), ("session_abc.jsonl", None), ("Session_abc.json", None),
])
def test_classify_session_file(name, expected):
    got = classify_session_file(name)
    assert (tuple(got) if got else None) == expected


@pytest.mark.parametrize("name, kind, says", [
    ("session_.json", "session", "'' is no execution id"),
    ("session_..json", "session", "'.' is no execution id"),
    ("session_a b.json", "session", "'a b' is no execution id"),
    ("enhanced_otel_café.jsonl", "events", "'café' is no execution id"),
    ("enhanced_otel_x\n.jsonl", "events", "'x\\n' is no execution id"),
    ("session_\udcff.json", "session", "not valid UTF-8"),
])
def test_names_of_our_forms_without_an_execution_id_are_refused_with_a_reason(name, kind, says):
    got = classify_session_file(name)
    assert isinstance(got, Refused) and got.kind == kind and says in got.reason, got


@pytest.mark.parametrize("name, expected", [
    ("001-sol-transfer.yml", "001-sol-transfer"), ("x.yaml", "x"), ("café.yml", "café"), ("a\\b.yml", "a\\b"),
    (".hidden.yml", None), ("x.yml.swp", None), ("README.md", None),
])
def test_classify_benchmark_file(name, expected):
    got = classify_benchmark_file(name)
    assert (got.subject_id if got else None) == expected


def test_a_benchmark_name_that_is_not_utf8_is_refused():
    got = classify_benchmark_file(os.fsdecode(b"bad\xff.yml"))
    assert isinstance(got, Refused) and "not valid UTF-8" in got.reason


@pytest.mark.parametrize("raw, text", [
    (b"/s/session_x.json", "/s/session_x.json"), ("/s/café.yml".encode(), "/s/café.yml"),
    (b"/s/bad\xff\xfe.yml", "/s/bad\\xff\\xfe.yml"), (b"/s/session_\xc3.json", "/s/session_\\xc3.json"),
    # a backslash is escaped too: no name is shown as another is
    (b"/s/bad\\xff.yml", "/s/bad\\\\xff.yml"), (b"/s/a\\b\xff.yml", "/s/a\\\\b\\xff.yml"),
])
def test_a_path_is_shown_as_storable_text(raw, text):
    got = shown(os.fsdecode(raw))
    assert got == text
    got.encode("utf-8")           # SQLite binds it


# ------------------------------------------------------------------------------ reader


class File:
    """A real file to append to and read with reader.read_lines, checkpoint by checkpoint."""

    def __init__(self, path):
        self.path = str(path)
        open(self.path, "wb").close()
        self.cp = Checkpoint()

    def append(self, data: bytes):
        with open(self.path, "ab") as f:
            f.write(data)

    def read(self, max_line: int = 1000, budget: int = 1 << 30) -> tuple[list[Line], bool]:
        fd, st = reader.open_regular(self.path)
        try:
            assert identity.change_reason(fd, st, self.cp) is None
            lines, self.cp, more = reader.read_lines(fd, st, self.cp, max_line, budget)
        finally:
            os.close(fd)
        return lines, more

    def change_reason(self):
        fd, st = reader.open_regular(self.path)
        try:
            return identity.change_reason(fd, st, self.cp)
        finally:
            os.close(fd)


def test_read_lines_keeps_a_partial_line_for_later(tmp_path):
    f = File(tmp_path / "log")
    f.append(b"one\n\ntwo\nthr")
    lines, more = f.read()
    assert lines == [Line(1, 0, b"one"), Line(2, 4, b""), Line(3, 5, b"two")]
    assert (f.cp.offset, f.cp.line_no, f.cp.size, more) == (9, 3, 12, False)

    assert f.read() == ([], False)                          # nothing new: nothing read
    f.append(b"ee\nfour")
    assert f.read()[0] == [Line(4, 9, b"three")]
    f.append(b"\n")
    assert f.read()[0] == [Line(5, 15, b"four")]
    assert f.cp.offset == os.path.getsize(f.path)


def test_read_lines_line_of_exactly_the_limit_is_accepted(tmp_path):
    f = File(tmp_path / "log")
    f.append(b"12345678\n123456789\nok\n")
    assert f.read(max_line=8)[0] == [Line(1, 0, b"12345678"), Line(2, 9, None), Line(3, 19, b"ok")]


def test_read_lines_over_long_line_across_calls_is_reported_once(tmp_path):
    f = File(tmp_path / "log")
    f.append(b"first\n" + b"x" * 6)
    assert f.read(max_line=10)[0] == [Line(1, 0, b"first")]
    assert not f.cp.skipping and f.cp.offset == 6             # partial, under the limit: waits

    f.append(b"y" * 6)                                        # 12 bytes, no newline yet: over
    assert f.read(max_line=10)[0] == [Line(2, 6, None)]
    assert f.cp.skipping and f.cp.offset == 18                # its bytes are consumed, not kept

    f.append(b"z" * 50)                                       # still the same line
    assert f.read(max_line=10)[0] == []
    assert f.cp.skipping and f.cp.offset == 68

    f.append(b"zz\nnext\n")                                   # its end, then a good line
    assert f.read(max_line=10)[0] == [Line(3, 71, b"next")]
    assert not f.cp.skipping and f.cp.line_no == 3 and f.cp.offset == 76


def test_read_lines_budget_stops_early_and_the_rest_follows(tmp_path):
    f = File(tmp_path / "log")
    line = b"y" * 99 + b"\n"
    f.append(line * 25_000)                                   # 2.5 MB: three 1 MB chunks
    got, rounds = [], 0
    while True:
        lines, more = f.read(budget=1)
        rounds += 1
        got += lines
        assert f.cp.size <= os.path.getsize(f.path)
        if not more:
            break
        assert f.cp.size < os.path.getsize(f.path)            # a cut-short read never looks finished
    assert rounds == 3
    assert [ln.number for ln in got] == list(range(1, 25_001))
    assert all(ln.data == line[:-1] and ln.offset == (ln.number - 1) * 100 for ln in got)


def test_read_lines_line_longer_than_the_budget_still_completes(tmp_path):
    f = File(tmp_path / "log")
    big = b"b" * (3 << 20)
    f.append(big + b"\nsmall\n")
    lines, _ = f.read(max_line=4 << 20, budget=1)
    assert lines[0] == Line(1, 0, big)
    assert f.cp.offset > len(big)


@pytest.mark.parametrize("layout", ["small", "tiny", "chunks", "max-lines", "over-long", "partial"])
def test_read_lines_fingerprints_are_those_of_the_file(tmp_path, layout):
    """The head and tail fingerprints come from the bytes just read where those hold them, else
    from the file: the same digests either way, read by read."""
    f = File(tmp_path / "log")
    writes = {
        "small": [b"a" * 40 + b"\n", b"b" * 500 + b"\n", b"c\n"],            # head, then tails across reads
        "tiny": [b"x\n", b"y\n", b"\n"],                                       # shorter than a fingerprint
        "chunks": [(b"z" * 999 + b"\n") * 2100, b"tail\n"],                     # over two 1 MB chunks
        "max-lines": [b"l\n" * (reader.MAX_LINES_PER_READ + 50)],               # stops mid-chunk
        "over-long": [b"s\n" + b"o" * 3000, b"o\n" + b"t" * 10 + b"\n"],         # skipped, across reads
        "partial": [b"p" * 200 + b"\n" + b"q" * 100, b"q\n"],                   # a line waits for its end
    }[layout]
    def digest(data: bytes) -> bytes:       # the checkpoint's: BLAKE2b, 16 bytes
        return hashlib.blake2b(data, digest_size=16).digest()

    for data in writes:
        f.append(data)
        while True:
            _, more = f.read(max_line=2000)
            content = Path(f.path).read_bytes()
            head = min(256, len(content))                   # the first 256 bytes (fewer in a short file)
            tail = content[max(0, f.cp.offset - 256):f.cp.offset]      # the 256 before the offset
            assert f.cp.fingerprint_len == head
            assert f.cp.fingerprint == digest(content[:head]) + digest(tail)
            if not more:
                break
    assert f.cp.offset == os.path.getsize(f.path)


def test_read_document_reads_a_file_whole_and_what_it_grew_by(tmp_path):
    path = tmp_path / "session_x.json"
    for data in (b"", b"{}", b"x" * (3 << 20)):
        path.write_bytes(data)
        fd, st = reader.open_regular(str(path))
        try:
            assert reader.read_document(fd, st, 64 << 20) == data
            with open(path, "ab") as more:
                more.write(b"grown")                                # after the stat: read too
            assert reader.read_document(fd, st, 64 << 20) == data + b"grown"
            with pytest.raises(ValueError, match="grew over"):
                reader.read_document(fd, st, len(data) + 2)
        finally:
            os.close(fd)


def test_change_reason(tmp_path):
    f = File(tmp_path / "log")
    head = b"h" * 300 + b"\n"
    f.append(head + b"second\n")
    f.read()
    f.append(b"third\n")
    assert f.change_reason() is None                          # appending is not a change

    with open(f.path, "r+b") as w:                            # same size, other first bytes
        w.write(b"H")
    assert f.change_reason() == "rewritten"
    with open(f.path, "r+b") as w:
        w.write(b"h")
    assert f.change_reason() is None

    with open(f.path, "wb") as w:                             # same head, other bytes before the offset, longer
        w.write(head + b"SECOND\nthird and more\n")
    assert f.change_reason() == "rewritten"

    with open(f.path, "wb") as w:
        w.write(head)
    assert f.change_reason() == "truncated"

    with open(f.path + ".new", "wb") as w:                    # same content, another file (atomic replace)
        w.write(head + b"second\nthird\n")
    os.replace(f.path + ".new", f.path)
    assert f.change_reason() == "replaced"


def test_unchanged_and_needs_look(tmp_path):
    """The one cheap identity test, against a checkpoint (scans, stale runs) or against a stat
    taken when a file was read (the read worker's answers)."""
    f = File(tmp_path / "log")
    f.append(b"first\n")
    f.read()
    before = os.lstat(f.path)
    assert identity.unchanged(before, f.cp) and identity.unchanged(before, identity.seen(before))
    assert not identity.needs_look(before, f.cp)
    assert identity.needs_look(before, None)                                    # new
    assert not identity.needs_look(before, dataclasses.replace(f.cp, state="error"))
    assert identity.needs_look(before, dataclasses.replace(f.cp, state="pending"))   # tried again

    f.append(b"second\n")
    after = os.lstat(f.path)
    assert not identity.unchanged(after, f.cp) and not identity.unchanged(after, identity.seen(before))
    assert identity.needs_look(after, f.cp)

    os.utime(f.path, ns=(after.st_atime_ns, after.st_mtime_ns + 1))             # touched only
    assert not identity.unchanged(os.lstat(f.path), identity.seen(after))
    shutil.copy(f.path, f.path + ".new")
    os.replace(f.path + ".new", f.path)                                          # another inode
    assert not identity.unchanged(os.lstat(f.path), identity.seen(after))


def test_open_regular_refuses_what_is_not_a_regular_file(tmp_path):
    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(reader.NotAFile, match="vanished"):
        reader.open_regular(str(tmp_path / "missing"))
    with pytest.raises(reader.NotAFile, match="a directory"):
        reader.open_regular(str(tmp_path / "folder"))
    with pytest.raises(reader.NotAFile, match="not a regular file"):
        reader.open_regular(str(tmp_path / "fifo"))
    with pytest.raises(reader.NotAFile):
        reader.open_regular(str(tmp_path / "link"))


# ------------------------------------------------------------------------------ status


@pytest.mark.parametrize("previous, success, final_status, has_final, expected", [
    (None, True, "Succeeded", True, "Completed"),
    (None, False, "Failed", True, "Failed"),
    ("Running", True, None, True, "Completed"),
    ("Completed", False, "Failed", True, "Failed"),         # a rewrite may flip it
    ("Failed", True, "Succeeded", True, "Completed"),       # and back
    (None, None, "Succeeded", True, "Completed"),           # no success flag: the status says
    (None, None, "Failed", True, "Failed"),
    (None, None, None, True, "Failed"),
    (None, None, None, False, "Running"),
    ("Running", None, None, False, "Running"),
    ("Completed", None, None, False, "Completed"),          # no final_result: keep the terminal one
    ("Failed", None, None, False, "Failed"),
    ("Timeout", None, None, False, "Timeout"),
    ("Stopped", None, None, False, "Stopped"),
    ("Queued", None, None, False, "Running"),
])
def test_status_from_session(previous, success, final_status, has_final, expected):
    assert status.status_from_session(previous, False, success, final_status, has_final) == expected


@pytest.mark.parametrize("success, final_status, has_final, expected", [
    (True, "Succeeded", True, "Completed"), (False, "Failed", True, "Failed"),
    (None, None, False, "Running"),       # not a result a file gave: nothing to keep
])
def test_a_session_file_decides_a_stalled_run_as_a_running_one(success, final_status, has_final, expected):
    assert status.status_from_session("Timeout", True, success, final_status, has_final) == expected


@pytest.mark.parametrize("previous, stalled, expected", [
    (None, False, "Running"), ("Queued", False, "Queued"), ("Running", False, "Running"),
    ("Completed", False, "Completed"), ("Failed", False, "Failed"), ("Timeout", False, "Timeout"),
    ("Timeout", True, "Running"),         # the stale rule's Timeout: its runner is back
])
def test_status_from_event_reopens_only_a_stalled_run(previous, stalled, expected):
    assert status.status_from_event(previous, stalled) == expected


@pytest.mark.parametrize("state, has_session, stale_after, expected", [
    ("Running", False, 1800, 1_000_000 + 1800),
    ("Running", False, 0.5, 1_000_000.5),
    ("Running", False, 0, None),          # 0 turns the rule off
    ("Running", True, 1800, None),        # a session file without final_result: still Running
    ("Completed", False, 1800, None), ("Failed", False, 1800, None),
    ("Timeout", False, 1800, None),       # already
])
def test_stale_at(state, has_session, stale_after, expected):
    assert status.stale_at(state, has_session, 1_000_000.0, stale_after) == expected


def test_stale_reason_says_since_when_and_why():
    assert status.stale_reason(1_796_526_000.0, 1800) == (
        "no new event line since 2026-12-06T03:00:00Z (--stale-after 1800 s) and no session file:"
        " the runner probably stopped")


@pytest.mark.parametrize("state, done, flow, expected", [
    ("Completed", 0, 0, 1.0), ("Failed", 1, 4, 1.0), ("Timeout", 1, 4, 1.0), ("Running", 0, 0, 0.0),
    ("Running", 1, 4, 0.25), ("Running", 4, 4, 0.99), ("Running", 9, 2, 0.99), ("Queued", 0, 3, 0.0),
])
def test_progress(state, done, flow, expected):
    assert status.progress(state, done, flow) == expected


def test_every_status_is_representable():
    assert set(status.STATUSES) == {"Queued", "Running", "Completed", "Failed", "Stopped", "Timeout"}
    assert status.TERMINAL == {"Completed", "Failed", "Stopped", "Timeout"}


# ------------------------------------------------------------------------------ read-ahead


def _resident_pages(path) -> int:
    """How many of the file's pages are in the page cache (mincore)."""
    import ctypes
    import mmap

    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        buf = ctypes.c_char.from_buffer(m)
        mincore = ctypes.CDLL(None, use_errno=True).mincore
        mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        try:
            if mincore(ctypes.addressof(buf), size, vec):
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del buf
        return sum(v & 1 for v in vec)


def _evicted_file(path, data: bytes):
    """Write a file and drop its pages from the page cache; whether they went."""
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return _resident_pages(path) <= 16


@pytest.fixture
def page_cached_folder(tmp_path):
    """A new folder on a file system whose files leave the page cache when told to: tmp_path,
    else /var/tmp, else beside the repository (tmpfs keeps files in memory: nothing to read ahead)."""
    for base in (tmp_path, Path("/var/tmp"), Path(__file__).resolve().parent.parent):
        try:
            folder = Path(tempfile.mkdtemp(prefix="reev-prefetch-", dir=base))
        except OSError:
            continue
        if _evicted_file(folder / "probe", b"p" * (1 << 20)):
            try:
                yield folder
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return
        shutil.rmtree(folder, ignore_errors=True)
    missing_precondition("no folder here whose files leave the page cache (all tmpfs?): nothing to read ahead")


def test_prefetcher_brings_the_files_a_batch_will_read_into_the_page_cache(page_cached_folder):
    from tests.conftest import wait_for
    from daemon.cache_warmer import CacheWarmer

    files = []
    for i in range(3):
        path = page_cached_folder / f"enhanced_otel_{i}.jsonl"
        assert _evicted_file(path, b'{"event_type":"Prompt"}\n' * 40_000)     # about 1 MB
        files.append(path)
    p = CacheWarmer(length=8 << 20)
    p.warm([(str(files[0]), 0), (str(files[1]), 512 << 10), (str(page_cached_folder / "gone.jsonl"), 0)])
    wait_for(lambda: _resident_pages(files[0]) >= 0.9 * os.path.getsize(files[0]) // 4096,
             what="the first file read ahead")
    # from the offset on (where reading starts), not the bytes before it; a file not asked for stays out
    wait_for(lambda: _resident_pages(files[1]) >= 0.9 * (os.path.getsize(files[1]) - (512 << 10)) // 4096,
             what="the second file read ahead from its offset")
    assert _resident_pages(files[1]) < 0.7 * os.path.getsize(files[1]) // 4096
    assert _resident_pages(files[2]) < 16


def _event_logs(folder, count: int) -> list[tuple[str, object]]:
    """(path, what) of `count` event logs, bad lines among good ones."""
    files = []
    for i in range(count):
        path = folder / f"enhanced_otel_run-{i}.jsonl"
        path.write_bytes(fx.jsonl([fx.prompt_line(f"prompt {i}", at=i), '{"bad', fx.tool_input_line("t", at=i + 1)]))
        files.append((str(path), classify_session_file(path.name)))
    return files


def _content(read):
    """A read without the file's stat (its atime moves when the file is read again)."""
    return read._replace(st=None)


class _Ids:
    """Execution ids for the read-ahead, as Store.reserve_execution_id would hand them out."""

    def __init__(self):
        self.ids, self.calls = {}, 0

    def __call__(self, what) -> int:
        self.calls += 1
        return self.ids.setdefault(what.subject_id, 1000 + len(self.ids))


def test_read_ahead_answers_what_the_loop_would_read_across_batches(tmp_path):
    from daemon.ingest import Limits, read_new_file
    from daemon.read_worker import AHEAD, MIN_FILES, ReadWorker

    limits, ids = Limits(), _Ids()
    files = _event_logs(tmp_path, 3 * MIN_FILES)

    def direct(path, what):
        return read_new_file(path, what, ids.ids[what.subject_id], limits)

    ra = ReadWorker(limits, ids)
    try:
        ra.plan(iter(files[:MIN_FILES - 1]))           # too few to be worth a process
        assert ra.take(files[0][0]) is None and ids.calls == 0
        ra.plan(iter(files))
        # systemd's stop signals the whole group: the loop, not the signal, ends the worker
        os.kill(ra._proc.pid, signal.SIGTERM)
        os.kill(ra._proc.pid, signal.SIGINT)
        for path, what in files[:5]:
            assert _content(ra.take(path)) == _content(direct(path, what))
        # the batch ends; the next starts with what it did not get to, which stays asked for
        ra.plan(iter(files[5:]))
        assert _content(ra.take(files[5][0])) == _content(direct(*files[5]))
        assert _content(ra.take(files[9][0])) == _content(direct(*files[9]))   # 6 to 8 skipped: their answers dropped
        assert ra.take(files[6][0]) is None
        for path, what in files[10:]:
            assert _content(ra.take(path)) == _content(direct(path, what))
        assert ids.calls == len(files)                  # each asked for once
        assert not ra.broken
    finally:
        ra.close()
    assert AHEAD < len(files) - 10                      # (so the answers came while it took them)


def test_read_ahead_worker_killed_mid_batch_leaves_the_loop_to_read(tmp_path):
    from daemon.ingest import Limits
    from daemon.read_worker import MIN_FILES, ReadWorker

    files = _event_logs(tmp_path, 2 * MIN_FILES)
    ra = ReadWorker(Limits(), _Ids())
    try:
        ra.plan(iter(files))
        assert ra.take(files[0][0]) is not None
        ra._proc.kill()
        ra._proc.wait()
        taken = [ra.take(path) for path, _ in files[1:]]
        assert taken[-1] is None and ra.broken       # (answers it sent before it died may still come)
        ra.plan(iter(files))
        assert ra._proc is None and ra.take(files[0][0]) is None    # from now on the loop reads
    finally:
        ra.close()


@pytest.mark.parametrize("gone", [False, True], ids=["there", "gone since"])
def test_a_read_made_with_an_execution_id_lost_since_is_read_again_with_the_right_one(tmp_path, gone):
    """Read-ahead builds an event log's rows with a reserved id; if a rolled-back batch lost
    the reservation, the execution gets another id, and the rows must carry that one. A file
    gone by then is a file that is not there (as when the loop reads it itself), not an
    internal error, and no execution is made of it."""
    from core.ids import classify_session_file as classify
    from daemon.ingest import Ingestor, Limits, Outcome, Scanned, read_new_file
    from daemon.storage.sqlite import SqliteStore as Store

    sessions = tmp_path / "sessions"
    sessions.mkdir()
    path = sessions / "enhanced_otel_run-1.jsonl"
    path.write_bytes(fx.jsonl([fx.prompt_line("p", at=0), fx.tool_input_line("t", at=1)]))
    what = classify(path.name)
    db = tmp_path / "reev.db"
    store = Store(db)
    try:
        ingestor = Ingestor(store, sessions, tmp_path / "benchmarks", Limits())
        with store.batch():
            stale = read_new_file(str(path), what, 999, Limits())
            if gone:
                path.unlink()
            outcome = ingestor.process(str(path), Scanned(what, None), stale)
        if gone:
            assert outcome == Outcome()
            assert dbread.query(db, "SELECT id FROM executions") == []
            assert dbread.value(db, "SELECT count(*) FROM events") == 0
            assert dbread.value(db, "SELECT count(*) FROM ingest_errors") == 0
        else:
            rows = dbread.query(db, "SELECT DISTINCT exec_id FROM events")
            ids = dbread.query(db, "SELECT id FROM executions")
            assert rows == ids and ids != [(999,)]
            assert dbread.value(db, "SELECT count(*) FROM events") == 2
    finally:
        store.close()


def test_a_read_ahead_of_a_file_changed_since_is_not_used(tmp_path):
    """The loop may store a read a batch after the worker made it, into a queue entry that a
    change since has merged with: a read is only used if the file is still as it was read."""
    from daemon.ingest import Limits, read_new_file
    from daemon.read_worker import AHEAD, ReadWorker

    limits, ids = Limits(), _Ids()
    files = _event_logs(tmp_path, AHEAD)
    ra = ReadWorker(limits, ids)
    try:
        ra.plan(iter(files))
        for path, what in files[:-2]:
            assert _content(ra.take(path)) == _content(read_new_file(path, what, ids.ids[what.subject_id], limits))
        assert ra._conn.poll(10)                       # the next one's read is in...
        with open(files[-2][0], "ab") as f:            # ... and then the file grows
            f.write(fx.jsonl([fx.step_complete_line(at=9)]))
        assert ra.take(files[-2][0]) is None           # read in the loop
        assert ra.take(files[-1][0]) is not None and not ra.broken
    finally:
        ra.close()


# ------------------------------------------------------------------------------ the WAL copier


def test_catching_up_the_wal_is_copied_behind_the_loop_and_restarted_by_it(tmp_path, monkeypatch):
    """While catching up, the copier thread copies the WAL into the database as batches commit:
    the database file grows before the WAL is long enough for the loop to copy anything itself.
    Once the WAL holds checkpoint_pages, the loop copies what is left and the WAL starts again
    from its beginning. (The real thresholds are 8 and 256 MiB; here 64 and 1024 pages.) The
    restarts are counted (the WAL header's checkpoint sequence number), not the file's size: a
    commit that finds the copier copying leaves the copy to the next, so how far past
    checkpoint_pages the WAL gets between restarts depends on how busy the machine is (2.2 to
    3.5 times on this 2-core machine under load)."""
    import time

    from daemon.storage.sqlite import SqliteStore, engine
    from core.ids import classify_session_file as classify
    from daemon.ingest import Ingestor, Limits, Scanned

    tuning = engine.CATCHING_UP._replace(copy_pages=64, checkpoint_pages=1024)
    monkeypatch.setattr(engine, "CATCHING_UP", tuning)
    sessions, db = tmp_path / "sessions", tmp_path / "reev.db"
    sessions.mkdir()
    store = SqliteStore(db)
    try:
        store.tune(True)
        page = store.conn.execute("PRAGMA page_size").fetchone()[0]
        ingestor = Ingestor(store, sessions, tmp_path / "benchmarks", Limits())
        empty = os.path.getsize(db)

        def ingest_run(r: int):           # about 0.5 MB of lines, one batch
            path = sessions / f"enhanced_otel_run-{r}.jsonl"
            path.write_bytes(fx.jsonl([fx.prompt_line("p" * 5000, at=i) for i in range(100)]))
            with store.batch():
                ingestor.process(str(path), Scanned(classify(path.name), None))

        for r in range(3):                # past copy_pages, short of checkpoint_pages
            ingest_run(r)
        wal_pages = os.path.getsize(f"{db}-wal") // page
        assert tuning.copy_pages < wal_pages < tuning.checkpoint_pages
        deadline = time.monotonic() + 30
        while os.path.getsize(db) < empty + 1_000_000:
            assert time.monotonic() < deadline, "the copier never copied the WAL into the database"
            time.sleep(0.01)
        def restarts() -> int:            # the WAL header's checkpoint sequence number
            with open(f"{db}-wal", "rb") as wal:
                return int.from_bytes(wal.read(16)[12:16], "big")

        before = restarts()
        for r in range(3, 40):            # 20 MB in all: five times checkpoint_pages
            ingest_run(r)
        assert restarts() - before >= 2, "the WAL was not started again from its beginning"
        assert dbread.value(db, "SELECT count(*) FROM events") == 4000
    finally:
        store.close()


# ------------------------------------------------------------------------------ benchmarks, parsed off the loop


def test_a_benchmark_is_parsed_off_the_loop_and_stored_when_it_comes_back(tmp_path):
    """Ingestor.process hands the YAML to the parse thread and returns at once; the thread's
    `done` queues the path again, and the next look stores the parse, if the file still holds
    the bytes that were parsed: a file changed meanwhile is parsed again."""
    import queue

    from core.ids import Classified
    from daemon.ingest import Ingestor, Limits, Scanned
    from daemon.offloop import OffLoop
    from daemon.storage.sqlite import SqliteStore as Store

    benchmarks = tmp_path / "benchmarks"
    benchmarks.mkdir()
    path = benchmarks / "301-a.yml"
    path.write_text(fx.benchmark_yaml("301-a", description="first"))
    came_back: queue.Queue[str] = queue.Queue()
    db = tmp_path / "reev.db"
    store = Store(db)
    try:
        ingestor = Ingestor(store, tmp_path / "sessions", benchmarks, Limits(), OffLoop(done=came_back.put))
        what = Scanned(Classified("benchmark", "301-a"), None)

        def look():
            with store.batch():
                ingestor.process(str(path), what)
            return dbread.query(db, "SELECT description FROM benchmarks")

        assert look() == []                            # not parsed in the loop
        assert came_back.get(timeout=10) == str(path)
        path.write_text(fx.benchmark_yaml("301-a", description="second"))   # changed meanwhile
        assert look() == []                            # that parse was of other bytes
        assert came_back.get(timeout=10) == str(path)
        assert look() == [("second",)]
        assert not ingestor.parses.busy
    finally:
        store.close()


def test_a_parse_that_ends_while_the_loop_looks_is_not_taken_for_nothing_left(tmp_path):
    """`caught up` (and READY=1) waits for everything the scan found to be stored
    (Service._all_committed). A definition parsed off the loop is either being parsed or
    queued again: a parse that ended between the look at one and the look at the other once let
    a start say it was caught up with its benchmark not stored. Here it ends inside the count of
    the queue, where a thread switch once made it end."""
    import threading

    from core.notify import Notifier
    from daemon.discovery import DirtyPaths
    from daemon.offloop import OffLoop
    from daemon.service import Config, Service
    from daemon.storage.sqlite import SqliteStore as Store
    from tests.conftest import wait_for

    release = threading.Event()

    class QueueCountedWhileTheParseEnds(DirtyPaths):
        def __len__(self):
            n = super().__len__()
            release.set()
            wait_for(lambda: not service.parses.busy, what="the parse to end")
            return n

    store = Store(tmp_path / "reev.db")
    try:
        service = Service(Config(tmp_path / "sessions", tmp_path / "benchmarks", tmp_path / "reev.db"),
                          store, Notifier({}), database_lost=lambda: None)
        service.dirty = QueueCountedWhileTheParseEnds()
        service.parses = OffLoop(done=service.dirty.add)
        path = str(tmp_path / "benchmarks" / "301-a.yml")
        assert service.parses.result(path, b"digest", lambda: release.wait(10)) is None   # parsing
        assert not service._all_committed()
        release.set()
        wait_for(lambda: not service.parses.busy, what="the parse to end")
        assert not service._all_committed()          # its path is queued, not stored yet
        assert [p for p, _ in service.dirty.take(10)] == [path]
        assert service._all_committed()
    finally:
        store.close()


def test_parse_benchmark_uses_libyaml_where_it_is_installed():
    import yaml
    if getattr(yaml, "__with_libyaml__", False):
        assert parse._YAML_LOADER is yaml.CSafeLoader
    else:
        assert parse._YAML_LOADER is yaml.SafeLoader


# ---------------------------------------------------------------------- the backoff after a database error

def test_backoff_doubles_within_each_error_kinds_bounds_and_starts_again_after_a_success():
    from daemon.backoff import Backoff
    from daemon.storage import Busy, Full, Unavailable
    b = Backoff()
    assert [b.next(Busy("lost")) for _ in range(9)] == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0]
    b.reset()
    assert [b.next(Unavailable("gone")) for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert b.next(Full("full")) == 10.0         # (a streak goes on doubling whatever the kind)
    b.reset()
    assert [round(b.next(Full("full")), 1) for _ in range(11)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6,
                                                                    30.0, 30.0]


def test_backoff_with_patience_gives_up_on_what_waiting_does_not_mend_and_after_its_patience():
    from daemon.backoff import Backoff
    from daemon.storage import Busy, Corrupt, Full, StorageError, Unavailable
    from tests.conftest import wait_for
    for error in (Full("full"), Corrupt("damaged"), StorageError("a bug")):
        assert Backoff(60).next(error) is None
    b = Backoff(0.2)
    assert b.next(Unavailable("restarting")) == 0.1 and b.next(Busy("lost")) == 0.2
    wait_for(lambda: b.next(Busy("lost")) is None, timeout=5, what="the patience to run out")
    b.reset()
    assert b.next(Busy("lost")) == 0.01          # a new streak
