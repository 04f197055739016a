#!/usr/bin/env bash
# Builds the cargo-fuzz targets under fuzz/ and runs each (or the named ones) for SECONDS,
# FUZZ_JOBS at a time (default 2), then prints per target: executions, coverage (libFuzzer's
# final cov/ft), new corpus entries and crashes. Exits non-zero when any target crashed (a
# panic, a sanitizer report, an out-of-memory or a timeout); the input that did it is in
# fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (installed here when missing). The committed
# seeds in fuzz/corpus/<target>/ are read, never written: what a run finds goes to
# fuzz/work/<target>/ (ignored by git). See fuzz/README.md for reproducing and minimising.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
jobs=${FUZZ_JOBS:-2}
# Memory: no input may make a target hold more than this (libFuzzer reports an OOM), and no
# single allocation may be larger than that.
rss_limit_mb=${FUZZ_RSS_LIMIT_MB:-2048}
malloc_limit_mb=${FUZZ_MALLOC_LIMIT_MB:-512}

command -v rustup >/dev/null || { echo "rustup is needed for the nightly toolchain" >&2; exit 2; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Build each named target (cargo fuzz build takes one target or all of them).
if [ $# -gt 0 ]; then
    for t in "${targets[@]}"; do CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo +nightly fuzz build "$t"; done
else
    CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo +nightly fuzz build
fi
bin_dir=fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release

logs=fuzz/work/logs
mkdir -p "$logs"

run_one() {
    local t=$1
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
    "$bin_dir/$t" \
        -max_total_time="$seconds" \
        -rss_limit_mb="$rss_limit_mb" \
        -malloc_limit_mb="$malloc_limit_mb" \
        -timeout=20 \
        -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" \
        "fuzz/work/$t" "fuzz/corpus/$t" >"$logs/$t.log" 2>&1
    echo $? >"$logs/$t.rc"
}

running=0
for t in "${targets[@]}"; do
    [ -x "$bin_dir/$t" ] || { echo "no such target: $t" >&2; exit 2; }
    rm -f "$logs/$t.rc"
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=0
printf '%-20s %12s %8s %8s %8s %8s %s\n' target execs exec/s cov ft new result
for t in "${targets[@]}"; do
    log=$logs/$t.log
    rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
    # The last status line that reports coverage: "#N ... cov: C ft: F ...".
    status=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$status")
    ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$status")
    result=ok
    if [ "$rc" != 0 ] || grep -qE '^==[0-9]+==ERROR|deadly signal|panicked at|out-of-memory|ALARM: working on the last Unit' "$log"; then
        result="CRASH (exit $rc): $(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //')"
        failed=1
    fi
    printf '%-20s %12s %8s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${new:-?}" "$result"
done
if [ "$failed" != 0 ]; then
    echo "crashes: see fuzz/work/logs/<target>.log; reproduce with fuzz/README.md" >&2
fi
exit "$failed"
