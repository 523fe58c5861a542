"""The daemon's heartbeat: how often it is written and when its age says the daemon is stuck or
gone. One rule for `reev-ingestd status` and the API's health route."""

WRITE_EVERY_SECONDS = 5.0    # the daemon writes meta.heartbeat_at this often, even when idle
STALE_AFTER_SECONDS = 30.0   # six missed beats: not a slow batch any more


def age(heartbeat_at: object, now: float) -> float | None:
    """Seconds since the last beat (None: never written)."""
    return round(now - heartbeat_at, 3) if isinstance(heartbeat_at, (int, float)) else None


def problem(beat_age: float | None) -> str | None:
    """What is wrong with a heartbeat of this age, if anything."""
    if beat_age is None:
        return "the daemon has not written a heartbeat yet"
    if beat_age > STALE_AFTER_SECONDS:
        return f"the daemon's heartbeat is stale ({beat_age:.0f} s old)"
    return None
