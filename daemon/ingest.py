"""Ingesting one file into an open batch: event logs line by line, session files and
benchmarks as whole documents. Called by the service loop; all SQL goes through Store."""

import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple, overload

from core.ids import Classified, Refused, classify_benchmark_file, classify_session_file, is_text, shown
from core.run_status import TERMINAL, status_from_event, status_from_session
from daemon import identity, parse, reader
from daemon.offloop import OffLoop
from daemon.parse import BadInput, ParsedLine
from daemon.reader import Checkpoint, Line, NotAFile
from daemon.storage import Store
from daemon.storage.records import (
    BenchmarkDefinition,
    EventRow,
    LogAggregates,
    Run,
    SessionResult,
    SessionUpdate,
    ToolCall,
    ToolCallEnd,
)

log = logging.getLogger("reev.ingest")


@dataclass(frozen=True)
class Limits:
    max_line_bytes: int = 8 << 20          # a longer event line is bad input
    # A larger session file is bad input: storing one takes about 8 times its size in memory
    # for a moment (its text, its final_result, and SQLite's copies of both); reev's are KBs.
    max_session_bytes: int = 8 << 20
    # A larger benchmark definition is bad input: YAML takes about 100 times its size in memory
    # and a second a megabyte to parse (libyaml); reev's are a few KB.
    max_benchmark_bytes: int = 256 << 10
    read_budget_bytes: int = 8 << 20       # per file per batch, so one huge file can't stall others
    settle_seconds: float = 2.0            # an invalid document that stays unchanged this long is an error


class Outcome(NamedTuple):
    lines: int = 0                         # event lines stored
    more: bool = False                     # the read budget stopped short: process again
    retry_at: float | None = None          # wall-clock time to look again (unsettled document)
    bytes_read: int = 0                    # what this file cost the batch
    bad_lines: int = 0                     # lines recorded as bad input


class Scanned(NamedTuple):
    """What the reconcile scan found out about a path it queued."""
    what: Classified | Refused
    checkpoint: Checkpoint | None


