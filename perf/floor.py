"""The floor for back-fill: the least work that still reads every line into SQLite.

    python perf/floor.py SESSIONS_DIR DB

Reads every event log (`enhanced_otel_*.jsonl`) and session file (`session_*.json`) of a
folder, decodes each line (and each session file) with msgspec into a small typed struct, and
inserts one row per line (with the raw line text) and one row per session file with APSW
`executemany`, on a WAL database with synchronous=NORMAL (the daemon's settings). No
checkpoints, no tool-call pairing, no per-file transactions: what a purpose-built loader
cannot avoid. Prints one JSON line of totals.

The layout is the fastest measured, so that the daemon is compared with the least work
(10 000 sessions, the variants interleaved, 6 to 8 runs of each; the machine was shared, so
they are ranked by CPU seconds, medians): each line's key (file number, line) packed into the
rowid, no index, 2 000 rows per transaction: 1.46 s; the key in a unique index on a rowid
table (the daemon's `events`), 2 000 rows per transaction: 1.50 s; the same two with 50 000
rows per transaction: 1.58 and 1.65 s (a larger transaction writes, then copies, more WAL at
once); WITHOUT ROWID keyed by (file number, line): 1.65 s (2 000) and 1.78 s (50 000); keyed
by the file name as text in a unique index: 2.3 s (50 000). The line as a BLOB measured 6%
less than as TEXT, but SQLite's JSON functions read a BLOB as JSONB: TEXT is what the daemon
stores, and what the floor stores.
"""

import json
import os
import sys
import time
from pathlib import Path

import apsw
import msgspec

ROWS_PER_TX = 2_000
LINE_BITS = 32            # the rowid of line n of file f is f << LINE_BITS | n


class Line(msgspec.Struct):
    event_type: str | None = None
    timestamp: str | None = None
    session_id: str | None = None


class Session(msgspec.Struct):
    session_id: str | None = None
    benchmark_id: str | None = None
    agent_type: str | None = None
    final_result: msgspec.Raw = msgspec.Raw(b"null")


def main(sessions_dir: Path, db: Path) -> dict:
    started = time.monotonic()
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("PRAGMA synchronous = NORMAL").fetchall()
    conn.execute("CREATE TABLE IF NOT EXISTS lines (key INTEGER PRIMARY KEY, event_type TEXT, ts TEXT,"
                 " session_id TEXT, doc TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS sessions (file INTEGER PRIMARY KEY, session_id TEXT,"
                 " benchmark_id TEXT, agent_type TEXT, doc TEXT NOT NULL)")
    line_dec, session_dec = msgspec.json.Decoder(Line), msgspec.json.Decoder(Session)
    rows, docs = [], []
    n_lines = n_docs = n_bytes = bad = 0

    def flush():
        with conn:
            conn.executemany("INSERT INTO lines VALUES (?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO sessions VALUES (?,?,?,?,?)", docs)
        rows.clear()
        docs.clear()

    for file_no, entry in enumerate(os.scandir(sessions_dir), 1):
        name = entry.name
        if name.startswith("enhanced_otel_") and name.endswith(".jsonl"):
            data = Path(entry.path).read_bytes()
            n_bytes += len(data)
            first_key = file_no << LINE_BITS
            for number, raw in enumerate(data.split(b"\n")[:-1], 1):   # complete lines only
                if not raw.strip():
                    continue
                try:
                    f = line_dec.decode(raw)
                except msgspec.DecodeError:
                    bad += 1
                    continue
                rows.append((first_key | number, f.event_type, f.timestamp, f.session_id, raw.decode()))
            n_lines += data.count(b"\n")
        elif name.startswith("session_") and name.endswith(".json"):
            data = Path(entry.path).read_bytes()
            n_bytes += len(data)
            try:
                s = session_dec.decode(data)
            except msgspec.DecodeError:
                bad += 1
                continue
            docs.append((file_no, s.session_id, s.benchmark_id, s.agent_type, data.decode()))
            n_docs += 1
        if len(rows) >= ROWS_PER_TX:
            flush()
    flush()
    conn.close()
    return {"lines": n_lines, "documents": n_docs, "bytes": n_bytes, "bad": bad,
            "seconds": round(time.monotonic() - started, 3)}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
