"""Pure parsing: bytes in, typed records out. No I/O, no database.

Every function here either returns a record or raises `BadInput` with a reason a person can
act on; the caller records it with the file, line and byte offset.
"""

import math
from datetime import datetime, timezone
from typing import Literal

import msgspec
import yaml
from msgspec import Raw, Struct

from daemon.ids import normalise_benchmark_id

NULL = Raw(b"null")
SUMMARY_PREFIX = b"# SESSION_SUMMARY: "


class BadInput(ValueError):
    """Input that can never become valid as it stands (the reason is shown to operators)."""


# ---------------------------------------------------------------- event logs (FORMATS §3)

class PromptFields(Struct):
    user_prompt: str | None = None


class ToolInputFields(Struct):
    tool_name: str | None = None
    tool_args: Raw = NULL


class ToolOutputFields(Struct):
    success: bool | None = None
    results: Raw = NULL
    error_message: str | None = None


class LineFields(Struct):
    """The fields of any event-log line that the daemon acts on; the rest is kept as raw text."""

    event_type: str | None = None
    timestamp: str | float | None = None     # RFC 3339; a number is taken as Unix seconds
    logged_at: str | float | None = None
    session_id: str | None = None
    prompt: PromptFields | None = None
    tool_input: ToolInputFields | None = None
    tool_output: ToolOutputFields | None = None
    # the older logger's tool-call lines (FORMATS §3b)
    tool_name: str | None = None
    input_params: Raw = NULL
    output_result: Raw = NULL
    status: str | None = None
    error_message: str | None = None
    execution_time_ms: float | None = None


_LINE_DECODER = msgspec.json.Decoder(LineFields)

LineKind = Literal["event", "tool_call", "summary"]


class ParsedLine(Struct):
    kind: LineKind
    doc: str                  # the line's JSON text, as written
    event_type: str | None
    ts: float | None
    session_id: str | None
    fields: LineFields


def parse_event_line(raw: bytes) -> ParsedLine | None:
    """Parse one complete line (without its newline). None for a blank line."""
    stripped = raw.strip()
    if not stripped:
        return None
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"invalid UTF-8 at byte {e.start} of the line") from None
    body = stripped
    summary_line = stripped.startswith(SUMMARY_PREFIX)
    if summary_line:
        body = stripped[len(SUMMARY_PREFIX):]
        text = text[len(SUMMARY_PREFIX):]
    fields = decode_json(body, _LINE_DECODER)
    if summary_line or (fields.event_type is None and fields.tool_name is None):
        kind: LineKind = "summary"
    elif fields.event_type is not None:
        kind = "event"
    else:
        kind = "tool_call"
    stamp = fields.timestamp or fields.logged_at
    return ParsedLine(kind, text, fields.event_type, parse_timestamp(stamp), fields.session_id, fields)


def decode_json(body: bytes, decoder: msgspec.json.Decoder):
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as e:
        raise BadInput(f"wrong shape: {e}") from None
    except msgspec.DecodeError as e:
        raise BadInput(f"invalid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise BadInput(f"invalid UTF-8 at byte {e.start}") from None
    except RecursionError:
        raise BadInput("JSON nested too deeply") from None


def parse_timestamp(value: str | float | None) -> float | None:
    """RFC 3339 (UTC when it names no offset) or Unix seconds → Unix seconds; None when absent
    or absurd (the line is still kept)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        # Past 1e11 seconds (year 5138) it can only be milliseconds (JavaScript's Date.now()).
        return float(value) / 1000 if abs(value) >= 1e11 else float(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def raw_json_text(value: Raw) -> str | None:
    """A raw sub-document as text, None for JSON null."""
    text = bytes(value).decode("utf-8")
    return None if text == "null" else text


def is_empty_json(value: Raw) -> bool:
    return bytes(value).strip() in (b"null", b"{}", b"[]", b'""')


# ---------------------------------------------------------------- session files (FORMATS §2)

class FinalResult(Struct):
    success: bool | None = None
    score: float | None = None
    status: str | None = None
    execution_time_ms: float | None = None


class SessionFile(Struct):
    session_id: str | None = None
    benchmark_id: str | None = None
    agent_type: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    final_result: Raw = NULL


_SESSION_DECODER = msgspec.json.Decoder(SessionFile)
_FINAL_DECODER = msgspec.json.Decoder(FinalResult | None)


class ParsedSession(Struct):
    doc: str
    recorded_session_id: str | None
    benchmark_id: str | None
    agent_type: str | None
    start_time: float | None
    end_time: float | None
    final: FinalResult | None
    final_doc: str | None


def parse_session_file(raw: bytes) -> ParsedSession:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"invalid UTF-8 at byte {e.start}") from None
    if not text.strip():
        raise BadInput("empty file")
    session = decode_json(raw, _SESSION_DECODER)
    final = decode_json(bytes(session.final_result), _FINAL_DECODER)
    benchmark = normalise_benchmark_id(session.benchmark_id) if session.benchmark_id else None
    return ParsedSession(
        doc=text,
        recorded_session_id=session.session_id,
        benchmark_id=benchmark or None,
        agent_type=session.agent_type,
        start_time=session.start_time,
        end_time=session.end_time,
        final=final,
        final_doc=raw_json_text(session.final_result),
    )


# ---------------------------------------------------------------- benchmarks (FORMATS §4)

class ParsedBenchmark(Struct):
    id: str
    description: str
    tags: list[str]
    prompt: str
    flow_steps: int
    yaml_text: str


def parse_benchmark(raw: bytes, file_stem: str) -> ParsedBenchmark:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"invalid UTF-8 at byte {e.start}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadInput(f"invalid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise BadInput("YAML nested too deeply") from None
    if not isinstance(doc, dict):
        raise BadInput(f"expected a mapping at the top level, got {type(doc).__name__}")
    bench_id = doc.get("id", file_stem)
    description = doc.get("description") or ""
    prompt = doc.get("prompt") or ""
    tags = doc.get("tags") or []
    flow = doc.get("flow") or []
    if not isinstance(bench_id, (str, int)) or not str(bench_id).strip():
        raise BadInput("`id` must be a non-empty string")
    for name, value in (("description", description), ("prompt", prompt)):
        if not isinstance(value, str):
            raise BadInput(f"`{name}` must be a string, got {type(value).__name__}")
    if not isinstance(tags, list) or not all(isinstance(t, (str, int, float)) for t in tags):
        raise BadInput("`tags` must be a list of strings")
    if not isinstance(flow, list):
        raise BadInput("`flow` must be a list of steps")
    return ParsedBenchmark(
        id=normalise_benchmark_id(str(bench_id)),
        description=description,
        tags=[str(t) for t in tags],
        prompt=prompt,
        flow_steps=len(flow),
        yaml_text=text,
    )
