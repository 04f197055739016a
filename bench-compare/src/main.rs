//! `bench-compare`: repeats the original project's CPU measurement (CPU per publisher and per
//! player of an RTMP server) for `siprtmp` under each runtime and for nginx-rtmp in the same
//! run, with one Rust load generator, and writes a markdown report and SVG plots.
//!
//! Order of work: for each repeat, scenario, reader kind and player count, every server is
//! measured in turn (so slow drifts of the machine spread over all servers); the report takes
//! medians over repeats and fits CPU against players by least squares. With `--publishers`,
//! each repeat and scenario also measures N publishers (each on its own stream, no player),
//! every server in turn at each N, and the report fits CPU against publishers.
//!
//! Other modes: `--gateway` (CPU per SIP-RTMP call), `--soak` (one server under load for a
//! long time) and `--relay` (an origin and its edges against one server with the same
//! players, [`relay`]).

mod floor;
mod flv;
mod gateway;
mod gateway_codec;
mod gateway_report;
mod load;
mod measure;
mod procstat;
mod progress;
mod publisher_report;
mod relay;
mod relay_report;
mod report;
mod server;
mod soak;
mod srtp_echo;
mod srtp_report;
mod stats;
mod svg;
mod syscalls;
// Where the generated test media and the sipp scenarios are is known in one file, the test
// crate's `locate` module; compiled here as a module rather than depending on that crate
// (and, through it, on every runtime).
// Only the directories are used here (dead_code); its functions are `pub` because they are
// the test crate's public API, but private in this crate (unreachable_pub).
#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/src/locate.rs"]
mod test_inputs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use load::generator::ReaderKind;
use load::media::MediaLoop;
use measure::{PointResult, Scenario, Timing};
use progress::Progress;
use server::{Binaries, ServerKind};

