"""What the daemon asks of its storage: the `Store` protocol, the records that cross it, and
its errors (errors.py). ingest.py, service.py and stale.py import only this; a backend
(daemon/storage/sqlite/ today) implements it, and nothing else changes for a second one.

For a second backend's author, what every implementation must guarantee:

The unit of work. `batch()` is one write transaction: everything written inside it commits
together or not at all. A file's checkpoint (`save_checkpoint`) and the rows read from the
bytes it covers are written in the same batch: that is the daemon's exactly-once guarantee
(a crash or a StorageError leaves the checkpoint where the committed rows end, and the file
is read on from there). Nothing commits on its own, except `set_started` and `heartbeat`
(outside batches, each its own short transaction). `savepoint()`, inside a batch, isolates
one file's work: an exception inside it undoes that file's writes and what the file did to
the store's own memory (the new executions below) and is raised again; the batch goes on.
An engine error that loses the whole transaction (a full disk mid-statement) is raised as is,
and `batch()` then has nothing left to roll back.

Errors. Every method raises StorageError (Unavailable, Busy, Full, Corrupt, Incompatible) for
a failure of the database, never the engine's own exception: the service loop rolls the
batch back, backs off and retries. Any other exception is a bug on one file (the loop records
it as that file's internal error).

Generations. `generation` is the last committed data generation; a batch in which anything
changed (`mark_changed()`, or a method that says it marks) commits it +1, with the rows. Rows
changed in a batch carry the generation it commits (executions.changed_generation), and so
do the change feed and the ETag scopes (docs/storage.md: where each rule lives). A batch that
changed nothing commits no new generation.

Execution ids. `execution(execution_id)` gives the run's compact id and status, creating a
Running one if it is new (it may stay in memory until the batch commits; reads inside the
batch must see it). `reserve_execution_id` hands out the id `execution` will give, without
creating the run, so that rows can be built before the batch (the read worker): an id is
never handed out twice, not even one a rolled-back batch or an unused reservation lost. A
reservation is dropped when the batch that created its run rolls back; whoever built rows
with it compares ids (`Run.id`) and builds them again.

Derived columns (created_at, updated_at, the effective benchmark, a tool call's duration) are
the store's to keep, as daemon/storage/sqlite/derived.py defines them. The domain rules
(per-agent statistics, ETag scopes, the change feed) are kept in the batch's own transaction,
right after each write that can change what they look at, by running the statements of
daemon/storage/rules.py: SQL both SQLite and PostgreSQL accept, for a second backend to reuse.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from enum import Enum
from typing import Final, Protocol

from daemon.reader import Checkpoint
from daemon.storage.records import (
    BenchmarkDefinition,
    Definer,
    EventRow,
    LogAggregates,
    Run,
    SessionUpdate,
    StaleCandidate,
    ToolCall,
    ToolCallEnd,
)


class NotLookedUp(Enum):
    """Store.checkpoint(): no scanned checkpoint given (a sentinel: None is a scanned answer)."""
    NOT_LOOKED_UP = "not looked up"


NOT_LOOKED_UP: Final = NotLookedUp.NOT_LOOKED_UP


class Store(Protocol):
    generation: int           # the last committed data generation
    changed: bool             # the batch in hand changed data (commits generation + 1)
    marked_missing: int       # files found gone since the store opened (the scan counts them)
    # Following live files, a batch stops taking files once it has run this long: a line becomes
    # visible when its batch commits, so latency wants short batches, as short as the engine's
    # cost per commit allows.
    live_batch_seconds: float

    # ---------------------------------------------------------------- the unit of work

    def batch(self) -> AbstractContextManager["Store"]:
        """One write transaction (see the module's docstring)."""

    def savepoint(self) -> AbstractContextManager[None]:
        """One file's work inside a batch, undone alone if it raises."""

    def mark_changed(self):
        """The batch in hand changed data: it commits a new generation."""

    def close(self):
        """Let go of the database (after the last batch)."""

    def tune(self, catching_up: bool):
        """A hint: catching up (throughput) or following live files (latency). May do nothing."""

    def abandon(self):
        """The database path no longer names the database open (deleted, replaced): leave
        nothing of it beside the path that a new database there could be paired with."""

    # ---------------------------------------------------------------- meta (outside batches)

    def set_started(self, now: float):
        """The daemon started, now (and its heartbeat): a transaction of its own."""

    def heartbeat(self, now: float):
        """The daemon is alive, now: a transaction of its own."""

    def add_counters(self, **amounts: float):
        """Add to the ingest counters /metrics and `status` show (lines_ingested_total=...,
        retried_batches_total=..., ...), in the batch."""

    # ---------------------------------------------------------------- files and checkpoints

    def checkpoint(self, path: str, scanned: Checkpoint | None | NotLookedUp = NOT_LOOKED_UP) -> Checkpoint | None:
        """The file's checkpoint, None if it is not tracked. `scanned`: what the reconcile scan
        read for it before this batch, which stays true unless this batch wrote it since."""

    def save_checkpoint(self, path: str, kind: str, subject_id: str, cp: Checkpoint, ingested: bool):
        """Track the file (kind: 'events', 'session' or 'benchmark'; subject_id: its execution
        id or benchmark file stem) with this checkpoint. `ingested`: rows from it are in this
        batch (its ingested_at moves)."""

    def set_file_state(self, path: str, state: str) -> bool:
        """The file's state ('ok', 'pending', 'error', 'missing'); True when it changed."""

    def take_oldest_log_mtime(self) -> int | None:
        """The oldest mtime (ns) of the event-log checkpoints saved since the last call."""

    def count_present(self, seen_before: float) -> int:
        """Files tracked since before `seen_before` (wall time) and not known to be gone."""

    def present_paths(self) -> Iterator[str]:
        """Those files' paths, in an order that does not hold the database while iterated."""

    def event_logs(self, execution_id: str) -> list[tuple[str, Checkpoint]]:
        """The event logs tracked for a run, with their checkpoints."""

    def counts(self) -> tuple[int, int, int]:
        """(files tracked, input errors recorded, lag in bytes), for the one-line status. The
        lag: bytes of the event logs read (state ok) beyond their checkpoints, as of the last
        look at each."""

    # ---------------------------------------------------------------- input errors

    def record_error(self, path: str, line: int, byte_offset: int, reason: str) -> bool:
        """Record bad input (line 0: the whole file), under the path as shown (core/ids.py);
        True if it is new or its reason changed. Marks the batch changed."""

    def error_reason(self, path: str) -> str | None:
        """The reason of the whole-file error recorded for the path, if any."""

    def clear_line_errors(self, path: str):
        """Forget the line errors of a file read again from its first byte."""

    def clear_file_error(self, path: str):
        """Forget the whole-file error of a file that has become valid."""

    # ---------------------------------------------------------------- executions

    def execution(self, execution_id: str) -> Run:
        """The run, created (Running) if new."""

    def look_up_executions(self, execution_ids: list[str]):
        """A hint, inside a batch: it will ask for these runs (execution, reserve_execution_id).
        A backend whose reads cost a round trip each may read them all at once. May do nothing."""

    def reserve_execution_id(self, execution_id: str) -> int:
        """The id execution() gives this run, in this batch or a later one, without creating it."""

    def drop_reservation(self, execution_id: str):
        """What was to be built with the reserved id will not be."""

    def drop_reservations(self):
        """Nothing built with a reserved id is left to store."""

    def update_session(self, exec_id: int, update: SessionUpdate):
        """What the run's session file gives it (its finished_at is set once, when it is first
        finished)."""

    def add_event_aggregates(self, exec_id: int, aggregates: LogAggregates):
        """What lines of the run's event log add to its row (counts, first and last times, the
        first prompt and session id if it has none yet)."""

    def set_status(self, exec_id: int, status: str, stale_reason: str | None = None):
        """A status no file gave: the stale rule's Timeout (with why), or Running again."""

    def stale_candidates(self, limit: int) -> list[StaleCandidate]:
        """At most `limit` Running runs with an event log and no session file, the quietest first."""

    def reset_event_log(self, exec_id: int):
        """Forget what the run's event log contributed, before reading it again from byte 0."""

    # ---------------------------------------------------------------- events and tool calls

    def insert_events(self, rows: list[EventRow]):
        """Event lines (a line stored again replaces itself)."""

    def insert_tool_calls(self, rows: list[ToolCall]):
        """Tool calls opened by these lines (before completions: they may complete these)."""

    def complete_tool_calls(self, rows: list[ToolCallEnd]):
        """Tool calls opened by earlier lines, completed by these (a call's duration, when its
        line gives none, is the time between its two lines)."""

    def open_tool_inputs(self, exec_id: int) -> list[int]:
        """Lines of the run's ToolInputs still waiting for their output, oldest first."""

    def last_legacy_calls(self, exec_id: int) -> dict[str, int]:
        """tool_name → line of its most recent older-logger call."""

    # ---------------------------------------------------------------- benchmarks

    def upsert_benchmark(self, benchmark: BenchmarkDefinition, path: str) -> Definer | None:
        """Store a definition read from `path`; the other file that already defines its id, if one
        does: then nothing is stored, and `path` no longer defines what it defined before (its
        old ids are removed unless another file defines them): a file's content is what it
        defines, and an old definition left standing would refuse the next file that has it."""

    def benchmark_ids_of(self, path: str) -> list[str]:
        """The ids a benchmark file defines now."""

    def benchmark_files_in_error(self) -> list[str]:
        """Benchmark files whose state is 'error'."""

    def benchmark_files_to_look_at_again(self) -> list[str]:
        """Benchmark files in error that another writer's change may have settled: with several
        daemons, a file refused because another source defined its id differently is accepted
        once that source has changed its definition or dropped it. The files in error the first
        time, then again only when the benchmarks changed since the last call (a cheap look when
        they did not); when they changed, this source's runs known only by their prompt are
        linked again first (another source may have added or removed their benchmark). One
        writer (SQLite): none, since its own changes requeue and re-link already."""

    def remove_benchmarks_of(self, path: str):
        """The file no longer defines anything: its benchmarks are marked removed (kept)."""
