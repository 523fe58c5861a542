"""The derived columns of an execution and of a tool call, each defined once, as SQL fragments
over the expressions given for their inputs (stored columns, or the new values a statement
sets), so that every statement that sets one derives it alike, in either backend. The two
dialects differ in two functions only: the scalar maximum (SQLite's two-argument `max`,
PostgreSQL's `greatest`) and rounding a float to 3 places (PostgreSQL rounds numerics only)."""

from typing import NamedTuple


class Derived(NamedTuple):
    CREATED_AT: str
    UPDATED_AT: str
    BENCHMARK: str
    DURATION: str


def _fragments(greatest: str, round3: str) -> Derived:
    return Derived(
        # The derived columns of an execution (docs/formats.md §5).
        # created_at: the session file's start, else the first event's time.
        CREATED_AT="coalesce({start}, {first})",
        # updated_at: the last activity seen in either file.
        UPDATED_AT=greatest + "(coalesce({last}, 0), coalesce({end}, 0), coalesce({start}, 0))",
        # benchmark_id: the session file's, else the benchmark whose prompt equals the first user
        # prompt, when exactly one benchmark has it (a run without a session file).
        BENCHMARK=("coalesce({session_benchmark}, (SELECT CASE WHEN count(*) = 1 THEN max(b.id) END"
                   " FROM benchmarks b WHERE b.removed = 0 AND b.prompt != '' AND b.prompt = {prompt}))"),
        # A tool call's duration: the one written, else the time between its two lines (SQL, so that a
        # call completed in one read and one completed across two reads round alike).
        DURATION=("coalesce({given}, CASE WHEN {started} IS NOT NULL AND {ended} IS NOT NULL"
                  " THEN " + round3.format(x="({ended} - {started}) * 1000") + " END)"))


def of_stored_columns(derived: Derived) -> dict[str, str]:
    """An execution's derived columns from its stored columns (refreshed when their inputs changed
    another way: a benchmark's prompt, an earlier timestamp come later)."""
    return {"created_at": derived.CREATED_AT.format(start="start_time", first="first_event_at"),
            "updated_at": derived.UPDATED_AT.format(last="last_event_at", end="end_time", start="start_time"),
            "benchmark_id": derived.BENCHMARK.format(session_benchmark="session_benchmark_id",
                                                     prompt="executions.first_prompt")}


SQLITE = _fragments("max", "round({x}, 3)")
POSTGRES = _fragments("greatest", "round(({x})::numeric, 3)::double precision")
