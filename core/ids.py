"""Names and identities: which files are ours, and the ids they carry.

The execution id is the `<id>` of the file name (docs/formats.md §1), never the `session_id`
written inside. Benchmark ids are normalised here for the daemon and the API alike.
"""

import re
from typing import Literal, NamedTuple

FileKind = Literal["session", "events", "benchmark"]

_ID = re.compile(r"[A-Za-z0-9._-]+")
# Any name of the two forms, whatever sits between prefix and suffix (newlines included): one
# whose middle is no execution id is refused with a reason, never dropped without a word.
_SESSION = re.compile(r"session_(.*)\.json", re.DOTALL)
_EVENTS = re.compile(r"enhanced_otel_(.*)\.jsonl", re.DOTALL)
_BENCHMARK = re.compile(r"(.+)\.ya?ml", re.DOTALL)     # (a name holds any byte but / and NUL)

NOT_UTF8 = "not ingested: the path is not valid UTF-8 (shown here with \\x escapes, and \\\\ for \\): rename it"


class Classified(NamedTuple):
    kind: FileKind
    subject_id: str


class Refused(NamedTuple):
    """A name of one of our forms that cannot be ingested: an error for the operator."""
    kind: FileKind
    reason: str


def classify_session_file(name: str) -> Classified | Refused | None:
    """Classify a file name found in the sessions folder; None for anything that isn't ours."""
    kinds: tuple[tuple[FileKind, re.Pattern[str]], ...] = (("session", _SESSION), ("events", _EVENTS))
    for kind, pattern in kinds:
        m = pattern.fullmatch(name)
        if m:
            subject = m.group(1)
            if _ID.fullmatch(subject) and not subject.startswith("."):
                return Classified(kind, subject)
            if not is_text(name):
                return Refused(kind, NOT_UTF8)
            # `.`/`..`/`.hidden` are path tricks; anything else reev does not write (docs/formats.md §1)
            return Refused(kind, f"not ingested: {subject!r} is no execution id (reev's are made of A-Z a-z 0-9"
                                 " . _ - and do not start with a dot)")
    return None


def partner_file_name(c: Classified) -> str | None:
    """The name of the other file of the same execution: session file and event log."""
    if c.kind == "session":
        return f"enhanced_otel_{c.subject_id}.jsonl"
    if c.kind == "events":
        return f"session_{c.subject_id}.json"
    return None


def classify_benchmark_file(name: str) -> Classified | Refused | None:
    """Classify a file name found in the benchmarks folder (`*.yml`, `*.yaml`, not hidden)."""
    m = _BENCHMARK.fullmatch(name)
    if m and not name.startswith("."):
        return Classified("benchmark", m.group(1)) if is_text(name) else Refused("benchmark", NOT_UTF8)
    return None


def is_text(path: str) -> bool:
    """Whether a name from the file system is valid UTF-8 (the database stores text). A name
    that is not comes from os.fsdecode with its bad bytes as lone surrogates."""
    if path.isascii():
        return True
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str) -> str:
    """A path as text that can be stored and shown, and that no other path is shown as: bytes
    that are not UTF-8 as `\\xff`, and so a backslash as `\\\\` (a name may hold `\\xff` as
    four characters). Any other path is shown as it is."""
    if "\\" not in path and is_text(path):
        return path
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:          # (a surrogate no file system gives)
        raw = path.encode("utf-8", "backslashreplace")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def normalise_benchmark_id(value: str) -> str:
    """`benchmarks/001-sol-transfer.yml` → `001-sol-transfer`; ids pass through unchanged."""
    name = value.strip().replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".yml", ".yaml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
