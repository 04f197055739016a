//! [`RecordScan`]: follows the TLS record framing (RFC 8446 5.1: a 5-byte header whose last
//! two bytes give the length of the body that follows) of the bytes a peer sent, so that the
//! node knows how many bytes of an unfinished record the TLS library holds for the
//! connection. Those bytes are memory a peer makes the server keep, and they count against
//! the same limits as an unfinished RTMP message.
//!
//! Nothing here trusts the peer: any byte sequence is a valid input, a length field is at
//! most 65,535, and the scan never looks at a record's content.

/// Bytes of a TLS record header: type, version (2), length (2).
const HEADER: usize = 5;

/// Where the peer's byte stream is in its record framing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RecordScan {
    /// The header of the record under way, as far as it has arrived.
    header: [u8; HEADER],
    /// Bytes of `header` that have arrived (all 5 once the body is being read).
    header_len: usize,
    /// Body bytes of the record under way that have not arrived yet.
    body_left: usize,
    /// Body bytes of the record under way that have arrived.
    body_seen: usize,
}

impl RecordScan {
    /// Follows `data`, the next bytes the peer sent.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.header_len < HEADER {
                let take = (HEADER - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                data = &data[take..];
                if self.header_len == HEADER {
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    self.body_seen = 0;
                    if self.body_left == 0 {
                        self.header_len = 0;
                    }
                }
                continue;
            }
            let take = self.body_left.min(data.len());
            self.body_left -= take;
            self.body_seen += take;
            data = &data[take..];
            if self.body_left == 0 {
                self.header_len = 0;
                self.body_seen = 0;
            }
        }
    }

    /// Bytes of the unfinished record: what the TLS library holds until the rest arrives.
    pub(crate) fn unfinished(&self) -> usize {
        if self.header_len < HEADER {
            self.header_len
        } else {
            HEADER + self.body_seen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn whole_records_leave_nothing_unfinished_and_a_partial_one_counts_its_bytes() {
        let mut scan = RecordScan::default();
        let mut stream = record(22, &[1; 300]);
        stream.extend(record(23, &[]));
        stream.extend(record(23, &[2; 40]));
        scan.feed(&stream);
        assert_eq!(scan.unfinished(), 0);
        scan.feed(&[23, 3]);
        assert_eq!(scan.unfinished(), 2);
        scan.feed(&[3, 0x40, 0x00]);
        assert_eq!(scan.unfinished(), 5, "a header announcing 16 KiB");
        scan.feed(&[0; 1000]);
        assert_eq!(scan.unfinished(), 1005);
        scan.feed(&[0; 0x4000 - 1000]);
        assert_eq!(scan.unfinished(), 0);
    }

    proptest! {
        /// Any bytes, cut anywhere: the scan ends where one pass over the whole ends, never
        /// panics, and never counts more than a header and the longest body.
        #[test]
        fn any_input_cut_anywhere_scans_as_a_whole(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut whole = RecordScan::default();
            whole.feed(&data);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces = RecordScan::default();
            let mut start = 0;
            for point in points.into_iter().chain([data.len()]) {
                pieces.feed(&data[start..point]);
                prop_assert!(pieces.unfinished() <= HEADER + usize::from(u16::MAX));
                start = point;
            }
            prop_assert_eq!(pieces, whole);
        }

        /// A stream of whole records with any bodies, then a prefix of one more: exactly the
        /// prefix is unfinished.
        #[test]
        fn the_unfinished_part_is_the_prefix_of_the_last_record(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..6),
            last in proptest::collection::vec(any::<u8>(), 1..600),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut stream: Vec<u8> = bodies.iter().flat_map(|b| record(23, b)).collect();
            let tail = record(23, &last);
            let prefix = cut.index(tail.len());
            stream.extend_from_slice(&tail[..prefix]);
            let mut scan = RecordScan::default();
            scan.feed(&stream);
            prop_assert_eq!(scan.unfinished(), prefix);
        }
    }
}
