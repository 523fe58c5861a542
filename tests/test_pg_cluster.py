"""The PostgreSQL test machinery itself (tests/pgcluster.py, the pg_* fixtures of conftest.py):
a database of its own per test, a streaming standby that replays the primary, and
pg_stat_statements loaded, as the backend's tests and the benchmarks expect them."""

import psycopg
import pytest

from tests import pgcluster
from tests.conftest import wait_for


def test_each_test_gets_an_empty_database_of_its_own(pg_url, pg_server):
    assert pgcluster.dbname_of(pg_url) != pgcluster.dbname_of(pg_server)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == pgcluster.dbname_of(pg_url)
        assert conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE n.nspname = 'public'").fetchone()[0] == 0
        assert conn.info.parameter_status("server_version").split(".")[0].isdigit()


def test_the_server_listens_on_a_unix_socket_only(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.info.host.startswith("/")
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == ""


def test_a_standby_replays_what_the_primary_commits(pg_url, pg_standby):
    with psycopg.connect(pg_url, autocommit=True) as primary:
        primary.execute("CREATE TABLE probe (n integer)")
        standby_url = pg_standby(pg_url)
        primary.execute("INSERT INTO probe VALUES (42)")      # after the base backup: streamed
        with psycopg.connect(standby_url, autocommit=True) as standby:
            assert standby.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
            assert standby.info.host != primary.info.host
            wait_for(lambda: standby.execute("SELECT n FROM probe").fetchall() == [(42,)],
                     what="the primary's row on the standby")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                standby.execute("INSERT INTO probe VALUES (43)")


def test_pg_stat_statements_counts_each_databases_statements(pg_url, pg_server):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for _ in range(3):
            conn.execute("SELECT 1 AS reev_probe")
    with psycopg.connect(pg_server, autocommit=True) as admin:
        assert "pg_stat_statements" in admin.execute("SHOW shared_preload_libraries").fetchone()[0]
        calls = admin.execute(
            "SELECT sum(s.calls) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = %s AND s.query LIKE %s", (pgcluster.dbname_of(pg_url), "%reev_probe%")).fetchone()[0]
        assert calls == 3
