#!/usr/bin/env bash
# Runs the whole test suite. First installs, when missing, the real peers the interop tests
# talk to (Debian packages): ffmpeg/ffprobe, rtmpdump, sipp (sip-tester), and nginx with its rtmp
# module (bench-compare quick mode).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v rtmpdump >/dev/null 2>&1 || missing+=(rtmpdump)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
# bench-compare's quick mode measures nginx-rtmp beside siprtmp.
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing test peers: ${missing[*]}"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

cargo test --workspace --locked
