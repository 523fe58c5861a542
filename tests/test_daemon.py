"""reev-ingestd on the file formats of docs/formats.md: every line kind and file variant, tool-call
pairing, bad input, statuses, benchmarks. These run the real program with `--once` on files
written into tmp_path and read the real database it leaves behind, on each backend (`backend`:
SQLite, then PostgreSQL; the tests of SQLite's own file and migrations are `sqlite_only`)."""

import json
import os
import subprocess
import time
from pathlib import Path

import apsw
import pytest

from daemon.storage.sqlite import SCHEMA_VERSION, SqliteStore, migrations
from tests import fixtures as fx
from tests.conftest import OLD_RUN_EVENTS, OLD_RUN_LOG, clean_env, daemon_command, wait_for, write_old_database

X = "0f3c6d2e-5b1a-4c8e-9d7f-a1b2c3d4e5f6"      # an execution id (UUID-like)
Y = "run-with.dots_and-dashes"                   # an execution id that is not a UUID

pytestmark = pytest.mark.usefixtures("backend")


def docs(events):
    return [e["doc"] for e in events]


def age(path, seconds: float = 60):
    """Make a file look `seconds` old, so an invalid document is settled at once."""
    t = time.time() - seconds
    os.utime(path, (t, t))


# ------------------------------------------------------------------------------ event lines


def test_every_line_kind_is_stored_with_editor_line_numbers(workspace, run_once, db):
    items = [
        fx.prompt_line("Send 0.3 SOL to the second wallet.", at=0),                      # 1
        fx.tool_input_line("sol_transfer", {"amount": 300_000_000, "mint": None}, at=1),  # 2
        fx.tool_output_line(True, '[{"program_id":"1111"}]', at=2),                       # 3
        "",                                                                               # 4 blank
        fx.step_complete_line("step-1", at=3, flow_ms=3000),                              # 5
        fx.unknown_event_line("LlmReasoning", at=4),                                      # 6
        fx.legacy_call_line("get_account_balance", {"pubkey": "USER_1"}, at=5,
                            output_result={"balance": 1}),                                # 7
        fx.legacy_update_line("get_account_balance", at=6, output_result={"balance": 2},
                              execution_time_ms=40),                                      # 8
        fx.summary_line(at=7),                                                            # 9
        fx.summary_line(at=7.5),                                                          # 10 (twice in a row)
        *fx.legacy_summary_lines(at=8),                                                   # 11 blank, 12
        "   ",                                                                            # 13 whitespace only
    ]
    path = workspace.append_events(X, items)
    run_once()

    events = db.events(X)
    stored = [i for i in range(len(items)) if fx.line_text(items[i]).strip()]
    assert [e["line"] for e in events] == [i + 1 for i in stored] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 12]
    assert [e["kind"] for e in events] == ["event"] * 5 + ["tool_call"] * 2 + ["summary"] * 3
    assert [e["event_type"] for e in events] == [
        "Prompt", "ToolInput", "ToolOutput", "StepComplete", "LlmReasoning", None, None, None, None, None]
    assert docs(events) == [fx.stored_doc(items[i]) for i in stored]
    offsets = fx.line_offsets(items)
    assert [e["byte_offset"] for e in events] == [offsets[i] for i in stored]
    # every line's own time: timestamp, or logged_at for the bare summary
    expected_ts = [0, 1, 2, 3, 4, 5, 6, 7, 7.5, 8]
    assert [e["ts"] for e in events] == pytest.approx([fx.unix(s) for s in expected_ts], abs=1e-6)
    # unknown fields are kept: the stored JSON is the line as written
    assert json.loads(events[4]["doc"])["reasoning"] == {"text": "thinking about it", "tokens": 12}

    ex = db.execution(X)
    assert ex["status"] == "Running"
    assert ex["event_count"] == 10
    assert ex["step_count"] == 1
    assert ex["tool_call_count"] == 2          # the ToolInput and the older logger's call
    assert ex["first_prompt"] == "Send 0.3 SOL to the second wallet."
    assert ex["recorded_session_id"] == "inner-session"   # inner id kept; the file name is the identity
    assert ex["first_event_at"] == pytest.approx(fx.unix(0))
    assert ex["last_event_at"] == pytest.approx(fx.unix(8))
    assert ex["created_at"] == pytest.approx(fx.unix(0))
    assert ex["benchmark_id"] is None
    assert db.errors() == []
    f = db.file(path)
    assert (f["kind"], f["subject_id"], f["state"]) == ("events", X, "ok")
    assert f["offset"] == f["size"] == path.stat().st_size
    assert f["line_no"] == len(items)


def test_execution_id_comes_from_the_file_name_for_any_plain_id(workspace, run_once, db):
    workspace.append_events(Y, [fx.prompt_line("hello", session_id="11111111-2222-3333-4444-555555555555")])
    workspace.append_events("300-swap-test", [fx.prompt_line("hello again")])
    run_once()
    assert [e["execution_id"] for e in db.executions()] == ["300-swap-test", Y]
    assert db.execution(Y)["recorded_session_id"] == "11111111-2222-3333-4444-555555555555"


def test_tool_outputs_pair_with_the_most_recent_open_input(workspace, run_once, db):
    """The pattern of a real multi-step run: input, output, input that never returns, two
    prompts, input, output, input that never returns, step end, two summaries."""
    items = [
        fx.prompt_line("Orchestrator executing 2 steps", at=0),                                 # 1
        fx.tool_input_line("get_account_balance", {"pubkey": "WalletAAAA1111"}, at=1.0),         # 2
        fx.tool_output_line(False, {"error": "AccountNotFound"}, at=1.25,
                            error_message="Tool failed: AccountNotFound"),                       # 3
        fx.tool_input_line("get_account_balance", {"error": "Account balance error"}, at=1.5),   # 4
        fx.prompt_line("Orchestrator executing step: swap", at=2),                               # 5
        fx.prompt_line("Swap 0 SOL to USDC", at=2.5),                                            # 6
        fx.tool_input_line("jupiter_swap_flow", {"amount": 0}, at=10.0),                         # 7
        fx.tool_output_line(False, {"error": "amount must be greater than 0"}, at=10.5,
                            error_message="Tool failed: amount"),                                # 8
        fx.tool_input_line("jupiter_swap", {"error": "Jupiter swap flow error"}, at=11.0),       # 9
        fx.step_complete_line("dynamic-1", at=12),                                               # 10
        fx.summary_line(at=12.1), fx.summary_line(at=12.2),                                      # 11, 12
    ]
    workspace.append_events(X, items)
    run_once()

    calls = db.tool_calls(X)
    assert [(c["line"], c["source"], c["output_line"], c["tool_name"]) for c in calls] == [
        (2, "input", 3, "get_account_balance"),
        (4, "input", None, "get_account_balance"),
        (7, "input", 8, "jupiter_swap_flow"),
        (9, "input", None, "jupiter_swap"),
    ]
    paired, open_ = calls[0], calls[1]
    assert json.loads(paired["input"]) == {"pubkey": "WalletAAAA1111"}
    assert json.loads(paired["output"]) == {"error": "AccountNotFound"}
    assert paired["success"] == 0
    assert paired["error_message"] == "Tool failed: AccountNotFound"
    assert paired["started_at"] == pytest.approx(fx.unix(1.0))
    assert paired["ended_at"] == pytest.approx(fx.unix(1.25))
    assert paired["duration_ms"] == pytest.approx(250.0, abs=0.01)     # from the two timestamps
    assert calls[2]["duration_ms"] == pytest.approx(500.0, abs=0.01)
    assert (open_["output"], open_["ended_at"], open_["duration_ms"], open_["success"]) == (None, None, None, None)
    assert json.loads(open_["input"]) == {"error": "Account balance error"}
    assert db.execution(X)["tool_call_count"] == 4
    assert db.execution(X)["step_count"] == 1


def test_tool_output_results_as_json_string_are_kept_as_written(workspace, run_once, db):
    results = '[{"program_id":"11111111111111111111111111111111","data":"3Bxs"}]'
    workspace.append_events(X, [fx.tool_input_line("sol_transfer", {"amount": 1}, at=0),
                                fx.tool_output_line(True, results, at=0.001)])
    run_once()
    [call] = db.tool_calls(X)
    assert json.loads(call["output"]) == results          # a JSON string, stored as JSON text
    assert call["success"] == 1
    assert call["duration_ms"] == pytest.approx(1.0, abs=0.01)


