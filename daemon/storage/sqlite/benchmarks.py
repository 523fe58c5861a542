"""The benchmarks table: the definitions of <benchmarks-dir>/*.yml (a removed one is kept)."""

import time
from collections.abc import Callable

import msgspec

from daemon.storage import rules
from daemon.storage.records import BenchmarkDefinition, Definer
from daemon.storage.sqlite.unit_of_work import UnitOfWork


class BenchmarkRepository(UnitOfWork):
    """The benchmarks table. A change re-derives the benchmark of runs known by their prompt
    only (executions.py)."""
    relink_unlinked: Callable[[], None]

    def upsert_benchmark(self, benchmark: BenchmarkDefinition, path: str) -> Definer | None:
        """Insert or update; returns the other file that already defines this id."""
        row = self.conn.execute("SELECT path, removed FROM benchmarks WHERE id = ?", (benchmark.id,)).fetchone()
        if row and row[0] != path and not row[1]:
            self.remove_benchmarks_of(path)
            return Definer(row[0])
        self.conn.execute(
            "INSERT INTO benchmarks (id, path, description, tags, prompt, flow_steps, yaml_text, removed, updated_at)"
            " VALUES (?,?,?,?,?,?,?,0,?) ON CONFLICT (id) DO UPDATE SET path = excluded.path,"
            " description = excluded.description, tags = excluded.tags, prompt = excluded.prompt,"
            " flow_steps = excluded.flow_steps, yaml_text = excluded.yaml_text, removed = 0,"
            " updated_at = excluded.updated_at",
            (benchmark.id, path, benchmark.description, _json_list(benchmark.tags), benchmark.prompt,
             benchmark.flow_steps, benchmark.yaml_text, time.time()))
        self._keep_rules(rules.benchmark_written(benchmark.id, self.next_generation))
        # A file whose id changed no longer defines the old one.
        self._written(self.conn.execute(  # type: ignore[arg-type]  # apsw: a row is any SQLite values; this one is (id TEXT,)
            "UPDATE benchmarks SET removed = 1 WHERE path = ? AND id != ? AND removed = 0 RETURNING id",
            (path, benchmark.id)).fetchall())
        self.mark_changed()
        self.relink_unlinked()
        return None

    def benchmark_ids_of(self, path: str) -> list[str]:
        """The ids a benchmark file defines now (not removed)."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM benchmarks WHERE path = ? AND removed = 0", (path,))]

    def benchmark_files_in_error(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT path FROM files WHERE kind = 'benchmark' AND state = 'error'")]

    def benchmark_files_to_look_at_again(self) -> list[str]:
        return []       # one writer: its own changes requeue them (ingest._released_benchmark_ids)

    def remove_benchmarks_of(self, path: str):
        removed = self.conn.execute(
            "UPDATE benchmarks SET removed = 1, updated_at = ? WHERE path = ? AND removed = 0 RETURNING id",
            (time.time(), path)).fetchall()
        if removed:
            self._written(removed)  # type: ignore[arg-type]  # apsw: a row is any SQLite values; this one is (id TEXT,)
            self.mark_changed()
            self.relink_unlinked()

    def _written(self, ids: list[tuple[str]]):
        """Keep the domain rules for benchmark rows an UPDATE wrote."""
        for (benchmark_id,) in ids:
            self._keep_rules(rules.benchmark_written(benchmark_id, self.next_generation))


def _json_list(values: list[str]) -> str:
    return msgspec.json.encode(values).decode()
