#!/usr/bin/env bash
# Least-privilege roles (sql/roles.sql, mounted at /etc/travel/roles.sql: what each privilege is
# for is written there), applied once at database creation after 10-schema.sql = sql/init.sql
# by the postgres image's entrypoint (official image, or docker/offline/postgres.Dockerfile).
#
# Passwords: CDC_DB_PASSWORD and APP_DB_PASSWORD from the container's environment.
set -euo pipefail

: "${CDC_DB_PASSWORD:?CDC_DB_PASSWORD must be set}"
: "${APP_DB_PASSWORD:?APP_DB_PASSWORD must be set}"
DB="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "$DB" \
    -v db="$DB" -v cdc_password="$CDC_DB_PASSWORD" -v app_password="$APP_DB_PASSWORD" \
    -f /etc/travel/roles.sql
echo "20-roles.sh: created roles cdc (REPLICATION, SELECT on users/bookings/payments) and travel_app (DML) in database $DB"