def test_unpaired_outputs_and_inputs_are_kept_and_pairing_continues_across_reads(workspace, run_once, db):
    first = [
        fx.tool_output_line(True, {"orphan": True}, at=0),            # 1: no open input
        fx.tool_input_line("spl_transfer", {"amount": 5}, at=1),      # 2
        fx.tool_input_line("sol_transfer", {"amount": 6}, at=2),      # 3
        fx.tool_output_line(True, {"ok": 3}, at=3),                   # 4 completes 3
    ]
    workspace.append_events(X, first)
    run_once()
    calls = db.tool_calls(X)
    assert [(c["line"], c["source"], c["output_line"], c["tool_name"]) for c in calls] == [
        (1, "output", 1, None), (2, "input", None, "spl_transfer"), (3, "input", 4, "sol_transfer")]
    orphan = calls[0]
    assert json.loads(orphan["output"]) == {"orphan": True}
    assert orphan["started_at"] is None and orphan["ended_at"] == pytest.approx(fx.unix(0))

    # a later read: the output completes the input still open from the earlier read
    workspace.append_events(X, [fx.tool_output_line(False, {"late": True}, at=9, error_message="boom")])
    run_once()
    calls = db.tool_calls(X)
    assert [(c["line"], c["output_line"]) for c in calls] == [(1, 1), (2, 5), (3, 4)]
    assert calls[1]["duration_ms"] == pytest.approx(8000.0, abs=0.01)
    assert calls[1]["error_message"] == "boom"
    assert db.execution(X)["tool_call_count"] == 3


def test_older_logger_tool_calls_and_their_update_lines(workspace, run_once, db):
    first = [
        fx.legacy_call_line("sol_transfer", {"amount": 1}, at=0),                               # 1
        fx.legacy_call_line("jupiter_swap", {"amount": 2}, at=1, output_result={"tx": "abc"},
                            execution_time_ms=120),                                             # 2
        fx.legacy_update_line("sol_transfer", at=2.5, output_result={"signature": "xyz"},
                              execution_time_ms=2500),                                          # 3 completes 1
        fx.legacy_update_line("get_account_balance", at=3, output_result={"error": "x"},
                              status="error"),                                                  # 4 nothing to complete
        fx.legacy_call_line("sol_transfer", {"amount": 3}, at=4, status="timeout",
                            error_message="timed out"),                                         # 5
    ]
    workspace.append_events(X, first)
    run_once()
    # the update of line 5 arrives in a later read
    workspace.append_events(X, [fx.legacy_update_line("sol_transfer", at=5, output_result={"error": "late"},
                                                      status="error", execution_time_ms=1000)])   # 6
    run_once()

    calls = {c["line"]: c for c in db.tool_calls(X)}
    assert sorted(calls) == [1, 2, 4, 5]
    assert all(c["source"] == "legacy" for c in calls.values())

    c1 = calls[1]
    assert c1["tool_name"] == "sol_transfer"
    assert json.loads(c1["input"]) == {"amount": 1}
    assert json.loads(c1["output"]) == {"signature": "xyz"}
    assert (c1["status"], c1["success"], c1["output_line"]) == ("success", 1, 3)
    assert c1["started_at"] == pytest.approx(fx.unix(0))
    assert c1["ended_at"] == pytest.approx(fx.unix(2.5))
    assert c1["duration_ms"] == pytest.approx(2500)

    c2 = calls[2]
    assert json.loads(c2["output"]) == {"tx": "abc"}
    assert (c2["status"], c2["success"], c2["output_line"]) == ("success", 1, 2)
    assert c2["duration_ms"] == pytest.approx(120)
    assert c2["ended_at"] == pytest.approx(fx.unix(1.12))

    c4 = calls[4]          # an update with no earlier call of its tool is a call of its own
    assert (c4["tool_name"], c4["status"], c4["success"]) == ("get_account_balance", "error", 0)

    c5 = calls[5]
    assert (c5["status"], c5["success"], c5["output_line"]) == ("error", 0, 6)
    assert json.loads(c5["output"]) == {"error": "late"}
    assert c5["ended_at"] == pytest.approx(fx.unix(5))
    assert c5["duration_ms"] == pytest.approx(1000)
    assert db.execution(X)["tool_call_count"] == 4
    assert db.event_count(X) == 6


def test_calls_completed_in_one_batch_stay_completed_whatever_the_batch_writes_after_them(workspace, run_once, db):
    """One back-fill batch reads several logs whose older-logger calls are completed by a later
    line of the same read. (On PostgreSQL the batch's tool calls are kept and written together:
    each completion writes them first, and the next write upserted the same calls again,
    uncompleted, from its staging table.)"""
    for r in range(4):
        workspace.append_events(f"legacy-{r}", [
            fx.legacy_call_line("sol_transfer", {"amount": r}, at=0),
            fx.legacy_update_line("sol_transfer", at=1.5, output_result={"signature": f"sig-{r}"},
                                  execution_time_ms=1500)])
    run_once()
    for r in range(4):
        [call] = db.tool_calls(f"legacy-{r}")
        assert (call["line"], call["output_line"], call["duration_ms"]) == (1, 2, 1500), call
        assert json.loads(call["output"]) == {"signature": f"sig-{r}"}


def test_event_line_with_wrong_field_types_is_recorded_and_skipped(workspace, run_once, db):
    """A known field of the wrong type is bad input (its path named in the reason); the lines
    around it are ingested. A numeric timestamp is accepted as Unix seconds."""
    odd = [
        {"timestamp": fx.rfc3339(0), "session_id": "s", "event_type": "Prompt", "prompt": "just text"},
        {"timestamp": fx.rfc3339(1), "event_type": "ToolInput", "tool_input": ["not", "an", "object"]},
        {"timestamp": fx.rfc3339(2), "event_type": "ToolOutput", "tool_output": {"success": "yes", "results": 1}},
    ]
    numeric = fx.step_complete_line(at=0) | {"timestamp": fx.unix(2.5)}
    workspace.append_events(X, [*odd, numeric, fx.prompt_line("the real prompt", at=3)])
    run_once()
    events = db.events(X)
    assert [e["line"] for e in events] == [4, 5]
    assert events[0]["ts"] == pytest.approx(fx.unix(2.5))
    errors = db.errors()
    assert [e["line"] for e in errors] == [1, 2, 3]
    assert "$.prompt" in errors[0]["reason"] and "$.tool_input" in errors[1]["reason"]
    assert "$.tool_output.success" in errors[2]["reason"]
    assert db.execution(X)["first_prompt"] == "the real prompt"


def test_bad_lines_are_recorded_and_the_good_lines_all_ingested(workspace, run_once, db):
    long_line = fx.dumps(fx.unknown_event_line("Padding", at=9, padding="x" * 3000))
    items = [
        fx.prompt_line("first", at=0),                                      # 1 good
        '{"timestamp":"2025-10-30T03:44:17Z","event_type":"Prom',          # 2 invalid JSON
        fx.tool_input_line("sol_transfer", {"amount": 1}, at=1),            # 3 good
        b'{"event_type":"Prompt","x":"\xff\xfe"}',                          # 4 invalid UTF-8
        '[{"event_type":"Prompt"}]',                                        # 5 a JSON array
        long_line,                                                          # 6 over the limit
        '"a bare string"',                                                  # 7 not an object
        '{"event_type":"StepComplete"} trailing',                           # 8 trailing garbage
        fx.tool_output_line(True, "[]", at=2),                              # 9 good, completes 3
    ]
    path = workspace.append_events(X, items)
    proc = run_once("--max-line-bytes", "2000")

    assert [e["line"] for e in db.events(X)] == [1, 3, 9]
    assert [(c["line"], c["output_line"]) for c in db.tool_calls(X)] == [(3, 9)]
    offsets = fx.line_offsets(items)
    errors = db.errors(path)
    assert [(e["line"], e["byte_offset"]) for e in errors] == [(n, offsets[n - 1]) for n in (2, 4, 5, 6, 7, 8)]
    assert all(e["path"] == str(path) for e in errors)
    reasons = {e["line"]: e["reason"] for e in errors}
    assert "invalid JSON" in reasons[2]
    assert "UTF-8" in reasons[4]
    assert "array" in reasons[5]
    assert "2000 bytes" in reasons[6]
    assert "object" in reasons[7]
    assert "invalid JSON" in reasons[8]
    for n in (2, 4, 5, 6, 7, 8):
        assert f"WARNING reev.ingest: {path}:{n}: " in proc.stderr
    assert db.execution(X)["event_count"] == 3


