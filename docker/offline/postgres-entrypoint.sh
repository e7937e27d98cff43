#!/usr/bin/env bash
# Entrypoint of the offline PostgreSQL image: the subset of the official image's entrypoint the
# compose stack uses. First start: initdb, password authentication over TCP, the database
# POSTGRES_DB, then /docker-entrypoint-initdb.d/* in name order (*.sql through psql, *.sh run if
# executable, else sourced) against a server listening on the unix socket only (so health
# checks over TCP fail until initialisation is complete). Then `postgres "$@"`.
set -Eeuo pipefail

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:=/var/lib/postgresql/data}"
export POSTGRES_USER POSTGRES_DB PGDATA

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi
shift

# As in the official image: the method of TCP connections, scram-sha-256 unless told (`trust`
# lets anyone in without a password, for throwaway test containers).
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        echo "docker-entrypoint: POSTGRES_PASSWORD must be set to initialise the database (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    password_args=()
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        password_args=(--pwfile="$pwfile")
    fi
    # shellcheck disable=SC2086
    initdb -D "$PGDATA" --username="$POSTGRES_USER" "${password_args[@]}" -E UTF8 --locale=C.UTF-8 \
        ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"
    {
        echo
        echo "listen_addresses = '*'"
    } >> "$PGDATA/postgresql.conf"
    echo "host all all all $POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start
    psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    echo "docker-entrypoint: running $f"
                    "$f"
                else
                    echo "docker-entrypoint: sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql)
                echo "docker-entrypoint: running $f"
                "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f"
                ;;
            *) echo "docker-entrypoint: ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "docker-entrypoint: initialisation complete"
fi

exec postgres -D "$PGDATA" "$@"