/// CPU per publisher and per player: siprtmp under each runtime against nginx-rtmp.
#[derive(Debug, Parser)]
#[command(name = "bench-compare", version, about)]
struct Flags {
    /// Short run (< 60 s): 0, 5 and 20 players, Speex only, 1.2 s windows, 1 repeat; exits
    /// non-zero unless every player received every frame sent during each window.
    #[arg(long)]
    quick: bool,
    /// Directory for report.md, results.csv and the SVG plots.
    #[arg(long, default_value = "bench-compare-out")]
    out: PathBuf,
    /// Servers to measure, comma-separated: siprtmp runtimes, a runtime with `-merged`
    /// (siprtmp with `--merge-writes 100`, e.g. `mio-merged`; `-mergedN` for an N ms window), `nginx` and `rtmplite3` (the
    /// original server's Python 3 port); `base:` before a siprtmp name runs `--baseline-bin`.
    /// Runtimes the siprtmp binary does not accept, and peers not installed, are skipped with
    /// a note.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mio,mio-merged,tokio,threads,async-std,nginx,rtmplite3"
    )]
    runtimes: Vec<String>,
    /// Most players rtmplite3 is measured with: larger points are skipped with a note (the
    /// original spent 12 MHz of a Core 2 per player, so 1,000 players are beyond one core).
    #[arg(long, default_value_t = 100)]
    rtmplite_max_players: usize,
    /// Player counts [default: 0,1,5,20,100,1000; quick: 0,5,20; none when `--publishers`
    /// is given without `--players`].
    #[arg(long, value_delimiter = ',')]
    players: Option<Vec<usize>>,
    /// Publisher counts of a publisher series (RTMP mode): at each N, N publishers each
    /// publishing its own stream and no player; CPU per publisher is the slope over N
    /// [default: none].
    #[arg(long, value_delimiter = ',')]
    publishers: Option<Vec<usize>>,
    /// Measurement window in seconds [default: 10; quick: 1.2].
    #[arg(long)]
    window: Option<f64>,
    /// Warm-up before each window in seconds [default: 3; quick: 0.4].
    #[arg(long)]
    warmup: Option<f64>,
    /// Repeats; the report takes medians [default: 3; quick: 1].
    #[arg(long)]
    repeats: Option<usize>,
    /// Scenarios, comma-separated: `audio` (Speex 16 kHz) and `av` (H.264 320x240 12 fps +
    /// Speex) [default: audio,av; quick: audio].
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Reader kinds, comma-separated: `reader` (reads every message) and `bulk`
    /// (SO_RCVLOWAT 16 KiB).
    #[arg(long, value_delimiter = ',', default_value = "reader,bulk")]
    readers: Vec<String>,
    /// The siprtmp binary [default: `siprtmp` next to this binary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// A second siprtmp binary, typically the build before a change: servers named
    /// `base:<name>` (e.g. `--runtimes base:mio,mio`) run it with the options of `<name>`, in
    /// the same run as the others and alternating with them, so that before and after meet
    /// the same machine.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Directory holding speex16k_audio_20s.flv, speex8k_audio_20s.flv and
    /// h264_speex16k_320x240_12fps_20s.flv (the build area's test-media/, which
    /// scripts/make-test-media.sh fills).
    #[arg(long, default_value_os_t = test_inputs::media_dir())]
    media_dir: PathBuf,
    /// Measure the SIP-RTMP gateway instead: CPU per concurrent call (Speex to an echoing
    /// sipp), per runtime (`nginx` does not apply and is skipped).
    #[arg(long)]
    gateway: bool,
    /// Concurrent call counts of `--gateway` [default: 1,10,100,1000; quick: 1,10].
    #[arg(long, value_delimiter = ',')]
    calls: Option<Vec<usize>>,
    /// Codecs of `--gateway`, comma-separated, each its own series: the client's codec,
    /// passed through: `wideband` (Speex 16 kHz, speex16k_audio_20s.flv), `narrowband`
    /// (Speex 8 kHz, speex8k_audio_20s.flv), `opus` (enhanced RTMP, opus_audio_20s.flv); or
    /// transcoded, to a far end that answers only `-pcmu`, `-pcma` (or, for `opus`,
    /// `-speex`, Speex 16 kHz): `wideband-pcmu`, `wideband-pcma`, `narrowband-pcmu`,
    /// `narrowband-pcma`, `opus-pcmu`, `opus-pcma`, `opus-speex`
    /// [default: wideband,narrowband; quick: wideband].
    #[arg(long, value_delimiter = ',')]
    codecs: Option<Vec<String>>,
    /// The sipp scenario of the far end of the codecs passed through (answers every call,
    /// echoes RTP with -rtp_echo); a transcoded codec's far end is the project's scenario
    /// that answers only its codec (tests/sipp/uas_echo_pcmu_only.xml and the like).
    #[arg(long, default_value_os_t = test_inputs::sipp_dir().join("uas_echo_any.xml"))]
    sipp_scenario: PathBuf,
    /// Soak instead: one siprtmp server (the first of `--runtimes`) with the first of
    /// `--calls` gateway calls [default 300] and the first of `--players` players [default
    /// 500] of the first of `--scenarios` [default av] for `--duration` seconds, sampling its
    /// resident memory, descriptors and CPU every second; writes soak.csv, soak-rss.svg,
    /// soak-fds.svg and report.md. Exits 2 unless every frame was delivered and memory and
    /// descriptors stayed flat after `--settle`.
    #[arg(long)]
    soak: bool,
    /// With `--gateway`: count the server's system calls over every window (`perf stat` on
    /// the `raw_syscalls:sys_enter` tracepoint; a few tens of ns per call to the server) and
    /// report them per call-second beside the kernel's share of its CPU.
    #[arg(long)]
    syscalls: bool,
    /// With `--gateway`: SRTP against plain RTP in one run. Every siprtmp point's far end is
    /// this binary's own echo (it answers as the sipp scenario does, with RTP/SAVP and a key of
    /// its own when the offer has `a=crypto`) instead of sipp, and each runtime R gets the
    /// series `R-srtp` beside `R`: siprtmp with `--srtp require --srtp-over-plain-sip`, the
    /// echo unprotecting each packet with the gateway's key and protecting it with its own.
    /// Codecs passed through only.
    #[arg(long)]
    srtp: bool,
    /// Measure a relay instead: the load publishes to a siprtmp origin, `--edges` siprtmp
    /// edges pull from it and the players are spread over them; the CPU of the edges per
    /// player and of the origin per edge, in the same run as the single siprtmp (the first
    /// siprtmp of `--runtimes`) with the same players [players default: 0,20,100,200; quick:
    /// 0,4,20]. Exits non-zero unless every player received every window frame.
    #[arg(long)]
    relay: bool,
    /// Edge servers of `--relay`.
    #[arg(long, default_value_t = 2)]
    edges: usize,
    /// Length of the soak in seconds.
    #[arg(long, default_value_t = 1800.0)]
    duration: f64,
    /// Seconds of the soak left out of the flatness verdict (the server's memory settles).
    #[arg(long, default_value_t = 300.0)]
    settle: f64,
    /// Internal: run as the gateway floor's server, sending RTP to this address (see
    /// `floor`); bench-compare starts itself so for `--runtimes floor`.
    #[arg(long, hide = true)]
    floor_server: Option<std::net::SocketAddr>,
    /// Internal: the floor server's merge window in ms.
    #[arg(long, hide = true)]
    floor_merge_ms: Option<u64>,
    /// Internal: the floor server's poll interval in ms.
    #[arg(long, hide = true)]
    floor_tick_ms: Option<u64>,
    /// Internal: the floor server sends with UDP GSO.
    #[arg(long, hide = true)]
    floor_gso: bool,
    /// Internal: run as the gateway's echo far end of `--srtp` (see `srtp_echo`).
    #[arg(long, hide = true)]
    echo_server: bool,
}

/// Everything the run decided before measuring, for the report.
pub struct RunInfo {
    /// The command line.
    pub command: String,
    /// Servers measured, in order.
    pub servers: Vec<String>,
    /// Notes (skipped servers, assumptions).
    pub notes: Vec<String>,
    /// Scenarios measured.
    pub scenarios: Vec<Scenario>,
    /// Reader kinds measured.
    pub readers: Vec<ReaderKind>,
    /// Player counts.
    pub players: Vec<usize>,
    /// Publisher counts of the publisher series (empty: none measured).
    pub publishers: Vec<usize>,
    /// Repeats.
    pub repeats: usize,
    /// Phase lengths.
    pub timing: Timing,
    /// Core clock, MHz (`None`: unknown, MHz columns omitted).
    pub core_mhz: Option<f64>,
    /// CPU model.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// The far end's sipp scenario (its file name), for the gateway's report.
    pub sipp_scenario: String,
}

fn main() -> ExitCode {
    let mut flags = Flags::parse();
    // sipp runs in a scratch directory: a relative scenario path would not be found there.
    if let Ok(path) = std::path::absolute(&flags.sipp_scenario) {
        flags.sipp_scenario = path;
    }
    match run(flags) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("bench-compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn default_server_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .ok_or("no directory for the current executable")?;
    // Next to us (target/<profile>/), or one up when we run as a test's deps/ binary.
    [dir.join("siprtmp"), dir.join("../siprtmp")]
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "no siprtmp binary next to {}; build it (cargo build -p siprtmp) or pass --server-bin",
                exe.display()
            )
        })
}

/// A media file's bytes; when it cannot be read, an error that says how the files are made.
fn read_media(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "{}: {e} (the test media is made by scripts/make-test-media.sh)",
            path.display()
        )
    })
}