def test_non_session_files_are_ignored_without_errors(workspace, run_once, db):
    line = fx.jsonl([fx.prompt_line("ignored")])
    s = workspace.sessions
    (s / "otel_abc.jsonl").write_bytes(line)
    (s / "otel_abc.json").write_bytes(b"{}")
    (s / "session_abc.json.tmp").write_bytes(b"{")
    (s / ".session_abc.json.swp").write_bytes(b"\x00\x01binary")
    (s / "enhanced_otel_abc.jsonl~").write_bytes(line)
    (s / "Session_abc.json").write_bytes(b"{}")
    (s / "notes.txt").write_text("hello")
    (s / "sub").mkdir()
    (s / "sub" / "session_abc.json").write_bytes(fx.session_bytes(fx.session_doc()))
    (s / "sub" / "enhanced_otel_abc.jsonl").write_bytes(line)
    (s / "session_folder.json").mkdir()                  # a subfolder named like a session file
    (s / "enhanced_otel_folder.jsonl").mkdir()
    b = workspace.benchmarks
    (b / ".hidden.yml").write_text("id: hidden\n")
    (b / "301-test.yml.swp").write_bytes(b"\x00")
    (b / "README.md").write_text("# benchmarks\n")
    (b / "old").mkdir()
    (b / "old" / "302-old.yml").write_text(fx.benchmark_yaml("302-old"))

    proc = run_once()
    assert db.executions() == []
    assert db.rows("SELECT path FROM files") == []
    assert db.rows("SELECT id FROM benchmarks") == []
    assert db.errors() == []
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr


def test_names_of_our_forms_that_cannot_be_ingested_are_one_error_each_never_a_crash(workspace, run_once, db):
    """Any bytes a name can hold: one that is not UTF-8 (either folder) or whose id is none reev
    writes is recorded once, under its name as text (bad bytes as \\x escapes), and never read."""
    line = fx.jsonl([fx.prompt_line("not read")])
    s, b = os.fsencode(workspace.sessions), os.fsencode(workspace.benchmarks)
    odd = {  # name as bytes → (folder, what the reason says)
        b"bad\xff.yml": (b, "not valid UTF-8"),
        b"enhanced_otel_\xff\xfe.jsonl": (s, "not valid UTF-8"),
        b"session_\xc3.json": (s, "not valid UTF-8"),
        "enhanced_otel_café.jsonl".encode(): (s, "'café' is no execution id"),
        b"session_new\nline.json": (s, "'new\\nline' is no execution id"),
        b"enhanced_otel_.jsonl": (s, "'' is no execution id"),
        b"session_.hidden.json": (s, "'.hidden' is no execution id"),
    }
    for name, (folder, _) in odd.items():
        with open(folder + b"/" + name, "wb") as f:
            f.write(b"id: x\n" if name.endswith(b".yml") else line)
    (workspace.benchmarks / "café.yml").write_text(fx.benchmark_yaml("401-cafe"))   # UTF-8: a fine name
    workspace.append_events(X, [fx.prompt_line("a good run")])

    proc = run_once()
    want = {(folder + b"/" + name).decode("utf-8", "backslashreplace"): says for name, (folder, says) in odd.items()}
    got = {e["path"]: e for e in db.errors()}
    assert sorted(got) == sorted(want)
    for path, says in want.items():
        assert says in got[path]["reason"] and got[path]["line"] == 0 and got[path]["count"] == 1, got[path]
        if "\n" not in path:      # (how a log line shows a newline is the log formatter's business)
            assert f"WARNING reev.ingest: {path}: not ingested" in proc.stderr
    assert proc.stderr.count("WARNING") == len(odd)
    assert [e["execution_id"] for e in db.executions()] == [X]
    assert db.benchmark("401-cafe")["path"] == str(workspace.benchmarks / "café.yml")
    assert db.scalar("SELECT count(*) FROM files") == 2          # the good ones only
    g = db.generation()
    proc = run_once()                                 # recorded once: not again on every scan
    assert "WARNING" not in proc.stderr
    assert db.generation() == g
    assert all(e["count"] == 1 for e in db.errors())


def test_symlink_named_like_an_event_log_is_one_error_until_a_file_replaces_it(workspace, run_once, db):
    target = workspace.root / "elsewhere.jsonl"
    target.write_bytes(fx.jsonl([fx.prompt_line("not followed")]))
    link = workspace.events_path(X)
    os.symlink(target, link)
    proc = run_once()
    [err] = db.errors(link)
    assert (err["line"], err["count"]) == (0, 1)
    assert "cannot read" in err["reason"]
    assert f"WARNING reev.ingest: {link}: cannot read" in proc.stderr
    assert db.event_count(X) == 0
    g = db.generation()
    run_once()                                        # looked at once, not again on every scan
    assert db.generation() == g
    assert db.errors(link)[0]["count"] == 1

    link.unlink()
    items = [fx.prompt_line("a real file now", at=0), fx.step_complete_line(at=1)]
    workspace.append_events(X, items)
    run_once()
    assert docs(db.events(X)) == [fx.stored_doc(i) for i in items]
    assert db.errors() == []
    f = db.file(link)
    assert (f["state"], f["offset"]) == ("ok", link.stat().st_size)



def test_the_lag_counts_only_the_logs_the_daemon_reads(workspace, run_once, db):
    """`status` followed a symlink named like a log, and counted the file it leads to (which is
    never read) as lag, for good."""
    target = workspace.root / "elsewhere.jsonl"
    target.write_bytes(fx.jsonl([fx.prompt_line("not followed")]) * 50)
    os.symlink(target, workspace.events_path("linked"))
    partial = b'{"event_type": "StepComp'
    workspace.append_raw(workspace.events_path(X), fx.jsonl([fx.prompt_line("p")]) + partial)
    run_once()
    proc = subprocess.run(daemon_command() + ["status", "--db", str(workspace.db_target), "--json"],
                          capture_output=True, text=True, env=clean_env(), timeout=30)
    assert json.loads(proc.stdout)["lag_bytes"] == len(partial)

# ------------------------------------------------------------------------------ session files


@pytest.mark.parametrize("variant", ["success_with_data_tools", "failure_with_result_tools", "unfinished",
                                     "no_end_time_key"])
def test_session_file_variants_are_stored(workspace, run_once, db, variant):
    if variant == "success_with_data_tools":
        doc = fx.session_doc(agent_type="glm-4.6", data_tools=[fx.tool_record(), fx.tool_record("jupiter_swap")],
                             steps=[fx.step("I will transfer."), fx.step(None, [], fx.observation("Failure", "boom"))],
                             metadata={"runner": "web"}, custom_field={"kept": True})
        expect = ("Completed", 1, 1.0, "Succeeded")
    elif variant == "failure_with_result_tools":
        doc = fx.session_doc(agent_type="local", success=False, score=0.25, result_tools=[fx.tool_record(status="error")])
        expect = ("Failed", 0, 0.25, "Failed")
    elif variant == "unfinished":
        doc = fx.session_doc(finished=False)
        expect = ("Running", None, None, None)
    else:
        doc = fx.session_doc(finished=False)
        del doc["end_time"]
        expect = ("Running", None, None, None)
    workspace.write_session(X, doc)
    run_once()

    ex = db.execution(X)
    assert (ex["status"], ex["success"], ex["score"], ex["final_status"]) == expect
    assert json.loads(ex["session_doc"]) == doc                  # every field kept, unknown ones too
    assert ex["agent_type"] == doc["agent_type"]
    assert ex["benchmark_id"] == ex["session_benchmark_id"] == "301-test-transfer"
    assert ex["recorded_session_id"] == "inner-session"
    assert ex["start_time"] == doc["start_time"] == ex["created_at"]
    assert ex["end_time"] == doc.get("end_time")
    if "final_result" in doc:
        assert json.loads(ex["result_doc"]) == doc["final_result"]
        assert ex["execution_time_ms"] == 37_000
        assert ex["finished_at"] is not None
    else:
        assert ex["result_doc"] is None and ex["finished_at"] is None
    assert ex["event_count"] == 0
    assert db.errors() == []