class Ingestor:
    def __init__(self, store: Store, sessions_dir: Path, benchmarks_dir: Path, limits: Limits,
                 parses: "OffLoop[parse.ParsedBenchmark] | None" = None):
        """`parses` parses benchmark definitions off the loop (its `done` queues them again)."""
        self.store = store
        self.parses = parses or OffLoop(done=lambda path: None)
        self.sessions_dir = sessions_dir
        self.benchmarks_dir = benchmarks_dir
        # A folder whose path is not UTF-8 is not read: the database holds paths as text (the
        # service warns about the folder, once, rather than about each of its files).
        self._sessions_str, self._benchmarks_str = (str(d) if is_text(str(d)) else None
                                                    for d in (sessions_dir, benchmarks_dir))
        self.limits = limits
        self.requeue: set[str] = set()    # paths to look at again after this batch commits

    def take_requeue(self) -> set[str]:
        paths, self.requeue = self.requeue, set()
        return paths

    def classify(self, path: str) -> Classified | Refused | None:
        """What a path is, if it is directly inside one of the watched folders (that are read)."""
        folder, name = os.path.split(path)     # str, not pathlib: this runs for every file
        if folder == self._sessions_str:
            return classify_session_file(name)
        if folder == self._benchmarks_str:
            return classify_benchmark_file(name)
        return None

    def process(self, path: str, scanned: Scanned | None = None, ahead: "FileRead | None" = None) -> Outcome:
        """Bring the database up to date with one file. Runs inside Store.batch().

        A session file or event log without a checkpoint is read from its first byte by
        read_new_file, here or beforehand by the read worker (`ahead`, read while it
        had no checkpoint)."""
        what = self.classify(path) if scanned is None else scanned.what
        if what is None:
            return Outcome()
        if isinstance(what, Refused):
            self._refused(path, what)
            return Outcome()
        cp = self.store.checkpoint(path) if scanned is None else self.store.checkpoint(path, scanned.checkpoint)
        if cp is None and what.kind != "benchmark":
            if ahead is None:
                ahead = read_new_file(path, what, self.reserve(what), self.limits)
            return self._new_file(path, what, ahead)
        try:
            fd, st = reader.open_regular(path)
        except NotAFile as e:
            self._not_readable(path, what, cp, str(e), e.retry)
            return Outcome()
        try:
            if what.kind == "events":
                assert cp is not None     # (an event log without one was read as a new file above)
                return self._event_log(path, what.subject_id, fd, st, cp)
            return self._document(path, what, fd, st, cp)
        finally:
            os.close(fd)

    def reserve(self, what: Classified) -> int | None:
        """The execution id an event log's rows will carry (reserved if the run is new)."""
        return self.store.reserve_execution_id(what.subject_id) if what.kind == "events" else None

    def _new_file(self, path: str, what: Classified, read: "FileRead") -> Outcome:
        if isinstance(read, NotReadable):
            if what.kind == "events":
                self.store.drop_reservation(what.subject_id)    # no execution: nothing to read
            self._not_readable(path, what, None, read.reason, read.retry)
            return Outcome()
        if isinstance(read, LogRead):     # (an event log's read: a session file's is a DocumentRead)
            exec_id = self.store.reserve_execution_id(what.subject_id)
            if read.exec_id != exec_id:   # read ahead with an id lost since (Store.reserve_execution_id):
                # read again, as if it had not been read ahead (the file may be gone by now)
                return self._new_file(path, what, read_new_file(path, what, exec_id, self.limits))
            run = self.store.execution(what.subject_id)
            return self._store_log(path, what.subject_id, run, Checkpoint(), read)
        return self._store_document(path, what, read)

    # ------------------------------------------------------------------ not a readable file

    def _refused(self, path: str, what: Refused):
        """A name of ours that cannot be ingested: one error (under the name as it can be shown:
        the database holds text, and a file name need not be UTF-8); the file is not opened."""
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                return            # folders are never ours, whatever their name
        except OSError:
            return                # gone: nothing to say
        if self.store.error_reason(path) != what.reason and self.store.record_error(path, 0, 0, what.reason):
            log.warning("%s: %s", shown(path), what.reason)

    def read_failed(self, path: str, scanned: Scanned | None, error: OSError):
        """Reading a file failed midway (an I/O error): what it had done is undone (the
        caller's savepoint), and the file is tried again, as one that cannot be opened."""
        what = self.classify(path) if scanned is None else scanned.what
        if isinstance(what, Classified):
            self._not_readable(path, what, self.store.checkpoint(path), reader.os_reason(error), retry=True)

    def _not_readable(self, path: str, what: Classified, cp: Checkpoint | None, reason: str, retry: bool):
        st = None
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            reason = NotAFile.VANISHED
        except OSError:
            pass
        if reason in (NotAFile.VANISHED, NotAFile.DIRECTORY):
            # Gone, or a folder (folders are not ours, whatever their name): nothing is deleted
            # because a file went away; a benchmark is marked removed. Not while its folder is
            # not there: then it is out of reach, not gone (reader.folder_is_there).
            if not reader.folder_is_there(path):
                return
            if cp is not None and self.store.set_file_state(path, "missing"):
                self.store.mark_changed()
                log.info("%s: file is gone; its rows are kept", path)
            if what.kind == "benchmark":
                released = self.store.benchmark_ids_of(path)
                self.store.remove_benchmarks_of(path)
                self._released_benchmark_ids(released)
            return
        reason = f"cannot read: {reason}"
        if retry or st is None:
            # A file that cannot be read now (permissions, I/O) may become readable without
            # changing: it is left pending, which every scan (and SIGHUP, and the next run) looks
            # at again, and its error goes once it reads. Its checkpoint stays as it was (where
            # reading stopped, and what it read), so that it is then read on from there if it is
            # still the same file. Nothing is written while it stays pending.
            if cp is not None and cp.state == "pending" and self.store.error_reason(path) == reason:
                return
            if cp is None:
                self.store.save_checkpoint(path, what.kind, what.subject_id, Checkpoint(state="pending"),
                                           ingested=False)
            else:
                self.store.set_file_state(path, "pending")
        else:
            # A symlink, FIFO or socket: an error, recorded once; the checkpoint holds its lstat,
            # which the scans compare with: not queued again until it changes (and read from
            # its first byte once it is a regular file: another inode).
            if cp is not None and cp.state == "error" and identity.unchanged(st, cp) \
                    and self.store.error_reason(path) == reason:
                return
            # offset = size: nothing of it counts as bytes still to read
            self.store.save_checkpoint(path, what.kind, what.subject_id, Checkpoint(
                dev=st.st_dev, inode=st.st_ino, size=st.st_size, offset=st.st_size,
                mtime_ns=st.st_mtime_ns, state="error"), ingested=False)
        self.store.mark_changed()
        if self.store.record_error(path, 0, 0, reason):
            log.warning("%s: %s", path, reason)

    # ------------------------------------------------------------------ event logs

    def _event_log(self, path: str, execution_id: str, fd: int, st: os.stat_result, cp: Checkpoint) -> Outcome:
        """A tracked event log: read on from its checkpoint, or again from its first byte."""
        run = self.store.execution(execution_id)
        exec_id = run.id
        if cp.state != "ok":
            # It reads now (it was gone, could not be read, or was a symlink): its error goes;
            # if it is the file the checkpoint describes, it is read on from there.
            self.store.clear_file_error(path)
        reason = identity.change_reason(fd, st, cp)
        if reason:
            log.info("%s: %s; reading it again from the start", path, reason)
            self.store.reset_event_log(exec_id)
            self.store.clear_line_errors(path)
            cp = Checkpoint(state=cp.state)
        elif cp.state == "ok" and identity.unchanged(st, cp):
            return Outcome()
        # Read from the first line, nothing earlier can be open (the common back-fill case).
        earlier = NOTHING_EARLIER if not cp.line_no else EarlierCalls(
            partial(self.store.open_tool_inputs, exec_id), partial(self.store.last_legacy_calls, exec_id))
        return self._store_log(path, execution_id, run, cp, read_event_log(fd, st, cp, exec_id, earlier,
                                                                          self.limits))

    def _store_log(self, path: str, execution_id: str, run: Run, cp: Checkpoint, read: "LogRead") -> Outcome:
        """Write what reading an event log from `cp` gave, with its new checkpoint."""
        _, new_cp, more, rows, _ = read
        stored = bad = 0
        if rows is not None:
            rows.write(self.store, run.id)
            status = status_from_event(run.status, run.stalled)   # a new line: its runner is back
            if status != run.status:
                self.store.set_status(run.id, status)
            for err in rows.errors:
                if self.store.record_error(path, err.line, err.offset, err.reason):
                    log.warning("%s:%d: %s (byte offset %d)", path, err.line, err.reason, err.offset)
            stored, bad = len(rows.events), len(rows.errors)
            log.debug("%s: %d lines to line %d", path, stored, new_cp.line_no)
        if cp.state != "ok" or rows is not None or new_cp.offset != cp.offset or cp.inode is None:
            self.store.mark_changed()
        self.store.save_checkpoint(path, "events", execution_id, new_cp, ingested=rows is not None)
        return Outcome(lines=stored, more=more, bytes_read=new_cp.size - cp.offset, bad_lines=bad)

    # ------------------------------------------------------------------ whole documents

    def _document(self, path: str, what: Classified, fd: int, st: os.stat_result, cp: Checkpoint | None) -> Outcome:
        if not identity.needs_look(st, cp):
            return Outcome()
        known = cp.content_hash if cp is not None and cp.state == "ok" else None
        read = read_document_file(fd, st, what, self.limits, known, partial(self._parse_benchmark, path, what))
        if read is None:
            return Outcome()        # being parsed off the loop: queued again once it is
        return self._store_document(path, what, read)

    def _parse_benchmark(self, path: str, what: Classified, data: bytes,
                         digest: bytes) -> parse.ParsedBenchmark | Exception | None:
        return self.parses.result(path, digest, partial(parse.parse_benchmark, data, what.subject_id))

    def _store_document(self, path: str, what: Classified, read: "DocumentRead") -> Outcome:
        st = read.st
        if read.error is not None:
            return self._bad_document(path, what, st, read.error, settle=read.settle)
        new_cp = Checkpoint(dev=st.st_dev, inode=st.st_ino, size=st.st_size,
                            mtime_ns=st.st_mtime_ns, content_hash=read.digest, state="ok")
        if read.parsed is None:          # the content it had: only the file's identity changed
            self.store.save_checkpoint(path, what.kind, what.subject_id, new_cp, ingested=False)
            return Outcome()
        if isinstance(read.parsed, parse.ParsedSession):
            self._session(what.subject_id, read.parsed)
        else:
            duplicate = self._benchmark(path, read.parsed)
            if duplicate:
                return self._bad_document(path, what, st, duplicate, settle=False)
        self.store.clear_file_error(path)
        self.store.save_checkpoint(path, what.kind, what.subject_id, new_cp, ingested=True)
        log.debug("%s: ingested", path)
        return Outcome(bytes_read=read.size)

    def _bad_document(self, path: str, what: Classified, st: os.stat_result, reason: str,
                      settle: bool) -> Outcome:
        """reev writes session files non-atomically: an invalid document that is still changing
        is 'pending' and looked at again; only one that stays invalid is an error."""
        settled_at = st.st_mtime_ns / 1e9 + self.limits.settle_seconds
        pending = settle and time.time() < settled_at
        cp = Checkpoint(dev=st.st_dev, inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                        state="pending" if pending else "error")
        self.store.save_checkpoint(path, what.kind, what.subject_id, cp, ingested=False)
        if pending:
            log.debug("%s: not valid yet (%s); looking again when it settles", path, reason)
            return Outcome(retry_at=settled_at)
        if self.store.record_error(path, 0, 0, reason):
            log.warning("%s: %s", path, reason)
        return Outcome()

    def _session(self, execution_id: str, session: parse.ParsedSession):
        run = self.store.execution(execution_id)
        final = session.final
        status = status_from_session(run.status, run.stalled, final.success if final else None,
                                     final.status if final else None, final is not None)
        result = None if final is None else SessionResult(
            success=final.success, score=final.score, final_status=final.status,
            execution_time_ms=None if final.execution_time_ms is None else int(final.execution_time_ms),
            doc=session.final_doc)
        self.store.update_session(run.id, SessionUpdate(
            status=status, finished=status in TERMINAL, doc=session.doc,
            recorded_session_id=session.recorded_session_id, benchmark_id=session.benchmark_id,
            agent_type=session.agent_type, start_time=session.start_time, end_time=session.end_time,
            result=result))

    def _benchmark(self, path: str, parsed: parse.ParsedBenchmark) -> str | None:
        before = self.store.benchmark_ids_of(path)
        other = self.store.upsert_benchmark(BenchmarkDefinition(
            id=parsed.id, description=parsed.description, tags=parsed.tags, prompt=parsed.prompt,
            flow_steps=parsed.flow_steps, yaml_text=parsed.yaml_text), path)
        self._released_benchmark_ids([i for i in before if other is not None or i != parsed.id])
        if other is None:
            return None
        # (named within the folder, escaped: a reason holds no absolute path)
        by = repr(os.path.basename(other.path))
        if other.source is not None:
            by += f" of source {other.source!r}, which differs"
        return f"benchmark id {parsed.id!r} is already defined by {by}"

    def _released_benchmark_ids(self, ids: list[str]):
        """A file no longer defines these ids: a file refused as their duplicate may now define
        one. Such files are unchanged (so not read again by themselves): queue them."""
        if not ids:
            return
        for other in self.store.benchmark_files_in_error():
            self.store.set_file_state(other, "pending")
            self.requeue.add(other)


