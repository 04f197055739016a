//! RFC 4733 telephone-events (DTMF over RTP): the 4-byte event payload, the packet train a
//! sender emits for one digit, and a receiver that reports each event exactly once.
//!
//! A digit is sent as a start packet (marker set), updates every 50 ms carrying the growing
//! duration, and three copies of the end packet (E bit) — all with the event's start
//! timestamp. Receivers therefore key events by RTP timestamp: every packet after the first
//! for a given timestamp, and the retransmitted end packets, are duplicates.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// How often a sender refreshes an ongoing event.
pub const DTMF_UPDATE_INTERVAL: Duration = Duration::from_millis(50);
/// How many times the end packet is sent (RFC 4733 2.5.1.4 recommends three).
pub const END_PACKET_COPIES: usize = 3;

/// Why a telephone-event could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtmfError {
    /// Not one of `0-9 * # A-D`.
    UnknownDigit(char),
    /// A payload shorter than 4 bytes.
    TooShort,
    /// Volume above 63 (-63 dBm0 is the quietest).
    BadVolume,
    /// A zero duration, or one that rounds to zero timestamp units.
    BadDuration,
}

impl fmt::Display for DtmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtmfError::UnknownDigit(c) => write!(f, "{c:?} is not a DTMF digit"),
            DtmfError::TooShort => f.write_str("telephone-event payload shorter than 4 bytes"),
            DtmfError::BadVolume => f.write_str("telephone-event volume above 63"),
            DtmfError::BadDuration => f.write_str("telephone-event duration is zero"),
        }
    }
}

impl std::error::Error for DtmfError {}

/// The RFC 4733 event code of a DTMF digit: `0-9` -> 0-9, `*` -> 10, `#` -> 11, `A-D` ->
/// 12-15 (lowercase accepted).
///
/// ```
/// use siprtmp_core::rtp::dtmf::{event_code, event_digit};
/// assert_eq!(event_code('#'), Some(11));
/// assert_eq!(event_digit(13), Some('B'));
/// ```
pub fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The DTMF digit of an event code 0-15, if it is one.
pub fn event_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

