"""perf/dbgen.py, the scale benchmark's database writer: what it writes is what the daemon's
store would hold, so the API's routes at scale read real rows (agent-performance reads
agent_benchmark_stats, which the store keeps since the triggers left the schema)."""

from __future__ import annotations

import apsw

from perf.dbgen import generate


def test_the_generated_database_has_the_per_agent_statistics(tmp_path):
    db = tmp_path / "reev.db"
    totals = generate(db, 200, events=False)
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        finished, groups = conn.execute("SELECT coalesce(sum(finished), 0), count(*) FROM agent_benchmark_stats"
                                        ).fetchall()[0]
        direct = conn.execute("SELECT count(*) FROM executions WHERE success IS NOT NULL").fetchall()[0][0]
    finally:
        conn.close()
    assert direct > 0
    assert finished == direct == totals["finished"]
    assert groups == totals["stats_rows"] > 1
