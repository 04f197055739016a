//! The soak: gateway calls and live players over a lossy, reordering network, in memory and
//! virtual time, every frame accounted for and the heap sampled every simulated minute.
//!
//! `cargo run --release -p siprtmp-core --example soak -- [--minutes M] [--calls C] [--players P] [--seed S]`
//!
//! Defaults: 60 minutes, 1,000 call slots, 1,000 player slots (calls of 30 s to 5 min,
//! viewings of 30 s to 10 min). `--short-sessions` takes the test's shape instead (sessions
//! of seconds, the heap sampled every 10 s). Prints each heap sample as it is taken, then the
//! report; exits 1 when a frame went missing, something was left behind, or the heap grew
//! after the warm-up.

#[path = "../tests/support/soak/mod.rs"]
mod soak;

use std::time::Duration;

#[global_allocator]
static ALLOCATOR: soak::alloc::Counting = soak::alloc::Counting;

fn main() {
    let mut minutes = 60u64;
    let mut calls = 1000u32;
    let mut players = 1000u32;
    let mut seed = 1u64;
    let mut short = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--short-sessions" {
            short = true;
            continue;
        }
        let value = args.next().unwrap_or_default();
        let bad = || -> ! {
            eprintln!(
                "usage: soak [--minutes M] [--calls C] [--players P] [--seed S] [--short-sessions]"
            );
            std::process::exit(2)
        };
        match flag.as_str() {
            "--minutes" => minutes = value.parse().unwrap_or_else(|_| bad()),
            "--calls" => calls = value.parse().unwrap_or_else(|_| bad()),
            "--players" => players = value.parse().unwrap_or_else(|_| bad()),
            "--seed" => seed = value.parse().unwrap_or_else(|_| bad()),
            _ => bad(),
        }
    }
    let duration = Duration::from_secs(60 * minutes);
    let mut config = if short {
        soak::SoakConfig::short(duration, calls, players)
    } else {
        soak::SoakConfig::long(duration, calls, players)
    };
    config.seed = seed;
    let report = soak::run(&config, |s| {
        println!(
            "{:>3}:{:02}: {:>8.1} MiB live, {:>5} connections (peak {:>5}), {:>5} sockets, {:>7} packets in flight (peak {:>6}, pool {:>5.1} MiB), {:>6.1} s wall",
            s.at.as_secs() / 60,
            s.at.as_secs() % 60,
            s.live_bytes as f64 / 1048576.0,
            s.connections,
            s.peak_connections,
            s.sockets,
            s.in_flight,
            s.peak_in_flight.0,
            s.peak_in_flight.1 as f64 / 1048576.0,
            s.wall.as_secs_f64()
        );
    });
    print!("{}", report.summary());
    let flat = report.memory_trend().is_flat(0.05);
    if !flat {
        println!("the heap grew after the warm-up");
    }
    if report.failures.count > 0 || !flat {
        std::process::exit(1);
    }
}
