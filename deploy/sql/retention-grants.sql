-- What `pgoutbox run --retention=delete-after-publish` needs on top of relay-role.sql: its
-- janitor deletes published rows with DELETE FROM <table> WHERE <id column> = ANY(...), which
-- takes DELETE on the table, SELECT on the id column (PostgreSQL checks SELECT on the columns a
-- WHERE clause reads), and USAGE on the schema. Without retention, grant none of this.
--
-- Run as the outbox table's owner; safe to run again:
--
--   psql "$OWNER_URL" -v role=pgoutbox_relay -v schema=public -v table=outbox \
--     -v id_column=sequence_id -f deploy/sql/retention-grants.sql
\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role pgoutbox_relay
\endif
\if :{?schema}
\else
  \set schema public
\endif
\if :{?table}
\else
  \set table outbox
\endif
\if :{?id_column}
\else
  \set id_column sequence_id
\endif

GRANT USAGE ON SCHEMA :"schema" TO :"role";
GRANT SELECT (:"id_column"), DELETE ON TABLE :"schema".:"table" TO :"role";
