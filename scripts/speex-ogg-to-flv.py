#!/usr/bin/env python3
"""Rewrap the Speex packets of an Ogg file as an audio-only FLV, whatever their sample rate.

Part of scripts/make-test-media.sh. ffmpeg's FLV muxer accepts Speex only at 16 kHz, but the
gateway must also carry narrowband (8 kHz) Speex, as some Flash clients sent it. ffmpeg can
encode that into Ogg; this script moves each Ogg packet into one FLV audio tag, stamped from
its position in the stream (packet index x samples per packet / rate), with the audio byte
Flash Player puts before Speex: 0xB2 (format 11 = Speex, 16-bit, mono).

usage: speex-ogg-to-flv.py IN.ogg OUT.flv      (Python 3 standard library only)
"""
import struct
import sys


def ogg_packets(data):
    """The packets of a single logical Ogg stream, reassembled across pages."""
    packets, pending, at = [], b"", 0
    while at < len(data):
        if data[at:at + 4] != b"OggS":
            raise SystemExit("not an Ogg page at byte %d" % at)
        segments = data[at + 26]
        table = data[at + 27:at + 27 + segments]
        at += 27 + segments
        for size in table:
            pending += data[at:at + size]
            at += size
            # A lacing value below 255 ends a packet; 255 means it goes on.
            if size < 255:
                packets.append(pending)
                pending = b""
    return packets


def flv_tag(kind, timestamp, body):
    """One FLV tag with its trailing previous-tag-size."""
    head = struct.pack(">B", kind) + struct.pack(">I", len(body))[1:]
    head += struct.pack(">I", timestamp & 0xFFFFFF)[1:] + bytes([timestamp >> 24 & 0xFF])
    head += b"\x00\x00\x00"  # stream id
    return head + body + struct.pack(">I", 11 + len(body))


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    packets = ogg_packets(open(sys.argv[1], "rb").read())
    header = packets[0]
    if not header.startswith(b"Speex   "):
        raise SystemExit("the first Ogg packet is not a Speex header")
    # Speex header fields (little-endian int32): rate at 36, frame size at 56, frames per
    # packet at 64, extra header count at 68. The comment header follows, then the extras.
    rate, = struct.unpack_from("<i", header, 36)
    frame_size, = struct.unpack_from("<i", header, 56)
    per_packet, = struct.unpack_from("<i", header, 64)
    extra, = struct.unpack_from("<i", header, 68)
    samples = frame_size * max(per_packet, 1)
    out = bytearray(b"FLV\x01\x04" + struct.pack(">I", 9) + struct.pack(">I", 0))
    for index, packet in enumerate(packets[2 + extra:]):
        out += flv_tag(8, index * samples * 1000 // rate, b"\xb2" + packet)
    open(sys.argv[2], "wb").write(out)


if __name__ == "__main__":
    main()
