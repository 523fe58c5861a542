"""Pure parsing: bytes in, typed records out. No I/O, no database.

Every function here either returns a record or raises `BadInput` with a reason a person can
act on; the caller records it with the file, line and byte offset.
"""

import math
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import yaml
from msgspec import Raw, Struct

from core.ids import normalise_benchmark_id

NULL = Raw(b"null")
SUMMARY_PREFIX = b"# SESSION_SUMMARY: "
BOM = "\ufeff".encode()
# Times past the end of year 9999 (or before 1970) are no time reev wrote: kept as no time.
MAX_SECONDS = 253402300800.0
MAX_INTEGER = 2.0 ** 63      # SQLite's integers are 64-bit


class BadInput(ValueError):
    """Input that can never become valid as it stands (the reason is shown to operators)."""


# ---------------------------------------------------------------- event logs (docs/formats.md §3)

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
    """The fields of any event-log line that the daemon acts on; the rest is kept as raw text.
    The times are as the decoder that read the line left them (_TypedLine, _LineWithRawTimes):
    ParsedLine.ts is the line's time."""

    event_type: str | None = None
    timestamp: str | float | Raw | None = None
    logged_at: str | float | Raw | None = None
    session_id: str | None = None
    prompt: PromptFields | None = None
    tool_input: ToolInputFields | None = None
    tool_output: ToolOutputFields | None = None
    # the older logger's tool-call lines (docs/formats.md §3b)
    tool_name: str | None = None
    input_params: Raw = NULL
    output_result: Raw = NULL
    status: str | None = None
    error_message: str | None = None
    execution_time_ms: float | None = None


class _TypedLine(LineFields):
    """The common case: the times decoded with the rest of the line."""

    timestamp: str | float | None = None    # RFC 3339, or Unix seconds: see parse_timestamp
    logged_at: str | float | None = None


class _LineWithRawTimes(LineFields):
    """The same fields with the times left as JSON text, for the lines _TypedLine refuses: a
    time that is a number beyond a double (1e999) is no time, not bad input (time_field)."""

    timestamp: Raw = NULL
    logged_at: Raw = NULL


_LINE_DECODER = msgspec.json.Decoder(_TypedLine)
_RAW_TIMES_DECODER = msgspec.json.Decoder(_LineWithRawTimes)

LineKind = Literal["event", "tool_call", "summary"]


class ParsedLine(Struct):
    kind: LineKind
    doc: str                  # the line's JSON text, as written
    event_type: str | None
    ts: float | None
    session_id: str | None
    fields: LineFields


def parse_event_line(raw: bytes) -> ParsedLine | None:
    """Parse one complete line (without its newline). None for a blank line.

    This runs for every line, so the common case is one UTF-8 decode and one typed JSON decode;
    what makes a line bad is worked out only once it has failed."""
    stripped = raw.strip()
    if not stripped:
        return None
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as e:
        _check_bytes(stripped, "the line")
        raise BadInput(f"invalid UTF-8 at byte {e.start} of the line") from None
    body = stripped
    summary_line = stripped.startswith(SUMMARY_PREFIX)
    if summary_line:
        body = stripped[len(SUMMARY_PREFIX):]
        text = text[len(SUMMARY_PREFIX):]
    fields: LineFields
    try:
        fields = _LINE_DECODER.decode(body)
        ts = parse_timestamp(fields.timestamp)
        if ts is None:
            ts = parse_timestamp(fields.logged_at)
    except (msgspec.DecodeError, RecursionError):    # (DecodeError includes ValidationError)
        fields, ts = _refused_line(stripped, body)
    _refuse_nul_in_json(body)
    if summary_line or (fields.event_type is None and fields.tool_name is None):
        kind: LineKind = "summary"
    elif fields.event_type is not None:
        kind = "event"
    else:
        kind = "tool_call"
    return ParsedLine(kind, text, fields.event_type, ts, fields.session_id, fields)


def _refused_line(stripped: bytes, body: bytes) -> tuple[LineFields, float | None]:
    """A line the typed decoder refused: bad input with its reason, or a line whose time is
    absurd in a way only the raw text shows (1e999)."""
    _check_bytes(stripped, "the line")
    fields = decode_json(body, _RAW_TIMES_DECODER)
    stamp = time_field(fields.timestamp, "$.timestamp")
    logged_at = time_field(fields.logged_at, "$.logged_at")
    return fields, stamp if stamp is not None else logged_at


def _check_bytes(data: bytes, what: str):
    """Bytes no JSON text holds, named plainly (a JSON parser only says 'invalid character')."""
    if data.startswith(BOM):
        raise BadInput(f"invalid JSON: {what} starts with a UTF-8 byte-order mark (U+FEFF)")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise BadInput(f"NUL byte at byte {nul} of {what}")


NUL_ESCAPE = b"\\u0000"


