"""The daemon's heartbeat: how often it is written and when its age says the daemon is stuck or
gone. One rule for `reev-ingestd status` and the API's health route."""

WRITE_EVERY_SECONDS = 5.0    # the daemon writes meta.heartbeat_at this often, even when idle
STALE_AFTER_SECONDS = 30.0   # six missed beats: not a slow batch any more


def age(heartbeat_at: object, now: float) -> float | None:
    """Seconds since the last beat (None: never written)."""
    return round(now - heartbeat_at, 3) if isinstance(heartbeat_at, (int, float)) else None


def is_stale(beat_age: float | None) -> bool:
    """Never written, or older than STALE_AFTER_SECONDS: the daemon is stuck or gone. (What each
    surface says about it differs on purpose: health's reason does not carry the age, so that
    its ETag does not move with the clock; `status`, a one-off answer, shows it.)"""
    return beat_age is None or beat_age > STALE_AFTER_SECONDS