class EarlierCalls(NamedTuple):
    """What earlier reads of an event log left open: ToolInput lines still waiting for their
    output, oldest first; the older logger's last call line per tool."""
    open_inputs: Callable[[], list[int]]
    legacy_calls: Callable[[], dict[str, int]]


NOTHING_EARLIER = EarlierCalls(list, dict)


# ---------------------------------------------------------------------- reading (no database)

class LogRead(NamedTuple):
    """What reading an event log from a checkpoint gave: the advanced checkpoint, whether a
    limit stopped the read short, and the rows of the lines read (None: no complete line)."""
    st: os.stat_result          # the file when it was read
    checkpoint: Checkpoint
    more: bool
    rows: "EventRows | None"
    exec_id: int                # the execution id the rows carry


class DocumentRead(NamedTuple):
    """What reading a whole session or benchmark file gave."""
    st: os.stat_result
    size: int                   # bytes read
    digest: bytes | None        # content hash (None: not read)
    parsed: "parse.ParsedSession | parse.ParsedBenchmark | None"   # None: the known content, or bad
    error: str | None = None    # why it is bad input
    settle: bool = False        # ... which may change while the file is being written


class NotReadable(NamedTuple):
    """A path that is no regular file to read (gone, a folder, a symlink, a FIFO, ...), or a
    file that cannot be read now (`retry`: see NotAFile)."""
    reason: str
    retry: bool = False


