//! Running one scenario under every runtime at once. The suites that prove a feature on each
//! driver spend their time waiting on real-time media (a 20 s file publishes in 20 s); run one
//! runtime after another, five runtimes cost five times that. Each scenario uses its own
//! server, ports and scratch directory, so they can share the wall clock.

use std::thread;

use siprtmp_runtime_drivers::Runtime;

/// Runs `scenario` for every runtime in [`Runtime::ALL`], each on a thread of its own named
/// after the runtime, and waits for all of them. Fails, after all have finished, naming every
/// runtime whose scenario panicked (each panic's message is printed as it happens, under the
/// runtime's thread name).
pub fn on_every_runtime_at_once(scenario: impl Fn(Runtime) + Sync) {
    let failed: Vec<&str> = thread::scope(|scope| {
        let runs: Vec<_> = Runtime::ALL
            .into_iter()
            .map(|runtime| {
                let scenario = &scenario;
                let run = thread::Builder::new()
                    .name(runtime.name().to_string())
                    .spawn_scoped(scope, move || scenario(runtime))
                    .expect("spawn a scenario thread");
                (runtime.name(), run)
            })
            .collect();
        runs.into_iter()
            .filter_map(|(name, run)| run.join().is_err().then_some(name))
            .collect()
    });
    assert!(failed.is_empty(), "failed under: {}", failed.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_runtime_runs_and_a_failure_names_its_runtime() {
        let seen = Mutex::new(Vec::new());
        on_every_runtime_at_once(|runtime| seen.lock().unwrap().push(runtime.name()));
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        let mut all: Vec<_> = Runtime::ALL.iter().map(|r| r.name()).collect();
        all.sort_unstable();
        assert_eq!(seen, all);

        let failure = std::panic::catch_unwind(|| {
            on_every_runtime_at_once(|runtime| assert_ne!(runtime, Runtime::ALL[1]));
        })
        .expect_err("one runtime's failure fails the whole");
        let message = failure
            .downcast_ref::<String>()
            .expect("a formatted message");
        assert_eq!(
            *message,
            format!("failed under: {}", Runtime::ALL[1].name())
        );
    }
}
