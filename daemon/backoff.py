"""How long the daemon waits before trying the database again after a StorageError, and when a
`--once` run stops trying: one policy for the live loop, `--once` and a start that waits for
its PostgreSQL server (daemon/cli.py). docs/operations.md ("When the database fails") says it
for operators."""

import time

from daemon.storage import Busy, StorageError, Unavailable

MAX_BACKOFF_SECONDS = 30.0
# --once (a cron job, a CI step) rides out a server restart or a lost conflict for this long in a
# row, then stops (exit 1): a database down for longer is an operator's to look at.
ONCE_PATIENCE_SECONDS = 60.0


def passes(error: StorageError) -> bool:
    """An error that waiting mends: a conflict lost to another writer (Busy: a PostgreSQL
    deadlock or serialization failure, SQLite's lock held past its busy timeout), or a server
    restarting or out of reach (Unavailable)."""
    return isinstance(error, (Busy, Unavailable))


def _bounds(error: StorageError) -> tuple[float, float]:
    """(first delay, longest delay) for an error of this kind: a lost conflict is over at once;
    a server that restarts is back within seconds, and is tried often enough to notice soon;
    anything else (a full disk) waits for an operator, and is tried less and less often."""
    if isinstance(error, Busy):
        return 0.01, 1.0
    if isinstance(error, Unavailable):
        return 0.1, 5.0
    return 0.1, MAX_BACKOFF_SECONDS


class Backoff:
    """The delays of one streak of failures, doubling from the error kind's first delay to its
    longest; `reset()` once something went through."""

    def __init__(self, patience: float | None = None):
        """`patience`: give up (next() is None) on an error that waiting does not mend, or once
        failing for longer than this many seconds in a row; None: never give up."""
        self.patience = patience
        self.delay = 0.0
        self.failing_since: float | None = None     # (monotonic) the streak's first failure

    def next(self, error: StorageError) -> float | None:
        """Seconds to wait before trying again after `error`; None: give up."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        if self.patience is not None and (not passes(error) or now - self.failing_since >= self.patience):
            return None
        first, longest = _bounds(error)
        self.delay = min(max(self.delay * 2, first), longest)
        return self.delay

    def failing_for(self) -> float:
        """Seconds since the streak's first failure (0: none)."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since

    def reset(self):
        self.delay, self.failing_since = 0.0, None