def test_session_file_and_event_log_of_one_execution_meet(workspace, run_once, db):
    workspace.append_events(X, [fx.prompt_line("Send 0.3 SOL to the second wallet.", at=-5),
                                fx.tool_input_line("sol_transfer", at=-4), fx.tool_output_line(at=-3)])
    workspace.write_session(X, fx.session_doc(start_time=int(fx.unix(-10))))
    run_once()
    [ex] = db.executions()
    assert ex["execution_id"] == X
    assert (ex["status"], ex["event_count"], ex["tool_call_count"]) == ("Completed", 3, 1)
    assert ex["created_at"] == ex["start_time"]                  # the session file's start_time wins
    assert ex["first_event_at"] == pytest.approx(fx.unix(-5))


@pytest.mark.parametrize("written", ["benchmarks/301-test-transfer.yml", "benchmarks/301-test-transfer.yaml",
                                     "301-test-transfer.yml", "301-test-transfer"])
def test_benchmark_id_written_as_a_path_is_normalised(workspace, run_once, db, written):
    workspace.write_session(X, fx.session_doc(benchmark_id=written))
    run_once()
    assert db.execution(X)["benchmark_id"] == "301-test-transfer"


def test_once_waits_for_an_invalid_session_file_to_settle_then_records_it(workspace, run_once, db):
    path = workspace.write_session(X, b'{\n  "session_id": "inner-session",\n  "final_result": {\n')
    mtime = path.stat().st_mtime
    proc = run_once("--settle-seconds", "0.5")
    [err] = db.errors(path)
    assert (err["line"], err["byte_offset"]) == (0, 0)
    assert "invalid JSON" in err["reason"]
    assert err["first_seen_at"] >= mtime + 0.5 - 0.01
    assert db.file(path)["state"] == "error"
    assert f"WARNING reev.ingest: {path}: invalid JSON" in proc.stderr


# ------------------------------------------------------------------------------ statuses


def test_late_event_line_after_completion_keeps_completed(workspace, run_once, db):
    workspace.append_events(X, [fx.prompt_line("p", at=0)])
    workspace.write_session(X, fx.session_doc())
    run_once()
    before = db.execution(X)
    assert before["status"] == "Completed"

    workspace.append_events(X, [fx.step_complete_line(at=30)])
    run_once()
    after = db.execution(X)
    assert after["status"] == "Completed"
    assert after["event_count"] == 2
    assert after["finished_at"] == before["finished_at"]
    assert after["last_event_at"] == pytest.approx(fx.unix(30))


def test_rewritten_session_file_flips_completed_to_failed_and_back(workspace, run_once, db):
    workspace.write_session(X, fx.session_doc(success=True))
    run_once()
    assert db.execution(X)["status"] == "Completed"

    workspace.write_session(X, fx.session_doc(success=False, score=0.5, execution_time_ms=99))
    run_once()
    ex = db.execution(X)
    assert (ex["status"], ex["success"], ex["score"], ex["final_status"], ex["execution_time_ms"]) == (
        "Failed", 0, 0.5, "Failed", 99)
    assert json.loads(ex["result_doc"])["score"] == 0.5

    workspace.write_session(X, fx.session_doc(success=True))
    run_once()
    assert db.execution(X)["status"] == "Completed"


def test_rewritten_session_file_without_final_result_keeps_the_terminal_status(workspace, run_once, db):
    finished = fx.session_doc(success=False, score=0.25)
    workspace.write_session(X, finished)
    run_once()
    workspace.write_session(X, fx.session_doc(finished=False, agent_type="local"))
    run_once()
    ex = db.execution(X)
    assert (ex["status"], ex["success"], ex["score"], ex["final_status"]) == ("Failed", 0, 0.25, "Failed")
    assert json.loads(ex["result_doc"]) == finished["final_result"]
    assert ex["agent_type"] == "local"


def test_final_result_without_success_falls_back_to_its_status(workspace, run_once, db):
    doc = fx.session_doc()
    del doc["final_result"]["success"]
    workspace.write_session(X, doc)
    doc_failed = fx.session_doc(success=False)
    del doc_failed["final_result"]["success"]
    workspace.write_session(Y, doc_failed)
    run_once()
    assert db.execution(X)["status"] == "Completed"
    assert db.execution(Y)["status"] == "Failed"


# ------------------------------------------------------------------------------ benchmarks and links


def test_benchmarks_are_upserted_with_their_fields(workspace, run_once, db):
    text_a = fx.benchmark_yaml("301-test-transfer", description="Move SOL.", tags=["transfer", "t1"],
                               prompt="Send 0.3 SOL to the second wallet.")
    text_b = fx.benchmark_yaml(None, description="Two steps: swap, then lend.", tags=["flow"],
                               prompt="Swap then lend, please.",
                               flow=[{"step": 1, "prompt": "Swap 1 SOL."},
                                     {"step": 2, "prompt": "Lend it.", "depends_on": ["step_1_result"]}])
    path_a = workspace.write_benchmark("301-test-transfer.yml", text_a)
    path_b = workspace.write_benchmark("401-swap-then-lend.yaml", text_b)
    run_once()

    a = db.benchmark("301-test-transfer")
    assert (a["path"], a["description"], json.loads(a["tags"]), a["prompt"], a["flow_steps"], a["removed"]) == (
        str(path_a), "Move SOL.", ["transfer", "t1"], "Send 0.3 SOL to the second wallet.", 0, 0)
    assert a["yaml_text"] == text_a
    b = db.benchmark("401-swap-then-lend")                        # no `id`: the file name is the id
    assert (b["path"], b["prompt"], b["flow_steps"], json.loads(b["tags"])) == (
        str(path_b), "Swap then lend, please.", 2, ["flow"])
    assert b["yaml_text"] == text_b
    assert db.errors() == []


def test_invalid_benchmark_files_are_recorded_and_the_others_ingested(workspace, run_once, db):
    good = workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml())
    bad_yaml = workspace.write_benchmark("302-broken", "id: 302-broken\ntags: [unclosed\nprompt: \"x\n")
    not_mapping = workspace.write_benchmark("303-list", "- just\n- a list\n")
    for p in (good, bad_yaml, not_mapping):
        age(p)
    proc = run_once()
    assert [r[0] for r in db.rows("SELECT id FROM benchmarks")] == ["301-test-transfer"]
    errors = {e["path"]: e for e in db.errors()}
    assert sorted(errors) == sorted([str(bad_yaml), str(not_mapping)])
    assert "invalid YAML" in errors[str(bad_yaml)]["reason"]
    assert "mapping" in errors[str(not_mapping)]["reason"]
    assert all(e["line"] == 0 for e in errors.values())
    assert f"{bad_yaml}: invalid YAML" in proc.stderr


def test_a_file_refused_as_a_duplicate_no_longer_defines_its_old_id(workspace, run_once, db, backend):
    """A file whose id changed to one another file defines is refused, and what it defined
    before is no longer defined: removed, and free for the next file that has it (before, the
    refused file's old definition stood, and refused that next file)."""
    x = workspace.write_benchmark("310-x", fx.benchmark_yaml("310-a", prompt="A."))
    workspace.write_benchmark("311-y", fx.benchmark_yaml("311-b", prompt="B."))
    run_once()
    x.write_text(fx.benchmark_yaml("311-b", prompt="B again."))
    run_once()
    assert db.benchmark("310-a")["removed"] == 1
    [err] = db.errors()
    assert err["path"] == str(x) and err["reason"] == "benchmark id '311-b' is already defined by '311-y.yml'"
    workspace.write_benchmark("312-z", fx.benchmark_yaml("310-a", prompt="A, from z."))
    run_once()
    a = db.benchmark("310-a")
    assert (a["removed"], a["prompt"]) == (0, "A, from z.")
    assert [e["path"] for e in db.errors()] == [str(x)]


