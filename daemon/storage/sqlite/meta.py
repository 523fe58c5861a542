"""The meta table: single-row facts (the data generation, the heartbeat, the ingest counters)."""

from daemon.storage.sqlite.unit_of_work import UnitOfWork


class MetaRepository(UnitOfWork):
    """The meta table."""

    def meta(self, key: str):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value):
        self.conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))

    def add_counters(self, **amounts: float):
        """Move the ingest counters of the meta table (lines_ingested_total=…, …)."""
        self.conn.executemany("UPDATE meta SET value = value + ? WHERE key = ?",
                              [(amount, key) for key, amount in amounts.items() if amount])

    source: str | None

    def set_started(self, now: float):
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('source', ?)", (self.source,))
            self.set_meta("daemon_started_at", now)
            self.set_meta("heartbeat_at", now)

    def heartbeat(self, now: float):
        with self.conn:
            self.set_meta("heartbeat_at", now)