fn load_scenario(name: &str, media_dir: &std::path::Path) -> Result<Scenario, String> {
    let (file, description) = match name {
        "audio" => (
            "speex16k_audio_20s.flv",
            "Speex 16 kHz audio only (50 messages/s)",
        ),
        "av" => (
            "h264_speex16k_320x240_12fps_20s.flv",
            "H.264 320x240 12 fps + Speex 16 kHz (62 messages/s)",
        ),
        other => return Err(format!("unknown scenario {other:?} (audio, av)")),
    };
    let path = media_dir.join(file);
    let data = read_media(&path)?;
    let tags = flv::parse_tags(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Scenario {
        name: name.to_owned(),
        description: description.to_owned(),
        media: Arc::new(MediaLoop::new(tags)?),
    })
}

fn run(flags: Flags) -> Result<bool, String> {
    if flags.echo_server {
        srtp_echo::server::serve().map_err(|e| format!("echo far end: {e}"))?;
        return Ok(true);
    }
    if let Some(far_end) = flags.floor_server {
        let merge = flags.floor_merge_ms.map(Duration::from_millis);
        let tick = flags.floor_tick_ms.map(Duration::from_millis);
        floor::server::serve(far_end, merge, tick, flags.floor_gso)
            .map_err(|e| format!("floor server: {e}"))?;
        return Ok(true);
    }
    if flags.soak {
        return run_soak(flags);
    }
    if flags.gateway {
        return run_gateway(flags);
    }
    if flags.relay {
        return run_relay(flags);
    }
    let quick = flags.quick;
    let RtmpPlan {
        players,
        publishers,
        timing,
        repeats,
        scenarios,
        readers,
    } = rtmp_plan(&flags, [vec![0, 5, 20], vec![0, 1, 5, 20, 100, 1000]])?;
    let bins = Binaries {
        siprtmp: match &flags.server_bin {
            Some(p) => p.clone(),
            None => default_server_bin()?,
        },
        baseline: flags.baseline_bin.clone(),
        nginx: server::find_nginx(),
        rtmplite: server::find_rtmplite(),
    };

    let mut notes = Vec::new();
    let (clk_tck, tick_note) = procstat::clock_ticks();
    notes.extend(tick_note);
    let (core_mhz, cpu_model) = procstat::core_mhz();
    if core_mhz.is_none() {
        notes.push("no \"cpu MHz\" in /proc/cpuinfo: MHz figures omitted".into());
    }

    // Which servers can run here: try each once.
    let mut servers = Vec::new();
    for name in &flags.runtimes {
        let kind = if name == "nginx" {
            if bins.nginx.is_none() {
                notes
                    .push("nginx-rtmp skipped: nginx or libnginx-mod-rtmp is not installed".into());
                continue;
            }
            ServerKind::Nginx
        } else if name == "rtmplite3" {
            if bins.rtmplite.is_none() {
                notes.push(
                    "rtmplite3 skipped: not installed (scripts/test.sh installs it from PyPI)"
                        .into(),
                );
                continue;
            }
            ServerKind::Rtmplite
        } else {
            ServerKind::Siprtmp(name.clone())
        };
        match server::start(&kind, &bins) {
            Ok(running) => {
                running.stop();
                if let Some(o) = kind.siprtmp_options() {
                    match o.merge_ms {
                        Some(0) => notes.push(format!(
                            "{}: siprtmp --runtime {} --merge-writes 0 (every message written \
                             as it arrives: the default before merged writes became one)",
                            kind.label(),
                            o.runtime
                        )),
                        Some(ms) => notes.push(format!(
                            "{}: siprtmp --runtime {} --merge-writes {ms}{} (merged writes: a \
                             player's or a call's media is held up to {ms} ms and written in \
                             one writev)",
                            kind.label(),
                            o.runtime,
                            if o.baseline {
                                String::new()
                            } else {
                                format!(" --gateway-merge-writes {ms}")
                            }
                        )),
                        None if o.baseline => {}
                        None => notes.push(format!(
                            "{}: siprtmp --runtime {} with its default flags (players' media \
                             merged over 40 ms, calls' written as it arrives)",
                            kind.label(),
                            o.runtime
                        )),
                    }
                    if o.nodelay {
                        notes.push(format!("{}: with --tcp-nodelay", kind.label()));
                    }
                    if o.shared_rtp_ports {
                        notes.push(format!(
                            "{}: with --shared-rtp-ports (every call's RTP on four shared \
                             ports, told apart by address and SSRC)",
                            kind.label()
                        ));
                    }
                    if let Some(ms) = o.poll_interval_ms {
                        notes.push(format!(
                            "{}: with --poll-interval {ms} (socket events taken at most \
                             every {ms} ms)",
                            kind.label()
                        ));
                    }
                    if !o.udp_gso {
                        notes.push(format!("{}: with --no-udp-gso", kind.label()));
                    }
                    if let Some(n) = o.workers {
                        notes.push(format!(
                            "{}: with --workers {n} ({n} nodes on {n} threads sharing the \
                             port; CPU is the whole process's)",
                            kind.label()
                        ));
                    }
                    if o.tls {
                        notes.push(format!(
                            "{}: with --rtmps-port: the publisher and every player over RTMPS \
                             (a certificate made for the run; the gateway's calls stay on \
                             RTMP)",
                            kind.label()
                        ));
                    }
                }
                servers.push(kind);
            }
            Err(e) => {
                let note = format!("{} skipped: {e}", kind.label());
                eprintln!("bench-compare: {note}");
                notes.push(note);
            }
        }
    }
    if servers.is_empty() {
        return Err("no server to measure".into());
    }
    if servers.contains(&ServerKind::Rtmplite)
        && players.iter().any(|&n| n > flags.rtmplite_max_players)
    {
        notes.push(format!(
            "rtmplite3 measured up to {} players only (--rtmplite-max-players)",
            flags.rtmplite_max_players
        ));
    }
    if servers.contains(&ServerKind::Rtmplite)
        && publishers.iter().any(|&n| n > flags.rtmplite_max_players)
    {
        notes.push(format!(
            "rtmplite3 measured up to {} publishers only (--rtmplite-max-players)",
            flags.rtmplite_max_players
        ));
    }
    // A publisher is one socket of the loader and one of the server.
    let most = publishers
        .iter()
        .chain(&players)
        .max()
        .copied()
        .unwrap_or(0) as u64;
    notes.extend(gateway::raise_fd_limit(most * 2 + 256));

    let total = repeats
        * scenarios.len()
        * (readers.len() * players.len() + publishers.len())
        * servers.len();
    let mut results: Vec<PointResult> = Vec::with_capacity(total);
    let mut failures = Vec::new();
    let started = Instant::now();
    let progress = Progress::points(total);
    for repeat in 0..repeats {
        for scenario in &scenarios {
            for &reader in &readers {
                for &n in &players {
                    for kind in &servers {
                        if *kind == ServerKind::Rtmplite && n > flags.rtmplite_max_players {
                            progress.step();
                            continue;
                        }
                        progress.note(format!(
                            "repeat {} {} {} N={n} {} ...",
                            repeat + 1,
                            scenario.name,
                            reader.name(),
                            kind.label()
                        ));
                        let point = measure::run_point(
                            kind, &bins, scenario, reader, n, repeat, timing, clk_tck,
                        );
                        match point {
                            Ok(r) => {
                                if !r.delivery.is_complete() {
                                    failures.push(format!(
                                        "{} {} {} N={n} repeat {}: {} of {n} players complete, \
                                         fewest frames {} of {}{}",
                                        r.server,
                                        r.scenario,
                                        reader.name(),
                                        repeat + 1,
                                        r.delivery.complete,
                                        r.delivery.min_received,
                                        r.delivery.sent,
                                        r.delivery
                                            .failure
                                            .as_ref()
                                            .map(|f| format!(" ({f})"))
                                            .unwrap_or_default()
                                    ));
                                }
                                progress.note(format!(
                                    "{} {} N={n} {}: {:.2}% core, loader {:.1}%, frames {}/{}",
                                    scenario.name,
                                    reader.name(),
                                    kind.label(),
                                    r.server_cpu,
                                    r.loader_cpu,
                                    r.delivery.min_received,
                                    r.delivery.sent
                                ));
                                results.push(r);
                            }
                            Err(e) => failures.push(format!(
                                "{} {} {} N={n} repeat {}: {e}",
                                kind.label(),
                                scenario.name,
                                reader.name(),
                                repeat + 1
                            )),
                        }
                        progress.step();
                    }
                }
            }
            for &n in &publishers {
                for kind in &servers {
                    if *kind == ServerKind::Rtmplite && n > flags.rtmplite_max_players {
                        progress.step();
                        continue;
                    }
                    let what = format!("{} publishers={n} {}", scenario.name, kind.label());
                    progress.note(format!("repeat {} {what} ...", repeat + 1));
                    let point = measure::run_publishers_point(
                        kind, &bins, scenario, n, repeat, timing, clk_tck,
                    );
                    match point {
                        Ok(r) => {
                            if !r.is_complete() {
                                failures.push(format!(
                                    "{what} repeat {}: {} of {n} publishers published through \
                                     the window with every byte read by the server ({} of {} \
                                     window frames){}",
                                    repeat + 1,
                                    r.delivery.complete,
                                    r.delivery.min_received,
                                    r.delivery.sent,
                                    r.delivery
                                        .failure
                                        .as_ref()
                                        .map(|f| format!(" ({f})"))
                                        .unwrap_or_default()
                                ));
                            }
                            progress.note(format!(
                                "{what}: {:.2}% core, loader {:.1}%, publishers verified {}/{n}",
                                r.server_cpu, r.loader_cpu, r.delivery.complete
                            ));
                            results.push(r);
                        }
                        Err(e) => failures.push(format!("{what} repeat {}: {e}", repeat + 1)),
                    }
                    progress.step();
                }
            }
        }
    }
    // Quick mode's smoke test of the gateway: one call on mio (about 2 s).
    let mut gateway_points = Vec::new();
    let mio = ServerKind::Siprtmp("mio".into());
    if quick && servers.contains(&mio) {
        match gateway::sipp_available() {
            Err(e) => notes.push(format!("gateway point skipped: {e}")),
            Ok(()) => {
                progress.note("gateway calls=1 mio ...".into());
                let spec = gateway::PointSpec {
                    sipp_scenario: &flags.sipp_scenario,
                    codec: gateway::GatewayCodec::WIDEBAND,
                    media: &scenarios[0].media,
                    calls: 1,
                    repeat: 0,
                    timing,
                    clk_tck,
                    count_syscalls: false,
                };
                let point = gateway::run_point(&mio, &bins, &spec);
                match point {
                    Ok(p) if p.echo.all_at_least(gateway::MIN_ECHO) => gateway_points.push(p),
                    Ok(p) => {
                        failures.push(format!(
                            "mio gateway calls=1: {} of {} frames echoed{}",
                            p.echo.echoed(),
                            p.echo.sent(),
                            p.echo
                                .failure
                                .as_ref()
                                .map(|f| format!(" ({f})"))
                                .unwrap_or_default()
                        ));
                        gateway_points.push(p);
                    }
                    Err(e) => failures.push(format!("mio gateway calls=1: {e}")),
                }
            }
        }
    }
    progress.finish();

    let info = RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        servers: servers.iter().map(ServerKind::label).collect(),
        notes,
        scenarios,
        readers,
        players,
        publishers,
        repeats,
        timing,
        core_mhz,
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        sipp_scenario: flags
            .sipp_scenario
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    };
    std::fs::create_dir_all(&flags.out).map_err(|e| format!("{}: {e}", flags.out.display()))?;
    report::write_all(&flags.out, &info, &results, &failures)?;
    let publisher_lines = publisher_report::summary_lines(&info, &results);
    if !gateway_points.is_empty() {
        let wideband = gateway::GatewayCodec::WIDEBAND;
        let gw_info = RunInfo {
            servers: vec![mio.label()],
            scenarios: vec![Scenario {
                name: wideband.name(),
                description: format!("{} ({})", wideband.label(), wideband.media_file()),
                media: info.scenarios[0].media.clone(),
            }],
            ..info
        };
        let path = flags.out.join("report.md");
        let mut md = std::fs::read_to_string(&path).map_err(|e| format!("report.md: {e}"))?;
        md.push_str(&gateway_report::section(&gw_info, &[1], &gateway_points));
        std::fs::write(&path, md).map_err(|e| format!("report.md: {e}"))?;
        gateway_report::write_files(&flags.out, &gw_info, &[1], &gateway_points)?;
    }
    for line in publisher_lines {
        eprintln!("bench-compare: {line}");
    }
    eprintln!(
        "bench-compare: {} points in {:.0} s; report in {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        flags.out.join("report.md").display()
    );
    for f in &failures {
        eprintln!("bench-compare: FAILED {f}");
    }
    Ok(failures.is_empty())
}

fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}"))
}

/// A server of `--gateway`: siprtmp under a runtime (against sipp, or with `--srtp` against
/// the echo far end, plain or SRTP), or the kernel floor ([`floor`]).
enum GatewayServer {
    Siprtmp(ServerKind),
    Echo { kind: ServerKind, srtp: bool },
    Floor(floor::FloorKind),
}

impl GatewayServer {
    fn label(&self) -> String {
        match self {
            GatewayServer::Siprtmp(kind) => kind.label(),
            GatewayServer::Echo { kind, srtp: false } => kind.label(),
            GatewayServer::Echo { kind, srtp: true } => {
                format!("{}{}", kind.label(), srtp_echo::SRTP_SUFFIX)
            }
            GatewayServer::Floor(floor) => floor.label(),
        }
    }
}

/// `--gateway`: CPU per concurrent call for each siprtmp runtime (and the floor, if asked).
fn run_gateway(flags: Flags) -> Result<bool, String> {
    let quick = flags.quick;
    let calls = flags.calls.clone().unwrap_or_else(|| {
        if quick {
            vec![1, 10]
        } else {
            vec![1, 10, 100, 1000]
        }
    });
    let timing = Timing {
        warmup: secs(flags.warmup.unwrap_or(if quick { 0.4 } else { 3.0 }))?,
        window: secs(flags.window.unwrap_or(if quick { 1.2 } else { 10.0 }))?,
        setup_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(5),
    };
    let repeats = flags.repeats.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let codec_names = flags.codecs.clone().unwrap_or_else(|| {
        let all: &[&str] = if quick {
            &["wideband"]
        } else {
            &["wideband", "narrowband"]
        };
        all.iter().map(|s| s.to_string()).collect()
    });
    let mut codecs = Vec::new();
    let mut scenarios = Vec::new();
    for name in &codec_names {
        let codec = gateway::GatewayCodec::parse(name)?;
        let media = codec.load_media(&flags.media_dir)?;
        let far_end = codec.far_end(&flags.sipp_scenario);
        scenarios.push(Scenario {
            name: codec.name(),
            description: format!(
                "{} ({}; far end {})",
                codec.label(),
                codec.media_file(),
                far_end
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ),
            media: media.clone(),
        });
        codecs.push((codec, media, far_end));
    }
    if flags.srtp {
        if let Some((c, _, _)) = codecs.iter().find(|(c, _, _)| c.transcoded()) {
            return Err(format!(
                "--srtp: the echo far end answers the client's own codec; {} is transcoded",
                c.name()
            ));
        }
    }
    gateway::sipp_available()?;
    let bins = Binaries {
        siprtmp: match &flags.server_bin {
            Some(p) => p.clone(),
            None => default_server_bin()?,
        },
        baseline: flags.baseline_bin.clone(),
        nginx: None,
        rtmplite: None,
    };
    let mut notes = Vec::new();
    let (clk_tck, tick_note) = procstat::clock_ticks();
    notes.extend(tick_note);
    // Per call the server holds a TCP and five UDP sockets, the loader a TCP socket.
    let most = calls.iter().max().copied().unwrap_or(0) as u64;
    notes.extend(gateway::raise_fd_limit(most * 8 + 256));
    let (core_mhz, cpu_model) = procstat::core_mhz();
    let mut servers = Vec::new();
    for name in &flags.runtimes {
        if name == "nginx" {
            notes.push("nginx-rtmp skipped: it has no SIP gateway".into());
            continue;
        }
        if let Some(floor) = floor::FloorKind::parse(name) {
            servers.push(GatewayServer::Floor(floor));
            continue;
        }
        let kind = ServerKind::Siprtmp(name.clone());
        match server::start(&kind, &bins) {
            Ok(running) => {
                running.stop();
                if flags.srtp {
                    servers.push(GatewayServer::Echo {
                        kind: kind.clone(),
                        srtp: false,
                    });
                    servers.push(GatewayServer::Echo { kind, srtp: true });
                } else {
                    servers.push(GatewayServer::Siprtmp(kind));
                }
            }
            Err(e) => notes.push(format!("{} skipped: {e}", kind.label())),
        }
    }
    if servers.is_empty() {
        return Err("no server to measure".into());
    }
    // The floor passes the client's frames to the far end as they are: it has nothing to say
    // about a transcoded call.
    let floor_codec = |kind: &GatewayServer, codec: &gateway::GatewayCodec| {
        !(matches!(kind, GatewayServer::Floor(_)) && codec.transcoded())
    };
    if codecs
        .iter()
        .any(|(c, _, _)| servers.iter().any(|k| !floor_codec(k, c)))
    {
        notes.push(
            "the kernel floor is not measured with transcoded codecs (it does not transcode)"
                .into(),
        );
    }
    let total = repeats
        * calls.len()
        * codecs
            .iter()
            .map(|(c, _, _)| servers.iter().filter(|k| floor_codec(k, c)).count())
            .sum::<usize>();
    let mut points = Vec::with_capacity(total);
    let mut failures = Vec::new();
    let started = Instant::now();
    let progress = Progress::points(total);
    for repeat in 0..repeats {
        for (codec, media, far_end) in &codecs {
            for &n in &calls {
                for kind in servers.iter().filter(|k| floor_codec(k, codec)) {
                    progress.note(format!(
                        "repeat {} gateway {} calls={n} {} ...",
                        repeat + 1,
                        codec.name(),
                        kind.label()
                    ));
                    let spec = gateway::PointSpec {
                        sipp_scenario: far_end,
                        codec: *codec,
                        media,
                        calls: n,
                        repeat,
                        timing,
                        clk_tck,
                        count_syscalls: flags.syscalls,
                    };
                    let point = match kind {
                        GatewayServer::Siprtmp(kind) => gateway::run_point(kind, &bins, &spec),
                        GatewayServer::Echo { kind, srtp } => {
                            srtp_echo::run_point(kind, &bins, &spec, *srtp)
                        }
                        GatewayServer::Floor(floor) => floor::run_point(*floor, &spec),
                    };
                    match point {
                        Ok(p) => {
                            if !p.echo.all_at_least(gateway::MIN_ECHO) {
                                failures.push(format!(
                                    "{} calls={n} repeat {}: worst call got {:.1} % of its frames back ({} of {} in all){}",
                                    p.series(),
                                    repeat + 1,
                                    p.echo.worst_ratio() * 100.0,
                                    p.echo.echoed(),
                                    p.echo.sent(),
                                    p.echo.failure.as_ref().map(|f| format!(" ({f})")).unwrap_or_default()
                                ));
                            }
                            progress.note(format!(
                                "gateway calls={n} {}: {:.2}% core, sipp {:.1}%, loader {:.1}%, echoed {}/{}",
                                p.series(), p.server_cpu, p.sipp_cpu, p.loader_cpu, p.echo.echoed(), p.echo.sent()
                            ));
                            points.push(p);
                        }
                        Err(e) => failures.push(format!(
                            "{} {} calls={n} repeat {}: {e}",
                            kind.label(),
                            codec.name(),
                            repeat + 1
                        )),
                    }
                    progress.step();
                }
            }
        }
    }
    progress.finish();
    let info = RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        servers: servers.iter().map(GatewayServer::label).collect(),
        notes,
        scenarios,
        readers: vec![ReaderKind::Eager],
        players: Vec::new(),
        publishers: Vec::new(),
        repeats,
        timing,
        core_mhz,
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        sipp_scenario: flags
            .sipp_scenario
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    };
    std::fs::create_dir_all(&flags.out).map_err(|e| format!("{}: {e}", flags.out.display()))?;
    let mut md = String::from("# bench-compare --gateway: CPU per SIP-RTMP call\n\n");
    md.push_str(&format!("Command: `{}`\n\n", info.command));
    md.push_str(&format!(
        "Machine: {} logical CPU(s), {}, core clock {} (MHz-equivalent = % of one core x this clock).\n",
        info.cpus,
        info.cpu_model,
        info.core_mhz.map_or("unknown".into(), |m| format!("{m:.0} MHz"))
    ));
    for n in &info.notes {
        md.push_str(&format!("\n- {n}"));
    }
    md.push_str(&gateway_report::section(&info, &calls, &points));
    md.push_str(&srtp_report::section(&calls, &points));
    md.push_str(&report::failures_section(&failures));
    std::fs::write(flags.out.join("report.md"), md).map_err(|e| format!("report.md: {e}"))?;
    gateway_report::write_files(&flags.out, &info, &calls, &points)?;
    for line in gateway_report::summary_lines(&info, &calls, &points) {
        eprintln!("bench-compare: {line}");
    }
    eprintln!(
        "bench-compare: {} gateway points in {:.0} s; report in {}",
        points.len(),
        started.elapsed().as_secs_f64(),
        flags.out.join("report.md").display()
    );
    for f in &failures {
        eprintln!("bench-compare: FAILED {f}");
    }
    Ok(failures.is_empty())
}

