#!/usr/bin/env bash
# Generates the media files the tests and bench-compare read, into the build area:
# ${CARGO_TARGET_DIR:-target}/test-media (a relative CARGO_TARGET_DIR is taken from the
# repository root). The code that looks them up is tests/src/locate.rs.
#
# Everything comes from ffmpeg's synthetic lavfi sources (testsrc2 pictures, a 440 Hz tone that
# beeps once a second), 20 s long; about 1.2 MB in all. Needs ffmpeg with libx264 and libspeex
# (Debian's ffmpeg package), and python3 for speex-ogg-to-flv.py.
#
# The enhanced-RTMP clips (HEVC, AV1, VP9, Opus, two video tracks; 4 s each, about 400 kB in
# all) need an ffmpeg recent enough to write enhanced FLV with those encoders: the static build
# in the PyPI package imageio-ffmpeg, installed here when missing into its own virtualenv
# (${XDG_CACHE_HOME:-~/.cache}/siprtmp/imageio-ffmpeg) and linked as ffmpeg9 beside the media,
# where the interop tests find it. Without PyPI they are skipped, with a warning.
#
# Cheap to run again: the directory carries a stamp with the hash of this script, its helper
# and the ffmpeg version; with the same stamp, files already there are kept, otherwise the
# directory is made afresh. Each file is written under a temporary name and renamed when
# complete, so an interrupted run leaves no half file (the next run makes what is missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$root/$target
out=$target/test-media
helper=$root/scripts/speex-ogg-to-flv.py

for tool in ffmpeg python3; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "make-test-media.sh: $tool is needed (scripts/test.sh installs it)" >&2
        exit 1
    }
done

# imageio-ffmpeg's ffmpeg (version 9), for the enhanced-RTMP clips and the tests that play them.
imageio_version=0.8.1
imageio_venv="${XDG_CACHE_HOME:-$HOME/.cache}/siprtmp/imageio-ffmpeg"
ffmpeg9_path() {
    "$imageio_venv/bin/python" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())' 2>/dev/null
}
ffmpeg9=$(ffmpeg9_path || true)
if [[ -z $ffmpeg9 ]]; then
    echo "installing imageio-ffmpeg into $imageio_venv"
    if ! { python3 -m venv "$imageio_venv" &&
        "$imageio_venv/bin/pip" install --quiet "imageio-ffmpeg==$imageio_version"; }; then
        echo "warning: imageio-ffmpeg could not be installed; the enhanced-RTMP clips are skipped" >&2
        rm -rf "$imageio_venv"
    fi
    ffmpeg9=$(ffmpeg9_path || true)
fi

mkdir -p "$target"
# One run at a time per build area (cargo test in two terminals, say).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$target/test-media.lock"
    flock 9
fi

stamp=$( {
    cat "$0" "$helper"
    ffmpeg -hide_banner -version | head -n 1
    [[ -z $ffmpeg9 ]] || "$ffmpeg9" -hide_banner -version | head -n 1
} | sha256sum | cut -d' ' -f1)
if [[ ! -f $out/.stamp || $(cat "$out/.stamp") != "$stamp" ]]; then
    rm -rf "$out"
    mkdir -p "$out"
    echo "$stamp" >"$out/.stamp.partial"
    mv -f "$out/.stamp.partial" "$out/.stamp"
fi
rm -f "$out"/.partial-*

ff=(ffmpeg -nostdin -hide_banner -loglevel error -y)
# No version string, creation time or random identifiers in the output: same bytes each run.
exact=(-fflags +bitexact -flags +bitexact -map_metadata -1)
seconds=20
# A Flash-era camera: 320x240 at 12 fps.
video=(-f lavfi -i "testsrc2=size=320x240:rate=12:duration=$seconds")
tone() { echo "sine=frequency=440:beep_factor=4:sample_rate=$1:duration=$seconds"; }
# H.264 Constrained Baseline as a live encoder sends it: a keyframe every 2 s (24 frames),
# no B-frames, a steady 150 kbit/s. One encoder thread: x264's sliced threads (zerolatency)
# with rate control give different bytes from run to run, and a slice per core would make
# the file depend on the machine.
h264=(-c:v libx264 -threads:v 1 -preset veryfast -tune zerolatency -profile:v baseline
    -pix_fmt yuv420p -g 24 -keyint_min 24 -sc_threshold 0 -bf 0 -b:v 150k -maxrate 150k
    -bufsize 300k)
speex16k=(-c:a libspeex -ar 16000 -ac 1)

made=0
# make NAME COMMAND...: runs COMMAND with the temporary file as its last argument, unless NAME
# is already there, then renames the temporary file to NAME.
make() {
    local name=$1
    shift
    [[ -e $out/$name ]] && return 0
    local partial=$out/.partial-$name
    "$@" "$partial"
    mv -f "$partial" "$out/$name"
    made=$((made + 1))
}

