"""Pairing the lines of an event log into tool calls (the event lines' ToolInput and
ToolOutput, and the older logger's tool-call lines: §3a and §3b of the file formats).

`EventRows.build` (daemon/ingest.py) is the pairing, and it is pure: lines in, rows out. What
earlier reads of the same log left open comes in through `EarlierCalls` (in the daemon: the
store's `open_tool_inputs` and `last_legacy_calls`). The rules:

- a ToolOutput completes the most recent ToolInput of the file still without an output (those
  of this read first, then those earlier reads left open), else it is a call of its own;
- a ToolInput without an output stays open;
- an older-logger update line (empty input_params) completes the most recent call line of its
  tool_name, else it is a call of its own.

The lines carry no call id: a ToolOutput does not name its input, and the older logger's
key is the tool name. So "duplicates" here are repeated lines and repeated tool names.

The unit tests read the rows by the column names below (the store's statements bind them in
this order); the last two tests run the real daemon, where the pairing spans two reads and so
goes through the database.
"""

import msgspec
import pytest

from daemon.ingest import NOTHING_EARLIER, EarlierCalls, EventRows
from daemon.reader import MAX_LINES_PER_READ, Line
from tests import fixtures as fx

EXEC = 7                  # the execution's row id the rows carry
MAX_LINE = 1 << 20

def build(items, first: int = 1, earlier: EarlierCalls = NOTHING_EARLIER) -> EventRows:
    """The rows of these lines (dicts or raw text), numbered from `first`."""
    offsets = fx.line_offsets(items)
    lines = [Line(first + i, offsets[i], fx.line_text(item)) for i, item in enumerate(items)]
    return EventRows.build(EXEC, lines, MAX_LINE, earlier)


def new_calls(rows: EventRows) -> list[dict]:
    return [msgspec.structs.asdict(call) for call in rows.new_calls]


def completions(rows: EventRows) -> list[dict]:
    return [msgspec.structs.asdict(end) for end in rows.completions]


def pairs(rows: EventRows) -> list[tuple]:
    """(start line, source, end line, tool name) of each new call."""
    return [(c["line"], c["source"], c["output_line"], c["tool_name"]) for c in new_calls(rows)]


def completed(rows: EventRows) -> list[tuple[int, int]]:
    """(start line of an earlier read, end line) of each completion."""
    return [(c["line"], c["output_line"]) for c in completions(rows)]


def earlier(open_inputs=(), legacy_calls=None) -> EarlierCalls:
    return EarlierCalls(lambda: list(open_inputs), lambda: dict(legacy_calls or {}))


# ------------------------------------------------------------------------- ToolInput / ToolOutput (§3a)


def test_start_then_end_is_one_call():
    rows = build([
        fx.prompt_line("go", at=0),                                                              # 1
        fx.tool_input_line("sol_transfer", {"amount": 1}, at=1.0),                               # 2
        fx.step_complete_line(at=1.1),                                                           # 3
        fx.tool_output_line(False, {"error": "x"}, at=1.25, error_message="Tool failed: x"),     # 4
    ])
    [call] = new_calls(rows)
    assert call == {"exec_id": EXEC, "line": 2, "source": "input", "output_line": 4, "tool_name": "sol_transfer",
                    "started_at": pytest.approx(fx.unix(1.0)), "ended_at": pytest.approx(fx.unix(1.25)),
                    "duration_ms": None,       # the store derives it from the two timestamps
                    "success": 0, "status": None, "error_message": "Tool failed: x"}
    assert completions(rows) == []
    assert len(rows.events) == 4


def test_end_without_start_is_a_call_of_its_own():
    rows = build([
        fx.tool_output_line(True, {"orphan": True}, at=0),        # 1: nothing open
        fx.tool_input_line("spl_transfer", at=1),                 # 2
        fx.tool_output_line(True, at=2),                          # 3: completes 2
        fx.tool_output_line(False, at=3, error_message="again"),  # 4: 2 is taken: nothing open
    ])
    assert pairs(rows) == [(1, "output", 1, None), (2, "input", 3, "spl_transfer"), (4, "output", 4, None)]
    orphan, _, second = new_calls(rows)
    assert orphan["started_at"] is None and orphan["ended_at"] == pytest.approx(fx.unix(0))
    assert orphan["success"] == 1
    assert (second["success"], second["error_message"]) == (0, "again")


def test_start_without_end_stays_open():
    rows = build([fx.tool_input_line("jupiter_swap", {"amount": 0}, at=1), fx.step_complete_line(at=2)])
    [call] = new_calls(rows)
    assert (call["line"], call["output_line"], call["ended_at"], call["success"]) == (1, None, None, None)
    assert call["started_at"] == pytest.approx(fx.unix(1))
    assert completions(rows) == []


