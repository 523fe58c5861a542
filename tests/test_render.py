"""Unit and property tests for api/render.py (pure renderers: trace, transaction logs, flow)."""

from __future__ import annotations

import copy
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.render import (
    MAX_FLOW_TOOL_STATES,
    RunFacts,
    ToolCallFacts,
    flow_diagram,
    flow_state_count,
    trace_text,
    transaction_logs_text,
)

SYSTEM = "11111111111111111111111111111111"
TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
ATA = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
ALICE = "AL1cEq7m4d9WxYm3PSvhuQ6CSZgNQhMrSsY5eyZtJSp7"
BOB = "B0bbX2Fz5kPq3RkJdW4tqzNwN5v7hYHd8ZxE2cW1aGq9"
MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

# ---------------------------------------------------------------------------
# fixtures (written here, in the session-file format of docs/formats.md §2)


def run_facts(**kw) -> RunFacts:
    base = dict(
        execution_id="0b1c2d3e-aaaa-4bbb-8ccc-000000000001",
        benchmark_id="001-sol-transfer",
        agent_type="deterministic",
        status="Completed",
        score=1.0,
        execution_time_ms=4200,
        created_at=1761795821.0,
        updated_at=1761795825.2,
    )
    base.update(kw)
    return RunFacts(**base)


def sol_transfer_step() -> dict:
    return {
        "thought": None,
        "action": [
            {
                "program_id": SYSTEM,
                "accounts": [
                    {"pubkey": ALICE, "is_signer": True, "is_writable": True},
                    {"pubkey": BOB, "is_signer": False, "is_writable": True},
                ],
                "data": "3Bxs411Dtc7pkFQj",
            }
        ],
        "observation": {
            "last_transaction_status": "Success",
            "last_transaction_error": None,
            "last_transaction_logs": [
                f"Program {SYSTEM} invoke [1]",
                f"Program {SYSTEM} success",
            ],
            "account_states": {"USER_WALLET_PUBKEY": {"lamports": 899995000, "owner": SYSTEM}},
            "key_map": {"USER_WALLET_PUBKEY": ALICE},
        },
        "info": {},
    }


def sol_transfer_result() -> dict:
    return {
        "success": True,
        "score": 1.0,
        "status": "Succeeded",
        "execution_time_ms": 4200,
        "data": {
            "prompt": "Please send 0.1 SOL to the recipient (RECIPIENT_WALLET_PUBKEY).",
            "steps": [sol_transfer_step()],
        },
    }


SPL_ERROR = "Error processing Instruction 0: custom program error: 0x1"


def failed_spl_step() -> dict:
    return {
        "thought": "Transfer 50 USDC",
        "action": [
            {
                "program_id": TOKEN,
                "accounts": [
                    {"pubkey": ALICE, "is_signer": False, "is_writable": True},
                    {"pubkey": BOB, "is_signer": False, "is_writable": True},
                    {"pubkey": ALICE, "is_signer": True, "is_writable": False},
                ],
                "data": "3DdGGhkhJbjm",
            }
        ],
        "observation": {
            "last_transaction_status": "Failure",
            "last_transaction_error": SPL_ERROR,
            "last_transaction_logs": [
                f"Program {TOKEN} invoke [1]",
                "Program log: Instruction: Transfer",
                "Program log: Error: insufficient funds",
                f"Program {TOKEN} consumed 4381 of 200000 compute units",
                f"Program {TOKEN} failed: custom program error: 0x1",
            ],
        },
    }


def failed_result() -> dict:
    return {
        "success": False,
        "score": 0.0,
        "status": "Failed",
        "execution_time_ms": 2500,
        "data": {"prompt": "Send 50 USDC to Bob.", "steps": [failed_spl_step()]},
    }


def create_ata_step() -> dict:
    return {
        "action": {  # a lone instruction object instead of a list: producers do that
            "program_id": ATA,
            "accounts": [
                {"pubkey": ALICE, "is_signer": True, "is_writable": True},
                {"pubkey": MINT, "is_signer": False, "is_writable": False},
            ],
            "data": "",
        },
        "observation": {
            "last_transaction_status": "Success",
            "last_transaction_logs": [
                f"Program {ATA} invoke [1]",
                "Program log: Create",
                f"Program {TOKEN} invoke [2]",
                "Program log: Instruction: GetAccountDataSize",
                f"Program {TOKEN} success",
                f"Program {SYSTEM} invoke [2]",
                f"Program {SYSTEM} success",
                f"Program {ATA} success",
            ],
        },
    }


