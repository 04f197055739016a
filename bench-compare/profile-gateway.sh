#!/bin/sh
# Where a gateway configuration's cycles go: runs one bench-compare --gateway point (CALLS
# calls, one server configuration named as bench-compare names them) with a long window, and
# records the server process with `perf record -g` for SECONDS in the middle of that window.
# Prints the top of the profile (self time by shared object and symbol) and leaves the
# perf.data in OUT.
#
#   bench-compare/profile-gateway.sh mio 300 /tmp/profile-mio
#   bench-compare/profile-gateway.sh mio-merged-shared-tick20 300 /tmp/profile-best
#
# Needs perf (Debian: linux-perf) and the release build of bench-compare and siprtmp in
# target-bench (see bench-compare/README.md); sets net.core.rmem_default for sipp as the
# gateway runs do, and puts it back.
set -eu
server=${1:?server name, e.g. mio}
calls=${2:-300}
out=${3:-/tmp/profile-$server}
seconds=${SECONDS_PROFILED:-8}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target-bench/release/bench-compare"
mkdir -p "$out"
old_rmem=$(sysctl -n net.core.rmem_default)
sysctl -qw net.core.rmem_default=4194304
trap 'sysctl -qw net.core.rmem_default=$old_rmem' EXIT
"$bin" --gateway --runtimes "$server" --calls "$calls" --codecs wideband --repeats 1 \
    --warmup 4 --window 20 --out "$out/bench" >"$out/bench.log" 2>&1 &
bench=$!
# The server is bench-compare's child with siprtmp's gateway flags (or the floor's server):
# wait for it to start.
pid=
for _ in $(seq 1 300); do
    pid=$(pgrep -n -P "$bench" -f -- '--int-ip|--floor-server' || true)
    [ -n "$pid" ] && break
    sleep 0.2
done
[ -n "$pid" ] || { echo "no server process under bench-compare $bench" >&2; exit 1; }
sleep 8
perf record -F 499 -g -p "$pid" -o "$out/perf.data" -- sleep "$seconds" 2>"$out/perf-record.log"
wait "$bench" || true
perf report -i "$out/perf.data" --no-children -g none --percent-limit 0.8 --sort dso,symbol --stdio 2>/dev/null \
    | grep -v '^$' | grep -v '^#' | grep '%' | head -25 | tee "$out/top.txt"
