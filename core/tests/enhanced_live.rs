//! Enhanced RTMP through the live server, driven in memory: a late player gets the decoder
//! configuration of every track (enhanced audio and video, multitrack) before its first frame
//! and starts on a keyframe of the primary track; a newer configuration replaces the one it
//! covers; multitrack messages reach players intact; `connect` tells an enhanced client what
//! the server can forward and leaves a legacy client's answer as it was.

mod support;

use siprtmp_core::amf::Value;
use siprtmp_core::node::NodeConfig;
use siprtmp_core::rtmp::message::{type_id, RtmpMessage};
use support::rtmp_clients::{Driven, InMemory};

/// ExHeader | keyframe (1) or inter frame (2) | packet type, then `fourcc`, then `rest`.
fn video(frame: u8, packet: u8, fourcc: &[u8; 4], rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x80 | frame << 4 | packet];
    body.extend_from_slice(fourcc);
    body.extend_from_slice(rest);
    body
}

/// Multitrack video, OneTrack, as ffmpeg writes a second video track.
fn track_video(frame: u8, packet: u8, track: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x80 | frame << 4 | 6, packet];
    body.extend_from_slice(b"avc1");
    body.push(track);
    body.extend_from_slice(rest);
    body
}

/// Enhanced audio (SoundFormat 9) of packet type `packet`, "Opus".
fn opus(packet: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x90 | packet];
    body.extend_from_slice(b"Opus");
    body.extend_from_slice(rest);
    body
}

fn send(f: &mut InMemory, c: usize, stream: u32, kind: u8, timestamp: u32, payload: &[u8]) {
    let msg = RtmpMessage::new(kind, stream, timestamp, payload.to_vec());
    f.net.clients[c].client.send_media(&msg);
    f.pump();
}

#[test]
fn a_late_player_gets_every_tracks_configuration_then_a_primary_keyframe() {
    let mut f = InMemory::start(NodeConfig::default(), 11);
    let (p, s) = f.publisher("live", "cam");
    let hevc_config = video(1, 0, b"hvc1", &[1, 2, 3]);
    let hdr = video(1, 4, b"hvc1", b"colorInfo");
    let opus_head = opus(0, b"OpusHead");
    let channels = opus(4, &[1, 2, 0, 0, 0, 3]);
    let second_config = track_video(1, 0, 1, &[1, 0x64]);
    for body in [&hdr, &hevc_config, &second_config] {
        send(&mut f, p, s, type_id::VIDEO, 0, body);
    }
    send(&mut f, p, s, type_id::AUDIO, 0, &opus_head);
    send(&mut f, p, s, type_id::AUDIO, 0, &channels);
    // Before the first primary keyframe: never cached. A keyframe of track 1 alone does not
    // start a GOP.
    send(
        &mut f,
        p,
        s,
        type_id::VIDEO,
        10,
        &video(2, 3, b"hvc1", &[0]),
    );
    send(
        &mut f,
        p,
        s,
        type_id::VIDEO,
        20,
        &track_video(1, 3, 1, &[0]),
    );
    let key = video(1, 3, b"hvc1", &[7, 7]);
    let key_track1 = track_video(1, 3, 1, &[7]);
    let frames = [
        (type_id::VIDEO, 40, key.clone()),
        (type_id::VIDEO, 40, key_track1.clone()),
        (type_id::AUDIO, 45, opus(1, &[5])),
        (type_id::VIDEO, 80, video(2, 1, b"hvc1", &[0, 0, 0, 8])),
        (type_id::VIDEO, 80, track_video(2, 3, 1, &[8])),
    ];
    for (kind, ts, body) in &frames {
        send(&mut f, p, s, *kind, *ts, body);
    }
    let (late, _) = f.player("live", "cam");
    let mut expected = vec![
        (type_id::VIDEO, 0, hdr.clone()),
        (type_id::VIDEO, 0, hevc_config.clone()),
        (type_id::VIDEO, 0, second_config.clone()),
        (type_id::AUDIO, 0, opus_head.clone()),
        (type_id::AUDIO, 0, channels.clone()),
    ];
    expected.extend(frames.iter().cloned());
    assert_eq!(f.media(late), expected);
}

