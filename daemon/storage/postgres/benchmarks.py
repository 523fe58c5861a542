"""Benchmarks, defined by the files of several sources: benchmark_sources says which source
defines which id, from which file, with what text. Identical definitions from several sources
are one benchmark; a different one from another source is refused (an ingest error on the file
that differs); a benchmark is marked removed when no source defines it any more. Benchmarks
are shared rows: a batch that writes them takes the change feed's lock first (unit_of_work.py),
so that two sources adding different definitions at once resolve as "the first committed wins"."""

import time
from collections.abc import Callable

import msgspec

from daemon.storage import rules
from daemon.storage.postgres.connection import one_row
from daemon.storage.postgres.unit_of_work import GENERATION, UnitOfWork
from daemon.storage.records import BenchmarkDefinition, Definer

# The shared row follows its definers: the file of the first source (by name) that defines it.
_SETTLE = (
    "UPDATE benchmarks b SET removed = CASE WHEN d.path IS NULL THEN 1 ELSE 0 END, path = coalesce(d.path, b.path),"
    " updated_at = %(now)s"
    " FROM (SELECT %(id)s::text AS id) k LEFT JOIN LATERAL (SELECT path FROM benchmark_sources s"
    "   WHERE s.benchmark_id = k.id ORDER BY s.source LIMIT 1) d ON true"
    " WHERE b.id = k.id AND (b.removed != CASE WHEN d.path IS NULL THEN 1 ELSE 0 END"
    "   OR b.path IS DISTINCT FROM coalesce(d.path, b.path)) RETURNING b.id")


class BenchmarkRepository(UnitOfWork):
    relink_unlinked: Callable[[], None]
    _benchmarks_seen: int | None = None     # the benchmarks' scope generation at the last look

    def upsert_benchmark(self, benchmark: BenchmarkDefinition, path: str) -> Definer | None:
        """Insert or update; returns the other file that already defines this id: another of
        this source's files, or another source's that defines it differently. The refused file's
        rows go (the source no longer defines what the file defined before): else an edit made
        on every host would be refused on each by the others' old text, for ever."""
        self._lock_feed()
        for source, other_path, yaml_text in self._execute(
                "SELECT source, path, yaml_text FROM benchmark_sources WHERE benchmark_id = %s ORDER BY source",
                (benchmark.id,)).fetchall():
            if (source == self.source and other_path != path) or \
                    (source != self.source and yaml_text != benchmark.yaml_text):
                self.remove_benchmarks_of(path)
                return Definer(other_path, None if source == self.source else source)
        now = time.time()
        self._execute(
            "INSERT INTO benchmark_sources (benchmark_id, source, path, yaml_text) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (benchmark_id, source) DO UPDATE SET path = excluded.path, yaml_text = excluded.yaml_text",
            (benchmark.id, self.source, path, benchmark.yaml_text))
        self._execute(
            "INSERT INTO benchmarks (id, path, description, tags, prompt, flow_steps, yaml_text, removed, updated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,0,%s) ON CONFLICT (id) DO UPDATE SET"
            " description = excluded.description, tags = excluded.tags, prompt = excluded.prompt,"
            " flow_steps = excluded.flow_steps, yaml_text = excluded.yaml_text, removed = 0,"
            " updated_at = excluded.updated_at",
            (benchmark.id, path, benchmark.description, _json_list(benchmark.tags), benchmark.prompt,
             benchmark.flow_steps, benchmark.yaml_text, now))
        self._settle([benchmark.id], now)
        self._keep_rules(rules.benchmark_written(benchmark.id, GENERATION))
        # A file whose id changed no longer defines the old one.
        self._settle([r[0] for r in self._execute(
            "DELETE FROM benchmark_sources WHERE source = %s AND path = %s AND benchmark_id != %s"
            " RETURNING benchmark_id", (self.source, path, benchmark.id)).fetchall()], now)
        self.mark_changed()
        self.relink_unlinked()
        return None

    def benchmark_ids_of(self, path: str) -> list[str]:
        return [r[0] for r in self._execute(
            "SELECT benchmark_id FROM benchmark_sources WHERE source = %s AND path = %s", (self.source, path))]

    def benchmark_files_in_error(self) -> list[str]:
        self._files_read()
        return [r[0] for r in self._execute(
            "SELECT path FROM files WHERE source = %s AND kind = 'benchmark' AND state = 'error'", (self.source,))]

    def benchmark_files_to_look_at_again(self) -> list[str]:
        (generation,) = one_row(self._execute(
            "SELECT coalesce(max(generation), 0) FROM scope_generations WHERE scope = 'benchmarks'"))
        if generation == self._benchmarks_seen:
            return []
        # Another source's files may have added or removed the benchmark that this source's
        # runs known only by their prompt are linked to: they follow it, as one daemon's would.
        with self.batch():
            self.relink_unlinked()
            paths = self.benchmark_files_in_error()
        self._benchmarks_seen = generation
        return paths

    def remove_benchmarks_of(self, path: str):
        self._lock_feed()
        gone = [r[0] for r in self._execute(
            "DELETE FROM benchmark_sources WHERE source = %s AND path = %s RETURNING benchmark_id",
            (self.source, path)).fetchall()]
        if self._settle(gone, time.time()):
            self.mark_changed()
            self.relink_unlinked()

    def _settle(self, ids: list[str], now: float) -> bool:
        """The shared rows of these ids after their definers changed: removed when none is left,
        else following the first one's file. True when one changed (its rules kept)."""
        written = False
        for benchmark_id in ids:
            for (changed,) in self._execute(_SETTLE, {"id": benchmark_id, "now": now}).fetchall():
                self._keep_rules(rules.benchmark_written(changed, GENERATION))
                written = True
        return written


def _json_list(values: list[str]) -> str:
    return msgspec.json.encode(values).decode()