/// `--relay`: per player count, the single siprtmp and then the origin with its edges, each
/// point on fresh processes (see [`relay`]).
fn run_relay(flags: Flags) -> Result<bool, String> {
    if flags.publishers.is_some() {
        return Err("--publishers is a series of the RTMP mode, not of --relay".into());
    }
    let RtmpPlan {
        players,
        timing,
        repeats,
        scenarios,
        readers,
        ..
    } = rtmp_plan(&flags, [vec![0, 4, 20], vec![0, 20, 100, 200]])?;
    if flags.edges == 0 {
        return Err("--edges must be at least 1".into());
    }
    let bins = Binaries {
        siprtmp: match &flags.server_bin {
            Some(p) => p.clone(),
            None => default_server_bin()?,
        },
        baseline: flags.baseline_bin.clone(),
        nginx: None,
        rtmplite: None,
    };
    // The first siprtmp of --runtimes (its options, e.g. `mio-merged`, apply to every process).
    let name = flags
        .runtimes
        .iter()
        .find(|n| *n != "nginx" && *n != "rtmplite3" && floor::FloorKind::parse(n).is_none())
        .cloned()
        .ok_or("--relay measures siprtmp: name a siprtmp runtime in --runtimes")?;
    let kind = ServerKind::Siprtmp(name);
    if kind.siprtmp_options().is_some_and(|o| o.tls) {
        return Err("--relay runs its load over RTMP: drop -tls".into());
    }
    server::start(&kind, &bins)?.stop();
    let labels = relay_report::RelayLabels {
        single: kind.label(),
        edges: relay::edges_label(&kind, flags.edges),
        origin: relay::origin_label(&kind),
        edge_count: flags.edges,
    };
    let mut notes = Vec::new();
    let (clk_tck, tick_note) = procstat::clock_ticks();
    notes.extend(tick_note);
    let (core_mhz, cpu_model) = procstat::core_mhz();
    if core_mhz.is_none() {
        notes.push("no \"cpu MHz\" in /proc/cpuinfo: MHz figures omitted".into());
    }
    notes.push(format!(
        "{}: one siprtmp --runtime {} serving the publisher and every player",
        labels.single,
        kind.siprtmp_options().map_or("?", |o| o.runtime)
    ));
    notes.push(format!(
        "{}: the CPU of {} edge(s) summed, each a siprtmp pulling the stream from the origin, \
         the players spread over them in turn; {}: the origin, with the publisher",
        labels.edges, flags.edges, labels.origin
    ));
    if players.iter().any(|&n| n > 0 && n < flags.edges) {
        notes.push(
            "at fewer players than edges, some edges have no player and do not pull: those \
             counts are left out of the origin's figure per edge"
                .into(),
        );
    }
    let most = players.iter().max().copied().unwrap_or(0) as u64;
    notes.extend(gateway::raise_fd_limit(most * 4 + 256));

    let total = repeats * scenarios.len() * readers.len() * players.len() * 2;
    let mut results: Vec<PointResult> = Vec::with_capacity(total / 2 * 3);
    let mut failures = Vec::new();
    let started = Instant::now();
    let progress = Progress::points(total);
    let check = |failures: &mut Vec<String>, r: &PointResult| {
        if !r.delivery.is_complete() {
            failures.push(format!(
                "{} {} {} N={} repeat {}: {} of {} players complete, fewest frames {} of {}{}",
                r.server,
                r.scenario,
                r.reader.name(),
                r.players,
                r.repeat + 1,
                r.delivery.complete,
                r.players,
                r.delivery.min_received,
                r.delivery.sent,
                r.delivery
                    .failure
                    .as_ref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            ));
        }
    };
    for repeat in 0..repeats {
        for scenario in &scenarios {
            for &reader in &readers {
                for &n in &players {
                    let what = format!("{} {} N={n}", scenario.name, reader.name());
                    progress.note(format!(
                        "repeat {} {what} {} ...",
                        repeat + 1,
                        labels.single
                    ));
                    match measure::run_point(
                        &kind, &bins, scenario, reader, n, repeat, timing, clk_tck,
                    ) {
                        Ok(r) => {
                            check(&mut failures, &r);
                            progress.note(format!(
                                "{what} {}: {:.2}% core, loader {:.1}%, frames {}/{}",
                                r.server,
                                r.server_cpu,
                                r.loader_cpu,
                                r.delivery.min_received,
                                r.delivery.sent
                            ));
                            results.push(r);
                        }
                        Err(e) => failures.push(format!(
                            "{} {what} repeat {}: {e}",
                            labels.single,
                            repeat + 1
                        )),
                    }
                    progress.step();
                    progress.note(format!("repeat {} {what} {} ...", repeat + 1, labels.edges));
                    let spec = relay::RelaySpec {
                        kind: &kind,
                        bins: &bins,
                        scenario,
                        reader,
                        edges: flags.edges,
                        timing,
                        clk_tck,
                    };
                    match relay::run_point(&spec, n, repeat) {
                        Ok(p) => {
                            check(&mut failures, &p.edges);
                            progress.note(format!(
                                "{what} {}: {:.2}% core, {}: {:.2}% core, loader {:.1}%, frames {}/{}",
                                p.edges.server,
                                p.edges.server_cpu,
                                p.origin.server,
                                p.origin.server_cpu,
                                p.edges.loader_cpu,
                                p.edges.delivery.min_received,
                                p.edges.delivery.sent
                            ));
                            results.push(p.edges);
                            results.push(p.origin);
                        }
                        Err(e) => failures.push(format!(
                            "{} {what} repeat {}: {e}",
                            labels.edges,
                            repeat + 1
                        )),
                    }
                    progress.step();
                }
            }
        }
    }
    progress.finish();
    let info = RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        servers: vec![
            labels.single.clone(),
            labels.edges.clone(),
            labels.origin.clone(),
        ],
        notes,
        scenarios,
        readers,
        players,
        publishers: Vec::new(),
        repeats,
        timing,
        core_mhz,
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        sipp_scenario: String::new(),
    };
    std::fs::create_dir_all(&flags.out).map_err(|e| format!("{}: {e}", flags.out.display()))?;
    report::write_all(&flags.out, &info, &results, &failures)?;
    let path = flags.out.join("report.md");
    let mut md = std::fs::read_to_string(&path).map_err(|e| format!("report.md: {e}"))?;
    md.push_str(&relay_report::section(&info, &labels, &results));
    std::fs::write(&path, md).map_err(|e| format!("report.md: {e}"))?;
    for line in relay_report::summary_lines(&info, &labels, &results) {
        eprintln!("bench-compare: {line}");
    }
    eprintln!(
        "bench-compare: {} points in {:.0} s; report in {}",
        results.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    for f in &failures {
        eprintln!("bench-compare: FAILED {f}");
    }
    Ok(failures.is_empty())
}

