"""Status rules of FORMATS.md §5, as pure functions shared by the daemon and the API."""

STATUSES = ("Queued", "Running", "Completed", "Failed", "Stopped", "Timeout")
TERMINAL = frozenset({"Completed", "Failed", "Stopped", "Timeout"})


def status_from_session(previous: str | None, success: bool | None, final_status: str | None,
                        has_final_result: bool) -> str:
    """Status after a session file was read.

    A final_result decides Completed/Failed (and may flip on rewrite); a session file without
    one keeps the last terminal status, else the run is Running.
    """
    if has_final_result:
        if success is None:
            success = final_status == "Succeeded"
        return "Completed" if success else "Failed"
    if previous in TERMINAL:
        return previous
    return "Running"


def status_from_event(previous: str | None) -> str:
    """Status after an event line arrived: it starts a run, and never reopens a finished one."""
    return previous or "Running"


def progress(status: str, steps_done: int, flow_steps: int) -> float:
    """0.0 to 1.0 for the UI's bar: 1.0 when finished; for multi-step runs, steps done so far."""
    if status in TERMINAL:
        return 1.0
    if flow_steps > 0:
        return round(min(steps_done / flow_steps, 0.99), 4)
    return 0.0
