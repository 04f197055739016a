//! The chunk layer as a peer sees it: what the encoders write, the decoder reads back, across
//! chunk sizes, header formats, chunk stream id widths, extended timestamps and arbitrary
//! read boundaries; and what hostile bytes do to the decoder.

use bytes::BytesMut;
use proptest::prelude::*;
use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkError, ChunkLimits};
use siprtmp_core::rtmp::chunk_encoder::{encode_fmt0, ChunkEncoder};
use siprtmp_core::rtmp::message::RtmpMessage;

/// Feeds `wire` to `decoder` in pieces of the given sizes (cycled), collecting messages.
fn decode_in_pieces(
    decoder: &mut ChunkDecoder,
    wire: &[u8],
    pieces: &[usize],
) -> Result<Vec<RtmpMessage>, ChunkError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < wire.len() {
        let n = pieces[i % pieces.len()].max(1).min(wire.len() - pos);
        i += 1;
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        while let Some(msg) = decoder.decode(&mut buf)? {
            out.push(msg);
        }
    }
    assert!(buf.is_empty(), "whole chunks left undecoded");
    Ok(out)
}

#[test]
fn ffmpeg_style_fmt3_message_after_fmt0_adds_the_timestamp_field() {
    // ffmpeg writes a format-3 header for a new message when the timestamp field repeats,
    // even right after a format-0 header: 40 absolute, then +40 => 80.
    let mut wire = vec![0x04, 0, 0, 40, 0, 0, 2, 8, 1, 0, 0, 0, 0xaf, 0x01];
    wire.extend_from_slice(&[0xc4, 0xaf, 0x02]);
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    let msgs = decode_in_pieces(&mut decoder, &wire, &[1]).unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.timestamp).collect::<Vec<_>>(),
        vec![40, 80]
    );
    assert_eq!(&msgs[1].payload[..], &[0xaf, 0x02]);
}

#[test]
fn extended_timestamp_is_repeated_on_continuation_chunks() {
    let msg = RtmpMessage::new(9, 1, 0x0123_4567, vec![7u8; 300]);
    let wire = encode_fmt0(6, &msg, 128);
    // fmt0 header (12) + 4 extended, then two continuations of 1 + 4 header bytes.
    assert_eq!(wire.len(), 12 + 4 + 300 + 2 * 5);
    assert_eq!(&wire[1..4], &[0xff, 0xff, 0xff]);
    assert_eq!(&wire[12..16], &[0x01, 0x23, 0x45, 0x67]);
    assert_eq!(
        &wire[16 + 128..16 + 128 + 5],
        &[0xc6, 0x01, 0x23, 0x45, 0x67]
    );
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    assert_eq!(
        decode_in_pieces(&mut decoder, &wire, &[7]).unwrap(),
        vec![msg]
    );
}

#[test]
fn two_and_three_byte_chunk_stream_ids() {
    for (csid, header) in [
        (64u32, vec![0x00, 0x00]),
        (319, vec![0x00, 0xff]),
        (320, vec![0x01, 0x00, 0x01]),
        (65599, vec![0x01, 0xff, 0xff]),
    ] {
        let msg = RtmpMessage::new(20, 0, 5, vec![2u8; 10]);
        let wire = encode_fmt0(csid, &msg, 128);
        assert_eq!(&wire[..header.len()], &header[..], "csid {csid}");
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        assert_eq!(
            decode_in_pieces(&mut decoder, &wire, &[1]).unwrap(),
            vec![msg]
        );
    }
}

