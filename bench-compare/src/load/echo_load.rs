//! What a gateway point drives ([`EchoLoad`]): calls that send numbered frames (tagged, or
//! told by their timestamps: see `super::echo_match`) and count which of their measurement
//! window's frames come back, whether through the gateway
//! (`calls::CallLoad`) or through its kernel floor (`crate::floor::load::FloorLoad`). Each
//! call numbers its frames with a [`SendTally`]; the window, the drain and the summary are the
//! same for both.

use std::io;
use std::time::{Duration, Instant};

use super::calls::{CallCount, EchoSummary, SeqPlan};
use super::conn::Window;
use super::delay::{DelayHistogram, SendTimes};

/// One call's numbering of the frames it sends, and which of them are the window's.
#[derive(Debug, Clone)]
pub(crate) struct SendTally {
    /// The number the next frame gets.
    pub next_seq: u32,
    /// The window's numbers (empty until it opens).
    pub window: Window,
    /// Frames sent while the window was open.
    pub window_sent: u64,
    /// When each recent frame was sent, for the delay of its echo.
    pub times: SendTimes,
    counting: bool,
}

impl SendTally {
    /// Numbering from `plan.first`, no window yet.
    pub(crate) fn new(plan: SeqPlan) -> Self {
        Self {
            next_seq: plan.first,
            window: Window {
                lo: u32::MAX,
                hi: u32::MAX,
            },
            window_sent: 0,
            times: SendTimes::default(),
            counting: false,
        }
    }

    /// The number for the frame being sent `at`, counted when the window is open.
    pub(crate) fn take(&mut self, plan: SeqPlan, at: Instant) -> u32 {
        let seq = self.next_seq;
        self.times.record(seq, at);
        self.next_seq += plan.step;
        if self.counting {
            self.window_sent += 1;
        }
        seq
    }

    fn open(&mut self) {
        self.window = Window {
            lo: self.next_seq,
            hi: u32::MAX,
        };
        self.window_sent = 0;
        self.counting = true;
    }

    fn close(&mut self, plan: SeqPlan) {
        // The last number sent (below `lo` when none was: the window then counts none).
        self.window.hi = self.next_seq.saturating_sub(plan.step);
        self.counting = false;
    }
}

/// What one call received of its window, as [`EchoLoad::calls`] reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Window frames that came back.
    pub counted: u64,
    /// Window frames that came back out of order or twice.
    pub disorder: u64,
    /// Frames (of the whole call, window or not) that came back as the echo of no frame
    /// sent (see [`super::echo_match`]).
    pub unmatched: u64,
}

/// The calls of a gateway point, as the measurement drives them.
pub(crate) trait EchoLoad {
    /// Sends the frames that are due, waits for events up to `until` (or the next frame) and
    /// handles them.
    fn step(&mut self, until: Instant) -> io::Result<()>;
    /// The numbering plan of the calls' frames.
    fn plan(&self) -> SeqPlan;
    /// Every call's tally, in call order.
    fn tallies(&mut self) -> Vec<&mut SendTally>;
    /// Every call's tally, what it received, and why it failed (if it did), in call order.
    fn calls(&self) -> Vec<(&SendTally, Received, Option<&String>)>;
    /// The delays of the window frames that came back so far (sent to echoed, all calls).
    fn delays(&self) -> &DelayHistogram;
    /// Forgets the delays counted so far.
    fn reset_delays(&mut self);

    /// Keeps the calls going until `until`.
    fn run_until(&mut self, until: Instant) -> io::Result<()> {
        while Instant::now() < until {
            self.step(until)?;
        }
        Ok(())
    }

    /// Starts counting: each call's frames sent from now on are the window's.
    fn open_window(&mut self) {
        self.tallies().into_iter().for_each(SendTally::open);
        self.reset_delays();
    }

    /// Stops counting: frames sent from now on are not the window's.
    fn close_window(&mut self) {
        let plan = self.plan();
        for tally in self.tallies() {
            tally.close(plan);
        }
    }

    /// After [`EchoLoad::close_window`], keeps the calls going until every call has its
    /// window's frames back (or failed) or `timeout` passes, and counts.
    fn drain(&mut self, timeout: Duration) -> io::Result<EchoSummary> {
        let deadline = Instant::now() + timeout;
        loop {
            self.step(Instant::now() + Duration::from_millis(10))?;
            let done = self
                .calls()
                .iter()
                .all(|(t, r, failed)| r.counted >= t.window_sent || failed.is_some());
            if done || Instant::now() >= deadline {
                break;
            }
        }
        let calls = self.calls();
        Ok(EchoSummary {
            calls: calls
                .iter()
                .map(|(t, r, _)| CallCount {
                    sent: t.window_sent,
                    echoed: r.counted.min(t.window_sent),
                    disorder: r.disorder,
                    unmatched: r.unmatched,
                })
                .collect(),
            failure: calls.iter().find_map(|(_, _, f)| f.cloned()),
            delay: self.delays().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_the_frames_sent_between_open_and_close() {
        let plan = SeqPlan { first: 7, step: 16 };
        let t0 = Instant::now();
        let mut tally = SendTally::new(plan);
        assert_eq!(tally.take(plan, t0), 7);
        tally.open();
        assert_eq!((tally.take(plan, t0), tally.take(plan, t0)), (23, 39));
        tally.close(plan);
        assert_eq!(tally.take(plan, t0), 55);
        assert_eq!(tally.window_sent, 2);
        assert_eq!((tally.window.lo, tally.window.hi), (23, 39));
        // Closed before anything was sent: the window counts nothing.
        let mut empty = SendTally::new(plan);
        empty.open();
        empty.close(plan);
        assert!(empty.window.hi < empty.window.lo);
    }
}
