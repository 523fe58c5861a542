"""The stale rule of docs/formats.md §5, applied by the daemon: a Running run with only an event log
that has had no new byte for `--stale-after` seconds becomes Timeout (its runner died).

The clock is the log's mtime, kept in its checkpoint, so it survives restarts: an old log found
at start is Timeout as soon as the daemon has caught up. The candidates are few (Running runs
without a session file, through the index of Running runs), and the loop looks at them only
when the next one is due, a second late at most (SLACK_SECONDS), instead of polling: a log
whose checkpoint is written with an older mtime than that (found late, a back-fill) or a file
found gone (a session file deleted) brings the look forward. Before a run times out, an lstat of
its log confirms that the file is still as its checkpoint says (inotify can be late): a log that
changed is queued to be read instead. The change is one status update in a transaction of its
own, so the change feed, the ETags and the data generation see it like any other.
"""

import logging
import math
import os
import time
from collections.abc import Callable

from core import run_status as status
from daemon.identity import unchanged
from daemon.storage import Store

log = logging.getLogger("reev.daemon")

CHECK_LIMIT = 1000      # candidates looked at in one transaction (the rest in the next)
SLACK_SECONDS = 1.0     # how late a look may come: runs that went quiet together time out together
SHOWN_IDS = 10          # execution ids named in the log line of one look


class StaleRuns:
    def __init__(self, store: Store, stale_after: float, queue: Callable[[str], None]):
        """`queue(path)`: have a log that changed since its checkpoint read."""
        self.store = store
        self.stale_after = stale_after
        self.queue = queue
        self.due_at = math.inf      # wall-clock time of the next look (inf: none planned)

    def look_by(self, at: float = 0.0):
        """Look at the candidates at `at` at the latest (at once by default); never when the
        rule is off."""
        if self.stale_after > 0:
            self.due_at = min(self.due_at, at)

    def logs_written(self, oldest_mtime_ns: int | None):
        """Event-log checkpoints were written, the oldest with this mtime (Store.take_oldest_log_mtime):
        a log older than the next look knew of may be due before it."""
        if oldest_mtime_ns is not None:
            self.look_by(oldest_mtime_ns / 1e9 + self.stale_after + SLACK_SECONDS)

    def due(self) -> bool:
        return time.time() >= self.due_at

    def look(self) -> int:
        """Time out the runs that are due, in one transaction, and plan the next look. Returns
        how many logs were queued because they changed since their checkpoint."""
        now = time.time()
        next_at, timed_out, queued = math.inf, [], 0
        with self.store.batch():
            candidates = self.store.stale_candidates(CHECK_LIMIT)
            for run in candidates:
                last_byte_at = run.last_mtime_ns / 1e9
                at = status.stale_at("Running", False, last_byte_at, self.stale_after)
                assert at is not None     # a look is only planned while the rule is on (look_by)
                if at > now:            # the oldest first: the rest are not due either
                    next_at = at + SLACK_SECONDS
                    break
                changed = self._queue_changed_logs(run.execution_id)
                if changed:
                    queued += changed   # (their read writes their checkpoints: logs_written)
                    continue
                self.store.set_status(run.id, status.STALE, status.stale_reason(last_byte_at, self.stale_after))
                timed_out.append(run.execution_id)
            else:
                if len(candidates) == CHECK_LIMIT:  # more may be due: at once if this look moved on
                    next_at = now if timed_out else now + SLACK_SECONDS
        self.due_at = next_at
        if timed_out:
            more = f" and {len(timed_out) - SHOWN_IDS} more" if len(timed_out) > SHOWN_IDS else ""
            log.info("Timeout (no new event line for --stale-after %g s, no session file): %s%s",
                     self.stale_after, ", ".join(timed_out[:SHOWN_IDS]), more)
        return queued

    def _queue_changed_logs(self, execution_id: str) -> int:
        """Queue the run's logs that are no longer as their checkpoints say; how many. (One gone
        or out of reach gives no new byte either.)"""
        changed = 0
        for path, cp in self.store.event_logs(execution_id):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not unchanged(st, cp):
                self.queue(path)
                changed += 1
        return changed
