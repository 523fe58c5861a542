"""Names and identities: which files are ours, and the ids they carry.

The execution id is the `<id>` of the file name (FORMATS.md §1), never the `session_id`
written inside. Benchmark ids are normalised here for the daemon and the API alike.
"""

import re
from typing import Literal, NamedTuple

FileKind = Literal["session", "events", "benchmark"]

_ID = r"[A-Za-z0-9._-]+"
_SESSION = re.compile(rf"session_({_ID})\.json")
_EVENTS = re.compile(rf"enhanced_otel_({_ID})\.jsonl")
_BENCHMARK = re.compile(r"([^/\\]+)\.ya?ml")


class Classified(NamedTuple):
    kind: FileKind
    subject_id: str


def classify_session_file(name: str) -> Classified | None:
    """Classify a file name found in the sessions folder; None for anything that isn't ours."""
    for kind, pattern in (("session", _SESSION), ("events", _EVENTS)):
        m = pattern.fullmatch(name)
        if m and _is_plain_id(m.group(1)):
            return Classified(kind, m.group(1))
    return None


def partner_file_name(c: Classified) -> str | None:
    """The name of the other file of the same execution: session file and event log."""
    if c.kind == "session":
        return f"enhanced_otel_{c.subject_id}.jsonl"
    if c.kind == "events":
        return f"session_{c.subject_id}.json"
    return None


def classify_benchmark_file(name: str) -> Classified | None:
    """Classify a file name found in the benchmarks folder (`*.yml`, `*.yaml`, not hidden)."""
    m = _BENCHMARK.fullmatch(name)
    if m and not name.startswith("."):
        return Classified("benchmark", m.group(1))
    return None


def _is_plain_id(value: str) -> bool:
    # `.`/`..` and hidden-file-like ids are path tricks, not executions.
    return not value.startswith(".")


def normalise_benchmark_id(value: str) -> str:
    """`benchmarks/001-sol-transfer.yml` → `001-sol-transfer`; ids pass through unchanged."""
    name = value.strip().replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".yml", ".yaml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