def _refuse_nul(value: Any, at: str = "$"):
    """A JSON or YAML text may spell a NUL character (`\\u0000`); PostgreSQL's text cannot hold
    one, nor do its json operators take one (tool_calls_io and the API read lines with them), so
    a document with one in any key or string is bad input, on both backends alike, named by where."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadInput(f"NUL character (\\u0000) in `{at}`: no database text can hold one")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key, f"{at} (a key)")
            _refuse_nul(item, f"{at}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _refuse_nul(item, f"{at}[{n}]")


def _refuse_nul_in_json(body: bytes | memoryview):
    """_refuse_nul for a JSON text that holds the escape (which `\\\\u0000`, an escaped
    backslash, does too: the decoded text tells)."""
    if NUL_ESCAPE in body:
        _refuse_nul(msgspec.json.decode(body))


def decode_json(body: bytes | memoryview, decoder: msgspec.json.Decoder, at: str = "$"):
    """Decode into a typed value; `at` is the JSON path of `body` within its document, so that
    a wrong-typed field is named by its full path."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as e:
        message = str(e)
        if at != "$":
            message = message.replace("`$", f"`{at}") if " - at `$" in message else f"{message} - at `{at}`"
        raise BadInput(f"wrong shape: {message}") from None
    except msgspec.DecodeError as e:
        raise BadInput(f"invalid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise BadInput(f"invalid UTF-8 at byte {e.start}") from None
    except RecursionError:
        raise BadInput("JSON nested too deeply") from None


_STAMP_DECODER = msgspec.json.Decoder(str | float | None)
_SECONDS_DECODER = msgspec.json.Decoder(float | None)


def time_field(value: Raw, path: str, decoder: msgspec.json.Decoder = _STAMP_DECODER) -> float | None:
    """A time field kept as JSON text, as Unix seconds. A JSON type it cannot have is bad input
    naming `path`; a number too large even for a double (1e999) is absurd like any other: None."""
    if value == NULL:
        return None
    try:
        return parse_timestamp(decoder.decode(value))
    except msgspec.ValidationError as e:
        first = bytes(value).lstrip()[:1]
        if first and first in b"-0123456789":
            return None
        raise BadInput(f"wrong shape: {e} - at `{path}`") from None


def parse_timestamp(value: str | float | None) -> float | None:
    """RFC 3339 (UTC when it names no offset) or Unix seconds → Unix seconds; None when absent
    or absurd: before 1970 or after 9999 (the line is still kept). Fractions finer than a
    microsecond (reev's Rust loggers write nanoseconds) are cut, not rounded."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        # Past 1e11 seconds (year 5138) it can only be milliseconds (JavaScript's Date.now()).
        seconds = float(value) / 1000 if abs(value) >= 1e11 else float(value)
    else:
        try:
            try:
                stamp = datetime.fromisoformat(value)     # Python 3.11: takes "Z", cuts nanoseconds
            except ValueError:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            seconds = stamp.timestamp()
        except (ValueError, OverflowError, OSError):
            return None
    return seconds if 0 <= seconds < MAX_SECONDS else None


def raw_json_text(value: Raw) -> str | None:
    """A raw sub-document as text, None for JSON null (one copy: the text itself)."""
    text = str(memoryview(value), "utf-8")
    return None if text == "null" else text


def is_empty_json(value: Raw) -> bool:
    return bytes(value).strip() in (b"null", b"{}", b"[]", b'""')


# ---------------------------------------------------------------- session files (docs/formats.md §2)

class FinalResult(Struct):
    success: bool | None = None
    score: float | None = None
    status: str | None = None
    execution_time_ms: float | None = None


class SessionFile(Struct):
    session_id: str | None = None
    benchmark_id: str | None = None
    agent_type: str | None = None
    start_time: Raw = NULL     # Unix seconds: see time_field
    end_time: Raw = NULL
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
    _check_bytes(raw, "the file")
    session = decode_json(raw, _SESSION_DECODER)
    # (a view, not a copy: final_result is most of a big session file)
    final = decode_json(memoryview(session.final_result), _FINAL_DECODER, at="$.final_result")
    _refuse_nul_in_json(raw)
    if final is not None and final.execution_time_ms is not None and not abs(final.execution_time_ms) < MAX_INTEGER:
        final.execution_time_ms = None     # absurd, and beyond what SQLite stores as an integer
    benchmark = normalise_benchmark_id(session.benchmark_id) if session.benchmark_id else None
    return ParsedSession(
        doc=text,
        recorded_session_id=session.session_id,
        benchmark_id=benchmark or None,
        agent_type=session.agent_type,
        start_time=time_field(session.start_time, "$.start_time", _SECONDS_DECODER),
        end_time=time_field(session.end_time, "$.end_time", _SECONDS_DECODER),
        final=final,
        final_doc=raw_json_text(session.final_result),
    )


# ---------------------------------------------------------------- benchmarks (docs/formats.md §4)

class ParsedBenchmark(Struct):
    id: str
    description: str
    tags: list[str]
    prompt: str
    flow_steps: int
    yaml_text: str


# libyaml's loader where PyYAML was built with it (the wheels are): 4 to 7 times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_benchmark(raw: bytes, file_stem: str) -> ParsedBenchmark:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"invalid UTF-8 at byte {e.start}") from None
    try:
        doc = yaml.load(text, Loader=_YAML_LOADER)
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
    for name, value in (("id", str(bench_id)), ("description", description), ("prompt", prompt), ("tags", tags)):
        _refuse_nul(value, f"$.{name}")     # (YAML spells one \0, \x00 or \u0000)
    return ParsedBenchmark(
        id=normalise_benchmark_id(str(bench_id)),
        description=description,
        tags=[str(t) for t in tags],
        prompt=prompt,
        flow_steps=len(flow),
        yaml_text=text,
    )
