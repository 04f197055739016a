//! What the server keeps of a publisher's bytes: the stream's caches (metadata, decoder
//! configurations, the group of pictures a late player starts with) and the undecoded rest of
//! a read hold only their own bytes, never the read buffer they arrived in. A driver reads
//! every peer into one shared 64 KiB buffer; a cached audio frame of a few dozen bytes that
//! kept a slice of it would keep the whole buffer, and with it everything other peers sent,
//! for as long as the frame is cached. Here each read is carved from a buffer the test holds,
//! as a driver's, and the test checks the buffer is free again (no other reference to its
//! memory) once the node has taken the reads in, and that a late player still gets every
//! cached byte.

mod support;

use std::time::Duration;

use bytes::BytesMut;
use siprtmp_core::amf::Value;
use siprtmp_core::node::{Input, NodeConfig};
use siprtmp_core::rtmp::client::ClientEvent;
use siprtmp_core::rtmp::command::data_message;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use siprtmp_core::testkit::synthetic_av;
use support::rtmp_clients::{Driven, InMemory};

/// A driver's read buffer (mio's size).
const READ_BUFFER: usize = 64 * 1024;

/// Delivers what client `c` has queued to send, each write as one read carved from `buffer`
/// (as a driver carves its reads from its read buffer), but the last `hold_back` bytes, which
/// are returned: the rest of a message still in flight.
fn deliver_from(f: &mut InMemory, c: usize, buffer: &mut BytesMut, hold_back: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(bytes) = f.net.clients[c].client.take_output() {
        wire.extend_from_slice(&bytes);
    }
    let send = wire.len() - hold_back;
    assert!(send <= buffer.len(), "the test's reads fit its buffer");
    buffer[..send].copy_from_slice(&wire[..send]);
    let data = buffer.split_to(send);
    let conn = f.net.clients[c].conn;
    f.net.node.handle(f.now, Input::Received { conn, data });
    f.pump();
    wire[send..].to_vec()
}

/// Whether nothing but `buffer` refers to the memory it was carved from.
fn free_again(mut buffer: BytesMut) -> bool {
    buffer.clear();
    buffer.try_reclaim(READ_BUFFER)
}

/// The stream's first second: metadata, configurations, a keyframe (several chunks) and the
/// audio and inter frames after it (one chunk each).
fn first_second(stream_id: u32) -> Vec<RtmpMessage> {
    let meta = data_message(
        stream_id,
        0,
        &[
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            Value::object([("width", Value::Number(320.0))]),
        ],
    );
    let mut messages = vec![meta];
    messages.extend(synthetic_av(stream_id, Duration::from_secs(1)));
    messages
}

#[test]
fn the_caches_and_an_unfinished_message_keep_none_of_the_read_buffer() {
    let mut f = InMemory::start(NodeConfig::default(), 1);
    let (publisher, stream_id) = f.publisher("live", "cam");
    // Large enough for the client's chunks of frames to come in one chunk or several.
    f.net.clients[publisher].client.set_chunk_size(4096);
    let sent = first_second(stream_id);
    let mut buffer = BytesMut::zeroed(READ_BUFFER);
    for msg in &sent {
        f.net.clients[publisher].client.send_media(msg);
        deliver_from(&mut f, publisher, &mut buffer, 0);
    }
    // The next frame, all but its last 10 bytes: the node waits for the rest.
    let next = RtmpMessage::new(type_id::AUDIO, stream_id, 1000, vec![0xaf; 60]);
    f.net.clients[publisher].client.send_media(&next);
    let rest = deliver_from(&mut f, publisher, &mut buffer, 10);
    assert!(
        free_again(buffer),
        "the node kept part of the read buffer after caching {} messages",
        sent.len()
    );

    // What was cached is intact: a late player starts with the metadata, the configurations,
    // and the group of pictures from its keyframe on.
    let conn = f.net.clients[publisher].conn;
    f.net.node.handle(
        f.now,
        Input::Received {
            conn,
            data: BytesMut::from(&rest[..]),
        },
    );
    f.pump();
    let (player, _) = f.player("live", "cam");
    let metadata = f.events(player).iter().any(|e| {
        matches!(e, ClientEvent::Media(m) if m.type_id == type_id::DATA_AMF0
            && m.payload.windows(5).any(|w| w == b"width"))
    });
    assert!(metadata, "the late player got the cached metadata");
    let keyframe_at = sent
        .iter()
        .position(|m| m.type_id == type_id::VIDEO && m.payload[..2] == [0x17, 0x01])
        .expect("a keyframe");
    let configs = sent[..keyframe_at]
        .iter()
        .filter(|m| m.type_id != type_id::DATA_AMF0);
    let as_received = |m: &RtmpMessage| (m.type_id, m.timestamp, m.payload.to_vec());
    let mut expected_configs: Vec<_> = configs.map(as_received).collect();
    let expected_gop: Vec<_> = sent[keyframe_at..]
        .iter()
        .chain([&next])
        .map(as_received)
        .collect();
    let got = f.media(player);
    assert_eq!(got.len(), expected_configs.len() + expected_gop.len());
    // The server sends the configurations in the order it keeps them.
    let mut got_configs = got[..expected_configs.len()].to_vec();
    got_configs.sort();
    expected_configs.sort();
    assert_eq!(got_configs, expected_configs, "the configurations");
    assert!(
        got[expected_configs.len()..] == expected_gop[..],
        "the cached group of pictures, byte for byte"
    );
}
