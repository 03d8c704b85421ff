#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60) and prints, per
# target, the executions and whether it crashed. Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`); says so and exits 0 when either is missing.
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (rustup toolchain install nightly); skipping"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz); skipping"
    exit 0
fi
targets=(wire_decode record_verify proof_verify directory_ingest state_machine audit_export roster_op)
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    work="$(mktemp -d)"
    cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1
    status=$?
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    if [ "$status" -eq 0 ]; then
        echo "fuzz: $target: ${runs:-?} executions in ${seconds}s, no crash"
    else
        echo "fuzz: $target: CRASH or error after ${runs:-?} executions (exit $status); see fuzz/artifacts/$target"
        tail -30 "$log"
        failed=1
    fi
    rm -f "$log"
    rm -rf "$work"
done
exit "$failed"