def multi_step_result() -> dict:
    return {
        "success": True,
        "score": 0.75,
        "status": "Succeeded",
        "execution_time_ms": 91000,
        "data": {
            "prompt": "Create the token account, then send SOL, then fail a token transfer",
            "steps": [create_ata_step(), sol_transfer_step(), failed_spl_step()],
        },
    }


TOOLS = [
    {
        "tool_name": "get_account_balance",
        "start_time": 1760882000,
        "end_time": 1760882002,
        "params": {"pubkey": "USER_1"},
        "result": {"balance": "100 USDC"},
        "status": "success",
    },
    {
        "tool_name": "jupiter_swap",
        "start_time": 1760882002,
        "end_time": 1760882004,
        "params": {"amount": 1000000},
        "result": None,
        "status": "error",
    },
]


def tool_calls() -> list[ToolCallFacts]:
    return [
        ToolCallFacts("sol_transfer", 1761795822.0, 1761795822.25, 250.0, True, None),
        ToolCallFacts("get_account_balance", 1761795823.0, 1761795824.5, None, False, "RPC timeout"),
    ]


def lines_of(text: str) -> list[str]:
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def line_with(text: str, needle: str) -> str:
    hits = [ln for ln in lines_of(text) if needle in ln]
    assert hits, f"no line contains {needle!r} in:\n{text}"
    return hits[0]


def index_of(text: str, needle: str) -> int:
    i = text.find(needle)
    assert i >= 0, f"{needle!r} not in:\n{text}"
    return i


# ---------------------------------------------------------------------------
# trace_text


def test_trace_finished_sol_transfer():
    out = trace_text(run_facts(), sol_transfer_result(), [])
    first = lines_of(out)[0]
    assert "✅" in first and "001-sol-transfer" in first and "deterministic" in first
    assert "4.2 s" in first and "100.0%" in first
    assert "Step 1" in out and "Step 2" not in out
    assert "Program " + SYSTEM in line_with(out, "Instruction 1")
    assert "Accounts" in out
    assert "[signer, writable]" in line_with(out, ALICE)
    assert line_with(out, BOB).endswith(f"{BOB} [writable]")
    assert "3Bxs411Dtc7pkFQj" in line_with(out, "Data:")
    assert "✅ Success" in line_with(out, "Observation")
    assert f"Program {SYSTEM} invoke [1]" in out
    assert f"Program {SYSTEM} success" in out
    assert "Error:" not in out
    assert "Please send 0.1 SOL" in line_with(out, "Prompt")
    # tree characters, and the order: action before observation before logs
    assert "├─ " in out and "└─ " in out and "│" in out
    assert index_of(out, "Accounts") < index_of(out, "Observation") < index_of(out, "invoke [1]")
    assert out.endswith("\n")


def test_trace_failed_step_shows_error():
    run = run_facts(status="Failed", score=0.0, execution_time_ms=2500, benchmark_id="003-spl-transfer-fail")
    out = trace_text(run, failed_result(), [])
    assert lines_of(out)[0].startswith("❌")
    assert "003-spl-transfer-fail" in lines_of(out)[0]
    assert "0.0%" in lines_of(out)[0]
    assert "❌ Failure" in line_with(out, "Observation")
    assert line_with(out, "Error:").endswith("Error: " + SPL_ERROR)
    assert f"Program {TOKEN}" in out
    assert "❌" in line_with(out, "failed: custom program error: 0x1")
    assert "Thought: Transfer 50 USDC" in out
    # third account: signer but read-only
    accounts = [ln for ln in lines_of(out) if ALICE in ln]
    assert accounts[-1].endswith("[signer]")
    assert "❌ Result: Failed" in out


