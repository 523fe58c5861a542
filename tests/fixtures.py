"""Builders for the files reev writes (docs/formats.md), for tests of the daemon and the API.

Everything here produces plain data (dicts, text, bytes); writing them into a workspace is
the job of `conftest.Workspace`. Nothing here reads the reference samples: the shapes were
copied from the format description, the values are invented.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

BASE_TIME = datetime(2025, 10, 30, 3, 44, 17, 796472, tzinfo=timezone.utc)
RUNNER_VERSION = "0.1.0"

# ------------------------------------------------------------------------------ time


def rfc3339(seconds: float = 0.0, base: datetime = BASE_TIME) -> str:
    """BASE_TIME + seconds as reev writes it: RFC 3339 UTC with microseconds and a `Z`."""
    return (base + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unix(seconds: float = 0.0, base: datetime = BASE_TIME) -> float:
    """The Unix time of rfc3339(seconds)."""
    return (base + timedelta(seconds=seconds)).timestamp()


# ------------------------------------------------------------------------------ event lines (§3a)


def event_line(event_type: str, *, at: float = 0.0, session_id: str = "inner-session",
               prompt: Any = None, tool_input: Any = None, tool_output: Any = None,
               timing: dict | None = None, metadata: dict | None = None, **extra) -> dict:
    """One event line of the current logger, every field present as reev writes them."""
    line = {
        "timestamp": rfc3339(at),
        "session_id": session_id,
        "reev_runner_version": RUNNER_VERSION,
        "reev_agent_version": RUNNER_VERSION,
        "event_type": event_type,
        "prompt": prompt,
        "tool_input": tool_input,
        "tool_output": tool_output,
        "timing": timing if timing is not None else {"flow_timeuse_ms": 0, "step_timeuse_ms": 0},
        "metadata": metadata if metadata is not None else {},
    }
    line.update(extra)
    return line


def prompt_line(user_prompt: str, *, at: float = 0.0, tools: list[str] | None = None,
                final_prompt: str | None = None, **kw) -> dict:
    return event_line("Prompt", at=at, prompt={
        "tool_name_list": tools if tools is not None else ["sol_transfer", "get_account_balance"],
        "user_prompt": user_prompt,
        "final_prompt": final_prompt if final_prompt is not None else f"System rules.\n\n{user_prompt}",
    }, **kw)


def tool_input_line(tool_name: str, args: Any = None, *, at: float = 0.0, **kw) -> dict:
    return event_line("ToolInput", at=at, tool_input={
        "tool_name": tool_name, "tool_args": args if args is not None else {}}, **kw)


def tool_output_line(success: bool = True, results: Any = "[]", *, at: float = 0.0,
                     error_message: str | None = None, **kw) -> dict:
    """`results` may be a JSON string (as reev mostly writes it) or an object."""
    return event_line("ToolOutput", at=at, tool_output={
        "success": success, "results": results, "error_message": error_message}, **kw)


def step_complete_line(step_name: str = "step-1", *, at: float = 0.0, flow_ms: int = 0, **kw) -> dict:
    return event_line("StepComplete", at=at, metadata={"step_name": step_name},
                      timing={"flow_timeuse_ms": flow_ms, "step_timeuse_ms": 0}, **kw)


def unknown_event_line(event_type: str = "LlmReasoning", *, at: float = 0.0, **kw) -> dict:
    """An event_type this daemon has never heard of (must be kept as it is)."""
    return event_line(event_type, at=at, reasoning={"text": "thinking about it", "tokens": 12}, **kw)


# ------------------------------------------------------------------------------ older logger (§3b)


def legacy_call_line(tool_name: str, input_params: Any, *, at: float = 0.0,
                     output_result: Any = None, status: str = "success", execution_time_ms: int = 0,
                     error_message: str | None = None, session_id: str = "inner-session") -> dict:
    """A complete tool call written by the older logger."""
    return {
        "session_id": session_id,
        "tool_name": tool_name,
        "timestamp": rfc3339(at),
        "execution_time_ms": execution_time_ms,
        "input_params": input_params,
        "output_result": output_result if output_result is not None else {},
        "status": status,
        "error_message": error_message,
        "metadata": {},
    }


def legacy_update_line(tool_name: str, *, at: float = 0.0, output_result: Any = None,
                       status: str = "success", execution_time_ms: int = 0,
                       session_id: str = "inner-session") -> dict:
    """The older logger's update of its most recent call of `tool_name` (empty input_params)."""
    return legacy_call_line(tool_name, {}, at=at, output_result=output_result, status=status,
                            execution_time_ms=execution_time_ms, session_id=session_id)


