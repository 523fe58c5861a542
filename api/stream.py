"""GET /api/v1/stream: Server-Sent Events from the daemon's change feed (the `changes` table).

One watcher per worker process polls the data generation (one tiny read, no writes); when it
moves, the watcher reads the new changes once, keeps the most recent ones in memory and wakes
the open streams, which take what they have not sent from there: one read per change however
many clients listen. A stream that is further behind (it resumed from an old Last-Event-ID)
reads its backlog itself. Every read is a short transaction that ends before anything is
written to a client, so a slow or vanished client never holds a snapshot open.

The event id is `<database id>:<seq>`: the change's number in the database it came from. A
client reconnecting with Last-Event-ID resumes without gaps or repeats; one whose id is of
another database (rebuilt, replaced, restored from a backup: its changes are numbered from 1
again) starts over from the oldest change kept, as one whose id was pruned does, instead of
waiting for numbers it has already seen. When the watcher finds the database replaced under
open streams, it ends them, and their clients come back with their ids to be told the same.
"""

import asyncio
import bisect
import collections
import contextlib
import itertools
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

from api.db import ChangeRow, Database, DatabaseUnavailable, QueryTimeout

log = logging.getLogger("reev.api.stream")

POLL_SECONDS = 0.02          # how often the watcher looks at the generation
READ_LIMIT = 500             # changes read per transaction
RECENT = 5000                # changes the watcher keeps in memory for the streams
EVENT_TYPES = ("execution", "ingest-error")


@dataclass(frozen=True)
class StreamFilter:
    execution_id: str | None = None
    benchmark_id: str | None = None
    types: frozenset[str] = frozenset(EVENT_TYPES)

    def accepts(self, row: ChangeRow) -> bool:
        if row.kind not in self.types:
            return False
        if row.kind == "execution":
            return ((self.execution_id is None or row.execution_id == self.execution_id)
                    and (self.benchmark_id is None or row.benchmark_id == self.benchmark_id))
        # an error that was cleared since (its file became valid) is no longer news
        return self.execution_id is None and self.benchmark_id is None and row.error_id is not None