/// The 4-byte telephone-event payload (RFC 4733 section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code (0-15 for DTMF).
    pub event: u8,
    /// End of the event.
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl EventPayload {
    /// Reads the first 4 bytes of `payload` (anything after them is ignored).
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(DtmfError::TooShort);
        };
        Ok(EventPayload {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The wire form (the reserved bit is written as zero).
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            u8::from(self.end) << 7 | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// One RTP packet of a telephone-event train. All packets of an event carry the same RTP
/// timestamp (the event's start); the caller sends them through its RTP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfPacket {
    /// When to send it, relative to the start of the event.
    pub send_at: Duration,
    /// RTP marker bit (set on the first packet only).
    pub marker: bool,
    /// The 4-byte payload.
    pub payload: Bytes,
}

fn units(d: Duration, clock_rate: u32) -> u64 {
    (d.as_nanos() * u128::from(clock_rate) / 1_000_000_000).min(u128::from(u64::MAX)) as u64
}

/// The packet train for one digit lasting `duration` (capped at the 16-bit field, about 8 s
/// at 8 kHz): a start packet with the marker, an update every 50 ms whose duration field
/// counts to the end of its 50 ms slot, then [`END_PACKET_COPIES`] end packets at
/// `duration` carrying the full duration.
///
/// ```
/// use std::time::Duration;
/// use siprtmp_core::rtp::dtmf::encode_digit;
/// let train = encode_digit('5', Duration::from_millis(100), 10, 8000).unwrap();
/// assert_eq!(train.len(), 2 + 3);
/// assert!(train[0].marker);
/// assert_eq!(&train[4].payload[..], &[5, 0x80 | 10, 0x03, 0x20]); // end, 800 units
/// ```
pub fn encode_digit(
    digit: char,
    duration: Duration,
    volume: u8,
    clock_rate: u32,
) -> Result<Vec<DtmfPacket>, DtmfError> {
    let event = event_code(digit).ok_or(DtmfError::UnknownDigit(digit))?;
    encode_event(event, duration, volume, clock_rate)
}

/// [`encode_digit`] for any event code.
pub fn encode_event(
    event: u8,
    duration: Duration,
    volume: u8,
    clock_rate: u32,
) -> Result<Vec<DtmfPacket>, DtmfError> {
    if volume > 63 {
        return Err(DtmfError::BadVolume);
    }
    let total = units(duration, clock_rate).min(u64::from(u16::MAX));
    if total == 0 {
        return Err(DtmfError::BadDuration);
    }
    let step = units(DTMF_UPDATE_INTERVAL, clock_rate).max(1);
    // The time actually covered, after capping to the 16-bit duration field.
    let covered = Duration::from_nanos(total * 1_000_000_000 / u64::from(clock_rate));
    let packet = |send_at, marker, end, d: u64| DtmfPacket {
        send_at,
        marker,
        payload: Bytes::copy_from_slice(
            &EventPayload {
                event,
                end,
                volume,
                duration: d as u16,
            }
            .to_bytes(),
        ),
    };
    let mut train = Vec::new();
    let mut k = 0u32;
    while u64::from(k) * step < total {
        let d = (u64::from(k + 1) * step).min(total);
        train.push(packet(DTMF_UPDATE_INTERVAL * k, k == 0, false, d));
        k += 1;
    }
    for _ in 0..END_PACKET_COPIES {
        train.push(packet(covered, false, true, total));
    }
    Ok(train)
}

/// A telephone event as reported once by [`DtmfReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// Event code.
    pub event: u8,
    /// The DTMF digit, for codes 0-15.
    pub digit: Option<char>,
    /// RTP timestamp of the event's start (its identity).
    pub timestamp: u32,
    /// Power level in -dBm0.
    pub volume: u8,
}

/// Recent events remembered to suppress late duplicates and reordered updates.
const REMEMBERED: usize = 8;

/// Turns received telephone-event packets into one [`DtmfEvent`] per event: the first packet
/// seen for a timestamp (start, update, or end if the others were lost) reports it; every
/// other packet with that timestamp is suppressed.
///
/// ```
/// use std::time::Duration;
/// use siprtmp_core::rtp::dtmf::{encode_digit, DtmfReceiver};
/// let mut rx = DtmfReceiver::default();
/// let reported: Vec<char> = encode_digit('7', Duration::from_millis(160), 10, 8000)
///     .unwrap()
///     .iter()
///     .filter_map(|p| rx.receive(1234, &p.payload).unwrap())
///     .filter_map(|e| e.digit)
///     .collect();
/// assert_eq!(reported, ['7']);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    recent: [Option<u32>; REMEMBERED],
    next: usize,
}