/// `--soak`: one server under calls and players for `--duration` (see [`soak`]).
fn run_soak(flags: Flags) -> Result<bool, String> {
    let calls = flags
        .calls
        .as_ref()
        .and_then(|c| c.first())
        .copied()
        .unwrap_or(300);
    let players = flags
        .players
        .as_ref()
        .and_then(|p| p.first())
        .copied()
        .unwrap_or(500);
    let runtime = flags
        .runtimes
        .first()
        .cloned()
        .unwrap_or_else(|| "mio".into());
    if runtime == "nginx" || runtime == "rtmplite3" || floor::FloorKind::parse(&runtime).is_some() {
        return Err(format!("--soak runs siprtmp, not {runtime}"));
    }
    let kind = ServerKind::Siprtmp(runtime);
    let scenario_name = flags
        .scenarios
        .as_ref()
        .and_then(|s| s.first())
        .cloned()
        .unwrap_or_else(|| "av".into());
    let scenario = load_scenario(&scenario_name, &flags.media_dir)?;
    let codec_name = flags
        .codecs
        .as_ref()
        .and_then(|c| c.first())
        .cloned()
        .unwrap_or_else(|| "wideband".into());
    let codec = gateway::GatewayCodec::parse(&codec_name)?;
    let call_media = codec.load_media(&flags.media_dir)?;
    let far_end = codec.far_end(&flags.sipp_scenario);
    gateway::sipp_available()?;
    let bins = Binaries {
        siprtmp: match &flags.server_bin {
            Some(p) => p.clone(),
            None => default_server_bin()?,
        },
        baseline: flags.baseline_bin.clone(),
        nginx: None,
        rtmplite: None,
    };
    if let Some(note) = gateway::raise_fd_limit(calls as u64 * 8 + players as u64 * 2 + 256) {
        eprintln!("bench-compare: {note}");
    }
    let (clk_tck, _) = procstat::clock_ticks();
    let spec = soak::SoakSpec {
        kind: &kind,
        bins: &bins,
        sipp_scenario: &far_end,
        codec,
        call_media,
        scenario: &scenario,
        calls,
        players,
        duration: secs(flags.duration)?,
        setup_timeout: Duration::from_secs(120),
        drain_timeout: Duration::from_secs(10),
        clk_tck,
    };
    eprintln!(
        "bench-compare: soak of {} with {calls} calls and {players} players for {:.0} s (load averages {})",
        kind.label(),
        flags.duration,
        procstat::load_average()
    );
    let result = soak::run(&spec)?;
    std::fs::create_dir_all(&flags.out).map_err(|e| format!("{}: {e}", flags.out.display()))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    soak::write_files(&flags.out, &command, &spec, flags.settle, &result)?;
    let (rss, fds, flat) = soak::flat(&result, flags.settle);
    let delivered = soak::delivered_all(&result);
    if let (Some(rss), Some(fds)) = (rss, fds) {
        eprintln!(
            "bench-compare: from {:.0} s on, VmRSS {:+.1} KiB/min (max - min {:.0} KiB), descriptors {:+.3}/min (max - min {:.0}); {}; {}; report in {}",
            flags.settle,
            rss.per_minute,
            rss.max - rss.min,
            fds.per_minute,
            fds.max - fds.min,
            if flat { "flat" } else { "NOT FLAT" },
            if delivered { "every frame delivered" } else { "FRAMES MISSING" },
            flags.out.join("report.md").display()
        );
    }
    Ok(flat && delivered)
}