def test_trace_multi_step_in_order_and_nested_logs():
    out = trace_text(run_facts(score=0.75, execution_time_ms=91000), multi_step_result(), tool_calls())
    s1, s2, s3 = (index_of(out, f"Step {i}") for i in (1, 2, 3))
    assert s1 < s2 < s3
    assert "Step 4" not in out
    # step 1 (a lone instruction object) still shows its program and accounts
    assert index_of(out, f"Program {ATA}") < s2
    assert "[readonly]" in line_with(out, MINT)
    # inner invocations are indented deeper than the outer one
    outer = line_with(out, f"Program {ATA} invoke [1]")
    inner = line_with(out, f"Program {TOKEN} invoke [2]")
    assert inner.index("Program") > outer.index("Program")
    assert "1m 31s" in lines_of(out)[0] and "75.0%" in lines_of(out)[0]
    # stored tool calls come after the steps, in order, with outcome and error
    t1, t2 = index_of(out, "sol_transfer ("), index_of(out, "get_account_balance (")
    assert s3 < t1 < t2
    assert "✅" in line_with(out, "sol_transfer (") and "250 ms" in line_with(out, "sol_transfer (")
    assert "❌" in line_with(out, "get_account_balance (") and "1.5 s" in line_with(out, "get_account_balance (")
    assert "Error: RPC timeout" in out


def test_trace_running_without_final_result():
    run = run_facts(status="Running", score=None, execution_time_ms=None, benchmark_id=None)
    out = trace_text(run, None, [])
    first = lines_of(out)[0]
    assert first.startswith("⏳") and "Running" in first and "unknown benchmark" in first
    assert "score pending" in first
    assert "4.2 s" in first  # elapsed from created_at to updated_at
    assert "⚠️" in out and "still running" in out
    assert out.strip()


def test_trace_running_lists_tool_calls_so_far():
    run = run_facts(status="Running", score=None, execution_time_ms=None)
    calls = [ToolCallFacts("sol_transfer", 1761795822.0, None, None, None, None)]
    out = trace_text(run, None, calls)
    assert "⏳" in line_with(out, "sol_transfer") and "no result" in line_with(out, "sol_transfer")


def test_trace_lists_tools_from_final_result_and_data_deduplicated():
    fr = sol_transfer_result()
    fr["data"]["tools"] = copy.deepcopy(TOOLS)
    fr["tools"] = copy.deepcopy(TOOLS[:1]) + [{"tool_name": "only_top_level", "status": "success"}]
    out = trace_text(run_facts(), fr, [])
    assert out.count("get_account_balance") == 1
    assert "jupiter_swap" in out and "only_top_level" in out
    assert "✅" in line_with(out, "get_account_balance") and "2.0 s" in line_with(out, "get_account_balance")
    assert "❌" in line_with(out, "jupiter_swap")
    assert '"pubkey": "USER_1"' in line_with(out, "Params:")
    assert "100 USDC" in out


def test_trace_no_steps_says_so():
    fr = {"success": True, "score": 1.0, "status": "Succeeded", "data": {"prompt": "hi"}}
    out = trace_text(run_facts(), fr, [])
    assert "⚠️ No steps recorded" in out


def test_trace_wrong_types_are_reported_not_raised():
    fr = {
        "success": "yes",
        "score": "high",
        "status": 3,
        "data": {
            "steps": [
                "not a step",
                {"action": [None, 7, {"program_id": 5, "accounts": "x"}], "observation": ["x"]},
                {"action": {"program_id": SYSTEM, "accounts": [None]}, "observation": {"last_transaction_logs": [1, None, "Program log: ok"]}},
            ],
            "tools": "nope",
        },
    }
    out = trace_text(run_facts(score=None), fr, [])
    assert "Step 1" in out and "Step 2" in out and "Step 3" in out
    assert "⚠️" in out
    assert "Program log: ok" in out
    assert f"Program {SYSTEM}" in out


def test_trace_steps_not_a_list():
    out = trace_text(run_facts(), {"data": {"steps": 42}}, [])
    assert "⚠️ steps has an unexpected type" in out


def test_trace_final_result_not_an_object():
    out = trace_text(run_facts(), ["odd"], [])  # type: ignore[arg-type]
    assert "⚠️ final_result has an unexpected type" in out


