"""The API on PostgreSQL (`reev-api --db postgresql://...`): the same fixture folder ingested by
the real daemon into a SQLite file and into a PostgreSQL database, a real `reev-api` on each,
and every route's answer compared; then what is PostgreSQL's own: ETags and 304, the event
stream resumed by Last-Event-ID, /metrics, the query time limit, a role that may only SELECT,
and a hot standby (pg_basebackup -R) answering as the primary once it has replayed.

Answers are compared as parsed JSON: a tool call's input and output are the stored JSON served
as it is, which SQLite's JSON functions minify and PostgreSQL's keep as written (docs/api.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from api.db import QueryTimeout, open_database
from tests import fixtures as fx
from tests import pgcluster
from tests.api_client import Api
from tests.conftest import clean_env, daemon_command, fresh_database, wait_for
from tests.test_api import B301, B302, B303, DONE, FAILED, FLOW, PATHID, RUNNING, write_corpus
from tests.test_live_feed import StreamClient, scrape, seq

# Every data route of the API with the parameters that reach its branches (pages followed by
# their cursors separately, below).
ROUTES = [
    "/api/v1/benchmarks", "/api/v1/benchmarks?limit=2", f"/api/v1/benchmarks/{B301}", f"/api/v1/benchmarks/{B302}.yml",
    f"/api/v1/benchmarks/{B303}", "/api/v1/benchmarks/nope",
    *(f"/api/v1/benchmarks/{B301}/status/{e}" for e in (DONE, FAILED, RUNNING, FLOW, PATHID, "nope")),
    f"/api/v1/benchmarks/{B301}/status", f"/api/v1/benchmarks/{B301}/status?agent=glm-4.6",
    f"/api/v1/benchmarks/{B303}/status",
    "/api/v1/agent-performance", "/api/v1/agent-performance?limit=1", "/api/v1/agent-performance/deterministic/results",
    "/api/v1/agent-performance/nobody/results", "/api/v1/agents", "/api/v1/agents/config/deterministic",
    *(f"/api/v1/execution-logs/{B301}?execution_id={e}" for e in (DONE, FAILED, RUNNING, FLOW, PATHID)),
    *(f"/api/v1/transaction-logs/{b}" for b in (B301, B302, B303)),
    f"/api/v1/transaction-logs/{B301}?execution_id={DONE}",
    *(f"/api/v1/flows/{e}" for e in (DONE, FAILED, RUNNING, FLOW, PATHID, "nope")),
    "/api/v1/sessions", f"/api/v1/sessions?benchmark_id={B302}.yml", "/api/v1/sessions?agent=glm-4.6",
    "/api/v1/sessions?status=running", "/api/v1/sessions?status=Completed&limit=1",
    *(f"/api/v1/sessions/{e}" for e in (DONE, FAILED, RUNNING, FLOW, PATHID, "nope")),
    *(f"/api/v1/sessions/{e}/events" for e in (DONE, RUNNING, FLOW)), f"/api/v1/sessions/{DONE}/events?limit=1",
    *(f"/api/v1/sessions/{e}/tool-calls" for e in (DONE, RUNNING, FLOW)),
    "/api/v1/ingest/errors", "/api/v1/ingest/status", "/api/v1/health",
]
PAGED = ["/api/v1/sessions?limit=2", f"/api/v1/sessions/{DONE}/events?limit=1",
         "/api/v1/ingest/errors?limit=1", "/api/v1/agent-performance/local/results?limit=1"]

# What differs between two databases holding the same files: when they were written, how many
# batches each took (the generation), and which database it is.
VOLATILE = {"timestamp", "heartbeat_at", "heartbeat_age_seconds", "last_ingest_at", "daemon_started_at",
            "data_generation", "name", "ingested_at", "first_seen_at", "last_seen_at"}


def comparable(value):
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def answer(api: Api, path: str) -> tuple[int, object]:
    reply = api.request(path)
    return reply.status, comparable(reply.json()) if reply.body else None


def pages(api: Api, path: str) -> list:
    """Every page of a paged route, following next_cursor to the end."""
    got, cursor = [], None
    while True:
        page = api.get(path + (f"&cursor={cursor}" if cursor else ""))
        got.append(comparable(page))
        cursor = page["next_cursor"]
        if not cursor:
            return got


def ingest(sessions: Path, benchmarks: Path, db: Path | str):
    proc = subprocess.run(daemon_command() + ["--sessions-dir", str(sessions), "--benchmarks-dir", str(benchmarks),
                                              "--db", str(db), "--once"],
                          capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, pg_server):
    """The fixture folder ingested into a SQLite file and into a PostgreSQL database: (root,
    sessions, benchmarks, SQLite path, PostgreSQL URL)."""
    root = tmp_path_factory.mktemp("api-pg")
    sessions, benchmarks = root / "sessions", root / "benchmarks"
    sessions.mkdir()
    benchmarks.mkdir()
    write_corpus(sessions, benchmarks)
    with fresh_database(pg_server) as url:
        for db in (root / "state" / "reev.db", url):
            ingest(sessions, benchmarks, db)
        yield root, sessions, benchmarks, root / "state" / "reev.db", url


@pytest.fixture(scope="module")
def apis(corpus):
    """A reev-api on each: (SQLite's, PostgreSQL's). The tests that compare the two come first
    in this file: later ones add files to the PostgreSQL database alone."""
    root, _, _, sqlite_db, url = corpus
    on_sqlite = Api(sqlite_db, root / "api-sqlite.log")
    on_postgres = Api(url, root / "api-postgres.log", "--stream-heartbeat", "0.5")
    yield on_sqlite, on_postgres
    assert on_sqlite.close() == 0 and on_postgres.close() == 0


def test_every_route_answers_on_postgresql_as_on_sqlite(apis):
    on_sqlite, on_postgres = apis
    for path in ROUTES:
        assert answer(on_postgres, path) == answer(on_sqlite, path), path
    for path in PAGED:
        got = pages(on_postgres, path)
        assert got == pages(on_sqlite, path), path
    assert len(pages(on_postgres, PAGED[0])) > 1 and len(pages(on_postgres, PAGED[1])) > 1
    health = on_postgres.get("/api/v1/health")
    assert health["status"] == "healthy" and health["database"]["reachable"] is True
    assert health["database"]["name"].startswith("postgresql://")


def _execution_of(name: str) -> str:
    """The execution id a session folder's file belongs to (its host must hold all its files)."""
    return re.sub(r"^(session_|enhanced_otel_)|\.(json|jsonl)$", "", name)