/// What an RTMP run (`--relay` or the default mode) measures, from the flags and the mode's
/// default player counts (`[quick, full]`).
struct RtmpPlan {
    players: Vec<usize>,
    /// Publisher counts of the publisher series (empty: none).
    publishers: Vec<usize>,
    timing: Timing,
    repeats: usize,
    scenarios: Vec<Scenario>,
    readers: Vec<ReaderKind>,
}

fn rtmp_plan(flags: &Flags, default_players: [Vec<usize>; 2]) -> Result<RtmpPlan, String> {
    let quick = flags.quick;
    let [quick_players, full_players] = default_players;
    let publishers = flags.publishers.clone().unwrap_or_default();
    // A publisher series alone measures no player unless players are asked for too.
    let players = match (&flags.players, &flags.publishers) {
        (Some(p), _) => p.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) if quick => quick_players,
        (None, None) => full_players,
    };
    let timing = Timing {
        warmup: secs(flags.warmup.unwrap_or(if quick { 0.4 } else { 3.0 }))?,
        window: secs(flags.window.unwrap_or(if quick { 1.2 } else { 10.0 }))?,
        setup_timeout: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(5),
    };
    let repeats = flags.repeats.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let scenario_names = flags.scenarios.clone().unwrap_or_else(|| {
        if quick {
            vec!["audio".into()]
        } else {
            vec!["audio".into(), "av".into()]
        }
    });
    let scenarios = scenario_names
        .iter()
        .map(|n| load_scenario(n, &flags.media_dir))
        .collect::<Result<Vec<_>, _>>()?;
    let readers = flags
        .readers
        .iter()
        .map(|r| match r.as_str() {
            "reader" => Ok(ReaderKind::Eager),
            "bulk" => Ok(ReaderKind::Bulk),
            other => Err(format!("unknown reader kind {other:?} (reader, bulk)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RtmpPlan {
        players,
        publishers,
        timing,
        repeats,
        scenarios,
        readers,
    })
}
