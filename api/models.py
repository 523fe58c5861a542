"""Response types. Field names are the contract of docs/http-contract.md; the OpenAPI document is
generated from these Structs, so it describes each response exactly."""

from typing import Any, Literal

import msgspec
from msgspec import Raw, Struct

from core.ids import FileKind
from core.run_status import Status


class ErrorBody(Struct):
    error: str
    message: str


_ERROR_KINDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 414: "uri_too_long",
                431: "headers_too_large", 503: "unavailable"}


def error_kind(status: int) -> str:
    """The `error` of an ErrorBody with this HTTP status."""
    return _ERROR_KINDS.get(status, "internal_error" if status >= 500 else "error")


class DatabaseHealth(Struct):
    name: str                            # a file's name (answers never show where files are), or a
                                         # PostgreSQL URL without its password
    reachable: bool
    data_generation: int | None
    last_ingest_at: str | None
    heartbeat_at: str | None
    heartbeat_age_seconds: float | None


class Health(Struct):
    status: Literal["healthy", "degraded"]
    timestamp: str
    version: str
    reasons: list[str]
    database: DatabaseHealth


class Benchmark(Struct):
    id: str
    description: str
    tags: list[str]
    prompt: str


class RecentExecution(Struct):
    execution_id: str
    agent_type: str | None
    status: str                          # lowercase, as reev's UI reads it
    created_at: str | None
    score: float | None


class BenchmarkDetail(Struct):
    id: str
    description: str
    tags: list[str]
    prompt: str
    removed: bool
    recent_executions: list[RecentExecution]
    latest_execution_id: str | None


class ExecutionMetadata(Struct):
    recorded_session_id: str | None
    event_count: int
    tool_call_count: int
    step_count: int
    first_event_at: str | None
    last_event_at: str | None


class ExecutionState(Struct):
    execution_id: str
    benchmark_id: str | None
    agent: str | None
    status: Status
    created_at: str | None
    updated_at: str | None
    progress: float
    error_message: str | None
    result_data: dict[str, Any] | None
    metadata: ExecutionMetadata


class AgentResult(Struct):
    id: int
    session_id: str
    benchmark_id: str | None
    score: float | None
    final_status: Literal["Succeeded", "Failed"]
    timestamp: str | None


class AgentPerformanceSummary(Struct):
    agent_type: str
    total_benchmarks: int
    average_score: float
    success_rate: float
    best_benchmarks: list[str]
    worst_benchmarks: list[str]
    results: list[AgentResult]


class AgentResultPage(Struct):
    items: list[AgentResult]
    next_cursor: str | None


class RunLogs(Struct, kw_only=True):
    """What execution-logs and transaction-logs share (reev's UI reads both shapes)."""
    benchmark_id: str
    execution_id: str | None
    agent_type: str | None
    interface: Literal["web"]
    status: str                          # lowercase
    final_status: Status | None          # PascalCase
    is_running: bool
    progress: float
    result: dict[str, Any]
    message: str | None = None


class ExecutionLogs(RunLogs, kw_only=True):
    trace: str


class TransactionLogs(RunLogs, kw_only=True):
    transaction_logs: str


class ToolCall(Struct):
    tool_name: str | None
    started_at: str | None
    ended_at: str | None
    duration_ms: float | None
    input: Any
    output: Any
    success: bool | None
    error_message: str | None


class FlowMetadata(Struct):
    state_count: int
    tool_count: int
    execution_time_ms: int | None
    benchmark_id: str | None
    session_id: str


class Flow(Struct):
    session_id: str
    diagram: str
    metadata: FlowMetadata
    tool_calls: list[ToolCall]


class SessionSummary(Struct):
    execution_id: str
    recorded_session_id: str | None
    benchmark_id: str | None
    agent_type: str | None
    status: Status
    created_at: str | None
    updated_at: str | None
    last_event_at: str | None
    score: float | None


class SessionPage(Struct):
    items: list[SessionSummary]
    next_cursor: str | None


class SourceFile(Struct):
    path: str                            # within the folder its kind is watched in
    kind: Literal["session", "events"]
    state: str
    lines_read: int
    bytes_read: int
    size: int
    ingested_at: str | None


class SessionDetail(Struct):
    summary: SessionSummary
    final_result: dict[str, Any] | None
    event_count: int
    tool_call_count: int
    step_count: int
    progress: float
    files: list[SourceFile]


class Event(Struct):
    line: int
    byte_offset: int
    kind: Literal["event", "tool_call", "summary"]
    timestamp: str | None
    event_type: str | None
    data: Any


class EventPage(Struct):
    items: list[Event]
    next_cursor: str | None


class ToolCallPage(Struct):
    items: list[ToolCall]
    next_cursor: str | None


class FileCount(Struct):
    kind: str
    state: str
    files: int
    pending_bytes: int


class IngestStatus(Struct):
    files: list[FileCount]
    pending_bytes: int
    error_count: int
    data_generation: int
    last_ingest_at: str | None
    heartbeat_at: str | None
    heartbeat_age_seconds: float | None
    daemon_started_at: str | None


class IngestError(Struct):
    id: int
    path: str                            # within the folder its kind is watched in
    kind: FileKind | None                # None only for a name no longer read as any kind
    line: int
    byte_offset: int
    reason: str
    first_seen_at: str | None
    last_seen_at: str | None
    count: int


class IngestErrorPage(Struct):
    items: list[IngestError]
    next_cursor: str | None


def raw_or_none(text: str | None) -> Any:
    """Stored JSON text served as-is (no decode and re-encode)."""
    return None if text is None else Raw(text.encode())


def decode_object(text: str | None) -> dict | None:
    if not text:
        return None
    value = msgspec.json.decode(text)
    return value if isinstance(value, dict) else None
