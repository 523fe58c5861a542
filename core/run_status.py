"""Status rules of docs/formats.md §5, as pure functions shared by the daemon and the API.

A run with only an event log that has had no new byte for `--stale-after` seconds is
`Timeout` (its runner died): the daemon's judgement, not a file's. Such a Timeout is
*stalled* (the store keeps why, executions.stale_reason): it is not finished, so a new event
line makes the run Running again and a session file decides it as it would a Running one.
"""

from typing import Literal, get_args

from core.timestamps import iso

# The run-status vocabulary, defined here only (schema.sql's CHECK repeats it in SQL; a test
# holds the two equal). The API's responses are typed with Status.
Status = Literal["Queued", "Running", "Completed", "Failed", "Stopped", "Timeout"]
STATUSES: tuple[str, ...] = get_args(Status)
TERMINAL = frozenset({"Completed", "Failed", "Stopped", "Timeout"})
STALE = "Timeout"        # the status the stale rule gives


def status_from_session(previous: str | None, stalled: bool, success: bool | None, final_status: str | None,
                        has_final_result: bool) -> str:
    """Status after a session file was read (`stalled`: `previous` is the stale rule's Timeout).

    A final_result decides Completed/Failed (and may flip on rewrite); a session file without
    one keeps the last terminal status a file gave, else the run is Running.
    """
    if has_final_result:
        if success is None:
            success = final_status == "Succeeded"
        return "Completed" if success else "Failed"
    if previous in TERMINAL and not stalled:
        return previous
    return "Running"


def status_from_event(previous: str | None, stalled: bool) -> str:
    """Status after an event line arrived: it starts a run and reopens a stalled one, and never
    reopens one a session file finished."""
    if previous is None or stalled:
        return "Running"
    return previous


def stale_at(status: str, has_session_file: bool, last_byte_at: float, stale_after: float) -> float | None:
    """When the stale rule makes a run Timeout: `stale_after` seconds after the last new byte
    of its event log, if it is Running with no session file; None if it never does (the rule
    is off when stale_after is 0)."""
    if stale_after <= 0 or status != "Running" or has_session_file:
        return None
    return last_byte_at + stale_after


def stale_reason(last_byte_at: float, stale_after: float) -> str:
    """Why a run is Timeout, for the API's error_message."""
    return (f"no new event line since {iso(last_byte_at)} (--stale-after {stale_after:g} s) and no session file:"
            " the runner probably stopped")


def progress(status: str, steps_done: int, flow_steps: int) -> float:
    """0.0 to 1.0 for the UI's bar: 1.0 when finished; for multi-step runs, steps done so far."""
    if status in TERMINAL:
        return 1.0
    if flow_steps > 0:
        return round(min(steps_done / flow_steps, 0.99), 4)
    return 0.0
