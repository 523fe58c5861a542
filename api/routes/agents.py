"""How agents do, from finished executions: GET /api/v1/agent-performance[/{agent}/results],
/api/v1/agents, and /api/v1/agents/config/{agent} (always 404: no configuration is kept here)."""

from litestar import Controller, Request, Response

from api import models as m
from api.db import AgentStatsRow, Database, ResultRow
from api.edge import path_text
from api.plumbing import (
    DEFAULT_LIMIT,
    Cursor,
    PageLimit,
    TimeKey,
    by_time,
    data_response,
    decode_cursor,
    echo,
    etag_for,
    not_found,
    paged,
    read_route,
)
from core.timestamps import iso


def agent_result(row: ResultRow) -> m.AgentResult:
    succeeded = row.final_status == "Succeeded" if row.final_status in ("Succeeded", "Failed") else bool(row.success)
    return m.AgentResult(id=row.id, session_id=row.execution_id, benchmark_id=row.benchmark_id, score=row.score,
                         final_status="Succeeded" if succeeded else "Failed", timestamp=iso(row.created_at))


def summary(agent: str, stats: list[AgentStatsRow], results: list[ResultRow]) -> m.AgentPerformanceSummary:
    finished = sum(s.finished for s in stats)
    scored = sum(s.scored for s in stats)
    by_mean = sorted(((s.score_sum / s.scored, s.benchmark_id) for s in stats if s.scored and s.benchmark_id),
                     key=lambda x: (x[0], x[1]))
    return m.AgentPerformanceSummary(
        agent_type=agent, total_benchmarks=finished,
        average_score=round(sum(s.score_sum for s in stats) / scored, 6) if scored else 0.0,
        success_rate=round(sum(s.succeeded for s in stats) / finished, 6) if finished else 0.0,
        best_benchmarks=[b for _, b in sorted(by_mean, key=lambda x: (-x[0], x[1]))[:3]],
        worst_benchmarks=[b for _, b in by_mean[:3]],
        results=[agent_result(r) for r in results])


class AgentController(Controller):
    path = "/api/v1"

    @read_route("/agent-performance", etag="results")
    def agent_performance(self, request: Request, db: Database,
                          limit: PageLimit = DEFAULT_LIMIT) -> Response[list[m.AgentPerformanceSummary]]:
        with db.snapshot() as q:
            tag = etag_for(q, request)
            per_agent: dict[str, list[AgentStatsRow]] = {}
            for row in q.agent_stats():
                per_agent.setdefault(row.agent_type, []).append(row)
            summaries = [summary(agent, stats, q.finished_results(agent, None, limit))
                         for agent, stats in per_agent.items()]
        return data_response(summaries, tag)

    # (an agent type may hold a `/`: its client sends it as %2F, see api/edge.py)
    @read_route("/agent-performance/{agent_type:str}/results", etag="results")
    def agent_results(self, request: Request, db: Database, agent_type: str, limit: PageLimit = DEFAULT_LIMIT,
                      cursor: Cursor = None) -> Response[m.AgentResultPage]:
        after = decode_cursor(cursor, TimeKey)
        with db.snapshot() as q:
            tag = etag_for(q, request)
            rows = q.finished_results(path_text(request.scope, agent_type), after, limit + 1)
        rows, next_cursor = paged(rows, limit, by_time)
        return data_response(m.AgentResultPage(items=[agent_result(r) for r in rows], next_cursor=next_cursor), tag)

    @read_route("/agents")
    def agents(self, request: Request, db: Database) -> Response[list[str]]:
        with db.snapshot() as q:
            tag = etag_for(q, request)
            names = q.agents(1000)
        return data_response(names, tag)

    @read_route("/agents/config/{agent_type:str}", etag="keyed")
    def agent_config(self, agent_type: str) -> None:
        raise not_found(f"no configuration for agent {echo(agent_type)}: this service holds no agent configuration"
                        " (agents are configured in the reev runner)")
