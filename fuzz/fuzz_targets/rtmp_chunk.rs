//! The RTMP chunk decoder: arbitrary bytes, delivered in pieces of a fuzzed size, give
//! messages or a typed error, never a panic, and never more held than the limits allow.
//! Protocol control is applied as the server applies it (Set Chunk Size, Abort). Every
//! message decoded re-encodes through the chunk encoder and decodes back the same.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use siprtmp_core::rtmp::chunk_decoder::{ChunkDecoder, ChunkLimits};
use siprtmp_core::rtmp::chunk_encoder::ChunkEncoder;
use siprtmp_core::rtmp::control::ProtocolControl;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};

const LIMITS: ChunkLimits = ChunkLimits {
    max_message_size: 256 * 1024,
    max_chunk_streams: 16,
    max_partial_bytes: 512 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(mode) * 7 + 1;
    let mut decoder = ChunkDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut messages: Vec<RtmpMessage> = Vec::new();
    'feed: for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => {
                    assert!(msg.payload.len() <= LIMITS.max_message_size as usize);
                    if let Ok(control) = ProtocolControl::parse(&msg) {
                        match control {
                            ProtocolControl::SetChunkSize(size) => {
                                if decoder.set_chunk_size(size).is_err() {
                                    break 'feed;
                                }
                            }
                            ProtocolControl::Abort(csid) => decoder.abort(csid),
                            _ => {}
                        }
                    }
                    messages.push(msg);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
            assert!(
                decoder.partial_bytes() <= LIMITS.max_partial_bytes,
                "partial messages past the limit"
            );
        }
    }
    // Round trip through the encoder (default chunk size on both sides; control messages
    // would change it, so only the others).
    let mut encoder = ChunkEncoder::new();
    let mut wire = BytesMut::new();
    let others: Vec<&RtmpMessage> = messages
        .iter()
        .filter(|m| !matches!(m.type_id, type_id::SET_CHUNK_SIZE | type_id::ABORT))
        .collect();
    for (i, m) in others.iter().enumerate() {
        encoder.encode(3 + (i as u32 % 5), m, &mut wire);
    }
    let mut decoder = ChunkDecoder::new(LIMITS);
    for m in others {
        let back = decoder
            .decode(&mut wire)
            .expect("re-encoded stream decodes")
            .expect("a whole message");
        assert_eq!(&back, m, "round trip through the chunk encoder");
    }
    assert!(wire.is_empty());
});
