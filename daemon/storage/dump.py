"""The operators' queries for either backend. `reev-ingestd dump`'s: what was ingested, in a
canonical order, without what depends on when or how often the daemon ran (ingest times,
counters, generations, row ids, the source that read a file): two databases built from the same
final files dump identically, however their ingestion was interrupted and whichever backend
holds them. And the part of `reev-ingestd status` both backends read alike."""

from collections.abc import Callable, Sequence


def status_counts(rows: Callable[[str], Sequence[Sequence]]) -> dict:
    """What `status` shows of files, runs and errors, read by `rows` (a statement's rows, in the
    snapshot the caller holds)."""
    return {"files": rows("SELECT kind, state, count(*) FROM files GROUP BY kind, state ORDER BY kind, state"),
            "statuses": rows("SELECT status, count(*) FROM executions GROUP BY status ORDER BY status"),
            "errors": rows("SELECT path, line, byte_offset, reason, last_seen_at FROM ingest_errors"
                           " ORDER BY last_seen_at DESC, id DESC LIMIT 5"),
            "error_count": rows("SELECT count(*) FROM ingest_errors")[0][0]}


def dump_queries(offset: str, score_sum: str, tie: str) -> dict[str, str]:
    """The queries by record kind, given the dialect's `offset` column, score_sum rounded to 9
    places, and what orders rows of several sources with the same path (PostgreSQL's)."""
    return {
        "benchmark": "SELECT id, path, description, tags, prompt, flow_steps, yaml_text, removed"
                     " FROM benchmarks ORDER BY id",
        "execution": "SELECT execution_id, recorded_session_id, benchmark_id, session_benchmark_id, first_prompt,"
                     " agent_type, status, success, score, final_status, execution_time_ms, start_time, end_time,"
                     " first_event_at, last_event_at, created_at, updated_at, event_count, tool_call_count,"
                     " step_count, stale_reason, d.session_doc, d.result_doc"
                     " FROM executions x LEFT JOIN session_docs d ON d.exec_id = x.id ORDER BY execution_id",
        "event": "SELECT x.execution_id, e.line, e.byte_offset, e.kind, e.event_type, e.ts, e.doc"
                 " FROM events e JOIN executions x ON x.id = e.exec_id ORDER BY x.execution_id, e.line",
        "tool_call": "SELECT x.execution_id, t.line, t.source, t.output_line, t.tool_name, t.started_at, t.ended_at,"
                     " t.duration_ms, t.input, t.output, t.success, t.status, t.error_message"
                     " FROM tool_calls_io t JOIN executions x ON x.id = t.exec_id ORDER BY x.execution_id, t.line",
        # score_sum is a running sum kept by the store (rules.py): its last bits depend on the order in
        # which scores were added and taken back (rewritten session files), so it is compared rounded.
        "agent_benchmark_stats": "SELECT agent_type, benchmark_id, finished, succeeded, scored,"
                                 f" {score_sum} AS score_sum"
                                 " FROM agent_benchmark_stats ORDER BY agent_type, benchmark_id",
        "file": f"SELECT path, kind, subject_id, {offset}, line_no, skipping, state FROM files ORDER BY path{tie}",
        "ingest_error": f"SELECT path, line, byte_offset, reason FROM ingest_errors ORDER BY path, line{tie}",
    }