#[test]
fn abort_drops_the_partial_message_and_the_next_one_decodes() {
    let big = RtmpMessage::new(9, 1, 0, vec![1u8; 500]);
    let wire = encode_fmt0(6, &big, 128);
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::from(&wire[..12 + 128 + 1 + 128]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    // Two chunks received; the buffer holding them (what they cost) at most the message.
    assert!((256..=500).contains(&decoder.partial_bytes()));
    decoder.abort(6);
    assert_eq!(decoder.partial_bytes(), 0);
    let next = RtmpMessage::new(9, 1, 40, vec![3u8; 20]);
    let mut buf = BytesMut::from(&encode_fmt0(6, &next, 128)[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), Some(next));
}

#[test]
fn set_chunk_size_bounds() {
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    assert_eq!(
        decoder.set_chunk_size(0),
        Err(ChunkError::InvalidChunkSize(0))
    );
    assert!(decoder.set_chunk_size(0x8000_0000).is_err());
    decoder.set_chunk_size(1).unwrap();
    let msg = RtmpMessage::new(8, 1, 0, vec![9u8; 5]);
    let wire = encode_fmt0(4, &msg, 1);
    assert_eq!(wire.len(), 12 + 5 + 4);
    assert_eq!(
        decode_in_pieces(&mut decoder, &wire, &[3]).unwrap(),
        vec![msg]
    );
    decoder.set_chunk_size(0x7FFF_FFFF).unwrap();
    assert_eq!(decoder.chunk_size(), 0xFF_FFFF);
}

#[test]
fn limits_are_enforced_with_typed_errors() {
    let limits = ChunkLimits {
        max_message_size: 1000,
        max_chunk_streams: 2,
        max_partial_bytes: 300,
    };
    // Announced length beyond the limit: refused at the header, nothing allocated.
    let mut d = ChunkDecoder::new(limits);
    let mut buf = BytesMut::from(&[0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x09, 1, 0, 0, 0][..]);
    assert_eq!(
        d.decode(&mut buf),
        Err(ChunkError::MessageTooLarge {
            length: 0xFF_FFFF,
            max: 1000
        })
    );
    // A third chunk stream.
    let mut d = ChunkDecoder::new(limits);
    let mut wire = Vec::new();
    for csid in [3, 4, 5] {
        wire.extend_from_slice(&encode_fmt0(
            csid,
            &RtmpMessage::new(20, 0, 0, vec![0u8; 4]),
            128,
        ));
    }
    assert_eq!(
        decode_in_pieces(&mut d, &wire, &[1000]),
        Err(ChunkError::TooManyChunkStreams(2))
    );
    // Partial messages over the byte budget.
    let mut d = ChunkDecoder::new(limits);
    let mut wire = encode_fmt0(4, &RtmpMessage::new(9, 1, 0, vec![0u8; 900]), 128).to_vec();
    wire.truncate(12 + 128 + 1 + 128 + 1 + 128);
    assert_eq!(
        decode_in_pieces(&mut d, &wire, &[1000]),
        Err(ChunkError::PartialBytesExceeded(300))
    );
    // A continuation header for a chunk stream never opened.
    let mut d = ChunkDecoder::new(limits);
    let mut buf = BytesMut::from(&[0xc7, 1, 2, 3][..]);
    assert_eq!(d.decode(&mut buf), Err(ChunkError::NoPreviousHeader(7)));
}

/// The hardening issue's memory bomb: a peer announces 8 MiB chunks and two 8 MiB messages
/// and trickles their bytes. Memory follows the bytes that arrived, not the announcement: the
/// input is taken in as it comes (nothing waits in it for a whole chunk), each partial message
/// holds at most twice what it received, and the two together stop at the partial-bytes
/// limit with an error.
#[test]
fn announced_lengths_take_no_memory_until_their_bytes_arrive() {
    let mut d = ChunkDecoder::new(ChunkLimits::default());
    d.set_chunk_size(8_388_000).unwrap();
    let header = |csid: u8| {
        let mut h = vec![csid, 0, 0, 0, 0x80, 0, 0, 9, 1, 0, 0, 0];
        h[4..7].copy_from_slice(&[0x80, 0, 0]); // 8 MiB
        h
    };
    let mut buf = BytesMut::new();
    let mut received = 0;
    for csid in [3u8, 4] {
        // One chunk each can be in flight at a time only on its own chunk stream: the first
        // message's chunk goes on until it is whole (8,388,000 bytes), so the second header
        // comes after it.
        buf.extend_from_slice(&header(csid));
        for _ in 0..4 {
            buf.extend_from_slice(&[0u8; 256 * 1024]);
            received += 256 * 1024;
            assert_eq!(d.decode(&mut buf), Ok(None));
            assert!(
                buf.is_empty(),
                "nothing waits in the input for the whole chunk"
            );
            assert!(
                d.partial_bytes() <= 2 * received,
                "{} for {received}",
                d.partial_bytes()
            );
        }
        // Finish the first chunk so that the next header can come.
        if csid == 3 {
            let rest = 8_388_000 - 1024 * 1024;
            buf.extend_from_slice(&vec![0u8; rest]);
            received += rest;
            assert_eq!(d.decode(&mut buf), Ok(None));
        }
    }
    // 9 MiB of partial messages at most: the second message stops short of its length.
    let mut fed = 0;
    let error = loop {
        buf.extend_from_slice(&[0u8; 256 * 1024]);
        fed += 256 * 1024;
        match d.decode(&mut buf) {
            Ok(None) => assert!(fed < 16 * 1024 * 1024),
            other => break other,
        }
    };
    assert_eq!(
        error,
        Err(ChunkError::PartialBytesExceeded(9 * 1024 * 1024))
    );
    assert!(d.partial_bytes() <= 9 * 1024 * 1024);
}

#[test]
fn stateful_encoder_compresses_headers() {
    let mut encoder = ChunkEncoder::new();
    let mut wire = BytesMut::new();
    encoder.encode(4, &RtmpMessage::new(8, 1, 0, vec![1u8; 10]), &mut wire);
    assert_eq!(wire.len(), 12 + 10);
    wire.clear();
    encoder.encode(4, &RtmpMessage::new(8, 1, 23, vec![1u8; 10]), &mut wire);
    assert_eq!((wire[0] >> 6, wire.len()), (2, 4 + 10));
    wire.clear();
    encoder.encode(4, &RtmpMessage::new(8, 1, 46, vec![1u8; 10]), &mut wire);
    assert_eq!((wire[0] >> 6, wire.len()), (3, 1 + 10));
    wire.clear();
    encoder.encode(4, &RtmpMessage::new(8, 1, 69, vec![1u8; 12]), &mut wire);
    assert_eq!((wire[0] >> 6, wire.len()), (1, 8 + 12));
    wire.clear();
    // Another message stream, or time going backwards, needs a full header.
    encoder.encode(4, &RtmpMessage::new(8, 2, 70, vec![1u8; 12]), &mut wire);
    assert_eq!(wire[0] >> 6, 0);
}

fn message_strategy() -> impl Strategy<Value = (u32, RtmpMessage)> {
    (
        prop_oneof![2u32..=63, 64u32..=400, Just(65599u32)],
        prop_oneof![Just(8u8), Just(9u8), Just(18u8), Just(20u8)],
        0u32..4,
        prop_oneof![0u32..100_000, 0xFF_FF00u32..0x0100_0100, any::<u32>()],
        proptest::collection::vec(any::<u8>(), 0..700),
    )
        .prop_map(|(csid, type_id, stream_id, timestamp, payload)| {
            (
                csid,
                RtmpMessage::new(type_id, stream_id, timestamp, payload),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the stateful encoder writes (header compression included), the decoder reads
    /// back exactly, at any chunk size and any read boundaries.
    #[test]
    fn stateful_round_trip(
        msgs in proptest::collection::vec(message_strategy(), 1..20),
        chunk_size in prop_oneof![1u32..300, Just(128u32), Just(4096u32)],
        pieces in proptest::collection::vec(1usize..600, 1..8),
        monotonic in any::<bool>(),
    ) {
        let mut msgs = msgs;
        if monotonic {
            // Mostly-increasing timestamps exercise formats 1-3.
            let mut t = 0u32;
            for (_, m) in msgs.iter_mut() {
                t = t.wrapping_add(m.timestamp % 50);
                m.timestamp = t;
                m.stream_id = 1;
            }
        }
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(chunk_size);
        let mut wire = BytesMut::new();
        for (csid, m) in &msgs {
            encoder.encode(*csid, m, &mut wire);
        }
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        decoder.set_chunk_size(chunk_size).unwrap();
        let decoded = decode_in_pieces(&mut decoder, &wire, &pieces).unwrap();
        let expected: Vec<RtmpMessage> = msgs.into_iter().map(|(_, m)| m).collect();
        prop_assert_eq!(decoded, expected);
    }

    /// Long messages in long chunks (taken in as their bytes arrive) read back exactly, at any
    /// read boundaries, interleaved with short ones.
    #[test]
    fn long_chunks_round_trip(
        lengths in proptest::collection::vec(0usize..300_000, 1..5),
        chunk_size in prop_oneof![65_537u32..400_000, Just(0x00FF_FFFFu32)],
        pieces in proptest::collection::vec(1usize..150_000, 1..8),
    ) {
        let msgs: Vec<RtmpMessage> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| RtmpMessage::new(9, 1, i as u32 * 40, vec![i as u8; n]))
            .collect();
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(chunk_size);
        let mut wire = BytesMut::new();
        for m in &msgs {
            encoder.encode(6, m, &mut wire);
        }
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        decoder.set_chunk_size(chunk_size).unwrap();
        prop_assert_eq!(decode_in_pieces(&mut decoder, &wire, &pieces).unwrap(), msgs);
        prop_assert_eq!(decoder.partial_bytes(), 0);
    }

    /// Self-contained format-0 encodings decode the same from a fresh decoder.
    #[test]
    fn fmt0_round_trip((csid, msg) in message_strategy(), chunk_size in 1u32..2000) {
        let wire = encode_fmt0(csid, &msg, chunk_size);
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        decoder.set_chunk_size(chunk_size).unwrap();
        prop_assert_eq!(decode_in_pieces(&mut decoder, &wire, &[4096]).unwrap(), vec![msg]);
    }

    /// Hostile bytes: errors, never panics, and never more held than the limits allow.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk_size in 1u32..512,
        pieces in proptest::collection::vec(1usize..300, 1..6),
    ) {
        let limits = ChunkLimits { max_message_size: 64 * 1024, max_chunk_streams: 8, max_partial_bytes: 4096 };
        let mut decoder = ChunkDecoder::new(limits);
        decoder.set_chunk_size(chunk_size).unwrap();
        let mut buf = BytesMut::new();
        let mut pos = 0;
        let mut i = 0;
        'feed: while pos < bytes.len() {
            let n = pieces[i % pieces.len()].min(bytes.len() - pos);
            i += 1;
            buf.extend_from_slice(&bytes[pos..pos + n]);
            pos += n;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(m)) => prop_assert!(m.payload.len() <= 64 * 1024),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
                prop_assert!(decoder.partial_bytes() <= 4096);
            }
        }
    }
}
