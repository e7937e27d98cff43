#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a fixed number of inputs, on the
# stable toolchain (cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 allows them). A crash
# fails the run and leaves its input in fuzz/artifacts/<target>/: make it a regression test.
#   decode: the pgoutput decoder and the text of every column type
#   encode: column text -> typed value -> CDCChange Avro in every --decimal-handling mode,
#           read back with apache-avro against the published schema
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
# Defaults sized to about a minute each here: decode takes ~50,000 inputs/s, encode ~700/s.
for target in decode encode; do
    case "$target" in
        decode) RUNS="${1:-1000000}" ;;
        encode) RUNS="${1:-40000}" ;;
    esac
    echo "fuzz: $target, $RUNS runs"
    log="$(mktemp)"
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -runs="$RUNS" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
        rm -f "$log"
        exit 1
    fi
    grep -E "^Done " "$log" || true
    rm -f "$log"
done
