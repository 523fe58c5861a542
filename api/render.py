"""Human-readable renderings of one execution: trace, transaction logs, flow diagram.

Pure functions only: no I/O, no database, no web framework.  The API layer
builds a :class:`RunFacts` (the stored execution row) and a list of
:class:`ToolCallFacts` (its stored tool calls, in order) and passes the session
file's ``final_result`` object decoded to Python (or ``None`` while running).

Producers are careless, so everything read from ``final_result`` is treated as
untrusted JSON: any field may be missing, null or of the wrong type.  None of
the public functions raises for any JSON-decodable ``final_result`` (nor for
oddly typed struct fields).  Every output line is a single line: user text is
stripped of line breaks and control characters, lone surrogates become U+FFFD
(so the result always encodes as UTF-8) and long values are truncated.

The text renderings (``trace_text``, ``transaction_logs_text``) are ASCII
trees (``├─``, ``└─``, ``│``) whose lines carry the markers the reev UI
colours: ✅, ❌, ``Error:``, ``⚠️``, ``Step``, ``Program``, ``Accounts``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from core.run_status import STATUSES, TERMINAL
from core.timestamps import iso

__all__ = [
    "RunFacts",
    "ToolCallFacts",
    "trace_text",
    "transaction_logs_text",
    "flow_diagram",
    "flow_state_count",
    "MAX_FLOW_TOOL_STATES",
    "finite_number",
    "tool_records",
]


class RunFacts(msgspec.Struct):
    """One execution, as stored."""

    execution_id: str
    benchmark_id: str | None
    agent_type: str | None
    status: str  # PascalCase, one of core.run_status.STATUSES
    score: float | None
    execution_time_ms: int | None
    created_at: float | None  # unix seconds
    updated_at: float | None


class ToolCallFacts(msgspec.Struct):
    """One stored tool call (from the event log), in call order."""

    tool_name: str | None
    started_at: float | None  # unix seconds
    ended_at: float | None
    duration_ms: float | None
    success: bool | None
    error_message: str | None


# ---------------------------------------------------------------------------
# limits

_MAX_TEXT = 500  # characters of one free-text value (log line, error, prompt)
_MAX_SHORT = 200  # characters of a compact rendering of a structured value
_MAX_ITEMS = 1000  # items rendered from one list (steps, logs, accounts, tools)
_MAX_INVOKE_NEST = 8  # nesting depth of program invocations in a log tree
MAX_FLOW_TOOL_STATES = 100  # tool states in a diagram; the rest collapse into one
_MAX_LABEL = 60  # characters of a Mermaid label taken from user data
_MAX_ID_BASE = 40  # characters of the name part of a Mermaid state id

# ---------------------------------------------------------------------------
# small, total helpers

# C0/C1 controls (\n, \r, \t, \x1c-\x1e, \x85 …), U+2028/U+2029 (str.splitlines
# breaks on all of them) and lone surrogates (not encodable as UTF-8).
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _one_line(s: str, limit: int = _MAX_TEXT) -> str:
    """One display line: no line breaks/control chars/surrogates, at most ``limit`` chars."""
    if len(s) > limit:
        s = s[: limit - 1] + "…"

    def repl(m: re.Match[str]) -> str:
        return "\ufffd" if "\ud800" <= m.group() <= "\udfff" else " "

    return _BAD_CHARS.sub(repl, s).strip()


def finite_number(value: Any) -> float | None:
    """A finite number, or None (bools, strings, NaN, inf and huge ints are not numbers): how
    every number read from a producer's JSON is taken, here and in api/convert.py."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except (OverflowError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _str(v: Any) -> str | None:
    """A non-blank string value, cleaned to one line, or None."""
    if isinstance(v, str):
        s = _one_line(v)
        return s or None
    return None


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _short(v: Any, limit: int = _MAX_SHORT) -> str:
    """Compact, bounded, JSON-like rendering of any value, on one line."""
    out: list[str] = []
    budget = [limit + 1]

    def emit(s: str) -> bool:
        out.append(s)
        budget[0] -= len(s)
        return budget[0] > 0

    def walk(x: Any, depth: int) -> bool:
        if x is None:
            return emit("null")
        if isinstance(x, bool):
            return emit("true" if x else "false")
        if isinstance(x, int):
            try:
                return emit(str(x))
            except ValueError:  # more digits than int->str allows
                return emit("<huge int>")
        if isinstance(x, float):
            return emit(repr(x))
        if isinstance(x, str):
            s = x if len(x) <= limit else x[:limit]
            return emit('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
        if isinstance(x, (list, tuple)):
            if depth >= 4:
                return emit("[…]")
            if not emit("["):
                return False
            for i, item in enumerate(x):
                if i and not emit(", "):
                    return False
                if not walk(item, depth + 1):
                    return False
            return emit("]")
        if isinstance(x, dict):
            if depth >= 4:
                return emit("{…}")
            if not emit("{"):
                return False
            for i, (k, item) in enumerate(x.items()):
                if i and not emit(", "):
                    return False
                if not walk(k if isinstance(k, str) else str(k), depth + 1):
                    return False
                if not emit(": "):
                    return False
                if not walk(item, depth + 1):
                    return False
            return emit("}")
        try:
            return emit(repr(x))
        except Exception:  # noqa: BLE001 - a hostile __repr__ must not break rendering
            return emit("<value>")

    walk(v, 0)
    s = "".join(out)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return _one_line(s, limit)


def _text_or_short(v: Any, limit: int = _MAX_TEXT) -> str:
    if isinstance(v, str):
        return _one_line(v, limit)
    return _short(v, min(limit, _MAX_SHORT))


def _fmt_ms(ms: Any) -> str | None:
    """``850 ms``, ``37.0 s``, ``2m 05s``, ``1h 02m 03s``; None when unknown or negative."""
    f = finite_number(ms)
    if f is None or f < 0:
        return None
    if f < 1000:
        return f"{f:.0f} ms"
    if f < 60_000:
        return f"{f / 1000:.1f} s"
    total = int(f // 1000)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s"


def _fmt_ts(ts: Any) -> str | None:
    """A time as every answer shows it (core/timestamps.py); None for unknown or not a number."""
    return iso(finite_number(ts))


def _fmt_score(score: Any) -> str | None:
    f = finite_number(score)
    if f is None:
        return None
    return f"{f * 100:.1f}%"


def _span_ms(start: Any, end: Any) -> float | None:
    a, b = finite_number(start), finite_number(end)
    if a is None or b is None or b < a:
        return None
    d = (b - a) * 1000.0
    return d if math.isfinite(d) else None


_UNFINISHED = frozenset(STATUSES) - TERMINAL  # Queued, Running: no final result expected yet
_STATUS_ICON = {  # every status (a test holds the keys to core.run_status.STATUSES)
    "Completed": "✅",
    "Failed": "❌",
    "Timeout": "❌",
    "Running": "⏳",
    "Queued": "⏳",
    "Stopped": "⚠️",
}


def _status_of(run: Any) -> str:
    s = _str(getattr(run, "status", None))
    return s if s else "Unknown"


def _status_icon(status: str) -> str:
    return _STATUS_ICON.get(status, "⚠️")


def _as_list(v: Any) -> list[Any] | None:
    if isinstance(v, list):
        return v
    if isinstance(v, tuple):
        return list(v)
    return None


def _items(raw: Any, what: str, text_lines: bool = False) -> tuple[list[Any], str | None]:
    """A list field as a list, and a warning when it can't be one. Producers are careless: a
    lone object counts as one item (and, for text_lines, a string as its lines); null as nothing."""
    if raw is None:
        return [], None
    lst = _as_list(raw)
    if lst is not None:
        return lst, None
    if isinstance(raw, dict):
        return [raw], None
    if text_lines and isinstance(raw, str):
        return raw.splitlines(), None
    return [], f"⚠️ {what} has an unexpected type ({_type_name(raw)}); not shown"


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


# ---------------------------------------------------------------------------
# tree


class _Node:
    __slots__ = ("label", "children")

    def __init__(self, label: str, children: list[_Node] | None = None) -> None:
        self.label = label
        self.children = children if children is not None else []

    def add(self, label: str) -> _Node:
        node = _Node(label)
        self.children.append(node)
        return node


def _render(root: _Node) -> str:
    lines = [root.label]
    # iterative walk: (node, prefix, is_last)
    stack: list[tuple[_Node, str, bool]] = [
        (c, "", i == len(root.children) - 1) for i, c in enumerate(root.children)
    ][::-1]
    while stack:
        node, prefix, last = stack.pop()
        lines.append(prefix + ("└─ " if last else "├─ ") + node.label)
        child_prefix = prefix + ("   " if last else "│  ")
        n = len(node.children)
        for i in range(n - 1, -1, -1):
            stack.append((node.children[i], child_prefix, i == n - 1))
    return "\n".join(lines) + "\n"


def _add_bounded(parent: _Node, items: list[Any], add_one: Any, what: str) -> None:
    for item in items[:_MAX_ITEMS]:
        add_one(parent, item)
    if len(items) > _MAX_ITEMS:
        parent.add(f"⚠️ {len(items) - _MAX_ITEMS} more {what} not shown")


# ---------------------------------------------------------------------------
# reading final_result


def _final_dict(final_result: Any) -> dict[str, Any] | None:
    return final_result if isinstance(final_result, dict) else None


def _steps(fr: dict[str, Any] | None) -> tuple[list[Any], str | None]:
    """(steps, warning): ``data.steps`` (else ``steps``); a lone object counts as one step."""
    if fr is None:
        return [], None
    data = _get(fr, "data")
    raw = _get(data, "steps")
    if raw is None:
        raw = _get(fr, "steps")
    return _items(raw, "steps")


def tool_records(final_result: Any) -> tuple[list[Any], list[str]]:
    """Tool records from ``final_result.tools`` and ``final_result.data.tools`` (deduplicated), and
    a warning for each of the two that is not a list: the one reading of them, for the trace
    here and the flow's tool calls of a run without an event log (api/convert.py)."""
    fr = _final_dict(final_result)
    if fr is None:
        return [], []
    records: list[Any] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for where, raw in (("tools", _get(fr, "tools")), ("data.tools", _get(_get(fr, "data"), "tools"))):
        lst, warning = _items(raw, where)
        if warning:
            warnings.append(warning)
        for rec in lst:
            key = _short(rec, 2000)  # bounded, so deduplication stays linear
            if key not in seen:
                seen.add(key)
                records.append(rec)
    return records, warnings


def _instructions(action: Any) -> list[Any]:
    if action is None:
        return []
    lst = _as_list(action)
    if lst is not None:
        return lst
    return [action]  # a lone instruction object (or a stray scalar)


def _program_id(ix: Any) -> str | None:
    v = _get(ix, "program_id")
    if v is None:
        v = _get(ix, "programId")
    return _str(v) if isinstance(v, str) else (None if v is None else _short(v, 80))


def _account_marks(acc: Any) -> str:
    signer = _get(acc, "is_signer") is True
    writable = _get(acc, "is_writable") is True
    marks = [m for m, on in (("signer", signer), ("writable", writable)) if on]
    return "[" + (", ".join(marks) if marks else "readonly") + "]"


def _tx_status(obs: Any) -> tuple[str, str | None]:
    """(status line text, error text or None) of one observation."""
    status = _get(obs, "last_transaction_status")
    err = _get(obs, "last_transaction_error")
    err_text: str | None
    if err is None or (isinstance(err, str) and not err.strip()):
        err_text = None
    else:
        err_text = _text_or_short(err) or "(blank)"
    status_text = _text_or_short(status, 80) if status is not None else ""
    if isinstance(status, str) and status.strip().lower() == "success" and err_text is None:
        return f"✅ {status_text}", None
    if status_text:
        return f"❌ {status_text}", err_text
    if err_text is not None:
        return "❌ Failed", err_text
    return "⚠️ status not recorded", None


_INVOKE = re.compile(r"^Program (\S+) invoke \[(\d+)\]")
_END = re.compile(r"^Program (\S+) (success|failed)")


def _add_logs(parent: _Node, logs: list[Any]) -> None:
    """Log lines as a tree nested by program invocation (``invoke [n]`` … ``success``)."""
    stack = [parent]
    overflow = 0  # invocations deeper than _MAX_INVOKE_NEST, kept flat
    for raw in logs[:_MAX_ITEMS]:
        if not isinstance(raw, str):
            stack[-1].add(f"⚠️ non-text log entry: {_short(raw)}")
            continue
        line = _one_line(raw) or "(blank line)"
        if _INVOKE.match(line):
            node = stack[-1].add(line)
            if len(stack) <= _MAX_INVOKE_NEST:
                stack.append(node)
            else:
                overflow += 1
            continue
        m = _END.match(line)
        if m:
            icon = "✅" if m.group(2) == "success" else "❌"
            stack[-1].add(f"{icon} {line}")
            if overflow:
                overflow -= 1
            elif len(stack) > 1:
                stack.pop()
            continue
        stack[-1].add(line)
    if len(logs) > _MAX_ITEMS:
        parent.add(f"⚠️ {len(logs) - _MAX_ITEMS} more log lines not shown")


def _logs_of(obs: Any) -> tuple[list[Any], str | None]:
    return _items(_get(obs, "last_transaction_logs"), "logs", text_lines=True)


def _programs_in_logs(logs: list[Any]) -> list[str]:
    out: list[str] = []
    for raw in logs[:_MAX_ITEMS]:
        if isinstance(raw, str):
            m = _INVOKE.match(raw.strip())
            if m:
                out.append(_one_line(m.group(1), 100))
    return out


# ---------------------------------------------------------------------------
# shared header


def _header(run: RunFacts, fr: dict[str, Any] | None) -> _Node:
    status = _status_of(run)
    icon = _status_icon(status)
    bench = _str(getattr(run, "benchmark_id", None)) or _str(_get(fr, "benchmark_id")) or "unknown benchmark"
    agent = _str(getattr(run, "agent_type", None)) or "unknown agent"
    ms = finite_number(getattr(run, "execution_time_ms", None))
    if ms is None:
        ms = finite_number(_get(fr, "execution_time_ms"))
    if ms is None:
        ms = _span_ms(getattr(run, "created_at", None), getattr(run, "updated_at", None))
    duration = _fmt_ms(ms) or "n/a"
    score = _fmt_score(getattr(run, "score", None))
    if score is None:
        score = _fmt_score(_get(fr, "score"))
    if score is None:
        score = "pending" if status in _UNFINISHED else "n/a"
    root = _Node(
        f"{icon} Execution {status}: {bench} by {agent} (duration {duration}, score {score})"
    )
    root.add(f"Execution id: {_text_or_short(getattr(run, 'execution_id', None), 120)}")
    started = _fmt_ts(getattr(run, "created_at", None))
    if started:
        root.add(f"Started: {started}")
    updated = _fmt_ts(getattr(run, "updated_at", None))
    if updated:
        root.add(f"Updated: {updated}")
    return root


def _final_result_lines(root: _Node, final_result: Any, status: str) -> dict[str, Any] | None:
    fr = _final_dict(final_result)
    if final_result is None:
        if status in _UNFINISHED:
            root.add("⏳ No final result yet: the execution is still running")
        else:
            root.add("⚠️ No final result recorded")
        return None
    if fr is None:
        root.add(f"⚠️ final_result has an unexpected type ({_type_name(final_result)})")
        return None
    fr_status = _get(fr, "status")
    success = _get(fr, "success")
    if fr_status is not None or success is not None:
        ok = success is True if isinstance(success, bool) else (
            isinstance(fr_status, str) and fr_status.lower() in ("succeeded", "success", "completed")
        )
        text = _text_or_short(fr_status, 80) if fr_status is not None else ("success" if ok else "failure")
        root.add(f"{'✅' if ok else '❌'} Result: {text}")
    return fr


# ---------------------------------------------------------------------------
# trace


def _add_instruction(parent: _Node, index: int, ix: Any) -> None:
    if not isinstance(ix, dict):
        parent.add(f"⚠️ Instruction {index}: {_short(ix)}")
        return
    pid = _program_id(ix)
    node = parent.add(f"Instruction {index}: Program {pid or '(unknown program)'}")
    accounts_raw = _get(ix, "accounts")
    if accounts_raw is not None:
        accounts = _as_list(accounts_raw)
        if accounts is None:
            node.add(f"⚠️ Accounts: unexpected value {_short(accounts_raw)}")
        else:
            acc_node = node.add(f"Accounts ({len(accounts)})")

            def add_account(p: _Node, item: tuple[int, Any]) -> None:
                i, acc = item
                if isinstance(acc, dict):
                    pk = _get(acc, "pubkey")
                    pk_text = _text_or_short(pk, 100) if pk is not None else "(no pubkey)"
                    p.add(f"[{i}] {pk_text} {_account_marks(acc)}")
                else:
                    p.add(f"[{i}] ⚠️ {_short(acc)}")

            _add_bounded(acc_node, list(enumerate(accounts)), add_account, "accounts")
    if "data" in ix:
        data = ix.get("data")
        node.add(f"Data: {_text_or_short(data) if data is not None else 'null'}")


def _add_step(root: _Node, index: int, step: Any) -> None:
    if not isinstance(step, dict):
        root.add(f"⚠️ Step {index}: unexpected value {_short(step)}")
        return
    obs = _get(step, "observation")
    status_text, _ = _tx_status(obs) if obs is not None else ("", None)
    node = root.add(f"Step {index}" + (f": {status_text}" if status_text else ""))
    thought = _get(step, "thought")
    if thought is not None:
        node.add(f"Thought: {_text_or_short(thought)}")
    action = _get(step, "action")
    ixs = _instructions(action)
    act = node.add(f"Action: {len(ixs)} instruction{'s' if len(ixs) != 1 else ''}")
    if not ixs:
        act.add("⚠️ no instructions recorded")
    for i, ix in enumerate(ixs[:_MAX_ITEMS], 1):
        _add_instruction(act, i, ix)
    if len(ixs) > _MAX_ITEMS:
        act.add(f"⚠️ {len(ixs) - _MAX_ITEMS} more instructions not shown")
    _add_observation(node, obs)


def _add_observation(node: _Node, obs: Any) -> None:
    if obs is None:
        node.add("⚠️ Observation: not recorded")
        return
    if not isinstance(obs, dict):
        node.add(f"⚠️ Observation: unexpected value {_short(obs)}")
        return
    status_text, err = _tx_status(obs)
    o = node.add(f"Observation: {status_text}")
    if err is not None:
        o.add(f"❌ Error: {err}")
    logs, warn = _logs_of(obs)
    if warn:
        o.add(warn)
    if logs:
        _add_logs(o.add(f"Logs ({len(logs)})"), logs)
    elif not warn:
        o.add("Logs: none")


def _add_tool_record(parent: _Node, index: int, rec: Any) -> None:
    if not isinstance(rec, dict):
        parent.add(f"⚠️ Tool {index}: {_short(rec)}")
        return
    name = _str(_get(rec, "tool_name")) or _str(_get(rec, "name")) or "(unnamed tool)"
    status = _get(rec, "status")
    if isinstance(status, str) and status.strip().lower() == "success":
        icon = "✅ "
    elif status is None:
        icon = ""
    else:
        icon = "❌ "
    parts = []
    if status is not None:
        parts.append(_text_or_short(status, 60))
    dur = _fmt_ms(_span_ms(_get(rec, "start_time"), _get(rec, "end_time")))
    if dur:
        parts.append(dur)
    node = parent.add(f"{icon}Tool {index}: {name}" + (f" ({', '.join(parts)})" if parts else ""))
    if "params" in rec:
        node.add(f"Params: {_short(rec.get('params'))}")
    if "result" in rec:
        node.add(f"Result: {_short(rec.get('result'))}")
    err = _get(rec, "error") or _get(rec, "error_message")
    if err:
        node.add(f"❌ Error: {_text_or_short(err)}")


def _tool_call_duration(tc: Any) -> float | None:
    d = finite_number(getattr(tc, "duration_ms", None))
    if d is not None and d >= 0:
        return d
    return _span_ms(getattr(tc, "started_at", None), getattr(tc, "ended_at", None))


def _add_tool_call(parent: _Node, index: int, tc: Any) -> None:
    name = _str(getattr(tc, "tool_name", None)) or "(unnamed tool)"
    success = getattr(tc, "success", None)
    if success is True:
        icon, state = "✅ ", "success"
    elif success is False:
        icon, state = "❌ ", "failed"
    else:
        icon, state = "⏳ ", "no result"
    parts = [state]
    dur = _fmt_ms(_tool_call_duration(tc))
    if dur:
        parts.append(dur)
    started = _fmt_ts(getattr(tc, "started_at", None))
    if started:
        parts.append(f"at {started}")
    node = parent.add(f"{icon}Tool call {index}: {name} ({', '.join(parts)})")
    err = getattr(tc, "error_message", None)
    if err is not None and not (isinstance(err, str) and not err.strip()):
        node.add(f"❌ Error: {_text_or_short(err)}")


def _as_calls(tool_calls: Any) -> list[Any]:
    lst = _as_list(tool_calls)
    return lst if lst is not None else []


def trace_text(run: RunFacts, final_result: dict | None, tool_calls: list[ToolCallFacts]) -> str:
    """The execution trace as an ASCII tree (the ``trace`` of execution-logs).

    Execution line (✅/❌/⏳, benchmark, agent, duration, score), result, prompt,
    then per step the action (instructions: ``Program``, ``Accounts`` with
    ``[signer, writable]`` marks, ``Data``) and the observation (status,
    ``Error:``, logs), then tools from ``final_result`` and stored tool calls.
    """
    status = _status_of(run)
    fr = _final_dict(final_result)
    root = _header(run, fr)
    fr = _final_result_lines(root, final_result, status)
    prompt = _get(_get(fr, "data"), "prompt")
    if prompt is None:
        prompt = _get(fr, "prompt")
    if prompt is not None:
        root.add(f"Prompt: {_text_or_short(prompt)}")

    steps, warn = _steps(fr)
    if warn:
        root.add(warn)
    if steps:
        for i, step in enumerate(steps[:_MAX_ITEMS], 1):
            _add_step(root, i, step)
        if len(steps) > _MAX_ITEMS:
            root.add(f"⚠️ {len(steps) - _MAX_ITEMS} more steps not shown")
    elif status in _UNFINISHED and fr is None:
        root.add("⚠️ No steps yet (execution still running)")
    else:
        root.add("⚠️ No steps recorded")

    records, warnings = tool_records(fr)
    for w in warnings:
        root.add(w)
    if records:
        tnode = root.add(f"Tools ({len(records)})")
        _add_bounded(tnode, list(enumerate(records, 1)), lambda p, it: _add_tool_record(p, *it), "tools")

    calls = _as_calls(tool_calls)
    if calls:
        cnode = root.add(f"Tool calls ({len(calls)})")
        _add_bounded(cnode, list(enumerate(calls, 1)), lambda p, it: _add_tool_call(p, *it), "tool calls")
    return _render(root)


# ---------------------------------------------------------------------------
# transaction logs


def transaction_logs_text(run: RunFacts, final_result: dict | None) -> str:
    """The transactions of an execution as an ASCII tree (``transaction_logs``).

    Per step: the programs of its instructions (``Program <id>``), the status
    (✅/❌), ``Error:`` and the transaction log lines nested by invocation; then
    the list of program ids seen.  A ⚠️ line when there is nothing to show.
    """
    status = _status_of(run)
    fr = _final_dict(final_result)
    root = _header(run, fr)
    fr = _final_result_lines(root, final_result, status)
    steps, warn = _steps(fr)
    if warn:
        root.add(warn)

    programs: list[str] = []
    shown = 0
    for i, step in enumerate(steps[:_MAX_ITEMS], 1):
        if not isinstance(step, dict):
            root.add(f"⚠️ Step {i}: unexpected value {_short(step)}")
            continue
        obs = _get(step, "observation")
        ixs = _instructions(_get(step, "action"))
        status_text, err = _tx_status(obs) if isinstance(obs, dict) else ("⚠️ no observation", None)
        node = root.add(f"Step {i}: Transaction {status_text}")
        shown += 1
        for j, ix in enumerate(ixs[:_MAX_ITEMS], 1):
            pid = _program_id(ix) if isinstance(ix, dict) else None
            if pid:
                programs.append(pid)
                n_acc = _as_list(_get(ix, "accounts"))
                extra = f", {len(n_acc)} accounts" if n_acc is not None else ""
                node.add(f"Instruction {j}: Program {pid}{extra}")
            else:
                node.add(f"⚠️ Instruction {j}: no program id ({_short(ix, 80)})")
        if err is not None:
            node.add(f"❌ Error: {err}")
        logs, lwarn = _logs_of(obs)
        if lwarn:
            node.add(lwarn)
        if logs:
            programs.extend(_programs_in_logs(logs))
            _add_logs(node.add(f"Logs ({len(logs)})"), logs)
        elif not lwarn:
            node.add("⚠️ No transaction logs recorded for this step")
    if len(steps) > _MAX_ITEMS:
        root.add(f"⚠️ {len(steps) - _MAX_ITEMS} more steps not shown")

    if not shown:
        if status in _UNFINISHED and fr is None:
            root.add("⚠️ No transactions yet (execution still running)")
        else:
            root.add("⚠️ No transactions recorded")
    if programs:
        seen = list(dict.fromkeys(programs))
        pnode = root.add(f"Programs ({len(seen)})")
        for pid in seen[:_MAX_ITEMS]:
            pnode.add(f"Program {pid}")
    return _render(root)


# ---------------------------------------------------------------------------
# flow diagram (Mermaid stateDiagram-v2)

_ID_BAD = re.compile(r"[^A-Za-z0-9_]+")
_KEYWORDS = {
    "state", "note", "end", "direction", "class", "classdef", "style", "click",
    "as", "of", "left", "right", "hide", "fork", "join", "choice", "concurrent",
    "accdescr", "acctitle", "default", "linkstyle", "prompt",
}
_FINAL_IDS = frozenset(STATUSES)
_LABEL_OK = set(" _.,()/+=@!?'-")


def _mermaid_id_base(name: Any) -> str:
    s = name if isinstance(name, str) else ""
    base = _ID_BAD.sub("_", s).strip("_")[:_MAX_ID_BASE].strip("_") or "tool"
    if base[0].isdigit() or base.lower() in _KEYWORDS:
        base = "tool_" + base
    return base


def _mermaid_label(text: Any, limit: int = _MAX_LABEL) -> str:
    """User text made safe inside ``state "…" as id``: letters, digits, a few punctuation marks."""
    s = text if isinstance(text, str) else _short(text, limit)
    s = s[: limit * 2]
    s = "".join(c if (c.isalnum() and c.isprintable()) or c in _LABEL_OK else " " for c in s)
    while "--" in s:
        s = s.replace("--", "-")
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return s


def flow_state_count(tool_calls: list[ToolCallFacts]) -> int:
    """The number of states :func:`flow_diagram` draws (start + tool states + final)."""
    n = len(_as_calls(tool_calls))
    shown = min(n, MAX_FLOW_TOOL_STATES)
    return 2 + shown + (1 if n > MAX_FLOW_TOOL_STATES else 0)


def flow_diagram(run: RunFacts, tool_calls: list[ToolCallFacts]) -> str:
    """A Mermaid ``stateDiagram-v2`` of the execution's tool calls, in order.

    ``[*] --> Prompt``, one state per tool call (id ``<safe name>_<n>``, label
    with the real name, outcome and duration), then a final state named after
    the status (``Completed``, ``Failed``, ``Running``, …) ``--> [*]``.  Beyond
    ``MAX_FLOW_TOOL_STATES`` calls the rest collapse into one state, so the text
    stays within Mermaid's default size and edge limits.
    """
    status = _status_of(run)
    calls = _as_calls(tool_calls)
    lines = ["stateDiagram-v2"]

    bench = _str(getattr(run, "benchmark_id", None))
    agent = _str(getattr(run, "agent_type", None))
    start_label = "Prompt"
    ctx = ", ".join(_mermaid_label(x, 40) for x in (bench, agent) if x)
    if ctx:
        start_label += f" ({ctx})"
    lines.append(f'    state "{start_label}" as Prompt')

    ids: list[str] = []
    for n, tc in enumerate(calls[:MAX_FLOW_TOOL_STATES], 1):
        name = getattr(tc, "tool_name", None)
        sid = f"{_mermaid_id_base(name)}_{n}"
        label = _mermaid_label(name) if isinstance(name, str) and name.strip() else "unnamed tool"
        label = label or "unnamed tool"
        success = getattr(tc, "success", None)
        icon = "✅ " if success is True else "❌ " if success is False else ""
        dur = _fmt_ms(_tool_call_duration(tc))
        lines.append(f'    state "{icon}{label}' + (f" ({dur})" if dur else "") + f'" as {sid}')
        ids.append(sid)
    if len(calls) > MAX_FLOW_TOOL_STATES:
        more = len(calls) - MAX_FLOW_TOOL_STATES
        sid = f"more_tool_calls_{MAX_FLOW_TOOL_STATES + 1}"
        lines.append(f'    state "… {more} more tool calls" as {sid}')
        ids.append(sid)

    final_id = status if status in _FINAL_IDS else "Unknown"
    icon = _status_icon(status)
    final_label = f"{icon} {_mermaid_label(status, 30) or 'Unknown'}"
    ms = finite_number(getattr(run, "execution_time_ms", None))
    if ms is None:
        ms = _span_ms(getattr(run, "created_at", None), getattr(run, "updated_at", None))
    dur = _fmt_ms(ms)
    score = finite_number(getattr(run, "score", None))
    extras = [x for x in (dur, f"score {score:.2f}" if score is not None else None) if x]
    if extras:
        final_label += f" ({', '.join(extras)})"
    lines.append(f'    state "{final_label}" as {final_id}')

    lines.append("    [*] --> Prompt")
    prev = "Prompt"
    for sid in ids:
        lines.append(f"    {prev} --> {sid}")
        prev = sid
    lines.append(f"    {prev} --> {final_id}")
    lines.append(f"    {final_id} --> [*]")
    return "\n".join(lines) + "\n"
