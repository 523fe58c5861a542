"""This source's row of `sources`: its start, heartbeat and ingest counters (the shared meta
row holds only what the commit tail moves: the data generation and the last ingest's time)."""

from daemon.storage.postgres.unit_of_work import UnitOfWork

COUNTERS = ("lines_ingested_total", "bad_lines_total", "bytes_read_total", "files_read_total", "batches_total",
            "batch_seconds_total", "retried_batches_total")
_ADD = ("UPDATE sources SET " + ", ".join(f"{c} = {c} + %({c})s" for c in COUNTERS) + " WHERE source = %(source)s")


class MetaRepository(UnitOfWork):

    def add_counters(self, **amounts: float):
        self._execute(_ADD, {**dict.fromkeys(COUNTERS, 0), **amounts, "source": self.source})

    def set_started(self, now: float):
        self._execute("UPDATE sources SET started_at = %s, heartbeat_at = %s WHERE source = %s",
                          (now, now, self.source))

    def heartbeat(self, now: float):
        self._execute("UPDATE sources SET heartbeat_at = %s WHERE source = %s", (now, self.source))
