#!/bin/sh
# As the official image's entrypoint: `bash ...` / `sh ...` / `python ...` run as given, anything
# else is an airflow subcommand (`webserver`, `scheduler`, `db migrate`, ...).
set -e
case "${1:-}" in
    bash|sh|python|python3) exec "$@" ;;
    airflow) shift; exec airflow "$@" ;;
    *) exec airflow "$@" ;;
esac