FileRead = LogRead | DocumentRead | NotReadable


def read_event_log(fd: int, st: os.stat_result, cp: Checkpoint, exec_id: int, earlier: EarlierCalls,
                   limits: Limits) -> LogRead:
    lines, new_cp, more = reader.read_lines(fd, st, cp, limits.max_line_bytes, limits.read_budget_bytes)
    rows = EventRows.build(exec_id, lines, limits.max_line_bytes, earlier) if lines else None
    return LogRead(st, new_cp, more, rows, exec_id)


ParseBenchmark = Callable[[bytes, bytes], "parse.ParsedBenchmark | Exception | None"]


@overload
def read_document_file(fd: int, st: os.stat_result, what: Classified, limits: Limits, known: bytes | None,
                       parse_benchmark: None = None) -> DocumentRead: ...
@overload
def read_document_file(fd: int, st: os.stat_result, what: Classified, limits: Limits, known: bytes | None,
                       parse_benchmark: ParseBenchmark) -> DocumentRead | None: ...
def read_document_file(fd: int, st: os.stat_result, what: Classified, limits: Limits, known: bytes | None,
                       parse_benchmark: ParseBenchmark | None = None) -> DocumentRead | None:
    """Read and parse a whole document, unless its content hash is `known` (nothing changed).
    A benchmark is parsed by `parse_benchmark(data, digest)` (off the loop: OffLoop.result),
    which gives None until it is done: then so does this. Without one (read_new_file), the
    document is a session file, and there is always a read."""
    limit = limits.max_session_bytes if what.kind == "session" else limits.max_benchmark_bytes
    try:
        data = reader.read_document(fd, st, limit)
    except ValueError as e:
        return DocumentRead(st, 0, None, None, str(e), settle=False)
    digest = identity.digest(data)
    if digest == known:
        return DocumentRead(st, len(data), digest, None)
    parsed: parse.ParsedSession | parse.ParsedBenchmark | Exception | None
    try:
        if what.kind == "session":
            parsed = parse.parse_session_file(data)
        else:
            assert parse_benchmark is not None, "a benchmark definition is parsed by the caller's parse_benchmark"
            parsed = parse_benchmark(data, digest)
    except BadInput as e:
        parsed = e
    if parsed is None:
        return None
    if isinstance(parsed, BadInput):
        return DocumentRead(st, len(data), digest, None, str(parsed), settle=True)
    if isinstance(parsed, Exception):
        raise parsed              # a bug, met off the loop: this file's internal error
    return DocumentRead(st, len(data), digest, parsed)


