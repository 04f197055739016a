//! SRTP and SRTCP contexts end to end: round trips, tampering, wrong keys, replays, the
//! rollover counter, and hostile input.

use proptest::prelude::*;

use super::*;

fn master(seed: u8) -> MasterKey {
    let bytes: Vec<u8> = (0..MasterKey::LEN as u8)
        .map(|i| i.wrapping_mul(31) ^ seed)
        .collect();
    MasterKey::from_concatenated(&bytes).unwrap()
}

/// An RTP packet (12-byte header, `payload_len` bytes of payload) with room for a tag.
fn rtp(sequence: u16, ssrc: u32, payload_len: usize) -> (Vec<u8>, usize) {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(&(u32::from(sequence) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| i as u8));
    let len = p.len();
    p.resize(len + 10, 0);
    (p, len)
}

fn protect(tx: &mut SrtpContext, sequence: u16) -> Vec<u8> {
    let (mut buf, len) = rtp(sequence, 0x1234_5678, 160);
    let n = tx.protect(&mut buf, len).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn round_trip_restores_the_packet_for_both_suites() {
    for suite in Suite::ALL {
        let key = master(1);
        let (mut tx, mut rx) = (SrtpContext::new(suite, &key), SrtpContext::new(suite, &key));
        let (plain, len) = rtp(7, 42, 160);
        let mut buf = plain.clone();
        let n = tx.protect(&mut buf, len).unwrap();
        assert_eq!(n, len + suite.rtp_tag_len());
        assert_eq!(buf[..12], plain[..12], "the header stays in the clear");
        assert_ne!(buf[12..len], plain[12..len], "the payload is encrypted");
        let m = rx.unprotect(&mut buf[..n]).unwrap();
        assert_eq!(buf[..m], plain[..len]);
    }
}

#[test]
fn a_tampered_packet_or_tag_is_rejected() {
    let key = master(2);
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
    let packet = protect(&mut tx, 1);
    for at in [1, 3, 11, 20, packet.len() - 1] {
        let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
        let mut bad = packet.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            rx.unprotect(&mut bad),
            Err(SrtpError::Authentication),
            "byte {at}"
        );
        // The genuine packet still goes through: the failure left no state behind.
        assert!(rx.unprotect(&mut packet.clone()).is_ok());
    }
}

#[test]
fn a_wrong_key_is_rejected() {
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_32, &master(3));
    let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_32, &master(4));
    assert_eq!(
        rx.unprotect(&mut protect(&mut tx, 9)),
        Err(SrtpError::Authentication)
    );
}

#[test]
fn a_replayed_packet_is_rejected_and_reordering_is_not() {
    let key = master(5);
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
    let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
    let packets: Vec<Vec<u8>> = (100..200).map(|s| protect(&mut tx, s)).collect();
    // 101 before 100: reordering inside the window is fine.
    assert!(rx.unprotect(&mut packets[1].clone()).is_ok());
    assert!(rx.unprotect(&mut packets[0].clone()).is_ok());
    assert_eq!(
        rx.unprotect(&mut packets[1].clone()),
        Err(SrtpError::Replay)
    );
    assert_eq!(
        rx.unprotect(&mut packets[0].clone()),
        Err(SrtpError::Replay)
    );
    for p in &packets[2..] {
        assert!(rx.unprotect(&mut p.clone()).is_ok());
    }
    // Sequence 130 is 69 behind 199: older than the 64-packet window.
    assert_eq!(
        rx.unprotect(&mut packets[30].clone()),
        Err(SrtpError::Replay)
    );
}

