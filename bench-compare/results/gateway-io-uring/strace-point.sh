#!/bin/bash
# strace -c of siprtmp during a bench-compare gateway point (one runtime, one call count).
rt=$1; calls=$2
out=${OUT:-/tmp}/strace-$rt-$calls
rm -rf $out; mkdir -p $out
CARGO_TARGET_DIR=target-bench target-bench/release/bench-compare --gateway --runtimes $rt --calls $calls --codecs wideband --repeats 1 --window 25 --out $out/bench > $out/bench.log 2>&1 &
bench=$!
pid=""
for i in $(seq 1 200); do
  pid=$(pgrep -f "siprtmp .*--runtime $rt" | head -1)
  [ -n "$pid" ] && break
  sleep 0.1
done
# calls placed and warmed up (the bench's own warm-up is 3 s)
sleep 8
timeout -s INT 10 strace -c -f -p $pid -o $out/strace.txt
wait $bench
tail -3 $out/bench.log | tr '\r' '\n' | tail -2
head -25 $out/strace.txt