def test_an_end_line_without_its_output_object_ends_nothing():
    """A ToolOutput event whose tool_output is null is kept as an event, and pairs with nothing."""
    rows = build([fx.tool_input_line("sol_transfer", at=0), fx.event_line("ToolOutput", at=1),
                  fx.tool_output_line(True, at=2)])
    assert pairs(rows) == [(1, "input", 3, "sol_transfer")]
    assert len(rows.events) == 3


def test_interleaved_calls_of_the_same_tool_pair_most_recent_first():
    rows = build([
        fx.tool_input_line("get_account_balance", {"pubkey": "A"}, at=0),   # 1
        fx.tool_output_line(True, at=1),                                     # 2 ends 1
        fx.tool_input_line("get_account_balance", {"pubkey": "B"}, at=2),   # 3
        fx.tool_input_line("get_account_balance", {"pubkey": "C"}, at=3),   # 4
        fx.tool_output_line(True, at=4),                                     # 5 ends 4 (the most recent open)
        fx.tool_input_line("sol_transfer", at=5),                            # 6 another tool, in between
        fx.tool_output_line(True, at=6),                                     # 7 ends 6
        fx.tool_output_line(False, at=7),                                    # 8 ends 3
    ])
    assert pairs(rows) == [(1, "input", 2, "get_account_balance"), (3, "input", 8, "get_account_balance"),
                           (4, "input", 5, "get_account_balance"), (6, "input", 7, "sol_transfer")]
    by_line = {c["line"]: c for c in new_calls(rows)}
    assert by_line[3]["ended_at"] == pytest.approx(fx.unix(7)) and by_line[3]["success"] == 0


def test_bad_lines_between_start_and_end_do_not_break_the_pair():
    items = [fx.tool_input_line("sol_transfer", at=0), "{not json", "", fx.tool_output_line(True, at=1)]
    rows = build(items)
    assert pairs(rows) == [(1, "input", 4, "sol_transfer")]
    assert [(e.line, e.offset) for e in rows.errors] == [(2, fx.line_offsets(items)[1])]


def test_a_repeated_start_line_is_two_calls():
    """The same ToolInput line twice (same tool, arguments and timestamp: no id tells them
    apart) is two calls; one output ends the second."""
    start = fx.tool_input_line("sol_transfer", {"amount": 1}, at=0)
    rows = build([start, start, fx.tool_output_line(True, at=1)])
    assert pairs(rows) == [(1, "input", None, "sol_transfer"), (2, "input", 3, "sol_transfer")]


def test_ends_in_a_later_read_complete_what_earlier_reads_left_open():
    """Lines 3 and 7 were left open by earlier reads (oldest first, as the store gives them);
    what opens in this read is ended first, then the earlier ones, most recent first."""
    rows = build([
        fx.tool_input_line("spl_transfer", at=10),                        # 10
        fx.tool_output_line(True, at=11),                                 # 11 ends 10 (this read's)
        fx.tool_output_line(False, at=12, error_message="late"),          # 12 ends 7
        fx.tool_output_line(True, at=13),                                 # 13 ends 3
        fx.tool_output_line(True, at=14),                                 # 14 nothing left open
    ], first=10, earlier=earlier(open_inputs=[3, 7]))
    assert pairs(rows) == [(10, "input", 11, "spl_transfer"), (14, "output", 14, None)]
    assert completed(rows) == [(7, 12), (3, 13)]
    late = completions(rows)[0]
    assert late == {"output_line": 12, "ended_at": pytest.approx(fx.unix(12)), "duration_ms": None, "success": 0,
                    "status": None, "error_message": "late", "exec_id": EXEC, "line": 7}


def test_earlier_reads_are_asked_only_when_there_is_something_to_pair():
    """A read with no end line does not query what earlier reads left open (a query per read
    of a live log otherwise)."""
    def never():
        raise AssertionError("asked for what earlier reads left, with nothing to pair")
    rows = build([fx.prompt_line("go"), fx.tool_input_line("sol_transfer"), fx.step_complete_line()],
                 earlier=EarlierCalls(never, never))
    assert pairs(rows) == [(2, "input", None, "sol_transfer")]
    rows = build([fx.tool_output_line(True)], earlier=EarlierCalls(lambda: [1], never))
    assert completed(rows) == [(1, 1)]
    rows = build([fx.legacy_update_line("sol_transfer")], earlier=EarlierCalls(never, lambda: {"sol_transfer": 1}))
    assert completed(rows) == [(1, 1)]


# ------------------------------------------------------------------------- the older logger (§3b)