def read_new_file(path: str, what: Classified, exec_id: int | None, limits: Limits) -> FileRead:
    """Read a session file or event log that has no checkpoint yet from its first byte, as
    Ingestor.process stores it; `exec_id`: the id an event log's rows carry
    (Ingestor.reserve), None for a session file. Touches no database, so the read worker
    runs it too."""
    try:
        fd, st = reader.open_regular(path)
    except NotAFile as e:
        return NotReadable(str(e), e.retry)
    try:
        if exec_id is not None:     # an event log
            return read_event_log(fd, st, Checkpoint(), exec_id, NOTHING_EARLIER, limits)
        return read_document_file(fd, st, what, limits, None)
    except OSError as e:      # an I/O error midway
        return NotReadable(reader.os_reason(e), retry=True)
    finally:
        os.close(fd)


class BadLine(NamedTuple):
    line: int
    offset: int
    reason: str


@dataclass
class EventRows:
    """The rows that a run of complete lines of one event log turns into (pure; no I/O).

    ToolOutput completes the most recent ToolInput still open (docs/formats.md §3a); an older-logger
    update line completes the most recent call of its tool (§3b).
    """

    events: list[EventRow]
    new_calls: list[ToolCall]
    completions: list[ToolCallEnd]
    errors: list[BadLine]
    steps: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    first_prompt: str | None = None
    recorded_session_id: str | None = None
    opened_here: dict[int, int] = field(default_factory=dict)  # ToolInput line → its new_calls index

    @classmethod
    def build(cls, exec_id: int, lines: list[Line], max_line_bytes: int, earlier: "EarlierCalls") -> "EventRows":
        """`earlier` gives what earlier reads left to pair with; each is asked only when these
        lines hold something to pair with it."""
        rows = cls([], [], [], [])
        parsed: list[tuple[Line, ParsedLine]] = []
        for line in lines:
            if line.data is None:
                rows.errors.append(BadLine(line.number, line.offset, f"line longer than {max_line_bytes} bytes"))
                continue
            try:
                p = parse.parse_event_line(line.data)
            except BadInput as e:
                rows.errors.append(BadLine(line.number, line.offset, str(e)))
                continue
            if p is not None:
                parsed.append((line, p))
        open_inputs = list(earlier.open_inputs()) if any(p.event_type == "ToolOutput" for _, p in parsed) else []
        # (keyed by tool_name, which a "tool_call" line always has: parse_event_line)
        legacy_calls: dict[str | None, int] = (dict(earlier.legacy_calls().items())
                                               if any(p.kind == "tool_call" for _, p in parsed) else {})
        for line, p in parsed:
            rows._add(exec_id, line, p, open_inputs, legacy_calls)
        return rows

    def _add(self, exec_id: int, line: Line, p: ParsedLine, open_inputs: list[int],
             legacy_calls: dict[str | None, int]):
        n, ts, f = line.number, p.ts, p.fields
        self.events.append(EventRow(exec_id, n, line.offset, p.kind, p.event_type, ts, p.doc))
        if ts is not None:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if self.recorded_session_id is None and p.session_id:
            self.recorded_session_id = p.session_id
        if p.kind == "event":
            if p.event_type == "Prompt" and self.first_prompt is None and f.prompt and f.prompt.user_prompt is not None:
                self.first_prompt = f.prompt.user_prompt
            elif p.event_type == "StepComplete":
                self.steps += 1
            elif p.event_type == "ToolInput" and f.tool_input is not None:
                self.opened_here[n] = len(self.new_calls)
                self.new_calls.append(ToolCall(exec_id, n, "input", output_line=None,
                                               tool_name=f.tool_input.tool_name, started_at=ts, ended_at=None,
                                               duration_ms=None, success=None, status=None, error_message=None))
                open_inputs.append(n)
            elif p.event_type == "ToolOutput" and f.tool_output is not None:
                out = f.tool_output
                if open_inputs:   # the duration follows from the two timestamps (the store's rule)
                    opened = open_inputs.pop()
                    at = self.opened_here.get(opened)
                    if at is None:     # opened by an earlier read: complete the stored row
                        self.completions.append(ToolCallEnd(
                            exec_id, opened, output_line=n, ended_at=ts, duration_ms=None, success=out.success,
                            status=None, error_message=out.error_message))
                    else:              # opened in these lines: complete it before it is written
                        call = self.new_calls[at]
                        call.output_line, call.ended_at = n, ts
                        call.success, call.error_message = out.success, out.error_message
                else:
                    self.new_calls.append(ToolCall(exec_id, n, "output", output_line=n, tool_name=None,
                                                   started_at=None, ended_at=ts, duration_ms=None,
                                                   success=out.success, status=None,
                                                   error_message=out.error_message))
        elif p.kind == "tool_call":
            success = None if f.status is None else f.status == "success"
            earlier = legacy_calls.get(f.tool_name)
            if parse.is_empty_json(f.input_params) and earlier is not None:
                # The update line is written when the call ends and carries its real duration.
                self.completions.append(ToolCallEnd(
                    exec_id, earlier, output_line=n, ended_at=ts, duration_ms=f.execution_time_ms, success=success,
                    status=f.status, error_message=f.error_message))
            else:
                ended = ts + f.execution_time_ms / 1000 if ts is not None and f.execution_time_ms is not None else None
                # its output (if any) is on this line: output_line says where tool_calls_io finds it
                self.new_calls.append(ToolCall(exec_id, n, "legacy",
                                               output_line=None if f.output_result == parse.NULL else n,
                                               tool_name=f.tool_name, started_at=ts, ended_at=ended,
                                               duration_ms=f.execution_time_ms, success=success, status=f.status,
                                               error_message=f.error_message))
                legacy_calls[f.tool_name] = n

    def write(self, store: Store, exec_id: int):
        store.insert_events(self.events)
        if self.new_calls:
            store.insert_tool_calls(self.new_calls)     # before completions: they may complete these
        if self.completions:
            store.complete_tool_calls(self.completions)
        store.add_event_aggregates(exec_id, LogAggregates(
            lines=len(self.events), tool_calls=len(self.new_calls), steps=self.steps, first_ts=self.first_ts,
            last_ts=self.last_ts, first_prompt=self.first_prompt, recorded_session_id=self.recorded_session_id))