def test_duplicate_benchmark_id_is_an_error_until_the_first_definition_goes(workspace, run_once, db):
    one = workspace.write_benchmark("301-one", fx.benchmark_yaml("301-dup", prompt="First."))
    two = workspace.write_benchmark("302-two", fx.benchmark_yaml("301-dup", prompt="Second."))
    run_once()
    winner = db.benchmark("301-dup")
    loser = two if winner["path"] == str(one) else one
    [err] = db.errors()
    assert err["path"] == str(loser)
    assert "already defined" in err["reason"]

    os.unlink(winner["path"])
    run_once()
    b = db.benchmark("301-dup")
    assert (b["path"], b["removed"]) == (str(loser), 0)
    assert b["prompt"] == ("Second." if loser == two else "First.")
    assert db.errors() == []


def test_a_duplicate_benchmark_id_names_the_other_file_by_its_name_within_the_folder(workspace, run_once, db):
    """The reason held the other file's absolute path, its newline and all."""
    workspace.write_benchmark("nl\nx.yml", fx.benchmark_yaml("001-dup"))
    run_once()                                        # alone: it defines the id
    two = workspace.write_benchmark("302-two", fx.benchmark_yaml("001-dup"))
    run_once()
    [err] = db.errors()
    assert err["path"] == str(two)
    assert err["reason"] == "benchmark id '001-dup' is already defined by 'nl\\nx.yml'"


def test_a_benchmark_name_with_a_backslash_is_read_and_no_two_names_are_shown_alike(workspace, run_once, db):
    """`back\\slash.yml` was dropped without a word; and the name `bad\\xff.yml` (a backslash, x,
    f, f) was shown as the name with the byte 0xff is: one error row for two files."""
    workspace.write_benchmark("back\\slash.yml", fx.benchmark_yaml("401-back"))
    workspace.write_benchmark("bad\\xff.yml", "id: [unclosed\n")             # invalid YAML
    with open(os.fsencode(workspace.benchmarks) + b"/bad\xff.yml", "wb") as f:
        f.write(b"id: x\n")
    run_once()
    assert db.benchmark("401-back")["path"] == str(workspace.benchmarks / "back\\slash.yml")
    errors = {e["path"]: e["reason"] for e in db.errors()}
    folder = str(workspace.benchmarks)
    assert sorted(errors) == [folder + "/bad\\\\xff.yml", folder + "/bad\\xff.yml"], errors
    assert errors[folder + "/bad\\\\xff.yml"].startswith("invalid YAML")
    assert "not valid UTF-8" in errors[folder + "/bad\\xff.yml"]


def test_running_execution_is_linked_by_its_first_prompt_until_the_session_file_says_otherwise(
        workspace, run_once, db):
    workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml("301-test-transfer", prompt="Send 0.3 SOL."))
    workspace.write_benchmark("302-other", fx.benchmark_yaml("302-other", prompt="Swap 1 SOL."))
    workspace.append_events(X, [fx.prompt_line("Send 0.3 SOL.", at=0), fx.prompt_line("Swap 1 SOL.", at=1)])
    workspace.append_events(Y, [fx.prompt_line("Send 0.3 SOL. ", at=0)])     # not equal: no link
    run_once()
    assert db.execution(X)["benchmark_id"] == "301-test-transfer"
    assert db.execution(Y)["benchmark_id"] is None

    workspace.write_session(X, fx.session_doc(benchmark_id="benchmarks/302-other.yml"))
    run_once()
    assert db.execution(X)["benchmark_id"] == "302-other"            # the session file wins


def test_prompt_shared_by_two_benchmarks_links_nothing(workspace, run_once, db):
    workspace.write_benchmark("301-a", fx.benchmark_yaml("301-a", prompt="Same prompt."))
    second = workspace.write_benchmark("302-b", fx.benchmark_yaml("302-b", prompt="Same prompt."))
    workspace.append_events(X, [fx.prompt_line("Same prompt.")])
    run_once()
    assert db.execution(X)["benchmark_id"] is None

    second.unlink()                       # now exactly one known benchmark has that prompt
    run_once()
    assert db.benchmark("302-b")["removed"] == 1
    assert db.execution(X)["benchmark_id"] == "301-a"


def test_benchmark_arriving_after_the_events_links_the_running_execution(workspace, run_once, db):
    workspace.append_events(X, [fx.prompt_line("Lend 5 USDC.")])
    run_once()
    assert db.execution(X)["benchmark_id"] is None
    workspace.write_benchmark("310-lend", fx.benchmark_yaml("310-lend", prompt="Lend 5 USDC."))
    run_once()
    assert db.execution(X)["benchmark_id"] == "310-lend"


# ------------------------------------------------------------------------------ the database itself


