"""GET /api/v1/stream: Server-Sent Events from the daemon's change feed (the `changes` table).

One watcher per worker process polls the data generation (one tiny read, no writes); when it
moves, the watcher reads the new changes once, keeps the most recent ones in memory and wakes
the open streams, which take what they have not sent from there: one read per change however
many clients listen. A stream that is further behind (it resumed from an old Last-Event-ID)
reads its backlog itself. Every read is a short transaction that ends before anything is
written to a client, so a slow or vanished client never holds a snapshot open. The event id
is the change's `seq`: a client reconnecting with Last-Event-ID resumes without gaps or
repeats.
"""

import asyncio
import bisect
import collections
import itertools
import logging
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import msgspec

from api.db import Database, DatabaseUnavailable, QueryTimeout

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

    def accepts(self, row: dict) -> bool:
        if row["kind"] not in self.types:
            return False
        if row["kind"] == "execution":
            return ((self.execution_id is None or row["execution_id"] == self.execution_id)
                    and (self.benchmark_id is None or row["benchmark_id"] == self.benchmark_id))
        # an error that was cleared since (its file became valid) is no longer news
        return self.execution_id is None and self.benchmark_id is None and row["error_id"] is not None


class GenerationWatcher:
    """Polls the data generation and wakes every waiting stream when it changes."""

    def __init__(self, db: Database):
        self.db = db
        self.generation: int | None = None
        self.recent: collections.deque[dict] = collections.deque(maxlen=RECENT)
        self.last_seq: int | None = None      # the newest change read (None: not started)
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
                with self.db.snapshot() as q:
                    generation = q.generation()
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
            if self.last_seq is None:
                self.last_seq = await anyio.to_thread.run_sync(last_seq, self.db)
                return
            while True:
                rows = await anyio.to_thread.run_sync(read_changes, self.db, self.last_seq, READ_LIMIT)
                self.recent.extend(rows)
                if rows:
                    self.last_seq = rows[-1]["seq"]
                if len(rows) < READ_LIMIT // 2:
                    return
        except (DatabaseUnavailable, QueryTimeout) as e:
            log.debug("watcher: %s", e)

    def changes_after(self, after: int) -> list[dict] | None:
        """The changes after `after` from memory, or None when the stream is further behind
        than what is kept (or the watcher has not read anything yet)."""
        if self.last_seq is None or after < (self.recent[0]["seq"] - 1 if self.recent else self.last_seq):
            return None
        if after >= self.last_seq:
            return []
        i = bisect.bisect_right(self.recent, after, key=lambda r: r["seq"])
        return list(itertools.islice(self.recent, i, None))

    async def wait(self, timeout: float):
        """Until the generation moves (or shutdown), at most `timeout` seconds."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
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


def read_changes(db: Database, after: int, limit: int) -> list[dict]:
    """Whole generations of changes after `after` (a generation is never split between reads,
    so collapsing by generation below is exact)."""
    with db.snapshot() as q:
        rows = q.changes_after(after, limit)
        if len(rows) == limit:
            last = rows[-1]["generation"]
            if rows[0]["generation"] != last:
                rows = [r for r in rows if r["generation"] != last]
            else:     # one generation larger than the limit (a back-fill batch): all of it
                rows += q.changes_after(rows[-1]["seq"], None, generation=last)
    return rows


def last_seq(db: Database) -> int:
    """The newest change's seq (0: none yet)."""
    with db.snapshot() as q:
        return q.last_change()


def collapse(rows: list[dict]) -> list[dict]:
    """Within one committed generation, only the last change of each execution is a state a
    reader could ever have seen: keep that one (its seq still covers the ones before it)."""
    last_of: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        if r["kind"] == "execution":
            last_of[(r["generation"], r["execution_id"])] = i
    return [r for i, r in enumerate(rows)
            if r["kind"] != "execution" or last_of[(r["generation"], r["execution_id"])] == i]


def format_event(row: dict, summary, error) -> bytes:
    data = summary(row) if row["kind"] == "execution" else error(row)
    return (f"id: {row['seq']}\nevent: {row['kind']}\ndata: ".encode()
            + msgspec.json.encode(data) + b"\n\n")


async def event_stream(db: Database, watcher: GenerationWatcher, filt: StreamFilter, after: int,
                       summary, error, heartbeat: float) -> AsyncIterator[bytes]:
    """`heartbeat`: seconds between comment lines that keep proxies and clients from timing out."""
    yield b"retry: 2000\n\n"
    next_beat = time.monotonic() + heartbeat
    while not watcher.stopping:
        rows = watcher.changes_after(after)
        if rows is None:              # behind what the watcher keeps: read the backlog
            try:
                rows = await anyio.to_thread.run_sync(read_changes, db, after, READ_LIMIT)
            except (DatabaseUnavailable, QueryTimeout) as e:
                log.debug("stream: %s", e)
                rows = []
        for row in collapse(rows):
            if filt.accepts(row):
                yield format_event(row, summary, error)
        if rows:
            after = rows[-1]["seq"]
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


def take_a_stream_slot(app):
    """Route middleware of the stream: a slot is taken before the route runs, counted and taken
    with no await between (so a burst of requests cannot all pass the count before any takes
    one), and given back when the answer ends however it ends (the client left, a bad
    parameter, the worker stopping)."""

    async def middleware(scope, receive, send):
        slots: StreamSlots = scope["litestar_app"].state.stream_slots
        if slots.taken >= slots.limit:
            raise TooManyStreams(f"too many open event streams ({slots.limit} per worker); try again later")
        slots.taken += 1
        try:
            await app(scope, receive, send)
        finally:
            slots.taken -= 1

    return middleware