# What modern encoders (OBS, ffmpeg) publish: H.264 + AAC 44.1 kHz.
make h264_aac_320x240_12fps_20s.flv "${ff[@]}" "${video[@]}" -f lavfi -i "$(tone 44100)" \
    "${h264[@]}" -c:a aac -b:a 48k -ac 1 -ar 44100 "${exact[@]}" -f flv
# A Flash camera with the Speex microphone: H.264 + Speex 16 kHz.
make h264_speex16k_320x240_12fps_20s.flv "${ff[@]}" "${video[@]}" -f lavfi -i "$(tone 16000)" \
    "${h264[@]}" "${speex16k[@]}" "${exact[@]}" -f flv
# The gateway's main audio: Speex 16 kHz only, 20 ms a message.
make speex16k_audio_20s.flv "${ff[@]}" -f lavfi -i "$(tone 16000)" \
    "${speex16k[@]}" "${exact[@]}" -f flv
# Narrowband Speex (8 kHz): through Ogg, since ffmpeg's FLV muxer takes only 16 kHz Speex.
make speex8k_audio_20s.ogg "${ff[@]}" -f lavfi -i "$(tone 8000)" \
    -c:a libspeex -ar 8000 -ac 1 "${exact[@]}" -f ogg
make speex8k_audio_20s.flv python3 "$helper" "$out/speex8k_audio_20s.ogg"
# G.711 mu-law 8 kHz without a header (.ul): 160 bytes are one 20 ms RTP payload.
make pcmu_8k_20s.ul "${ff[@]}" -f lavfi -i "$(tone 8000)" \
    -c:a pcm_mulaw -ar 8000 -ac 1 "${exact[@]}" -f mulaw

# Enhanced RTMP as ffmpeg 9 publishes it: 4 s at 12 fps, a keyframe every second, no
# reordering, small pictures; one thread per encoder so that the bytes do not depend on the
# machine. ffmpeg 9 writes HEVC/AV1/VP9 and Opus with FourCC headers (Opus also with a
# MultichannelConfig, AV1/VP9 with a video Metadata packet) and a second video track as
# multitrack messages.
if [[ -n $ffmpeg9 ]]; then
    ln -sfn "$ffmpeg9" "$out/ffmpeg9"
    ff9=("$ffmpeg9" -nostdin -hide_banner -loglevel error -y)
    short=4
    small=(-f lavfi -i "testsrc2=size=160x120:rate=12:duration=$short")
    beep() { echo "sine=frequency=440:beep_factor=4:sample_rate=$1:duration=$short"; }
    opus=(-c:a libopus -b:a 32k -ac 1)
    aac=(-c:a aac -b:a 32k -ac 1)
    make hevc_aac_160x120_12fps_4s.flv "${ff9[@]}" "${small[@]}" -f lavfi -i "$(beep 44100)" \
        -c:v libx265 -x265-params \
        pools=1:frame-threads=1:keyint=12:min-keyint=12:scenecut=0:bframes=0:log-level=error \
        "${aac[@]}" "${exact[@]}" -f flv
    # SVT-AV1 logs to stderr unless told otherwise; low delay (pred-struct 1): no reordering.
    make av1_opus_160x120_12fps_4s.flv env SVT_LOG=1 "${ff9[@]}" "${small[@]}" \
        -f lavfi -i "$(beep 48000)" -c:v libsvtav1 -preset 10 \
        -svtav1-params lp=1:keyint=12:pred-struct=1 "${opus[@]}" "${exact[@]}" -f flv
    make vp9_opus_160x120_12fps_4s.flv "${ff9[@]}" "${small[@]}" -f lavfi -i "$(beep 48000)" \
        -c:v libvpx-vp9 -threads 1 -g 12 -deadline realtime -cpu-used 8 -b:v 150k \
        "${opus[@]}" "${exact[@]}" -f flv
    # H.264 with a second, smaller video track (an ABR ladder's lower rung) and AAC.
    make h264x2_aac_12fps_4s.flv "${ff9[@]}" "${small[@]}" \
        -f lavfi -i "testsrc=size=96x64:rate=12:duration=$short" -f lavfi -i "$(beep 44100)" \
        -map 0:v -map 1:v -map 2:a -c:v libx264 -threads:v 1 -preset veryfast -tune zerolatency \
        -g 12 -bf 0 "${aac[@]}" "${exact[@]}" -f flv
    # An enhanced-RTMP phone's microphone for bench-compare's Opus gateway calls: Opus only,
    # 20 s, 20 ms a message (libopus's default frame).
    make opus_audio_20s.flv "${ff9[@]}" -f lavfi -i "$(tone 48000)" "${opus[@]}" "${exact[@]}" \
        -f flv
fi

echo "test media in $out ($made made, $(($(ls "$out" | wc -l) - made)) kept)"