def test_trace_one_line_per_item_even_with_newlines_in_data():
    fr = sol_transfer_result()
    fr["data"]["steps"][0]["observation"]["last_transaction_logs"] = ["line one\nline two\r\u2028three"]
    fr["data"]["steps"][0]["observation"]["last_transaction_error"] = "bad\nthing"
    out = trace_text(run_facts(), fr, [])
    assert "line one line two  three" in out
    assert "Error: bad thing" in out
    assert out.split("\n")[:-1] == out.splitlines()


# ---------------------------------------------------------------------------
# transaction_logs_text


def test_transaction_logs_sol_transfer():
    out = transaction_logs_text(run_facts(), sol_transfer_result())
    assert lines_of(out)[0].startswith("✅")
    assert "Step 1" in out and "✅ Success" in line_with(out, "Step 1")
    assert SYSTEM in out
    assert f"Program {SYSTEM} invoke [1]" in out
    assert f"Program {SYSTEM} success" in out
    assert "Error:" not in out


def test_transaction_logs_failed_step():
    out = transaction_logs_text(run_facts(status="Failed"), failed_result())
    assert "❌" in line_with(out, "Step 1")
    assert "Error: " + SPL_ERROR in out
    assert TOKEN in out
    for log in failed_spl_step()["observation"]["last_transaction_logs"]:
        assert log in out
    assert "❌" in line_with(out, "failed: custom program error")


def test_transaction_logs_multi_step_lists_programs_in_order():
    out = transaction_logs_text(run_facts(), multi_step_result())
    s1, s2, s3 = (index_of(out, f"Step {i}") for i in (1, 2, 3))
    assert s1 < s2 < s3
    assert s1 < index_of(out, f"Program {ATA} invoke [1]") < s2
    assert s2 < index_of(out, f"Program {SYSTEM} invoke [1]") < s3
    programs = out[index_of(out, "Programs ("):]
    for pid in (ATA, TOKEN, SYSTEM):
        assert f"Program {pid}" in programs
    assert programs.index(ATA) < programs.index(TOKEN) < programs.index(SYSTEM)
    assert "Programs (3)" in programs


def test_transaction_logs_nothing_to_show():
    running = transaction_logs_text(run_facts(status="Running", score=None), None)
    assert "⚠️" in running and "still running" in running
    empty = transaction_logs_text(run_facts(), {"success": True, "data": {"steps": []}})
    assert "⚠️ No transactions recorded" in empty
    no_logs = transaction_logs_text(run_facts(), {"data": {"steps": [{"action": [{"program_id": SYSTEM}]}]}})
    assert SYSTEM in no_logs and "⚠️ No transaction logs recorded for this step" in no_logs


# ---------------------------------------------------------------------------
# flow_diagram

ID = r"[A-Za-z0-9_]+"
STATE_DECL = re.compile(rf'^    state "([^"\n]*)" as ({ID})$')
TRANSITION = re.compile(rf"^    (\[\*\]|{ID}) --> ({ID}|\[\*\])$")


