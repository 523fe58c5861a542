"""Benchmarks and the state of their executions, as reev's UI polls them:
GET /api/v1/benchmarks[/{id}[/status[/{execution_id}]]]."""

import msgspec
from litestar import Controller, Request, Response

from api import models as m
from api.convert import load_run, state_of
from api.db import Database
from api.plumbing import (
    DEFAULT_BENCHMARKS,
    BenchmarkLimit,
    data_response,
    echo,
    etag_for,
    execution_etag,
    not_found,
    read_route,
)
from core.ids import normalise_benchmark_id
from core.timestamps import iso


def tags_of(text: str) -> list[str]:
    value = msgspec.json.decode(text)
    return [str(t) for t in value] if isinstance(value, list) else []


class BenchmarkController(Controller):
    path = "/api/v1/benchmarks"

    @read_route("/")
    def list_benchmarks(self, request: Request, db: Database,
                        limit: BenchmarkLimit = DEFAULT_BENCHMARKS) -> Response[list[m.Benchmark]]:
        with db.snapshot() as q:
            tag = etag_for(q, request)
            rows = q.benchmarks(limit)
        return data_response([m.Benchmark(id=r.id, description=r.description, tags=tags_of(r.tags), prompt=r.prompt)
                              for r in rows], tag)

    @read_route("/{benchmark_id:str}", etag="benchmark:benchmark_id")
    def benchmark_detail(self, request: Request, db: Database, benchmark_id: str) -> Response[m.BenchmarkDetail]:
        bench_id = normalise_benchmark_id(benchmark_id)
        with db.snapshot() as q:
            tag = etag_for(q, request)
            bench = q.benchmark(bench_id)
            runs = q.recent_executions(bench_id, 10)
        if bench is None and not runs:
            raise not_found(f"no benchmark or execution with benchmark id {echo(bench_id)}")
        recent = [m.RecentExecution(execution_id=r.execution_id, agent_type=r.agent_type, status=r.status.lower(),
                                    created_at=iso(r.created_at), score=r.score) for r in runs]
        return data_response(m.BenchmarkDetail(
            id=bench_id, description=bench.description if bench else "", tags=tags_of(bench.tags) if bench else [],
            prompt=bench.prompt if bench else "", removed=bool(bench.removed) if bench else False,
            recent_executions=recent, latest_execution_id=recent[0].execution_id if recent else None), tag)

    @read_route("/{benchmark_id:str}/status/{execution_id:str}", etag="execution:execution_id")
    def execution_status(self, request: Request, db: Database, benchmark_id: str,
                         execution_id: str) -> Response[m.ExecutionState]:
        # The execution id alone identifies the run: the UI may pass a stale benchmark segment.
        # One statement reads the run and its ETag's version together (the UI polls this route):
        # its own snapshot, no transaction to begin and end around it on PostgreSQL.
        with db.lookup() as q:
            row, result = load_run(q, execution_id)
        return data_response(state_of(row, result), execution_etag(q, row.version))

    @read_route("/{benchmark_id:str}/status")
    def newest_status(self, request: Request, db: Database, benchmark_id: str,
                      agent: str | None = None) -> Response[m.ExecutionState]:
        bench_id = normalise_benchmark_id(benchmark_id)
        with db.snapshot() as q:
            tag = etag_for(q, request)
            row = q.newest_execution(bench_id, agent or None)
            if row is None:
                by_agent = f" by agent {echo(agent)}" if agent else ""
                raise not_found(f"no execution of benchmark {echo(bench_id)}{by_agent}")
            _, result = load_run(q, row.execution_id)
        return data_response(state_of(row, result), tag)
