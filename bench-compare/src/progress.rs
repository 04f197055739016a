//! The progress line on stderr, drawn by `indicatif`: how many points are done of how many, or
//! how far a soak is into its duration, with an estimate of the time left and a note on the
//! point being measured. When stderr is not a terminal (a log file, a test's pipe) indicatif
//! draws nothing, so logs keep only the summary lines printed after the run.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often the line is redrawn while nothing else changes (the elapsed time and estimate
/// move on). Once a second costs the loader, whose own CPU is reported, next to nothing.
const REDRAW: Duration = Duration::from_secs(1);

/// A progress line: a count of steps done, out of a known total.
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A line for `total` measurement points: "[done/total] bar elapsed, time left: note".
    pub(crate) fn points(total: usize) -> Self {
        Self::with(
            total as u64,
            "[{pos}/{len}] {bar:20} {elapsed} elapsed, ~{eta} left: {wide_msg}",
        )
    }

    /// A line for a soak of `duration`, advanced once a second: "soak s/duration bar time
    /// left: note".
    pub(crate) fn soak(duration: Duration) -> Self {
        Self::with(
            duration.as_secs(),
            "soak {pos}/{len} s {bar:20} ~{eta} left: {wide_msg}",
        )
    }

    fn with(len: u64, template: &str) -> Self {
        let bar = ProgressBar::new(len);
        // The templates are constants of this file: a bad one is a bug caught by the tests.
        let style = ProgressStyle::with_template(template)
            .expect("progress template")
            .progress_chars("=> ");
        bar.set_style(style);
        // No ticker thread when nothing is drawn.
        if !bar.is_hidden() {
            bar.enable_steady_tick(REDRAW);
        }
        Progress { bar }
    }

    /// The note after the counts: what is being measured now, or the last result.
    pub(crate) fn note(&self, text: String) {
        self.bar.set_message(text);
    }

    /// One more step done.
    pub(crate) fn step(&self) {
        self.bar.inc(1);
    }

    /// `done` steps done in all.
    pub(crate) fn set_done(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Steps done so far.
    #[cfg(test)]
    fn done(&self) -> u64 {
        self.bar.position()
    }

    /// Leaves the last line on the terminal (nothing when stderr is not one), so the summary
    /// lines printed next start on a line of their own.
    pub(crate) fn finish(&self) {
        self.bar.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_are_valid_and_counts_advance() {
        let p = Progress::points(3);
        p.note("mio N=10".into());
        p.step();
        p.step();
        assert_eq!(p.done(), 2);
        p.finish();
        let s = Progress::soak(Duration::from_secs(1800));
        s.set_done(60);
        assert_eq!(s.done(), 60);
        s.finish();
    }
}
