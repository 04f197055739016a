#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/corpus/ from real data made here and now:
# - FLV files that ffmpeg encodes from its lavfi test sources (H.264 + AAC, Speex, G.711);
# - the bytes of ffmpeg publishing that FLV to the release siprtmp server on loopback, both
#   directions, recorded by a tiny TCP proxy (`seedgen proxy`);
# - the SIP messages of a sipp call on loopback (uac against uas, `-trace_msg`).
# Then `seedgen corpus` cuts them into seeds for every target (see examples/seedgen.rs).
# Needs ffmpeg (with libx264 and libspeex), sipp and python3 (to find free ports).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() { # PORT: until something accepts on 127.0.0.1:PORT (30 s at most)
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

echo "== media (ffmpeg lavfi)"
ff=(ffmpeg -hide_banner -loglevel error -y)
"${ff[@]}" -f lavfi -i testsrc=size=160x120:rate=10 -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 2 -c:v libx264 -profile:v baseline -g 10 -pix_fmt yuv420p -b:v 60k \
    -c:a aac -b:a 24k -ac 1 -f flv "$work/av.flv"
"${ff[@]}" -f lavfi -i sine=frequency=300:sample_rate=16000 -t 1 -c:a libspeex -ar 16000 -ac 1 \
    -f flv "$work/speex.flv"
"${ff[@]}" -f lavfi -i sine=frequency=500:sample_rate=8000 -t 1 -c:a pcm_mulaw -ar 8000 -ac 1 \
    -f flv "$work/pcmu.flv"

echo "== an ffmpeg publish to the release server, captured"
cargo build --release -p siprtmp -j2
server_port=$(free_port)
proxy_port=$(free_port)
mkdir -p "$work/root"
"$root/target/release/siprtmp" -i 127.0.0.1 -p "$server_port" -r "$work/root" --no-gateway \
    >"$work/server.log" 2>&1 &
pids+=($!)
wait_listening "$server_port"
cargo build --release --manifest-path fuzz/Cargo.toml --example seedgen
seedgen=fuzz/target/release/examples/seedgen
"$seedgen" proxy "127.0.0.1:$proxy_port" "127.0.0.1:$server_port" "$work/publish" &
proxy_pid=$!
pids+=($proxy_pid)
for _ in $(seq 300); do [ -e "$work/publish.ready" ] && break; sleep 0.1; done
timeout 60 ffmpeg -hide_banner -loglevel error -i "$work/av.flv" -c copy -f flv \
    "rtmp://127.0.0.1:$proxy_port/live/seed"
# The proxy ends once both directions are closed.
for _ in $(seq 300); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done

echo "== a sipp call (uac -> uas), messages traced"
uas_port=$(free_port)
uac_port=$(free_port)
(cd "$work" && timeout 60 sipp -sn uas -i 127.0.0.1 -p "$uas_port" -m 1 -nostdin \
    -trace_msg -message_file "$work/uas.log" >/dev/null 2>&1) &
uas_pid=$!
pids+=($uas_pid)
sleep 0.5 # sipp's UDP socket: nothing to poll for; the uac retransmits if it is early
(cd "$work" && timeout 60 sipp -sn uac "127.0.0.1:$uas_port" -i 127.0.0.1 -p "$uac_port" -m 1 \
    -nostdin -trace_msg -message_file "$work/uac.log" >/dev/null 2>&1) || true
wait "$uas_pid" || true
cat "$work/uac.log" "$work/uas.log" >"$work/sip.log"

echo "== seeds"
"$seedgen" corpus "$work" fuzz/corpus
du -sh fuzz/corpus