@pytest.mark.sqlite_only
def test_once_on_empty_folders_creates_the_database_with_its_schema(tmp_path, run_once, db, workspace):
    missing = tmp_path / "nowhere"
    proc = run_once(base_args=["--sessions-dir", str(missing / "sessions"),
                               "--benchmarks-dir", str(missing / "benchmarks"), "--db", str(workspace.db_path)])
    assert proc.returncode == 0
    assert db.scalar("PRAGMA user_version") == SCHEMA_VERSION >= 2
    assert db.scalar("PRAGMA journal_mode") == "wal"
    tables = {r[0] for r in db.rows("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"meta", "files", "benchmarks", "executions", "events", "tool_calls", "ingest_errors"} <= tables
    assert db.generation() == 0
    assert db.meta("heartbeat_at") == pytest.approx(time.time(), abs=30)
    assert db.executions() == []


@pytest.mark.sqlite_only
@pytest.mark.parametrize("live", [False, True], ids=["once", "live"])
def test_a_database_newer_than_the_program_is_refused_and_left_as_it_is(live, run_once, db, workspace):
    """A database a newer reev-ingestd wrote (its schema version above this program's): this one
    says so and exits 2 without writing to it, rather than ingest into a schema it does not know."""
    workspace.append_events(X, [fx.prompt_line("p", at=0)])
    run_once()
    conn = apsw.Connection(str(workspace.db_path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = workspace.db_path.read_bytes()
    workspace.append_events(X, [fx.tool_input_line("t", at=1)])       # (something to ingest)
    if live:
        proc = subprocess.run(daemon_command() + workspace.args(), capture_output=True, text=True, timeout=30,
                              env=clean_env(), stdin=subprocess.DEVNULL)
    else:
        proc = run_once(expect_rc=None)
    assert proc.returncode == 2, proc.stderr
    assert f"database schema {SCHEMA_VERSION + 1} is newer than this daemon ({SCHEMA_VERSION})" in proc.stderr
    wal = Path(f"{workspace.db_path}-wal")
    assert workspace.db_path.read_bytes() == before and (not wal.exists() or wal.stat().st_size == 0), \
        "it wrote to the database"
    assert db.scalar("PRAGMA user_version") == SCHEMA_VERSION + 1 and db.event_count(X) == 1


@pytest.mark.sqlite_only
@pytest.mark.parametrize("version", [2, 3, 4, 5, 6])
def test_an_older_database_is_migrated_in_place(version, run_once, db, workspace):
    """To version 3 (from 2): session files moved to their own table, the stats trigger
    replaced, an index dropped; to 4: events rebuilt as a rowid table; to 5: files rebuilt as
    a rowid table, tool calls without their copies of the lines' JSON; to 6: a column for why a
    run is the stale rule's Timeout, an index of the Running runs; to 7: no triggers (the store
    keeps their rules, with their tables as they were). Nothing ingested before is lost, and
    ingestion goes on with the new schema."""
    doc = fx.session_doc("before", success=True, score=0.75)
    write_old_database(workspace.db_path, version, doc)
    workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml())
    workspace.write_session(X, fx.session_doc(success=False, score=0.25))
    workspace.append_events(X, [fx.prompt_line("p", at=0), fx.step_complete_line(at=1)])
    run_once()
    assert db.scalar("PRAGMA user_version") == SCHEMA_VERSION == 7
    assert [(e["line"], e["event_type"], e["ts"], e["doc"]) for e in db.events("old-run")] == [
        (n, kind, ts, doc) for n, kind, ts, doc in OLD_RUN_EVENTS]
    assert [e["line"] for e in db.events(X)] == [1, 2]
    assert "WITHOUT ROWID" not in db.scalar("SELECT sql FROM sqlite_schema WHERE name = 'events'")
    assert db.rows("SELECT name FROM sqlite_schema WHERE name IN ('events_by_line', 'events_v3')") == [
        ("events_by_line",)]
    # files: a rowid table, its rows and its subject index kept
    assert "WITHOUT ROWID" not in db.scalar("SELECT sql FROM sqlite_schema WHERE name = 'files'")
    assert db.rows("SELECT tbl_name FROM sqlite_schema WHERE name IN ('files_by_subject', 'files_v4')") == [
        ("files",)]
    old_log = db.file(OLD_RUN_LOG)
    assert (old_log["kind"], old_log["subject_id"], old_log["offset"], old_log["line_no"]) == ("events", "old-run", 400, 4)
    assert db.file(workspace.events_path(X))["line_no"] == 2
    # tool calls: their JSON is read from the lines now, the same as was copied
    assert {r[1] for r in db.rows("PRAGMA table_info(tool_calls)")} & {"input", "output"} == set()
    [call] = db.tool_calls("old-run")
    assert (call["tool_name"], call["output_line"], call["duration_ms"]) == ("sol_transfer", 4, 1000)
    assert (json.loads(call["input"]), json.loads(call["output"])) == ({"lamports": 5}, ["sig"])
    columns = {r[1] for r in db.rows("PRAGMA table_info(executions)")}
    assert "session_doc" not in columns and "result_doc" not in columns
    assert "stale_reason" in columns and db.execution("old-run")["stale_reason"] is None
    assert db.rows("SELECT tbl_name FROM sqlite_schema WHERE name = 'executions_running'") == [("executions",)]
    moved = db.execution("old-run")
    assert json.loads(moved["session_doc"]) == doc
    assert json.loads(moved["result_doc"]) == doc["final_result"]
    assert json.loads(db.execution(X)["result_doc"])["score"] == 0.25
    assert db.scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'") == 0
    assert db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'executions_changed'") == 0
    assert db.rows("SELECT agent_type, benchmark_id, finished, succeeded, score_sum FROM agent_benchmark_stats") == [
        ("deterministic", "301-test-transfer", 2, 1, 1.0)]
    # the store keeps the sums as the run changes
    workspace.write_session(X, fx.session_doc(success=True, score=1.0))
    run_once()
    assert db.rows("SELECT finished, succeeded, score_sum FROM agent_benchmark_stats") == [(2, 2, 1.75)]


@pytest.mark.sqlite_only
def test_a_long_migration_says_so_until_it_ends_and_gives_the_wal_space_back(workspace, monkeypatch):
    """Under systemd each notice buys ten more minutes: a migration that rewrites a big
    events table must keep sending them. The rewritten rows went through the WAL, which
    the daemon keeps (PERSIST_WAL): it is truncated afterwards."""
    write_old_database(workspace.db_path, 3, fx.session_doc("before"), filler_events=200_000)
    monkeypatch.setattr(migrations, "MIGRATION_NOTICE_SECONDS", 0.0)     # every progress tick
    told = []
    store = SqliteStore(workspace.db_path, migrating=told.append)
    try:
        assert len(told) >= 2
        assert set(told) == {f"migrating the database schema from version 3 to {SCHEMA_VERSION}"}
        assert os.path.getsize(f"{workspace.db_path}-wal") == 0
        assert workspace.db.scalar("SELECT count(*) FROM events") == 200_000 + len(OLD_RUN_EVENTS)
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_once_exits_non_zero_when_the_database_cannot_be_created(tmp_path, run_once, workspace):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    proc = run_once(base_args=["--sessions-dir", str(workspace.sessions), "--benchmarks-dir",
                               str(workspace.benchmarks), "--db", str(blocker / "reev.db")], expect_rc=None)
    assert proc.returncode != 0
    assert "cannot open the database" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_data_generation_counts_only_runs_that_changed_data(workspace, run_once, db):
    run_once()
    assert db.generation() == 0
    events = workspace.append_events(X, [fx.prompt_line("p", at=0)])
    workspace.append_raw(events, b'{"event_type":"Step')                 # a partial last line
    workspace.write_session(Y, fx.session_doc())
    workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml())
    age(workspace.write_session("broken", b"{ not json"))               # an invalid file: an error
    os.symlink(workspace.session_path(Y), workspace.session_path("link"))  # not a regular file: an error
    run_once()
    g1 = db.generation()
    assert g1 >= 1
    assert len(db.errors()) == 2
    last_ingest, heartbeat = db.meta("last_ingest_at"), db.meta("heartbeat_at")

    for _ in range(2):                                                   # nothing new: no new generation
        run_once()
        assert db.generation() == g1
    assert db.meta("last_ingest_at") == last_ingest
    assert db.meta("heartbeat_at") > heartbeat

    workspace.append_raw(events, b'Complete"}\n')                        # the partial line completes
    run_once()
    assert db.generation() == g1 + 1
    assert db.event_count(X) == 2


def test_dump_is_canonical_and_independent_of_how_ingestion_ran(workspace, run_once, db, tmp_path):
    """Two databases from the same final files dump identically, whether built in one --once or
    in several runs with the files growing in between."""
    import subprocess

    from tests.conftest import clean_env, daemon_command

    workspace.write_benchmark("301-test-transfer", fx.benchmark_yaml("301-test-transfer"))
    workspace.append_events(X, [fx.prompt_line("Send 0.3 SOL to the second wallet.", at=0)])
    run_once()
    workspace.append_events(X, [fx.tool_input_line("sol_transfer", at=1), fx.tool_output_line(at=2)])
    workspace.append_raw(workspace.events_path(X), b"not json\n")
    run_once()
    workspace.write_session(X, fx.session_doc("inner", benchmark_id="301-test-transfer"))
    run_once()
    second = tmp_path / "second.db"
    run_once(base_args=["--sessions-dir", str(workspace.sessions), "--benchmarks-dir", str(workspace.benchmarks),
                        "--db", str(second)])

    def dump(path):
        out = subprocess.run(daemon_command() + ["dump", "--db", str(path)], capture_output=True, text=True,
                             env=clean_env(), check=True).stdout.splitlines()
        return [json.loads(line) for line in out]

    first_dump, second_dump = dump(workspace.db_target), dump(second)   # (on PostgreSQL: against SQLite)
    assert first_dump == second_dump
    tables = {r["table"] for r in first_dump}
    assert tables == {"benchmark", "execution", "event", "tool_call", "agent_benchmark_stats", "file", "ingest_error"}
    assert [r["line"] for r in first_dump if r["table"] == "event"] == [1, 2, 3]


def test_an_execution_is_the_same_whether_its_files_come_together_or_one_after_the_other(workspace, run_once,
                                                                                          tmp_path):
    """Back-fill writes a new execution's row once, with what all of its files in the batch
    gave it; files that come later update the row. Both ways must give the same database, in
    either order of the files, for every shape of run."""
    import shutil
    import subprocess

    from tests.conftest import clean_env, daemon_command

    def no_time(item: dict) -> dict:
        return {k: v for k, v in item.items() if k != "timestamp"}

    bench = "301-test-transfer"
    prompt = "Send 0.3 SOL to the second wallet."
    runs = {
        # finished: session file and event log
        "finished": (fx.session_doc("s1", benchmark_id=bench, score=0.75),
                     [fx.prompt_line(prompt, at=0), fx.tool_input_line("sol_transfer", at=1),
                      fx.tool_output_line(at=2), fx.step_complete_line(at=3)]),
        # an event log only: the benchmark follows from the prompt, the session id from the lines
        "events-only": (None, [fx.prompt_line(prompt, at=5), fx.tool_input_line("sol_transfer", at=6)]),
        # a session file without final_result yet, and its log
        "unfinished": (fx.session_doc("s3", benchmark_id=None, finished=False), [fx.prompt_line("other", at=7)]),
        # a session file only, failed
        "session-only": (fx.session_doc("s4", success=False, execution_time_ms=10**30), None),   # absurd: no time
        # an empty event log: the run exists, with nothing known about it
        "empty-log": (None, []),
        # lines without a time and a session file without a start: no time anywhere
        "no-times": (fx.session_doc("s6", start_time=None, end_time=None, finished=False),
                     [no_time(fx.prompt_line(prompt)), no_time(fx.step_complete_line())]),
        # no session id in the session file: the lines' one is recorded
        "sid-from-lines": ({k: v for k, v in fx.session_doc(success=True).items() if k != "session_id"},
                           [fx.prompt_line(prompt, at=9, session_id="from-lines")]),
        # the first line has no prompt and a later time than the second
        "times-out-of-order": (None, [fx.step_complete_line(at=20), fx.prompt_line(prompt, at=10)]),
    }
    staging = tmp_path / "staging"
    staging.mkdir()
    sessions, logs = [], []
    for run_id, (session, lines) in runs.items():
        if session is not None:
            path = staging / f"session_{run_id}.json"
            path.write_bytes(fx.session_bytes(session))
            sessions.append(path)
        if lines is not None:
            path = staging / f"enhanced_otel_{run_id}.jsonl"
            path.write_bytes(fx.jsonl(lines) if lines else b"")
            logs.append(path)
    workspace.write_benchmark(bench, fx.benchmark_yaml(bench, prompt=prompt))

    def ingest(db, *waves):
        """Put the files of each wave in the sessions folder, then run --once (into `db`)."""
        for f in workspace.sessions.iterdir():
            f.unlink()
        for wave in waves:
            for path in wave:
                shutil.copy(path, workspace.sessions / path.name)
            run_once(base_args=["--sessions-dir", str(workspace.sessions), "--benchmarks-dir",
                                str(workspace.benchmarks), "--db", str(db)])
        out = subprocess.run(daemon_command() + ["dump", "--db", str(db)], capture_output=True, text=True,
                             env=clean_env(), check=True).stdout.splitlines()
        return [json.loads(line) for line in out]

    together = ingest(tmp_path / "together.db", sessions + logs)
    assert ingest(tmp_path / "sessions-first.db", sessions, logs) == together
    assert ingest(tmp_path / "logs-first.db", logs, sessions) == together
    assert ingest(tmp_path / "one-by-one.db", *([p] for p in sorted(sessions + logs))) == together

    rows = {r["execution_id"]: r for r in together if r["table"] == "execution"}
    assert rows["finished"]["status"] == "Completed" and rows["finished"]["score"] == 0.75
    assert rows["finished"]["tool_call_count"] == 1 and rows["finished"]["step_count"] == 1
    assert rows["events-only"]["benchmark_id"] == bench and rows["events-only"]["recorded_session_id"] == "inner-session"
    assert rows["unfinished"]["status"] == "Running" and rows["unfinished"]["first_prompt"] == "other"
    assert rows["session-only"]["status"] == "Failed" and rows["session-only"]["event_count"] == 0
    assert rows["session-only"]["execution_time_ms"] is None
    assert rows["empty-log"]["updated_at"] is None and rows["empty-log"]["created_at"] is None
    assert rows["no-times"]["created_at"] is None and rows["no-times"]["updated_at"] == 0
    assert rows["sid-from-lines"]["recorded_session_id"] == "from-lines"
    assert rows["times-out-of-order"]["created_at"] == fx.unix(10)
    stats = [r for r in together if r["table"] == "agent_benchmark_stats"]
    assert sum(r["finished"] for r in stats) == 3      # finished, session-only, sid-from-lines


def test_files_read_ahead_by_the_worker_give_the_database_the_loop_gives(workspace, run_once, live_daemon,
                                                                          tmp_path):
    """A back-fill batch with many new files has a worker process read and parse them while the
    loop writes (daemon/read_worker.py); a batch with few reads them in the loop. Both must give
    the same database, bad input included, and so must a live start's catch-up (batches of a
    few milliseconds, the worker's reads carried over from one to the next)."""
    import shutil
    import subprocess

    from daemon.read_worker import MIN_FILES
    from tests.conftest import clean_env, daemon_command

    bench = "301-test-transfer"
    prompt = "Send 0.3 SOL to the second wallet."
    workspace.write_benchmark(bench, fx.benchmark_yaml(bench, prompt=prompt))
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(40):
        run = f"run-{i:02d}"
        if i % 5:
            doc = fx.session_doc(f"s{i}", benchmark_id=bench, score=i / 40, finished=i % 3 != 0)
            (staging / f"session_{run}.json").write_bytes(fx.session_bytes(doc))
        lines = [fx.prompt_line(prompt, at=i), fx.tool_input_line("sol_transfer", {"n": i}, at=i + 1)]
        if i % 2:
            lines.append(fx.tool_output_line(i % 4 == 1, "[]", at=i + 2))
        if i % 4 == 0:
            lines[1:1] = ['{"event_type":"Prom', b'{"x":"\xff"}', '"bare"']    # bad lines amid good ones
        data = fx.jsonl(lines)
        if i % 7 == 0:
            data += b'{"event_type":"StepComp'                                  # a partial last line
        (staging / f"enhanced_otel_{run}.jsonl").write_bytes(data)
    (staging / "enhanced_otel_empty.jsonl").write_bytes(b"")
    (staging / "session_broken.json").write_bytes(b"{ not json")
    for path in staging.iterdir():
        age(path)
    files = sorted(staging.iterdir())
    assert len(files) >= MIN_FILES + 8

    def ingest(db, *waves):
        for f in workspace.sessions.iterdir():
            f.unlink()
        os.symlink(files[0], workspace.sessions / "enhanced_otel_link.jsonl")    # not a regular file
        stderr = ""
        for wave in waves:
            for path in wave:
                shutil.copy2(path, workspace.sessions / path.name)
            stderr += run_once("--log-level", "info", base_args=[
                "--sessions-dir", str(workspace.sessions), "--benchmarks-dir", str(workspace.benchmarks),
                "--db", str(db)]).stderr
        return dump(db), stderr

    def dump(db):
        out = subprocess.run(daemon_command() + ["dump", "--db", str(db)], capture_output=True, text=True,
                             env=clean_env(), check=True).stdout.splitlines()
        return [json.loads(line) for line in out]

    ahead, ahead_log = ingest(tmp_path / "ahead.db", files)
    assert "read worker started" in ahead_log
    wave = MIN_FILES // 2
    in_loop, loop_log = ingest(tmp_path / "loop.db", *(files[i:i + wave] for i in range(0, len(files), wave)))
    assert "read worker started" not in loop_log
    assert ahead == in_loop
    assert "Traceback" not in ahead_log
    live = live_daemon(log_level="info")
    live.wait_log("caught up", timeout=60)
    assert live.stop() == 0
    assert "read worker started" in live.stderr() and "Traceback" not in live.stderr()
    assert "read worker failed" not in live.stderr()
    assert dump(workspace.db_target) == ahead     # (on PostgreSQL: the same records as SQLite's)
    tables = {}
    for r in ahead:
        tables[r["table"]] = tables.get(r["table"], 0) + 1
    assert tables["execution"] == 40 + 1 and tables["ingest_error"] == 10 * 3 + 2    # + the empty log; + broken, link
    errors = [r for r in ahead if r["table"] == "ingest_error"]
    assert any("enhanced_otel_link.jsonl" in r["path"] and "cannot read" in r["reason"] for r in errors)
    assert any("session_broken.json" in r["path"] for r in errors)


def test_a_file_gone_while_the_daemon_was_stopped_is_marked_missing_and_a_back_fill_does_not_look(
        workspace, run_once, db):
    """The scan looks for tracked files that are gone only when it found fewer than are tracked:
    not after a back-fill (files first tracked during the scan), but when one went away."""
    from daemon.service import MAX_FILES_PER_BATCH

    for run in ("a", "b", "c"):
        workspace.append_events(run, [fx.prompt_line("p", at=0)])
    for i in range(MAX_FILES_PER_BATCH):          # more than a batch: some are tracked before the scan ends
        workspace.events_path(f"empty-{i}").touch()
    first = run_once("--log-level", "debug")
    assert "looking for gone ones" not in first.stderr
    assert db.event_count("a") == 1

    workspace.events_path("b").unlink()
    workspace.append_events("d", [fx.prompt_line("p", at=1)])               # and a new one meanwhile
    second = run_once("--log-level", "debug")
    assert "looking for gone ones" in second.stderr
    assert db.file(workspace.events_path("b"))["state"] == "missing"
    assert db.event_count("b") == 1                                         # its rows are kept
    assert db.event_count("d") == 1


@pytest.mark.sqlite_only
def test_once_leaves_an_empty_wal_after_a_back_fill(workspace, run_once, db):
    """--once copies what its WAL holds into the database and cuts the file back when it exits
    (the file stays: a reader without write access to the folder needs it)."""
    for r in range(24):
        workspace.append_events(f"big-{r}", [fx.prompt_line("p" * 900, at=i) for i in range(1000)])
    run_once()
    assert db.scalar("SELECT count(*) FROM events") == 24_000
    assert os.path.exists(f"{workspace.db_path}-wal")
    assert os.path.getsize(f"{workspace.db_path}-wal") == 0


# ---------------------------------------------------------------------- --once and a database that fails

def once_failure(stderr: str, db: Path) -> str:
    """The one line a --once run that a database error stopped writes: no traceback."""
    lines = stderr.strip().splitlines()
    assert not any("Traceback" in line or "uncaught" in line for line in lines), stderr
    failed = [line for line in lines if "--once stopped" in line]
    assert len(failed) == 1 and f"the database {db} failed" in failed[0], stderr
    return failed[0]


@pytest.mark.sqlite_only      # (a SQLite file damaged or on a full filesystem)
def test_once_on_a_corrupt_database_exits_1_with_one_line(workspace, run_once):
    """A database damaged past its first pages opens, and fails in a batch: `--once` says which
    database and why, in one line, and exits 1 (docs/design.md), not a crash with a traceback."""
    for n in range(40):
        workspace.append_events(f"run-{n}", [fx.prompt_line("p" * 2000, at=i) for i in range(20)])
    run_once()
    data = bytearray(workspace.db_path.read_bytes())
    page = 4096
    cut = len(data) - len(data) // 4 // page * page      # the last quarter: rows, not the schema
    data[cut:] = b"\xa5" * (len(data) - cut)
    workspace.db_path.write_bytes(bytes(data))
    for n in range(40):
        workspace.append_events(f"run-{n}", [fx.prompt_line("more", at=30)])
    line = once_failure(run_once(expect_rc=1).stderr, workspace.db_path)
    assert "CorruptError" in line and "malformed" in line, line


@pytest.mark.sqlite_only      # (a SQLite file damaged or on a full filesystem)
def test_once_on_a_full_disk_exits_1_and_keeps_what_it_committed(workspace, run_once, tmp_path):
    """No space left: one line, exit 1; what was committed stays, and a run once there is
    space again ingests the rest, each line once."""
    from tests.reliability.test_db_faults import fill, small_filesystem
    with small_filesystem(tmp_path / "small-fs", "16m") as fs:
        db = fs / "reev.db"
        args = ["--sessions-dir", str(workspace.sessions), "--benchmarks-dir", str(workspace.benchmarks),
                "--db", str(db)]
        workspace.append_events("first", [fx.prompt_line("p", at=1)])
        run_once(base_args=args)
        filler = fill(fs)
        os.truncate(filler, filler.stat().st_size - 512 * 1024)     # room to open, not for all of it
        for n in range(30):
            workspace.append_events(f"big-{n}", [fx.prompt_line("x" * 20_000, at=i) for i in range(4)])
        line = once_failure(run_once(base_args=args, expect_rc=1).stderr, db)
        assert "FullError" in line, line
        filler.unlink()
        run_once(base_args=args)
        with apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchall()[0][0] == 1 + 30 * 4


@pytest.mark.sqlite_only      # (SQLite's write lock; PostgreSQL's conflicts: tests/test_postgres_retry.py)
def test_once_on_sqlite_runs_again_a_batch_that_another_process_held_the_database_past(workspace, db, tmp_path):
    """Another process holds SQLite's write lock past the busy timeout while a --once run has a
    batch to commit: the batch is rolled back (BusyError), backed off and run again, the run exits
    0, and the batch retried is counted (meta retried_batches_total, `status`)."""
    from daemon.storage.sqlite.engine import BUSY_TIMEOUT_MS
    from tests.reliability.support import hold_database
    workspace.append_events("a", [fx.prompt_line("p", at=0)])
    workspace.write_session("a", b'{"final_result": {')     # caught mid-write: looked at again after 3 s
    log = tmp_path / "once.stderr"
    with open(log, "wb") as err:
        once = subprocess.Popen(daemon_command() + workspace.args() + ["--once", "--settle-seconds", "3"],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=clean_env())
    try:
        wait_for(lambda: db.event_count("a") == 1, timeout=20, what="the event log's batch")
        # held from before the settle period ends until past one busy timeout after it
        holder = hold_database(workspace.db_path, "IMMEDIATE", 3 + BUSY_TIMEOUT_MS / 1000 + 3)
        assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
        assert once.wait(60) == 0, log.read_text()
        holder.communicate(timeout=30)
    finally:
        if once.poll() is None:
            once.kill()
            once.wait()
    text = log.read_text()
    retried = len([line for line in text.splitlines() if "database error (BusyError" in line])
    assert retried >= 1 and "Traceback" not in text, text
    assert db.meta("retried_batches_total") == retried
    proc = subprocess.run(daemon_command() + ["status", "--json", "--db", str(workspace.db_path)],
                          capture_output=True, text=True, env=clean_env(), timeout=30)
    assert json.loads(proc.stdout)["retried_batches_total"] == retried


# A JSON text may hold a NUL character as the escape \u0000; no text column of PostgreSQL can hold
# one, nor jsonb. A line, session file or benchmark with one in a field the daemon stores as text
# failed its whole batch there for ever (the daemon retried it with backoff and ingested nothing
# more; --once exited 1), while SQLite stored it; one elsewhere in a line was stored, and the API's
# tool calls of that run were a 500 (jsonb). Such input is bad input on both backends, named by where.
NUL_CASES = {
    "$.event_type": '{"timestamp":"2025-10-30T03:44:17Z","event_type":"Pro\\u0000mpt"}',
    "$.tool_input.tool_name": '{"timestamp":"2025-10-30T03:44:17Z","event_type":"ToolInput",'
                              '"tool_input":{"tool_name":"sol\\u0000transfer","tool_args":{}}}',
    "$.tool_output.error_message": '{"timestamp":"2025-10-30T03:44:17Z","event_type":"ToolOutput",'
                                   '"tool_output":{"success":false,"results":null,"error_message":"e\\u0000"}}',
    "$.session_id": '{"timestamp":"2025-10-30T03:44:17Z","event_type":"Prompt","session_id":"s\\u0000"}',
    "$.other": '{"timestamp":"2025-10-30T03:44:18Z","event_type":"X","other":"\\u0000"}',
    "$.tool_input.tool_args.memo": fx.tool_input_line("sol_transfer", {"memo": "a\u0000b"}, at=2),
}


def test_a_nul_character_in_a_document_is_bad_input_and_the_rest_is_ingested(workspace, run_once, db):
    escaped_backslash = '{"timestamp":"2025-10-30T03:44:19Z","event_type":"X","other":"\\\\u0000"}'
    items = [fx.prompt_line("first", at=0), *NUL_CASES.values(), escaped_backslash]
    path = workspace.append_events(X, items)
    workspace.write_session(Y, b'{"session_id": "y", "agent_type": "bad\\u0000agent"}')
    workspace.write_benchmark("350-nul.yml", 'id: 350-nul\ndescription: "a\\0b"\nprompt: p\n')
    workspace.write_benchmark("351-fine.yml", "id: 351-fine\ndescription: d\nprompt: p\n")
    workspace.append_events("other-run", [fx.prompt_line("still ingested")])
    run_once()
    assert [e["line"] for e in db.events(X)] == [1, 8]
    reasons = {e["line"]: e["reason"] for e in db.errors(path)}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7], reasons
    for line, where in zip(range(2, 8), NUL_CASES):
        assert reasons[line].startswith(f"NUL character (\\u0000) in `{where}`"), reasons[line]
    assert "`$.agent_type`" in db.errors(workspace.session_path(Y))[0]["reason"]
    assert "`$.description`" in db.errors(workspace.benchmark_path("350-nul.yml"))[0]["reason"]
    assert db.benchmark("351-fine") is not None and db.benchmark("350-nul") is None
    assert db.event_count("other-run") == 1
