#!/usr/bin/env bash
# Runs the whole test suite. First installs, when missing, the real peers the interop tests
# talk to (Debian packages): ffmpeg/ffprobe, rtmpdump, sipp (sip-tester), Kamailio (with its tls module),
# baresip, promtool
# (prometheus), chromium, libspeex-dev and libopus-dev (the gateway's transcoding links libspeex
# and libopus), and nginx with its rtmp module and the Python port of the original server,
# rtmplite3 from PyPI (bench-compare quick mode measures both beside siprtmp); then makes the
# test media (scripts/make-test-media.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v rtmpdump >/dev/null 2>&1 || missing+=(rtmpdump)
# scripts/make-test-media.sh remuxes narrowband Speex into FLV with a Python script.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
# The registrar and proxy of tests/tests/kamailio_interop.rs.
command -v kamailio >/dev/null 2>&1 || missing+=(kamailio)
# The SRTP-capable far end of tests/tests/gateway_srtp.rs and gateway_tls_srtp.rs (SDES, echo).
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
# Kamailio's tls module: the TLS registrar of tests/tests/kamailio_tls.rs and gateway_tls_srtp.rs.
[ -n "$(ls /usr/lib/*/kamailio/modules/tls.so /usr/lib/kamailio/modules/tls.so 2>/dev/null)" ] ||
    missing+=(kamailio-tls-modules)
# bench-compare's quick mode measures nginx-rtmp beside siprtmp.
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
# promtool (package prometheus) checks the HTTP listener's /metrics in tests/tests/http_metrics.rs.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Headless Chromium opens the status page and plays a stream in tests/tests/web_page_browser.rs.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# codec-speex links the system libspeex (the gateway's Speex <-> G.711 transcoding).
[ -e /usr/include/speex/speex.h ] || missing+=(libspeex-dev)
# codec-opus links the system libopus (the gateway's Opus <-> G.711/Speex transcoding).
[ -e /usr/include/opus/opus.h ] || missing+=(libopus-dev)
# rtmplite3 goes into its own virtualenv (bench-compare looks there): Python 3 with venv.
rtmplite_venv="${XDG_CACHE_HOME:-$HOME/.cache}/siprtmp/rtmplite3"
if ! command -v rtmplite3 >/dev/null 2>&1 && [ ! -x "$rtmplite_venv/bin/rtmplite3" ]; then
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
fi
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing test peers: ${missing[*]}"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

if ! command -v rtmplite3 >/dev/null 2>&1 && [ ! -x "$rtmplite_venv/bin/rtmplite3" ]; then
    echo "installing rtmplite3 into $rtmplite_venv"
    # Not fatal: without PyPI, bench-compare measures without rtmplite3 and says so.
    if ! { python3 -m venv "$rtmplite_venv" &&
        "$rtmplite_venv/bin/pip" install --quiet 'rtmplite3==0.4.0'; }; then
        echo "warning: rtmplite3 could not be installed; bench-compare will skip it" >&2
        rm -rf "$rtmplite_venv"
    fi
fi

# The media files the tests read, generated into the build area (kept while unchanged).
scripts/make-test-media.sh

# Four tests at a time in each test binary on a two-core machine: the interop tests spend most
# of their time waiting on real-time media and on peers, not on the CPU (21 -> ~14 min in CI).
# RUST_TEST_THREADS set by the caller wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace --locked --no-fail-fast