#[test]
fn the_rollover_counter_follows_a_sequence_wrap_on_both_sides() {
    let key = master(6);
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
    let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
    let sequences: Vec<u16> = (65_530..=65_535).chain(0..6).collect();
    let packets: Vec<Vec<u8>> = sequences.iter().map(|&s| protect(&mut tx, s)).collect();
    // Deliver 65535 late, after the wrap: the receiver must guess ROC 0 for it, ROC 1 after.
    let late = 5;
    for (i, p) in packets.iter().enumerate() {
        if i != late {
            assert!(rx.unprotect(&mut p.clone()).is_ok(), "packet {i}");
        }
    }
    assert!(rx.unprotect(&mut packets[late].clone()).is_ok());
    // After the wrap the sender encrypts with ROC 1: sequence 0 of ROC 0 would differ.
    let mut fresh = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
    assert_ne!(protect(&mut fresh, 0), packets[6]);
    // A receiver that never saw the wrap cannot authenticate ROC 1 packets as ROC 0 ones.
    let mut naive = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
    assert_eq!(
        naive.unprotect(&mut packets[7].clone()),
        Err(SrtpError::Authentication)
    );
}

fn rtcp_report(ssrc: u32) -> (Vec<u8>, usize) {
    // A receiver report with no blocks, then an SDES chunk's worth of bytes.
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(b"0123456789abcdef");
    let len = p.len();
    p.resize(len + SrtcpContext::OVERHEAD, 0);
    (p, len)
}

#[test]
fn srtcp_round_trip_tamper_and_replay() {
    let key = master(7);
    let (mut tx, mut rx) = (SrtcpContext::new(&key), SrtcpContext::new(&key));
    let (plain, len) = rtcp_report(99);
    let mut buf = plain.clone();
    let n = tx.protect(&mut buf, len).unwrap();
    assert_eq!(n, len + 14);
    assert_ne!(
        buf[8..len],
        plain[8..len],
        "everything after the first 8 bytes is encrypted"
    );
    let protected = buf[..n].to_vec();
    let mut bad = protected.clone();
    bad[10] ^= 0x80;
    assert_eq!(rx.unprotect(&mut bad), Err(SrtpError::Authentication));
    let mut wrong = SrtcpContext::new(&master(8));
    assert_eq!(
        wrong.unprotect(&mut protected.clone()),
        Err(SrtpError::Authentication)
    );
    let mut copy = protected.clone();
    let m = rx.unprotect(&mut copy).unwrap();
    assert_eq!(copy[..m], plain[..len]);
    assert_eq!(rx.unprotect(&mut protected.clone()), Err(SrtpError::Replay));
    // The next report has the next index and goes through.
    let (mut next, len) = rtcp_report(99);
    let n = tx.protect(&mut next, len).unwrap();
    assert!(rx.unprotect(&mut next[..n]).is_ok());
}

#[test]
fn protect_needs_room_for_the_tag() {
    let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &master(9));
    let (mut buf, len) = rtp(1, 1, 20);
    assert_eq!(tx.protect(&mut buf[..len + 9], len), Err(SrtpError::NoRoom));
    assert_eq!(tx.protect(&mut buf[..11], 11), Err(SrtpError::Malformed));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_authenticate(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let key = master(10);
        let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_32, &key);
        let mut buf = data.clone();
        prop_assert!(rx.unprotect(&mut buf).is_err());
        let mut rtcp = SrtcpContext::new(&key);
        let mut buf = data;
        prop_assert!(rtcp.unprotect(&mut buf).is_err());
    }

    #[test]
    fn any_rtp_packet_round_trips(sequence in any::<u16>(), ssrc in any::<u32>(),
                                  payload in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let key = master(11);
        let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
        let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key);
        let mut buf = vec![0x80, 0];
        buf.extend_from_slice(&sequence.to_be_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&ssrc.to_be_bytes());
        buf.extend_from_slice(&payload);
        let plain = buf.clone();
        let len = buf.len();
        buf.resize(len + 10, 0);
        let n = tx.protect(&mut buf, len).unwrap();
        let m = rx.unprotect(&mut buf[..n]).unwrap();
        prop_assert_eq!(&buf[..m], &plain[..]);
    }
}