def without_ids(value):
    """An answer without the rows' numbers (`id`): several daemons number rows in the order their
    batches commit, one daemon in the order it reads (docs/fleet.md)."""
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, (list, tuple)):
        return [without_ids(v) for v in value]
    return value


def test_three_daemons_at_once_answer_every_route_as_one_sqlite_daemon(corpus, apis, tmp_path, pg_server):
    """Three runner hosts, each with its own sessions folder (the executions shared out between
    them) and the same benchmark definitions, ingest into one PostgreSQL database at the same
    moment: every route of an API on it answers as the API on one SQLite daemon over all the files."""
    root, sessions, benchmarks, _, _ = corpus
    on_sqlite, _ = apis
    hosts = [tmp_path / f"host-{i}" for i in range(3)]
    ids = sorted({_execution_of(f.name) for f in sessions.iterdir()})
    for i, host in enumerate(hosts):
        (host / "sessions").mkdir(parents=True)
        shutil.copytree(benchmarks, host / "benchmarks")
        for f in sessions.iterdir():
            if ids.index(_execution_of(f.name)) % 3 == i:
                shutil.copy2(f, host / "sessions" / f.name)
    assert all(any((h / "sessions").iterdir()) for h in hosts)      # each host has files of its own
    with fresh_database(pg_server) as url:
        daemons = [subprocess.Popen(
            daemon_command() + ["--sessions-dir", str(h / "sessions"), "--benchmarks-dir", str(h / "benchmarks"),
                                "--db", url, "--source", h.name, "--once"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env()) for h in hosts]
        for d in daemons:
            out, _ = d.communicate(timeout=60)
            assert d.returncode == 0, out
        on_fleet = Api(url, tmp_path / "api-fleet.log")
        try:
            for path in ROUTES:
                if path in ("/api/v1/health", "/api/v1/ingest/status"):
                    continue        # the daemons and their files: three hosts here, one there (below)
                assert without_ids(answer(on_fleet, path)) == without_ids(answer(on_sqlite, path)), path
            for path in PAGED:
                assert without_ids(pages(on_fleet, path)) == without_ids(pages(on_sqlite, path)), path
            # Every host tracks its own copy of each benchmark definition; the rest is the same.
            fleet, lite = on_fleet.get("/api/v1/ingest/status"), on_sqlite.get("/api/v1/ingest/status")
            benchmark_files = {row["kind"]: row["files"] for row in fleet["files"]}["benchmark"]
            assert benchmark_files == 3 * {row["kind"]: row["files"] for row in lite["files"]}["benchmark"]
            for row in fleet["files"]:
                if row["kind"] == "benchmark":
                    row["files"] //= 3
            assert comparable(fleet) == comparable(lite)
        finally:
            assert on_fleet.close() == 0


def test_metrics_on_postgresql_count_as_on_sqlite(apis):
    on_sqlite, on_postgres = apis
    pg, lite = scrape(on_postgres), scrape(on_sqlite)
    assert pg["reev_ingest_database_up"] == 1
    assert pg["reev_ingest_lines_total"] == lite["reev_ingest_lines_total"] > 0
    assert pg["reev_ingest_errors"] == lite["reev_ingest_errors"] > 0
    assert {k: v for k, v in pg.items() if k.startswith("reev_ingest_files_tracked")} == \
        {k: v for k, v in lite.items() if k.startswith("reev_ingest_files_tracked")}
    assert 0 <= pg["reev_ingest_heartbeat_age_seconds"] < 60


def test_etags_give_304_and_change_with_the_data(corpus, apis):
    _, on_postgres = apis
    _, sessions, benchmarks, _, url = corpus
    tags = {}
    for path in ROUTES:
        first = on_postgres.request(path)
        if first.status != 200 or path.startswith("/api/v1/agents/config"):
            continue
        assert first.etag, path
        again = on_postgres.request(path, headers={"If-None-Match": first.etag})
        assert (again.status, again.body, again.etag) == (304, b"", first.etag), path
        tags[path] = first.etag
    # an execution of its own: its scoped ETag moves, another execution's does not
    mine, other = f"/api/v1/benchmarks/{B301}/status/{FLOW}", f"/api/v1/benchmarks/{B301}/status/{DONE}"
    with (sessions / f"enhanced_otel_{FLOW}.jsonl").open("ab") as log:
        log.write(fx.jsonl([fx.step_complete_line("lend", at=104)]))
    ingest(sessions, benchmarks, url)
    assert on_postgres.request("/api/v1/sessions").etag != tags["/api/v1/sessions"]
    assert on_postgres.request(mine, headers={"If-None-Match": tags[mine]}).status == 200
    assert on_postgres.request(other, headers={"If-None-Match": tags[other]}).status == 304


def test_the_stream_resumes_from_last_event_id_on_postgresql(corpus, apis):
    _, on_postgres = apis
    _, sessions, benchmarks, _, url = corpus
    everything = StreamClient(on_postgres, last_event_id="0")
    try:
        wait_for(lambda: len(everything.events) >= 5, what="the changes kept, from the start")
        ids = [e["id"] for e in everything.events]
        assert all(re.fullmatch(r"[0-9a-f]{16}:[0-9]+", i) for i in ids), ids
        assert [seq(e) for e in everything.events] == sorted({seq(e) for e in everything.events})
        middle = everything.events[len(everything.events) // 2]
        resumed = StreamClient(on_postgres, last_event_id=middle["id"])
        try:
            later = everything.events[everything.events.index(middle) + 1:]
            wait_for(lambda: len(resumed.events) >= len(later), what="the changes after the id")
            # a new run while both listen: each gets it once, after what it had
            (sessions / "enhanced_otel_run-new.jsonl").write_bytes(fx.jsonl([fx.prompt_line("p", at=300)]))
            ingest(sessions, benchmarks, url)
            wait_for(lambda: any(e["data"].get("execution_id") == "run-new" for e in resumed.events),
                     what="the new run on the resumed stream")
            wait_for(lambda: any(e["data"].get("execution_id") == "run-new" for e in everything.events),
                     what="the new run on the first stream")
            assert [e["id"] for e in resumed.events] == [e["id"] for e in everything.events[len(ids) - len(later):]]
        finally:
            resumed.close()
    finally:
        everything.close()


def test_a_query_past_its_time_limit_is_503(corpus, tmp_path):
    """A statement that waits (here on a lock a test session holds on executions) past
    --query-timeout is cancelled: 503, and the worker answers the next request."""
    url = corpus[4]
    server = Api(url, tmp_path / "api.log", "--query-timeout", "0.3")
    try:
        with psycopg.connect(url) as holder:
            holder.execute("LOCK TABLE executions IN ACCESS EXCLUSIVE MODE")
            # a response in a transaction, and one that is a single statement in autocommit
            for path in ("/api/v1/sessions", f"/api/v1/benchmarks/{B301}/status/{DONE}"):
                started = time.monotonic()
                reply = server.request(path)
                assert reply.status == 503 and "longer than 0.3 s" in reply.json()["message"], reply.body
                assert time.monotonic() - started < 5
            assert server.request("/api/v1/health").status == 200, "the worker is still there"
        assert server.request("/api/v1/sessions").status == 200
    finally:
        server.close()


def test_a_response_of_several_statements_is_stopped_at_its_deadline(corpus):
    """The limit is the response's, as on SQLite: statements each well inside statement_timeout
    but past the limit together are cancelled at the response's deadline."""
    db = open_database(corpus[4], query_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="longer than 0.3 s"), db.snapshot() as q:
        for _ in range(5):
            q.value("SELECT pg_sleep(0.2)")
    assert time.monotonic() - started < 0.9     # (the five would take 1 s)
    with db.snapshot() as q:     # the connection serves the next response
        assert q.generation() >= 1


def statements_run(server_url: str, url: str) -> int:
    """The statements the server has run on `url`'s database (pg_stat_statements, which the test
    cluster loads and creates in its `postgres` database: tests/pgcluster.py), the event stream
    watcher's poll of the generation aside (every 20 ms, whatever the requests), and a
    connection's setup too (its session's settings, the database's identity: once per thread of
    the server's pool, and a request may be the first on its thread)."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        return admin.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = %s AND s.query NOT IN ('SELECT data_generation FROM meta', 'SELECT database_id FROM meta')"
            " AND s.query NOT LIKE 'SET %%'",
            (pgcluster.dbname_of(url),)).fetchone()[0]


def test_an_execution_status_is_one_statement_and_so_is_its_304(corpus, pg_server, tmp_path):
    """The UI polls an execution's status: its answer is one statement (the run and what its
    ETag is made of, read together: its own snapshot, no transaction begun and ended around it),
    and a 304 one statement too. Each statement is a round trip to the server."""
    url = corpus[4]
    path = f"/api/v1/benchmarks/{B301}/status/{DONE}"
    server = Api(url, tmp_path / "api.log")
    try:
        first = server.request(path)    # (a connection's first read also reads the database's identity)
        before = statements_run(pg_server, url)
        for _ in range(4):
            assert server.request(path).json() == first.json()
        answered = statements_run(pg_server, url)
        for _ in range(4):
            assert server.request(path, headers={"If-None-Match": first.etag}).status == 304
        assert (answered - before, statements_run(pg_server, url) - answered) == (4, 4)
    finally:
        server.close()


def test_a_lookup_runs_one_statement(corpus):
    """lookup() reads outside a transaction: a second statement would read another snapshot."""
    db = open_database(corpus[4])
    with pytest.raises(RuntimeError, match="one statement"), db.lookup() as q:
        q.generation()
        q.generation()
    with db.lookup() as q:      # the connection serves the next read
        assert q.generation() >= 1


def test_a_role_that_may_only_select_is_served_and_its_password_never_shown(corpus, apis, tmp_path):
    _, as_owner = apis
    url = corpus[4]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS reev_reader_test")   # (a role is the cluster's, not the database's)
        admin.execute("CREATE ROLE reev_reader_test LOGIN PASSWORD 'sekrit-pw'")
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO reev_reader_test").format(
            sql.Identifier(admin.info.dbname)))
        admin.execute("GRANT USAGE ON SCHEMA public TO reev_reader_test")
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reev_reader_test")
    reader_url = re.sub(r"user=[^&]*", "user=reev_reader_test&password=sekrit-pw", url)
    server = Api(reader_url, tmp_path / "api.log", "--log-level", "debug")
    try:
        for path in ROUTES:
            assert answer(server, path) == answer(as_owner, path), path
        health = server.request("/api/v1/health")
        assert b"sekrit-pw" not in health.body and "password=***" in health.json()["database"]["name"]
    finally:
        server.close()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("DROP OWNED BY reev_reader_test")
            admin.execute("DROP ROLE reev_reader_test")
    assert "sekrit-pw" not in (tmp_path / "api.log").read_text()
    assert "password=***" in (tmp_path / "api.log").read_text()


def test_a_hot_standby_answers_as_the_primary_once_it_has_replayed(corpus, apis, pg_standby, tmp_path):
    _, on_primary = apis
    _, sessions, benchmarks, _, url = corpus
    server = Api(pg_standby(url), tmp_path / "api.log")
    try:
        for path in ROUTES:
            wait_for(lambda: answer(server, path) == answer(on_primary, path), what=f"{path} on the standby")
        stream = StreamClient(server, last_event_id="0")
        try:
            (sessions / "enhanced_otel_run-standby.jsonl").write_bytes(fx.jsonl([fx.prompt_line("p", at=400)]))
            ingest(sessions, benchmarks, url)
            wait_for(lambda: answer(server, "/api/v1/sessions") == answer(on_primary, "/api/v1/sessions")
                     and "run-standby" in str(answer(server, "/api/v1/sessions")), what="the change replayed")
            wait_for(lambda: any(e["data"].get("execution_id") == "run-standby" for e in stream.events),
                     what="the change on the standby's stream")
        finally:
            stream.close()
        before = server.request("/api/v1/benchmarks")
        assert server.request("/api/v1/benchmarks", headers={"If-None-Match": before.etag}).status == 304
    finally:
        server.close()


def test_before_the_daemon_made_its_tables_then_served_without_a_restart(pg_url, tmp_path):
    """A database the daemon has not started on yet: health degraded and a 503 saying so, then
    answers once the daemon has made its tables and ingested."""
    server = Api(pg_url, tmp_path / "api.log")
    try:
        reply = server.request("/api/v1/benchmarks")
        assert reply.status == 503 and "no reev-ingest tables yet" in reply.json()["message"], reply.body
        health = server.get("/api/v1/health")
        assert health["status"] == "degraded" and health["database"]["reachable"] is False
        sessions, benchmarks = tmp_path / "sessions", tmp_path / "benchmarks"
        sessions.mkdir()
        benchmarks.mkdir()
        write_corpus(sessions, benchmarks)
        ingest(sessions, benchmarks, pg_url)
        assert [b["id"] for b in server.get("/api/v1/benchmarks")] == [B301, B302, B303]
    finally:
        server.close()


def test_sessions_ended_by_the_server_are_made_again(corpus, apis):
    """The server ends the API's sessions (an administrator, a standby's replay conflict, a
    restart): the API connects again and answers, within one failed request per connection."""
    _, on_postgres = apis
    url = corpus[4]
    before = on_postgres.get("/api/v1/benchmarks")
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE application_name = 'reev-api' AND datname = current_database()").fetchone()[0]
    assert ended >= 1
    wait_for(lambda: on_postgres.request("/api/v1/benchmarks").status == 200, what="answers again")
    assert on_postgres.get("/api/v1/benchmarks") == before
    assert on_postgres.request("/api/v1/health").status == 200


def test_a_database_that_cannot_be_reached_yet_is_503_then_served(pg_server, tmp_path):
    """A URL naming a database that does not exist (yet): the server refuses the connection;
    the API answers 503 saying so and health degraded, keeps running, and serves once the
    database is there, without a restart (its attempts wait at most a few seconds apart)."""
    name = f"reev_test_later_{tmp_path.name[-8:].lower()}"
    url = pgcluster.database_url(pg_server, name)
    server = Api(url, tmp_path / "api.log")
    try:
        reply = server.request("/api/v1/benchmarks")
        assert reply.status == 503 and "cannot connect to the database" in reply.json()["message"], reply.body
        assert server.get("/api/v1/health")["database"]["reachable"] is False
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        try:
            sessions, benchmarks = tmp_path / "sessions", tmp_path / "benchmarks"
            sessions.mkdir()
            benchmarks.mkdir()
            write_corpus(sessions, benchmarks)
            ingest(sessions, benchmarks, url)
            wait_for(lambda: server.request("/api/v1/benchmarks").status == 200, timeout=15,
                     what="answers once the database is there")
            assert [b["id"] for b in server.get("/api/v1/benchmarks")] == [B301, B302, B303]
        finally:
            server.close()
            with psycopg.connect(pg_server, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        server.close()


def test_a_nul_in_the_request_target_is_400_on_both_backends(apis):
    """No id, agent or other value the daemon stores holds a NUL character (daemon/parse.py), and
    PostgreSQL cannot be asked for one: a path or parameter with %00 was a 503 there (the
    database 'unavailable') where SQLite answered 404 or an empty page."""
    for path in ("/api/v1/sessions/%00", f"/api/v1/sessions/{DONE}%00/events", "/api/v1/benchmarks/x/status?agent=a%00",
                 "/api/v1/agent-performance/%00/results", "/api/v1/sessions?agent=%00&limit=2"):
        for api in apis:
            reply = api.request(path)
            assert reply.status == 400 and "NUL" in reply.json()["message"], (path, reply)
