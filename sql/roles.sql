-- Least-privilege roles, applied once after init.sql by the compose stack
-- (docker/postgres/initdb/20-roles.sh) and the local stack (crates/local-stack).
-- psql variables: db (the database), and optionally cdc_password and app_password (without
-- them the roles have no password: the local stack's server trusts local connections).
--
-- cdc, the CDC connector; each privilege and what it is for:
--   LOGIN            it connects.
--   REPLICATION      the replication connection: CREATE_REPLICATION_SLOT (its slot, and the
--                    snapshot exported at its consistent point), START_REPLICATION, dropping its
--                    own slot; it also allows pg_logical_emit_message, which heartbeats and
--                    re-snapshot watermarks use.
--   CONNECT          the database's ordinary connections: catalog look-ups (pg_catalog and
--                    information_schema are readable by every role), snapshot readers.
--   USAGE on public  naming the tables.
--   SELECT on the published tables   the initial snapshot and ad-hoc re-snapshots read them.
-- Nothing else: not a superuser, no CREATE anywhere, no DML. The publication cdc_publication
-- is created by init.sql and owned by the database owner, so the connector never has to create
-- it. A table added later needs `GRANT SELECT ON ... TO cdc` and
-- `ALTER PUBLICATION cdc_publication ADD TABLE ...` by its owner.
--
-- travel_app, the OLTP workload (the application): DML on the tables, nothing else.
--
-- Idempotent: the local stack applies it on every start (roles belong to the cluster).

SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdc') AS cdc_missing,
       NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'travel_app') AS app_missing \gset
\if :cdc_missing
CREATE ROLE cdc WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
\endif
\if :{?cdc_password}
ALTER ROLE cdc PASSWORD :'cdc_password';
\endif
GRANT CONNECT ON DATABASE :"db" TO cdc;
GRANT USAGE ON SCHEMA public TO cdc;
GRANT SELECT ON TABLE public.users, public.bookings, public.payments TO cdc;

\if :app_missing
CREATE ROLE travel_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
\endif
\if :{?app_password}
ALTER ROLE travel_app PASSWORD :'app_password';
\endif
GRANT CONNECT ON DATABASE :"db" TO travel_app;
GRANT USAGE ON SCHEMA public TO travel_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.users, public.bookings, public.payments TO travel_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO travel_app;

-- Nobody but the owner creates objects in public (PostgreSQL 15 already revokes CREATE from PUBLIC).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