#[test]
fn a_newer_configuration_replaces_the_tracks_it_covers_only() {
    let mut f = InMemory::start(NodeConfig::default(), 12);
    let (p, s) = f.publisher("live", "cam");
    let old_main = video(1, 0, b"hvc1", &[1]);
    let old_second = track_video(1, 0, 1, &[1]);
    // One message configuring tracks 0 and 1 (ManyTracks), then track 1 alone again.
    let mut both = vec![0x96, 0x10];
    both.extend_from_slice(b"avc1");
    both.extend_from_slice(&[0, 0, 0, 1, 0xA0, 1, 0, 0, 1, 0xA1]);
    let new_second = track_video(1, 0, 1, &[2]);
    let new_opus = opus(0, b"OpusHead2");
    for body in [&old_main, &old_second, &both, &new_second] {
        send(&mut f, p, s, type_id::VIDEO, 0, body);
    }
    send(&mut f, p, s, type_id::AUDIO, 0, &opus(0, b"OpusHead1"));
    send(&mut f, p, s, type_id::AUDIO, 0, &new_opus);
    let (late, _) = f.player("live", "cam");
    // The old single-track ones went (the two-track message covers them); the two-track one
    // stays for track 0, and track 1's newer one follows it.
    assert_eq!(
        f.media(late),
        vec![
            (type_id::VIDEO, 0, both.clone()),
            (type_id::VIDEO, 0, new_second.clone()),
            (type_id::AUDIO, 0, new_opus.clone()),
        ]
    );
}

#[test]
fn a_waiting_player_starts_at_a_primary_keyframe_behind_a_mod_ex_prefix() {
    let mut f = InMemory::start(NodeConfig::default(), 13);
    let (early, _) = f.player("live", "cam");
    let (p, s) = f.publisher("live", "cam");
    send(
        &mut f,
        p,
        s,
        type_id::VIDEO,
        0,
        &video(1, 0, b"av01", &[0x81]),
    );
    send(
        &mut f,
        p,
        s,
        type_id::VIDEO,
        10,
        &video(2, 1, b"av01", &[0, 0, 0, 1]),
    );
    send(
        &mut f,
        p,
        s,
        type_id::VIDEO,
        20,
        &track_video(1, 3, 1, &[2]),
    );
    // Keyframe | ModEx: 3 bytes of nanosecond offset, then [TimestampOffsetNano | CodedFramesX].
    let mut key = vec![0x97, 2, 0, 0, 9, 0x03];
    key.extend_from_slice(b"av01");
    key.push(3);
    send(&mut f, p, s, type_id::VIDEO, 40, &key);
    let video_got: Vec<_> = f
        .media(early)
        .into_iter()
        .filter(|m| m.0 == type_id::VIDEO)
        .map(|m| m.1)
        .collect();
    assert_eq!(video_got, vec![0, 40]);
}

#[test]
fn a_multitrack_only_publisher_starts_gops_at_its_lowest_configured_track() {
    let mut f = InMemory::start(NodeConfig::default(), 14);
    let (p, s) = f.publisher("live", "cam");
    send(&mut f, p, s, type_id::VIDEO, 0, &track_video(1, 0, 2, &[1]));
    send(&mut f, p, s, type_id::VIDEO, 0, &track_video(1, 0, 1, &[1]));
    let key = track_video(1, 3, 1, &[9]);
    send(&mut f, p, s, type_id::VIDEO, 40, &key);
    let (late, _) = f.player("live", "cam");
    let got: Vec<_> = f.media(late).into_iter().map(|m| m.1).collect();
    assert_eq!(
        got,
        vec![0, 0, 40],
        "two configurations, then the cached GOP"
    );
}

/// The properties of the `_result` to a `connect` carrying `extra`.
fn connect_answer(extra: Vec<(String, Value)>) -> Value {
    let mut f = InMemory::start(NodeConfig::default(), 15);
    let now = f.now;
    let c = f.net.connect(now, "live");
    f.net.clients[c].client.set_connect_properties(extra);
    f.net.pump(now);
    f.net.clients[c]
        .client
        .server_properties()
        .cloned()
        .expect("connect accepted")
}

#[test]
fn connect_answers_an_enhanced_client_with_what_it_can_forward() {
    let legacy = connect_answer(Vec::new());
    assert_eq!(legacy.get("capsEx"), None);
    assert_eq!(legacy.get("videoFourCcInfoMap"), None);
    assert_eq!(legacy.get("fmsVer"), Some(&Value::string("FMS/3,5,7,7009")));
    let enhanced = connect_answer(vec![(
        "fourCcList".into(),
        Value::StrictArray(vec![Value::string("hvc1"), Value::string("Opus")]),
    )]);
    for map in ["videoFourCcInfoMap", "audioFourCcInfoMap"] {
        assert_eq!(
            enhanced.get(map).and_then(|m| m.get("*")),
            Some(&Value::Number(4.0)),
            "{map}: CanForward for any FourCC"
        );
    }
    // Multitrack (2) | ModEx (4).
    assert_eq!(enhanced.get("capsEx"), Some(&Value::Number(6.0)));
    assert_eq!(enhanced.get("fmsVer"), legacy.get("fmsVer"));
}
