-- The database and roles of a reev-ingest fleet (docs/fleet.md). Run once on the primary, as a
-- superuser:  psql -X -v ON_ERROR_STOP=1 -f roles.sql     (`make fleet` runs this file as it is)
-- Passwords come afterwards, with psql's \password ROLE: it sends a hash, so the password is in
-- no server log, no shell history and no pg_stat_statements.
-- The database is named `reev` below, four times (the \connect line included: grants on tables
-- are made inside the database they are for); for another name, change all four.

-- The daemons': owner of the database, hence of its schema `public` (PostgreSQL 15 gives that
-- schema to the database's owner), where each daemon creates and migrates the tables.
CREATE ROLE reev_writer LOGIN;
-- The API's: reads, and nothing else. Read-only by default too, whatever a client asks.
CREATE ROLE reev_reader LOGIN;
ALTER ROLE reev_reader SET default_transaction_read_only = on;
-- The standbys': pg_basebackup and streaming replication (pg_hba.conf: `replication` lines).
CREATE ROLE reev_replica LOGIN REPLICATION;

CREATE DATABASE reev OWNER reev_writer;
-- No role but these connects (PUBLIC has CONNECT and TEMPORARY on a new database); the owner
-- keeps every right, temporary tables included (the daemon stages its back-fill in them).
REVOKE ALL ON DATABASE reev FROM PUBLIC;
GRANT CONNECT ON DATABASE reev TO reev_reader;

\connect reev
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO reev_reader;
-- Every table and view the daemons make, now or in a later schema version, is readable.
ALTER DEFAULT PRIVILEGES FOR ROLE reev_writer IN SCHEMA public GRANT SELECT ON TABLES TO reev_reader;
-- (and those made before this ran, if any)
GRANT SELECT ON ALL TABLES IN SCHEMA public TO reev_reader;
