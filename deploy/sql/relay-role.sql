-- The role `pgoutbox run` connects as, with only what streaming needs: LOGIN and REPLICATION.
--
-- Streaming needs no privilege on the outbox table: the walsender decodes the WAL with pgoutput,
-- which checks no table privilege, and pgoutbox's start-up checks read only system catalogs and
-- pg_replication_slots, which every role may read. --retention=delete-after-publish needs more:
-- see retention-grants.sql. Creating the table and the publication is the table owner's job
-- (the first two statements of `pgoutbox setup --print-sql`); this role can then run
-- `pgoutbox setup` itself, which only verifies them and creates the slot.
--
-- Run as a superuser (from PostgreSQL 16, a role with CREATEROLE and REPLICATION may too), in the
-- outbox's database; safe to run again:
--
--   psql "$ADMIN_URL" -v role=pgoutbox_relay -f deploy/sql/relay-role.sql
--
-- then set its password with psql's \password pgoutbox_relay (so that the password reaches
-- neither the server's logs nor your shell history), and allow it in pg_hba.conf, for both the
-- database and replication connections, e.g.:
--
--   hostssl app         pgoutbox_relay 10.0.0.0/8 scram-sha-256
--   hostssl replication pgoutbox_relay 10.0.0.0/8 scram-sha-256
\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role pgoutbox_relay
\endif

SELECT format('CREATE ROLE %I', :'role')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec

-- For an existing role too: exactly these attributes, whatever it had before.
ALTER ROLE :"role" LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;

-- CONNECT is granted to PUBLIC by default; say it explicitly for databases where it was revoked.
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role') \gexec
