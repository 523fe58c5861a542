"""sqlite-utils as a user who tunes it runs it: the peer of the back-fill at its best.

    python perf/sqlite_utils_tuned.py DB TABLE FILE.jsonl

What `sqlite-utils insert DB TABLE FILE --nl` does (the same line decoding, the same
`Table.insert_all`), with the settings its command line cannot give: WAL (`sqlite-utils
enable-wal` can), synchronous=NORMAL (a per-connection pragma: no command or option of
sqlite-utils 3.x/4.x sets it, so this goes through its Python API) and a large batch size.
(`insert_all` caps a batch at 999 bound variables, 999 // columns rows, whatever is asked;
each batch is one transaction, which WAL with synchronous=NORMAL makes cheap: no fsync.)
"""

import json
import sys

import sqlite_utils

BATCH_SIZE = 100_000


def main(db_path: str, table: str, source: str):
    db = sqlite_utils.Database(db_path)
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    with open(source, encoding="utf-8-sig") as lines:     # the command's own decoding of --nl
        docs = (json.loads(line) for line in lines if line.strip())
        db.table(table).insert_all(docs, batch_size=BATCH_SIZE)
    db.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
