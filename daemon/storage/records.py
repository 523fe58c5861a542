"""The records that cross the storage interface (interface.py): built by ingest.py and the
stale rule, taken apart only by a backend, which alone knows its tables' columns and their
order. msgspec Structs: built by keyword or position, a misspelt field is an error, and
they cost about what a tuple does (gc=False: they hold no cycles, so the collector does not
walk the millions a back-fill builds)."""

from msgspec import Struct


class Run(Struct, frozen=True, gc=False):
    """An execution as the status rules see it."""
    id: int                   # the store's compact id (events and tool calls carry it)
    status: str
    stalled: bool             # its Timeout is the stale rule's (core/run_status.py)


class EventRow(Struct, gc=False):
    """One line of an event log (stored again, it replaces itself)."""
    exec_id: int
    line: int                 # from 1, as editors count
    byte_offset: int
    kind: str                 # 'event', 'tool_call' or 'summary'
    event_type: str | None    # Prompt, ToolInput, ToolOutput, StepComplete, ...
    ts: float | None          # Unix seconds
    doc: str                  # the line's JSON as written


class ToolCall(Struct, gc=False):
    """A tool call opened by a line: a ToolInput (source 'input'), a ToolOutput with no input
    to pair with ('output'), or an older-logger tool-call line ('legacy'). It may be completed
    by a later line of the same read (its end fields set before it is stored)."""
    exec_id: int
    line: int                 # the line that opened it
    source: str
    output_line: int | None   # the line that completed it (where its output is)
    tool_name: str | None
    started_at: float | None
    ended_at: float | None
    duration_ms: float | None  # None: the store derives it from started_at and ended_at
    success: bool | None
    status: str | None
    error_message: str | None


class ToolCallEnd(Struct, gc=False):
    """A line completing a tool call opened by an earlier read of the log."""
    exec_id: int
    line: int                 # the line that opened the call
    output_line: int
    ended_at: float | None    # None: the end stored stays
    duration_ms: float | None  # None: derived from the call's started_at and ended_at (kept if neither)
    success: bool | None
    status: str | None
    error_message: str | None


class SessionResult(Struct, gc=False):
    """A session file's final_result."""
    success: bool | None
    score: float | None
    final_status: str | None  # Succeeded / Failed, as written
    execution_time_ms: int | None
    doc: str | None           # its JSON as written


class SessionUpdate(Struct, gc=False):
    """What a session file gives its run, with the status the rules decided."""
    status: str
    finished: bool            # the status is terminal: the run's finished_at is set (once)
    doc: str                  # the whole file as written
    recorded_session_id: str | None
    benchmark_id: str | None  # normalised
    agent_type: str | None
    start_time: float | None
    end_time: float | None
    result: SessionResult | None   # None: no final_result, the last one stored is kept


class LogAggregates(Struct, gc=False):
    """What a run of lines of one event log adds to its run's row."""
    lines: int
    tool_calls: int
    steps: int                # StepComplete lines
    first_ts: float | None
    last_ts: float | None
    first_prompt: str | None  # of the first Prompt line, if these lines hold one
    recorded_session_id: str | None


class BenchmarkDefinition(Struct, gc=False):
    """A benchmark as its YAML file defines it."""
    id: str                   # normalised
    description: str
    tags: list[str]
    prompt: str
    flow_steps: int           # steps of a multi-step benchmark's flow (0: one step)
    yaml_text: str


class Definer(Struct, frozen=True, gc=False):
    """The file that already defines a benchmark id a file also defines, so that file is refused:
    another file of this daemon's, or (several daemons: `source`) another source's, differently."""
    path: str
    source: str | None = None


class StaleCandidate(Struct, frozen=True, gc=False):
    """A run the stale rule applies to."""
    id: int
    execution_id: str
    last_mtime_ns: int        # of its newest event log, as its checkpoint says
