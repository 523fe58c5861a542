"""Times as both programs show them (shared by the daemon's `status` and the API)."""

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """Unix seconds → RFC 3339 UTC; None for unknown (0 or absurd)."""
    if not ts:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None