# ------------------------------------------------------------------------------ summaries (§3c)


def summary_line(*, at: float = 0.0, tool_calls: int = 4, failed: int = 2, ok: int = 2,
                 total_events: int = 12, session_id: str = "inner-session") -> dict:
    """The bare summary object (no event_type)."""
    return {"failed_tools": failed, "logged_at": rfc3339(at), "session_id": session_id,
            "successful_tools": ok, "tool_calls": tool_calls, "total_events": total_events}


LEGACY_SUMMARY_PREFIX = "# SESSION_SUMMARY: "


def legacy_summary_body(*, at: float = 0.0, total: int = 2, tools: list[str] | None = None,
                        session_id: str = "inner-session") -> dict:
    return {"session_id": session_id, "timestamp": rfc3339(at), "total_tool_calls": total,
            "successful_calls": total, "failed_calls": 0, "timeout_calls": 0,
            "average_execution_time_ms": 12.5, "tools_used": tools or ["sol_transfer"]}


def legacy_summary_lines(**kw) -> list[str]:
    """The older logger's summary: an empty line, then `# SESSION_SUMMARY: {json}`."""
    return ["", LEGACY_SUMMARY_PREFIX + dumps(legacy_summary_body(**kw))]


# ------------------------------------------------------------------------------ encoding


def dumps(value: Any) -> str:
    """Compact JSON, as serde_json writes a line."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def line_text(item: dict | str | bytes) -> bytes:
    """One line without its newline: dicts are encoded, strings/bytes written as they are."""
    if isinstance(item, dict):
        return dumps(item).encode()
    if isinstance(item, str):
        return item.encode()
    return item


def jsonl(items) -> bytes:
    """Lines (dicts, raw strings or raw bytes; "" is a blank line), each `\\n`-terminated."""
    return b"".join(line_text(i) + b"\n" for i in items)


def stored_doc(item: dict | str) -> str:
    """What the daemon stores as a line's JSON for `item` (the text after a summary prefix)."""
    text = line_text(item).decode()
    return text[len(LEGACY_SUMMARY_PREFIX):] if text.startswith(LEGACY_SUMMARY_PREFIX) else text


def line_offsets(items) -> list[int]:
    """Byte offset of each line of jsonl(items)."""
    offsets, pos = [], 0
    for i in items:
        offsets.append(pos)
        pos += len(line_text(i)) + 1
    return offsets


# ------------------------------------------------------------------------------ session files (§2)


def instruction(program_id: str = "11111111111111111111111111111111",
                accounts: list[tuple[str, bool, bool]] | None = None, data: str = "3Bxs4h24hBtQy9rw") -> dict:
    accounts = accounts if accounts is not None else [("WalletAAAA1111", True, True), ("WalletBBBB2222", False, True)]
    return {"program_id": program_id,
            "accounts": [{"pubkey": k, "is_signer": s, "is_writable": w} for k, s, w in accounts],
            "data": data}


def observation(status: str = "Success", error: str | None = None,
                logs: list[str] | None = None) -> dict:
    return {
        "last_transaction_status": status,
        "last_transaction_error": error,
        "last_transaction_logs": logs if logs is not None else [
            "Program 11111111111111111111111111111111 invoke [1]",
            "Program 11111111111111111111111111111111 success"],
        "account_states": {"USER_WALLET_PUBKEY": {"lamports": 700_000_000, "owner": "11111111111111111111111111111111",
                                                  "executable": False, "data_len": 0}},
        "key_map": {"USER_WALLET_PUBKEY": "WalletAAAA1111"},
    }


def step(thought: str | None = None, action: list | None = None, obs: dict | None = None) -> dict:
    return {"thought": thought, "action": action if action is not None else [instruction()],
            "observation": obs if obs is not None else observation(), "info": {}}


