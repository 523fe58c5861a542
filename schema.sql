-- reev-ingest: the one schema. The daemon (the only writer) applies this file at start;
-- every statement is idempotent. The schema version lives in PRAGMA user_version and is
-- set by daemon/storage/sqlite/migrations.py after this file runs: a change here that existing databases
-- cannot absorb by re-running it gets a numbered migration there.
--
-- Times are Unix seconds as REAL (microseconds survive); the API formats them as RFC 3339.

-- Single-row facts the API reads for health and ETags.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
-- data_generation: +1 for every committed batch that changed data (the API's ETag).
-- heartbeat_at:    the daemon's wall clock, refreshed every few seconds while it is healthy.
-- last_ingest_at:  when the last batch that changed data committed.
INSERT OR IGNORE INTO meta (key, value) VALUES ('data_generation', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('heartbeat_at', NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_ingest_at', NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('daemon_started_at', NULL);
-- database_id: random, set once when the database is created (or first opened by a daemon
-- that knows it): a database rebuilt or replaced has another, so the API's ETags and event ids
-- (generations and change numbers start again from 0) are never taken for the old one's.
INSERT OR IGNORE INTO meta (key, value) VALUES ('database_id', lower(hex(randomblob(8))));
-- Counters since the database was created, for /metrics (moved by each committed batch).
INSERT OR IGNORE INTO meta (key, value) VALUES ('lines_ingested_total', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('bad_lines_total', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('bytes_read_total', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('files_read_total', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('batches_total', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('batch_seconds_total', 0.0);
-- Batches rolled back by a busy or unreachable database and run again (`reev-ingestd status`).
INSERT OR IGNORE INTO meta (key, value) VALUES ('retried_batches_total', 0);

-- One row per file the daemon tracks: what it is, who it is (identity) and how far it has
-- been read (checkpoint). The checkpoint is written in the same transaction as the rows it
-- covers: that is the whole exactly-once design.
-- A rowid table with the path in a unique index: a back-fill adds files in the folder's order,
-- not the paths', and only the narrow index then takes inserts at random places (schema 5).
CREATE TABLE IF NOT EXISTS files (
    id            INTEGER PRIMARY KEY,
    path          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('session', 'events', 'benchmark')),
    subject_id    TEXT NOT NULL,          -- execution id (sessions, events) or benchmark file stem
    dev           INTEGER,
    inode         INTEGER,
    fingerprint   BLOB,                   -- hash of the first fingerprint_len bytes
    fingerprint_len INTEGER NOT NULL DEFAULT 0,
    offset        INTEGER NOT NULL DEFAULT 0,  -- byte just after the last complete line read
    line_no       INTEGER NOT NULL DEFAULT 0,  -- number of lines up to offset
    skipping      INTEGER NOT NULL DEFAULT 0,  -- 1 while discarding the rest of an over-long line
    size          INTEGER NOT NULL DEFAULT 0,  -- size at the last read
    mtime_ns      INTEGER NOT NULL DEFAULT 0,
    content_hash  BLOB,                   -- whole-document files: hash of what was ingested
    state         TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'pending', 'error', 'missing')),
    first_seen_at REAL NOT NULL,
    ingested_at   REAL                    -- last time rows from this file were committed
);
CREATE INDEX IF NOT EXISTS files_by_subject ON files (kind, subject_id);
-- The files read short of their end (a partial last line, a read the budget cut): the daemon's
-- status line sums their lag once a second without reading every file's row.
CREATE INDEX IF NOT EXISTS files_behind ON files (kind) WHERE size > offset AND state != 'missing';

-- Benchmark definitions from <benchmarks-dir>/*.yml. A deleted file marks its benchmark
-- removed; it is never forgotten, since executions still point at it.
CREATE TABLE IF NOT EXISTS benchmarks (
    id          TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    prompt      TEXT NOT NULL DEFAULT '',
    flow_steps  INTEGER NOT NULL DEFAULT 0,   -- length of `flow` for multi-step benchmarks
    yaml_text   TEXT NOT NULL,
    removed     INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS benchmarks_by_prompt ON benchmarks (prompt) WHERE removed = 0;

-- One row per execution (the <id> of the file names). Columns fed by the session file and
-- columns fed by the event log are kept apart so either file can be re-read alone.
CREATE TABLE IF NOT EXISTS executions (
    id                   INTEGER PRIMARY KEY,   -- compact key for events and tool calls
    execution_id         TEXT NOT NULL UNIQUE,
    recorded_session_id  TEXT,              -- session_id as written inside the files
    benchmark_id         TEXT,              -- effective: session file's, else prompt match
    session_benchmark_id TEXT,              -- normalised benchmark_id of the session file
    first_prompt         TEXT,              -- user_prompt of the first Prompt line
    agent_type           TEXT,
    status               TEXT NOT NULL DEFAULT 'Running'
        CHECK (status IN ('Queued', 'Running', 'Completed', 'Failed', 'Stopped', 'Timeout')),
    success              INTEGER,           -- final_result.success
    score                REAL,
    final_status         TEXT,              -- final_result.status: Succeeded / Failed
    execution_time_ms    INTEGER,
    start_time           REAL,              -- session file
    end_time             REAL,
    first_event_at       REAL,              -- event log
    last_event_at        REAL,
    created_at           REAL,              -- start_time, else first_event_at
    updated_at           REAL,              -- last activity seen in either file
    finished_at          REAL,              -- when the daemon first saw it finished
    event_count          INTEGER NOT NULL DEFAULT 0,
    tool_call_count      INTEGER NOT NULL DEFAULT 0,
    step_count           INTEGER NOT NULL DEFAULT 0,   -- StepComplete lines
    changed_generation   INTEGER NOT NULL DEFAULT 0,   -- data_generation of the last change
    stale_reason         TEXT,              -- status Timeout given by the stale rule: why (schema 6)
    -- "newest first" order with a total key: runs that carry no time at all sort last
    sort_at              REAL GENERATED ALWAYS AS (coalesce(created_at, 0)) VIRTUAL
);
CREATE INDEX IF NOT EXISTS executions_newest ON executions (sort_at DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS executions_by_benchmark ON executions (benchmark_id, sort_at DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS executions_by_agent ON executions (agent_type, sort_at DESC, execution_id DESC);
CREATE INDEX IF NOT EXISTS executions_finished_by_agent ON executions (agent_type, sort_at DESC, execution_id DESC)
    WHERE success IS NOT NULL;
-- The runs still Running (a few at any time, however many there were): the stale rule's
-- candidates, looked up by the daemon when the next one is due (schema 6).
CREATE INDEX IF NOT EXISTS executions_running ON executions (execution_id) WHERE status = 'Running';

-- The session file of an execution as written, kept apart from `executions` so that the
-- frequent updates of an execution's small columns do not rewrite kilobytes of JSON.
CREATE TABLE IF NOT EXISTS session_docs (
    exec_id     INTEGER PRIMARY KEY,       -- executions.id
    session_doc TEXT NOT NULL,             -- the whole session file (unknown fields kept)
    result_doc  TEXT                       -- final_result of the last finished session file
);

-- Per agent and benchmark, the finished executions summed up, kept by the daemon in the batch
-- that changes them (daemon/storage/rules.py) so that agent-performance reads a few rows
-- instead of scanning every execution.
CREATE TABLE IF NOT EXISTS agent_benchmark_stats (
    agent_type   TEXT NOT NULL,            -- '' when unknown
    benchmark_id TEXT NOT NULL,            -- '' when unknown
    finished     INTEGER NOT NULL DEFAULT 0,
    succeeded    INTEGER NOT NULL DEFAULT 0,
    scored       INTEGER NOT NULL DEFAULT 0,
    score_sum    REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_type, benchmark_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS executions_unlinked ON executions (first_prompt) WHERE session_benchmark_id IS NULL;

-- Generations per scope, for the API's ETags: a client polling one benchmark or the agents'
-- results gets 304 until something that answer shows has changed, however busy the daemon is
-- with other executions. (One execution's scope is its own executions.changed_generation.)
-- Written by the daemon (daemon/storage/rules.py), in the same transaction as the change.
CREATE TABLE IF NOT EXISTS scope_generations (
    scope      TEXT PRIMARY KEY,       -- 'benchmarks' (any benchmark), 'benchmark:<id>', 'results'
    generation INTEGER NOT NULL        -- the data_generation that last changed it
) WITHOUT ROWID;

-- Every stored line of an event log, in file order. (exec_id, line) is the natural
-- key: re-reading a line is an idempotent upsert.
CREATE TABLE IF NOT EXISTS events (
    exec_id      INTEGER NOT NULL,         -- executions.id
    line         INTEGER NOT NULL,         -- from 1, as editors count
    byte_offset  INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('event', 'tool_call', 'summary')),
    event_type   TEXT,                     -- Prompt, ToolInput, ToolOutput, StepComplete, ...
    ts           REAL,
    doc          TEXT NOT NULL             -- the line's JSON as written
);
-- A rowid table: its rows (the line's text, up to megabytes) are stored in the order they are
-- inserted, and the key goes in a narrow index. WITHOUT ROWID kept the text inside the key's
-- b-tree, where rows this wide mean more page splits and overflow chains (schema version 4).
CREATE UNIQUE INDEX IF NOT EXISTS events_by_line ON events (exec_id, line);

-- Tool calls: a ToolInput line paired with the ToolOutput that completes it, or one
-- tool-call line of the older logger (completed by its later update line). `line` is the
-- line that opened the call, `output_line` the one that completed it. Their input and output
-- JSON are not copied here: tool_calls_io reads them from those lines (schema 5).
CREATE TABLE IF NOT EXISTS tool_calls (
    exec_id       INTEGER NOT NULL,        -- executions.id
    line          INTEGER NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('input', 'output', 'legacy')),
                                           -- opened by a ToolInput, an unpaired ToolOutput,
                                           -- or an older-logger tool-call line
    output_line   INTEGER,
    tool_name     TEXT,
    started_at    REAL,
    ended_at      REAL,
    duration_ms   REAL,
    success       INTEGER,
    status        TEXT,
    error_message TEXT,
    PRIMARY KEY (exec_id, line)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tool_calls_open ON tool_calls (exec_id, line) WHERE source = 'input' AND output_line IS NULL;

-- Tool calls with their input and output JSON (NULL for JSON null or none), from the line that
-- opened the call (ToolInput: tool_input.tool_args; older logger: input_params) and the one
-- that completed it (ToolOutput: tool_output.results; older logger: output_result).
-- (A line with the same key twice: the daemon's parser reads its last one, SQLite's JSON its
-- first; both lines are kept as written.)
CREATE VIEW IF NOT EXISTS tool_calls_io AS
SELECT t.exec_id, t.line, t.source, t.output_line, t.tool_name, t.started_at, t.ended_at, t.duration_ms,
       nullif(CASE t.source WHEN 'input' THEN i.doc -> '$.tool_input.tool_args'
                            WHEN 'legacy' THEN i.doc -> '$.input_params' END, 'null') AS input,
       nullif(CASE t.source WHEN 'legacy' THEN o.doc -> '$.output_result'
                            ELSE o.doc -> '$.tool_output.results' END, 'null') AS output,
       t.success, t.status, t.error_message
FROM tool_calls t
LEFT JOIN events i ON i.exec_id = t.exec_id AND i.line = t.line AND t.source != 'output'
LEFT JOIN events o ON o.exec_id = t.exec_id AND o.line = t.output_line;

-- Bad input, one row per place: a line of a file, or a whole file (line 0).
CREATE TABLE IF NOT EXISTS ingest_errors (
    id            INTEGER PRIMARY KEY,
    path          TEXT NOT NULL,
    line          INTEGER NOT NULL,        -- 0: the file as a whole
    byte_offset   INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    first_seen_at REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    count         INTEGER NOT NULL DEFAULT 1,
    UNIQUE (path, line)
);

-- The change feed behind the API's event stream: one row per execution that appeared or
-- changed status, score or benchmark, and per new ingest error, written by the daemon
-- (daemon/storage/rules.py) in the same transaction as the change itself. `seq` is the stream's event id, so a client
-- that reconnects with Last-Event-ID resumes without gaps or repeats. The daemon keeps the
-- newest 100 000 rows.
CREATE TABLE IF NOT EXISTS changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    generation   INTEGER NOT NULL,         -- the data_generation that committed it
    kind         TEXT NOT NULL CHECK (kind IN ('execution', 'ingest-error')),
    execution_id TEXT,                     -- kind = execution: the state it changed to
    benchmark_id TEXT,
    agent_type   TEXT,
    status       TEXT,
    score        REAL,
    error_id     INTEGER                   -- kind = ingest-error: ingest_errors.id
);

