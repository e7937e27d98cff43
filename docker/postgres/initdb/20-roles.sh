#!/usr/bin/env bash
# Least-privilege roles, applied once at database creation (after 10-schema.sql = sql/init.sql)
# by the postgres image's entrypoint (official image, or docker/offline/postgres.Dockerfile).
#
#  cdc         the CDC connector: LOGIN REPLICATION (replication connection, creating and
#              dropping its own slot, heartbeat messages), CONNECT on the database, USAGE on the
#              schema and SELECT on the published tables (initial and ad-hoc snapshots). Not a
#              superuser, and no CREATE on the database: the publication cdc_publication is
#              created by sql/init.sql and owned by the database owner, so the connector never
#              has to create it. A table added later needs `GRANT SELECT ... TO cdc` and
#              `ALTER PUBLICATION cdc_publication ADD TABLE ...` by its owner.
#  travel_app  the OLTP workload (the application): DML on the tables, nothing else.
#
# Passwords: CDC_DB_PASSWORD and APP_DB_PASSWORD from the container's environment.
set -euo pipefail

: "${CDC_DB_PASSWORD:?CDC_DB_PASSWORD must be set}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set}"
DB="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "$DB" \
    -v db="$DB" -v cdc_password="$CDC_DB_PASSWORD" -v app_password="$APP_DB_PASSWORD" <<'SQL'
CREATE ROLE cdc WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'cdc_password';
GRANT CONNECT ON DATABASE :"db" TO cdc;
GRANT USAGE ON SCHEMA public TO cdc;
GRANT SELECT ON TABLE public.users, public.bookings, public.payments TO cdc;

CREATE ROLE travel_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
GRANT CONNECT ON DATABASE :"db" TO travel_app;
GRANT USAGE ON SCHEMA public TO travel_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.users, public.bookings, public.payments TO travel_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO travel_app;

-- Nobody but the owner creates objects in public (PostgreSQL 15 already revokes CREATE from PUBLIC).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
echo "20-roles.sh: created roles cdc (REPLICATION, SELECT on users/bookings/payments) and travel_app (DML) in database $DB"