impl DtmfReceiver {
    /// Accounts for one telephone-event RTP packet (its timestamp and payload); returns the
    /// event the first time its timestamp is seen.
    pub fn receive(
        &mut self,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Option<DtmfEvent>, DtmfError> {
        let p = EventPayload::parse(payload)?;
        if self.recent.contains(&Some(timestamp)) {
            return Ok(None);
        }
        self.recent[self.next] = Some(timestamp);
        self.next = (self.next + 1) % REMEMBERED;
        Ok(Some(DtmfEvent {
            event: p.event,
            digit: event_digit(p.event),
            timestamp,
            volume: p.volume,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digit_codes() {
        let digits = "0123456789*#ABCD";
        for (code, d) in digits.chars().enumerate() {
            assert_eq!(event_code(d), Some(code as u8));
            assert_eq!(event_digit(code as u8), Some(d));
        }
        assert_eq!(event_code('b'), Some(13));
        assert_eq!(event_code('E'), None);
        assert_eq!(event_digit(16), None);
    }

    #[test]
    fn payload_vector() {
        // RFC 4733 figure 1 layout: event 1, E=1, volume 10, duration 1600.
        let p = EventPayload::parse(&[0x01, 0x8a, 0x06, 0x40]).unwrap();
        assert_eq!(
            p,
            EventPayload {
                event: 1,
                end: true,
                volume: 10,
                duration: 1600
            }
        );
        assert_eq!(p.to_bytes(), [0x01, 0x8a, 0x06, 0x40]);
        // The reserved bit is ignored on input.
        assert_eq!(EventPayload::parse(&[0x01, 0x4a, 0, 0]).unwrap().volume, 10);
        assert_eq!(EventPayload::parse(&[1, 2, 3]), Err(DtmfError::TooShort));
    }

    #[test]
    fn train_for_a_digit() {
        // '#' for 120 ms at 8 kHz: updates at 0, 50, 100 ms; end at 120 ms (960 units).
        let train = encode_digit('#', Duration::from_millis(120), 10, 8000).unwrap();
        let summary: Vec<(u64, bool, EventPayload)> = train
            .iter()
            .map(|p| {
                (
                    p.send_at.as_millis() as u64,
                    p.marker,
                    EventPayload::parse(&p.payload).unwrap(),
                )
            })
            .collect();
        let ev = |end, duration| EventPayload {
            event: 11,
            end,
            volume: 10,
            duration,
        };
        assert_eq!(
            summary,
            [
                (0, true, ev(false, 400)),
                (50, false, ev(false, 800)),
                (100, false, ev(false, 960)),
                (120, false, ev(true, 960)),
                (120, false, ev(true, 960)),
                (120, false, ev(true, 960)),
            ]
        );
        assert_eq!(
            encode_digit('x', Duration::from_millis(1), 0, 8000),
            Err(DtmfError::UnknownDigit('x'))
        );
        assert_eq!(
            encode_digit('1', Duration::ZERO, 0, 8000),
            Err(DtmfError::BadDuration)
        );
        assert_eq!(
            encode_digit('1', Duration::from_millis(50), 64, 8000),
            Err(DtmfError::BadVolume)
        );
        // Long events are capped at the 16-bit duration.
        let long = encode_digit('1', Duration::from_secs(60), 0, 8000).unwrap();
        assert_eq!(
            EventPayload::parse(&long.last().unwrap().payload)
                .unwrap()
                .duration,
            u16::MAX
        );
    }

    #[test]
    fn receiver_reports_each_event_once() {
        let mut rx = DtmfReceiver::default();
        let one = encode_digit('1', Duration::from_millis(100), 10, 8000).unwrap();
        let two = encode_digit('2', Duration::from_millis(100), 10, 8000).unwrap();
        let mut got = Vec::new();
        for p in &one {
            got.extend(rx.receive(1000, &p.payload).unwrap());
        }
        // The same digit again is a new event: a new timestamp.
        for p in one.iter().skip(1) {
            // Start packet lost: the first update reports it.
            got.extend(rx.receive(3000, &p.payload).unwrap());
        }
        for p in &two {
            got.extend(rx.receive(5000, &p.payload).unwrap());
        }
        // A late retransmitted end of the first event is still suppressed.
        got.extend(rx.receive(1000, &one[4].payload).unwrap());
        let seq: Vec<(Option<char>, u32)> = got.iter().map(|e| (e.digit, e.timestamp)).collect();
        assert_eq!(
            seq,
            [(Some('1'), 1000), (Some('1'), 3000), (Some('2'), 5000)]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..8), ts in any::<u32>()) {
            let mut rx = DtmfReceiver::default();
            let _ = rx.receive(ts, &data);
        }

        #[test]
        fn payload_round_trips(event in any::<u8>(), end in any::<bool>(), volume in 0u8..64, duration in any::<u16>()) {
            let p = EventPayload { event, end, volume, duration };
            prop_assert_eq!(EventPayload::parse(&p.to_bytes()), Ok(p));
        }
    }
}