def test_legacy_call_lines_and_their_updates():
    rows = build([
        fx.legacy_call_line("sol_transfer", {"amount": 1}, at=0),                                 # 1
        fx.legacy_call_line("jupiter_swap", {"amount": 2}, at=1, execution_time_ms=120),         # 2
        fx.legacy_update_line("sol_transfer", at=2.5, execution_time_ms=2500),                   # 3 ends 1
        fx.legacy_update_line("get_account_balance", at=3, status="error"),                      # 4 nothing to end
    ])
    assert pairs(rows) == [(1, "legacy", 1, "sol_transfer"), (2, "legacy", 2, "jupiter_swap"),
                           (4, "legacy", 4, "get_account_balance")]
    by_line = {c["line"]: c for c in new_calls(rows)}
    assert by_line[2]["ended_at"] == pytest.approx(fx.unix(1.12))     # its own duration
    assert (by_line[2]["duration_ms"], by_line[2]["status"], by_line[2]["success"]) == (120, "success", 1)
    assert (by_line[4]["status"], by_line[4]["success"]) == ("error", 0)
    assert completions(rows) == [{"output_line": 3, "ended_at": pytest.approx(fx.unix(2.5)), "duration_ms": 2500,
                                  "success": 1, "status": "success", "error_message": None, "exec_id": EXEC,
                                  "line": 1}]


def test_a_legacy_call_without_output_names_no_output_line():
    line = fx.legacy_call_line("sol_transfer", {"amount": 1}, at=0) | {"output_result": None}
    [call] = new_calls(build([line]))
    assert (call["output_line"], call["status"]) == (None, "success")


def test_legacy_calls_of_the_same_tool_name_the_update_ends_the_most_recent():
    rows = build([
        fx.legacy_call_line("sol_transfer", {"amount": 1}, at=0),                     # 1
        fx.legacy_call_line("sol_transfer", {"amount": 2}, at=1),                     # 2
        fx.legacy_update_line("sol_transfer", at=2, status="timeout"),               # 3 ends 2
        fx.legacy_update_line("sol_transfer", at=3, status="error"),                 # 4 ends 2 again: the last word
    ])
    assert pairs(rows) == [(1, "legacy", 1, "sol_transfer"), (2, "legacy", 2, "sol_transfer")]
    assert [(c["line"], c["output_line"], c["status"]) for c in completions(rows)] == [
        (2, 3, "timeout"), (2, 4, "error")]


def test_a_legacy_update_in_a_later_read_ends_the_call_an_earlier_read_stored():
    rows = build([fx.legacy_update_line("sol_transfer", at=5, status="error", execution_time_ms=1000),   # 6
                  fx.legacy_update_line("jupiter_swap", at=6)],                                        # 7
                 first=6, earlier=earlier(legacy_calls={"sol_transfer": 5}))
    assert completed(rows) == [(5, 6)]
    assert pairs(rows) == [(7, "legacy", 7, "jupiter_swap")]   # no earlier call of that tool


def test_the_two_loggers_do_not_pair_with_each_other():
    rows = build([fx.tool_input_line("sol_transfer", at=0), fx.legacy_update_line("sol_transfer", at=1),
                  fx.legacy_call_line("spl_transfer", {"a": 1}, at=2), fx.tool_output_line(True, at=3)],
                 earlier=earlier(open_inputs=[], legacy_calls={}))
    assert pairs(rows) == [(1, "input", 4, "sol_transfer"), (2, "legacy", 2, "sol_transfer"),
                           (3, "legacy", 3, "spl_transfer")]
    assert completions(rows) == []


# ------------------------------------------------------------------------- across reads, through the daemon

X = "pairing-run"


def test_an_end_in_the_next_read_of_one_run_pairs_through_the_database(workspace, run_once, db):
    """A read stops after MAX_LINES_PER_READ lines: a start on its last line and the end on the
    next are paired by the second read, from what the first stored, in one --once run."""
    blanks = [""] * (MAX_LINES_PER_READ - 1)
    workspace.append_events(X, [*blanks, fx.tool_input_line("sol_transfer", at=1),         # MAX_LINES_PER_READ
                                fx.tool_output_line(True, {"sig": "s"}, at=1.5)])          # ... + 1
    run_once()
    [call] = db.tool_calls(X)
    assert (call["line"], call["source"], call["output_line"]) == (MAX_LINES_PER_READ, "input", MAX_LINES_PER_READ + 1)
    assert call["duration_ms"] == pytest.approx(500.0, abs=0.01)


def test_a_live_daemon_pairs_an_end_appended_later(workspace, live_daemon, db):
    d = live_daemon()
    workspace.append_events(X, [fx.tool_input_line("sol_transfer", {"amount": 1}, at=0),
                                fx.tool_input_line("spl_transfer", {"amount": 2}, at=1)])
    d.wait_for(lambda: [(c["line"], c["output_line"]) for c in db.tool_calls(X)] == [(1, None), (2, None)],
               what="two open calls")
    workspace.append_events(X, [fx.tool_output_line(True, at=2), fx.tool_output_line(False, at=4)])
    d.wait_for(lambda: [(c["line"], c["output_line"]) for c in db.tool_calls(X)] == [(1, 4), (2, 3)],
               what="both ended by the later lines")
    first, second = db.tool_calls(X)
    assert first["duration_ms"] == pytest.approx(4000.0, abs=0.01) and first["success"] == 0
    assert second["duration_ms"] == pytest.approx(1000.0, abs=0.01) and second["success"] == 1
    assert db.execution(X)["tool_call_count"] == 2
