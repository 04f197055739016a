//! [`RecordResume`]: when a recording the application chose (`record-all`) failed, when and
//! where it starts again.
//!
//! A full disk must not end a live stream, and the operator who records every publish wants
//! the recording back once there is room again. After a failure the stream goes on
//! unrecorded; from a while later in the stream's own media time (10 s, doubling with each
//! failure in a row up to 5 min), the next keyframe (or, for audio only, the next audio
//! message) starts a new file beside the first: `name-1.flv`, `name-2.flv`... A file that got
//! no media is removed by the recorder, so a disk that stays full leaves no trail of empty
//! files, only a log line per try.

use crate::ids::ConnId;

/// The wait after the first failure, in media milliseconds.
const FIRST_WAIT_MS: u32 = 10_000;
/// The longest wait between tries, in media milliseconds.
const LONGEST_WAIT_MS: u32 = 300_000;

/// A failed application-chosen recording of one live stream, waiting to start again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordResume {
    /// The publisher (connection and stream id) the recording belongs to.
    pub publisher: (ConnId, u32),
    /// The media time from which the next try may start; set by the first message after the
    /// failure.
    at: Option<u32>,
    /// Failures in a row.
    failures: u32,
    /// The number of the next file.
    part: u32,
}

impl RecordResume {
    /// The state after a failure, given the one before it (a failed retry) if any.
    pub(crate) fn after_failure(previous: Option<Self>, publisher: (ConnId, u32)) -> Self {
        let (failures, part) = previous.map_or((1, 1), |p| (p.failures + 1, p.part));
        Self {
            publisher,
            at: None,
            failures,
            part,
        }
    }

    fn wait_ms(&self) -> u32 {
        let doublings = self.failures.saturating_sub(1).min(16);
        FIRST_WAIT_MS
            .saturating_mul(1 << doublings)
            .min(LONGEST_WAIT_MS)
    }

    /// Whether a message at media time `timestamp` starts the next file; `clean_start` when
    /// a recording can begin with it (a keyframe, or audio of a stream without video).
    pub(crate) fn due(&mut self, timestamp: u32, clean_start: bool) -> bool {
        let wait = self.wait_ms();
        let at = *self.at.get_or_insert(timestamp.saturating_add(wait));
        clean_start && timestamp >= at
    }

    /// The next file of the stream `key` (`app/name`): `app/name-N.flv`.
    pub(crate) fn next_path(&mut self, key: &str) -> String {
        let path = format!("{key}-{}.flv", self.part);
        self.part += 1;
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_again_at_a_clean_start_after_a_wait_that_doubles() {
        let publisher = (ConnId(1), 1);
        let mut resume = RecordResume::after_failure(None, publisher);
        assert!(!resume.due(5_000, true), "the first message sets the wait");
        assert!(!resume.due(14_999, true));
        assert!(!resume.due(15_000, false), "not an inter frame");
        assert!(resume.due(15_040, true));
        assert_eq!(resume.next_path("live/cam"), "live/cam-1.flv");
        // The new file failed too: twice the wait, the next number.
        let mut resume = RecordResume::after_failure(Some(resume), publisher);
        assert!(!resume.due(20_000, true));
        assert!(!resume.due(39_999, true));
        assert!(resume.due(40_000, true));
        assert_eq!(resume.next_path("live/cam"), "live/cam-2.flv");
        let mut long = resume;
        for _ in 0..40 {
            long = RecordResume::after_failure(Some(long), publisher);
        }
        assert_eq!(long.wait_ms(), LONGEST_WAIT_MS);
    }
}