class GenerationWatcher:
    """Polls the data generation and wakes every waiting stream when it changes."""

    def __init__(self, db: Database):
        self.db = db
        self.generation: tuple[str | None, int] | None = None     # the database's identity and generation
        self.recent: collections.deque[ChangeRow] = collections.deque(maxlen=RECENT)
        self.last_seq: int | None = None      # the newest change read (None: not started)
        self.database_id: str | None = None   # of the database those changes are in
        self.database_serial = 0              # +1 each time another database is found
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.stopping = False

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.end_streams_on_shutdown_signals()

    async def stop(self):
        self.stopping = True
        self._changed.set()
        if self._task:
            self._task.cancel()

    async def _run(self):
        while not self.stopping:
            try:
                with self.db.lookup() as q:      # (another database may be at the same generation)
                    generation = (q.database_id, q.generation())
            except (DatabaseUnavailable, QueryTimeout):
                generation = None
            if generation != self.generation:
                self.generation = generation
                await self._read_new_changes()
                self._changed.set()
                self._changed = asyncio.Event()
            await asyncio.sleep(POLL_SECONDS)

    async def _read_new_changes(self):
        try:
            database_id, newest = await anyio.to_thread.run_sync(position, self.db)
            if self.last_seq is None or not same_numbers(self.database_id, self.last_seq, database_id, newest):
                if self.last_seq is not None:
                    log.info("the database is not the one read so far (rebuilt or replaced): its open event"
                             " streams end, and their clients resume by their event ids")
                    self.database_serial += 1    # ends the streams started before
                self.database_id, self.last_seq = database_id, newest
                self.recent.clear()
                return
            while True:
                rows = await anyio.to_thread.run_sync(read_changes, self.db, self.last_seq, READ_LIMIT)
                self.recent.extend(rows)
                if rows:
                    self.last_seq = rows[-1].seq
                if len(rows) < READ_LIMIT // 2:
                    return
        except (DatabaseUnavailable, QueryTimeout) as e:
            log.debug("watcher: %s", e)

    def changes_after(self, after: int) -> list[ChangeRow] | None:
        """The changes after `after` from memory, or None when the stream is further behind
        than what is kept (or the watcher has not read anything yet)."""
        if self.last_seq is None or after < (self.recent[0].seq - 1 if self.recent else self.last_seq):
            return None
        if after >= self.last_seq:
            return []
        i = bisect.bisect_right(self.recent, after, key=lambda r: r.seq)
        return list(itertools.islice(self.recent, i, None))

    async def wait(self, timeout: float):
        """Until the generation moves (or shutdown), at most `timeout` seconds."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def end_streams_on_shutdown_signals(self):
        """The server drains open requests before it stops, and a stream never ends by itself:
        end them when the worker is told to stop. The server's own handler for the signal is
        kept and still called (asyncio allows one handler per signal, so it is chained)."""
        loop = asyncio.get_running_loop()
        handlers = getattr(loop, "_signal_handlers", {})
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = handlers.get(sig)

            def on_signal(previous=previous):
                self.stopping = True
                self._changed.set()
                if previous is not None:
                    previous._run()

            loop.add_signal_handler(sig, on_signal)


def read_changes(db: Database, after: int, limit: int) -> list[ChangeRow]:
    """Whole generations of changes after `after` (a generation is never split between reads,
    so collapsing by generation below is exact)."""
    with db.snapshot() as q:
        rows = q.changes_after(after, limit)
        if len(rows) == limit:
            last = rows[-1].generation
            if rows[0].generation != last:
                rows = [r for r in rows if r.generation != last]
            else:     # one generation larger than the limit (a back-fill batch): all of it
                rows += q.changes_after(rows[-1].seq, None, generation=last)
    return rows


def position(db: Database) -> tuple[str | None, int]:
    """The database's identity and its newest change's seq (0: none yet)."""
    with db.snapshot() as q:
        return q.database_id, q.last_change()


def same_numbers(database_id: str | None, seq: int, now_id: str | None, newest: int) -> bool:
    """Whether change `seq` of database `database_id` is a change of the database now (whose
    identity is `now_id` and newest change `newest`). The identity tells another database; a
    change beyond the newest one tells one that went back (a backup restored: same identity) or
    an id from elsewhere. (None: a database older than identities, until a daemon gives it one.)"""
    return (database_id is None or now_id is None or database_id == now_id) and seq <= newest


def resume_after(given: tuple[str | None, int] | None, database_id: str | None, newest: int) -> int:
    """The seq after which a new stream starts: `newest` when no Last-Event-ID was given (only
    what happens from now on), the one given (parsed) when it is this database's, else 0 (from
    the oldest change kept)."""
    if given is None:
        return newest
    given_id, seq = given
    return seq if same_numbers(given_id, seq, database_id, newest) else 0


@dataclass(frozen=True)
class Start:
    """Where a stream starts: after change `after` of database `database_id`, which the watcher
    knew as `serial` (its database_serial, taken before the database was read)."""
    serial: int
    database_id: str | None
    after: int


def start_of_stream(db: Database, watcher: "GenerationWatcher", given: tuple[str | None, int] | None) -> Start:
    serial = watcher.database_serial
    database_id, newest = position(db)
    return Start(serial, database_id, resume_after(given, database_id, newest))


def collapse(rows: list[ChangeRow]) -> list[ChangeRow]:
    """Within one committed generation, only the last change of each execution is a state a
    reader could ever have seen: keep that one (its seq still covers the ones before it)."""
    last_of: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        if r.kind == "execution":
            last_of[(r.generation, r.execution_id)] = i
    return [r for i, r in enumerate(rows)
            if r.kind != "execution" or last_of[(r.generation, r.execution_id)] == i]


def format_event(row: ChangeRow, database_id: str | None, summary, error) -> bytes:
    data = summary(row) if row.kind == "execution" else error(row)
    event_id = f"{database_id}:{row.seq}" if database_id else str(row.seq)
    return (f"id: {event_id}\nevent: {row.kind}\ndata: ".encode()
            + msgspec.json.encode(data) + b"\n\n")


async def event_stream(db: Database, watcher: GenerationWatcher, filt: StreamFilter, start: Start | None,
                       given: tuple[str | None, int] | None, summary, error,
                       heartbeat: float) -> AsyncIterator[bytes]:
    """The changes after `start`, until the worker stops or the watcher finds another database
    than the one the stream started in. `start` None: the database could not be read when the
    stream was asked for; it starts once it can be, from the Last-Event-ID `given` (parsed).
    `heartbeat`: seconds between comment lines that keep proxies and clients from timing out."""
    yield b"retry: 2000\n\n"
    next_beat = time.monotonic() + heartbeat
    after = start.after if start else 0
    while not watcher.stopping and (start is None or watcher.database_serial == start.serial):
        if start is None:
            with contextlib.suppress(DatabaseUnavailable, QueryTimeout):
                start = await anyio.to_thread.run_sync(start_of_stream, db, watcher, given)
                after = start.after
                continue
        else:
            rows = watcher.changes_after(after)
            if rows is None:              # behind what the watcher keeps: read the backlog
                try:
                    rows = await anyio.to_thread.run_sync(read_changes, db, after, READ_LIMIT)
                except (DatabaseUnavailable, QueryTimeout) as e:
                    log.debug("stream: %s", e)
                    rows = []
            for row in collapse(rows):
                if filt.accepts(row):
                    yield format_event(row, start.database_id, summary, error)
            if rows:
                after = rows[-1].seq
                continue                  # more may have come meanwhile: look before waiting
        await watcher.wait(max(0.0, next_beat - time.monotonic()))
        if time.monotonic() >= next_beat:
            yield b": keep-alive\n\n"
            next_beat = time.monotonic() + heartbeat


# ---------------------------------------------------------------------- the stream limit

class TooManyStreams(Exception):
    """A new stream past --max-streams (503)."""


class StreamSlots:
    """--max-streams: how many event streams this worker serves at once, and how many it does."""

    def __init__(self, limit: int):
        self.limit = limit
        self.taken = 0


def take_a_stream_slot(app: ASGIApp) -> ASGIApp:
    """Route middleware of the stream: a slot is taken before the route runs, counted and taken
    with no await between (so a burst of requests cannot all pass the count before any takes
    one), and given back when the answer ends however it ends (the client left, a bad
    parameter, the worker stopping)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        slots: StreamSlots = scope["litestar_app"].state.stream_slots
        if slots.taken >= slots.limit:
            raise TooManyStreams(f"too many open event streams ({slots.limit} per worker); try again later")
        slots.taken += 1
        try:
            await app(scope, receive, send)
        finally:
            slots.taken -= 1

    return middleware