def parse_flow(diagram: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Check the Mermaid text line by line; return {state id: label} and the transitions."""
    lines = lines_of(diagram)
    assert lines[0] == "stateDiagram-v2"
    states: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for line in lines[1:]:
        m = STATE_DECL.match(line)
        if m:
            label, sid = m.groups()
            assert sid not in states, f"duplicate state id {sid}"
            assert ":" not in label and "-->" not in label and "--" not in label
            assert "%%" not in label and ";" not in label and "#" not in label
            states[sid] = label
            continue
        m = TRANSITION.match(line)
        assert m, f"unexpected Mermaid line {line!r}"
        edges.append(m.groups())
    for a, b in edges:
        for end in (a, b):
            assert end == "[*]" or end in states, f"undeclared state {end}"
    return states, edges


def chain(edges: list[tuple[str, str]]) -> list[str]:
    """The states visited from [*] to [*] (the diagram is a single path)."""
    nxt = dict(edges)
    assert len(nxt) == len(edges), "a state has two outgoing transitions"
    path, cur = [], nxt["[*]"]
    while cur != "[*]":
        path.append(cur)
        cur = nxt[cur]
        assert len(path) <= len(edges)
    return path


def test_flow_tool_calls_in_order():
    out = flow_diagram(run_facts(), tool_calls())
    assert out.startswith("stateDiagram")
    states, edges = parse_flow(out)
    assert chain(edges) == ["Prompt", "sol_transfer_1", "get_account_balance_2", "Completed"]
    assert "sol_transfer" in states["sol_transfer_1"] and "250 ms" in states["sol_transfer_1"]
    assert "✅" in states["sol_transfer_1"]
    assert "❌" in states["get_account_balance_2"] and "1.5 s" in states["get_account_balance_2"]
    assert "001-sol-transfer" in states["Prompt"]
    assert ("Completed", "[*]") in edges
    assert len(states) == 4 and flow_state_count(tool_calls()) == 4       # Prompt, two tools, Completed


@pytest.mark.parametrize("status", ["Completed", "Failed", "Running", "Queued", "Stopped", "Timeout"])
def test_flow_without_tool_calls_goes_straight_to_status(status):
    states, edges = parse_flow(flow_diagram(run_facts(status=status), []))
    assert chain(edges) == ["Prompt", status]
    assert status in states[status]
    assert (status, "[*]") in edges
    assert len(states) == 2 and flow_state_count([]) == 2                 # Prompt, the status


def test_flow_unknown_status_is_safe():
    states, edges = parse_flow(flow_diagram(run_facts(status='we"ird --> [*]: x'), []))
    assert chain(edges) == ["Prompt", "Unknown"]


def test_flow_hostile_and_repeated_names_are_safe_and_unique():
    names = [
        'say "hi"',
        "a:b",
        "multi\nline\rname",
        "x --> y",
        "sol_transfer",
        "sol_transfer",
        "",
        None,
        "123start",
        "state",
        "%%comment",
        "ツール",
        "Completed",
        "Prompt",
    ]
    calls = [ToolCallFacts(n, None, None, 5.0, None, None) for n in names]
    out = flow_diagram(run_facts(), calls)
    states, edges = parse_flow(out)
    path = chain(edges)
    assert path[0] == "Prompt" and path[-1] == "Completed"
    tool_ids = path[1:-1]
    assert len(tool_ids) == len(names) == len(set(tool_ids))
    for sid in tool_ids:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sid)
    assert tool_ids[4] == "sol_transfer_5" and tool_ids[5] == "sol_transfer_6"
    assert "hi" in states[tool_ids[0]]
    assert "ツール" in states[tool_ids[11]]
    assert "\n" not in "".join(states.values())


def test_flow_many_tool_calls_collapse():
    calls = [ToolCallFacts(f"tool{i}", None, None, 1.0, True, None) for i in range(MAX_FLOW_TOOL_STATES + 25)]
    out = flow_diagram(run_facts(), calls)
    states, edges = parse_flow(out)
    assert len(chain(edges)) == MAX_FLOW_TOOL_STATES + 3
    assert any("25 more tool calls" in label for label in states.values())
    # Prompt, the first 100 tools, one state for the other 25, Completed
    assert MAX_FLOW_TOOL_STATES == 100 and len(states) == flow_state_count(calls) == 103
    assert len(out) < 50_000  # Mermaid's default maxTextSize


# ---------------------------------------------------------------------------
# robustness: any JSON-decodable final_result, any tool calls

any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=30)  # incl. lone surrogates
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),  # NaN/Infinity: stdlib json decodes them
    any_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(any_text, inner, max_size=4),
    ),
    max_leaves=12,
)


def maybe(strategy):
    return st.one_of(strategy, json_values)


log_lines = st.lists(
    maybe(
        st.one_of(
            st.sampled_from(
                [
                    f"Program {SYSTEM} invoke [1]",
                    f"Program {TOKEN} invoke [2]",
                    f"Program {SYSTEM} success",
                    f"Program {TOKEN} failed: custom program error: 0x1",
                    "Program log: Instruction: Transfer",
                ]
            ),
            any_text,
        )
    ),
    max_size=12,
)
accounts = st.lists(
    maybe(st.fixed_dictionaries({}, optional={"pubkey": maybe(any_text), "is_signer": maybe(st.booleans()), "is_writable": maybe(st.booleans())})),
    max_size=3,
)
instruction = st.fixed_dictionaries({}, optional={"program_id": maybe(any_text), "accounts": maybe(accounts), "data": json_values})
observation = st.fixed_dictionaries(
    {},
    optional={
        "last_transaction_status": maybe(st.sampled_from(["Success", "Failure"])),
        "last_transaction_error": maybe(any_text),
        "last_transaction_logs": maybe(log_lines),
        "account_states": json_values,
        "key_map": json_values,
    },
)
step = st.fixed_dictionaries(
    {},
    optional={
        "thought": json_values,
        "action": maybe(st.one_of(instruction, st.lists(maybe(instruction), max_size=3))),
        "observation": maybe(observation),
        "info": json_values,
    },
)
tool_record = st.fixed_dictionaries(
    {},
    optional={
        "tool_name": maybe(any_text),
        "start_time": json_values,
        "end_time": json_values,
        "params": json_values,
        "result": json_values,
        "status": maybe(st.sampled_from(["success", "error"])),
    },
)
tools = maybe(st.lists(maybe(tool_record), max_size=3))
final_results = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "success": json_values,
            "score": json_values,
            "status": json_values,
            "execution_time_ms": json_values,
            "tools": tools,
            "data": maybe(
                st.fixed_dictionaries(
                    {}, optional={"prompt": json_values, "steps": maybe(st.lists(maybe(step), max_size=3)), "tools": tools}
                )
            ),
        },
    ),
)

floats = st.one_of(st.none(), st.floats(), st.integers(min_value=-(10**20), max_value=10**20))
typed_calls = st.builds(
    ToolCallFacts,
    tool_name=st.one_of(st.none(), any_text, st.sampled_from(["sol_transfer", 'a"b:c-->d\n', "state", "9x"])),
    started_at=floats,
    ended_at=floats,
    duration_ms=floats,
    success=st.one_of(st.none(), st.booleans()),
    error_message=st.one_of(st.none(), any_text),
)
# msgspec does not type-check on construction: callers could hand in anything
untyped_calls = st.builds(
    ToolCallFacts,
    tool_name=json_values,
    started_at=json_values,
    ended_at=json_values,
    duration_ms=json_values,
    success=json_values,
    error_message=json_values,
)
calls_lists = st.lists(st.one_of(typed_calls, untyped_calls), max_size=6)
runs = st.builds(
    RunFacts,
    execution_id=any_text,
    benchmark_id=st.one_of(st.none(), any_text),
    agent_type=st.one_of(st.none(), any_text),
    status=st.one_of(st.sampled_from(["Running", "Completed", "Failed", "Queued", "Stopped", "Timeout"]), any_text),
    score=floats,
    execution_time_ms=st.one_of(st.none(), st.integers()),
    created_at=floats,
    updated_at=floats,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_text(out: str) -> None:
    assert isinstance(out, str) and out.strip()
    out.encode("utf-8")  # no lone surrogates
    assert out.endswith("\n")
    assert out.split("\n")[:-1] == out.splitlines()  # one line per item
    assert lines_of(out)[0][:1] in {"✅", "❌", "⏳", "⚠"}


@FAST
@given(run=runs, final_result=final_results, calls=calls_lists)
def test_trace_never_raises(run, final_result, calls):
    out = trace_text(run, final_result, calls)
    check_text(out)
    if not (isinstance(final_result, dict) and isinstance(final_result.get("data"), dict)
            and final_result["data"].get("steps")):
        assert "⚠️" in out


@FAST
@given(run=runs, final_result=final_results)
def test_transaction_logs_never_raises(run, final_result):
    out = transaction_logs_text(run, final_result)
    check_text(out)


@FAST
@given(run=runs, calls=calls_lists)
def test_flow_diagram_is_always_valid(run, calls):
    out = flow_diagram(run, calls)
    out.encode("utf-8")
    assert out.startswith("stateDiagram")
    states, edges = parse_flow(out)
    path = chain(edges)
    assert path[0] == "Prompt"
    assert len(path) == len(calls) + 2      # (calls_lists stays far below the collapse)
    assert len(states) == flow_state_count(calls) == len(calls) + 2