def tool_record(tool_name: str = "get_account_balance", *, start: int = 1_761_795_830,
                params: Any = None, result: Any = None, status: str = "success") -> dict:
    return {"tool_name": tool_name, "start_time": start, "end_time": start + 2,
            "params": params if params is not None else {"pubkey": "USER_1"},
            "result": result if result is not None else {"balance": "3 SOL"}, "status": status}


def session_doc(session_id: str = "inner-session", *, benchmark_id: str | None = "301-test-transfer",
                agent_type: str = "deterministic", start_time: int = 1_761_795_821,
                end_time: int | None = 1_761_795_858, finished: bool = True, success: bool = True,
                score: float | None = None, status: str | None = None, execution_time_ms: int = 37_000,
                prompt: str = "Send 0.3 SOL to the second wallet.", steps: list | None = None,
                data_tools: list | None = None, result_tools: list | None = None,
                events: list | None = None, metadata: dict | None = None, **extra) -> dict:
    """A session_<id>.json document. finished=False leaves out final_result and end_time."""
    doc: dict[str, Any] = {"session_id": session_id}
    if benchmark_id is not None:
        doc["benchmark_id"] = benchmark_id
    doc.update({"agent_type": agent_type, "start_time": start_time,
                "end_time": end_time if finished else None, "events": events or []})
    if finished:
        data: dict[str, Any] = {"prompt": prompt, "steps": steps if steps is not None else [step()]}
        if data_tools is not None:
            data["tools"] = data_tools
        final: dict[str, Any] = {
            "success": success,
            "score": score if score is not None else (1.0 if success else 0.0),
            "status": status or ("Succeeded" if success else "Failed"),
            "execution_time_ms": execution_time_ms,
            "data": data,
        }
        if result_tools is not None:
            final["tools"] = result_tools
        doc["final_result"] = final
    if metadata is not None:
        doc["metadata"] = metadata
    doc.update(extra)
    return doc


def session_bytes(doc: dict) -> bytes:
    """Pretty-printed like reev's serde_json::to_string_pretty."""
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


# ------------------------------------------------------------------------------ benchmarks (§4)


def benchmark_yaml(bench_id: str | None = "301-test-transfer", *, description: str = "Move some SOL between two wallets.",
                   tags: list[str] | None = None, prompt: str = "Send 0.3 SOL to the second wallet.",
                   flow: list[dict] | None = None) -> str:
    """A benchmark definition in reev's layout (id, description, tags, initial_state, prompt,
    optional flow, ground_truth). bench_id=None leaves the id out (the file name is the id)."""
    tags = tags if tags is not None else ["system-program", "transfer"]
    out = []
    if bench_id is not None:
        out.append(f"id: {bench_id}")
    out.append(f"description: {json.dumps(description)}")
    out.append(f"tags: {json.dumps(tags)}")
    out.append("")
    out.append("# The wallets before the agent runs.")
    out.append("initial_state:")
    out.append('  - pubkey: "USER_WALLET_PUBKEY"')
    out.append('    owner: "11111111111111111111111111111111"')
    out.append("    lamports: 1000000000")
    out.append('  - pubkey: "SECOND_WALLET_PUBKEY"')
    out.append('    owner: "11111111111111111111111111111111"')
    out.append("    lamports: 0")
    out.append("")
    out.append(f"prompt: {json.dumps(prompt, ensure_ascii=False)}")
    if flow:
        out.append("")
        out.append("flow:")
        for s in flow:
            out.append(f"  - step: {s.get('step', 1)}")
            out.append(f"    description: {json.dumps(s.get('description', 'a step'))}")
            out.append(f"    prompt: {json.dumps(s.get('prompt', 'do the step'))}")
            out.append(f"    critical: {str(s.get('critical', True)).lower()}")
            out.append(f"    timeout: {s.get('timeout', 30)}")
            if s.get("depends_on"):
                out.append(f"    depends_on: {json.dumps(s['depends_on'])}")
    out.append("")
    out.append("ground_truth:")
    out.append("  final_state_assertions:")
    out.append("    - type: SolBalance")
    out.append('      pubkey: "SECOND_WALLET_PUBKEY"')
    out.append("      expected: 300000000")
    out.append("      weight: 1.0")
    return "\n".join(out) + "\n"
