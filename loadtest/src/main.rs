//! # relaycast-load — load and benchmark tool
//!
//! One process plays a synthetic WHIP publisher (pre-encoded H.264, rid-based
//! simulcast q/h/f or one 720p layer, every frame stamped with its send time
//! in an SEI NAL unit) and N lean WHEP viewers (str0m, one `Rtc` and one UDP
//! socket each, no decoding), ramped up at a fixed rate. It reports join
//! time, forwarding delay (one clock: the same process sends and receives),
//! loss and freezes per viewer, and what the server spent: CPU and RSS from
//! `/proc/<pid>`, packets from its `/metrics`.
//!
//! ## Run loop
//! Encoding happens once, before anything is measured. The publisher runs on
//! its own thread (`publisher`); viewers are tokio tasks on a small runtime
//! (`viewers-N` threads, `--load-threads`). Every session is a thin loop over
//! its socket and its `Rtc` timeout, draining `poll_output` after each input.
//!
//! ## Timeline
//! publisher connects → viewers start at `--ramp-per-sec` → `--settle` →
//! steady window of `--duration` (CPU, packets) → stop, DELETE everything.
//! `--viewers 0` only publishes (for viewers from another tool).
//!
//! ## Other servers
//! `--whip-url` and `--whep-url` take any server's full endpoints instead of
//! relaycast's `/whip/NAME` and `/whep/NAME`; without `--key` the publisher
//! sends no credential. The publisher sends one layer with `--no-simulcast`,
//! and viewers never offer a data channel (SRS refuses both simulcast and
//! data channels). Packets are counted where they can be: by the server's
//! own `relaycast_udp_packets_out_total` when its `/metrics` has it, else at
//! the viewers (RTP datagrams they received); `--count-packets` forces
//! either, and the report says which it used.
//!
//! ## The floor
//! `relaycast-load floor` sends the same 720p packets to N draining sockets
//! doing only the irreducible work per packet (RTP header, SRTP
//! AES-128-GCM, GSO send) and reports its CPU per packet: the yardstick a
//! server's µs per packet is divided by (`floor` module).

mod floor;
mod gso_sender;
mod impair;
mod probe;
mod publisher;
mod received;
mod report;
mod rtc_driver;
mod sei;
mod source;
mod spawn;
mod srtp_gcm;
mod stats;
mod viewer;
mod whip;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::{oneshot, watch};

use crate::impair::ImpairmentConfig;
use crate::probe::Metrics;
use crate::received::Received;
use crate::report::{
    LayerInfo, LoadToolSection, Machine, PacketCount, PerViewer, PublisherSection, Report,
    RunConfig, ServerDelay, ServerSection, SteadyWindow, ViewerSection,
};
use crate::stats::Summary;
use crate::viewer::{ViewerConfig, ViewerResult};

/// Where a relaycast server is looked for when nothing else says.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// The counter a relaycast `/metrics` page is recognised by.
const PACKETS_OUT: &str = "relaycast_udp_packets_out_total";

#[derive(Debug, Parser)]
#[command(
    name = "relaycast-load",
    version,
    about = "Load a WebRTC server: one synthetic WHIP publisher, N WHEP viewers; report delay, loss, joins and server CPU",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The floor: the same 720p packets to N draining sockets with only the
    /// irreducible work per packet (RTP header, SRTP AES-128-GCM, GSO send);
    /// reports CPU per packet.
    Floor(FloorArgs),
}

#[derive(Debug, clap::Args)]
struct FloorArgs {
    /// Receiving sockets (viewers).
    #[arg(long, default_value_t = 200)]
    viewers: usize,
    /// Sending sockets, one thread each (default: one per core, as
    /// relaycast's media workers).
    #[arg(long)]
    sockets: Option<usize>,
    /// Length of the measured window.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Sending before the window opens.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    settle: Duration,
    /// Leave out the transport-wide sequence number extension (a viewer
    /// that runs no bandwidth estimator: 20-byte RTP header, not 24).
    #[arg(long)]
    no_twcc: bool,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

/// Where packets are counted for the CPU-per-packet figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CountPackets {
    /// The server's `/metrics` if it is relaycast's, else the viewers.
    Auto,
    /// relaycast's `relaycast_udp_packets_out_total` (fails without it).
    Server,
    /// RTP datagrams received by this tool's viewers.
    Viewers,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Base URL of the server: relaycast's WHIP/WHEP paths and `/metrics`
    /// are under it (default http://127.0.0.1:8080, or the origin of
    /// --whep-url/--whip-url when given; ignored with --spawn-server).
    #[arg(long)]
    url: Option<String>,
    /// Full WHIP endpoint of any server (e.g. SRS's
    /// `http://127.0.0.1:1985/rtc/v1/whip/?app=live&stream=NAME`), instead
    /// of URL/whip/STREAM.
    #[arg(long, conflicts_with = "spawn_server")]
    whip_url: Option<String>,
    /// Full WHEP endpoint of any server, instead of URL/whep/STREAM.
    #[arg(long, conflicts_with = "spawn_server")]
    whep_url: Option<String>,
    /// Stream name.
    #[arg(long, default_value = "load")]
    stream: String,
    /// Stream key (publish credential, sent as a bearer token); not needed
    /// with --spawn-server, nor with --whip-url for a server without auth.
    #[arg(long, env = "RELAYCAST_LOAD_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Play token for private streams.
    #[arg(long)]
    token: Option<String>,
    /// Number of WHEP viewers (0: only publish, for `--duration`).
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Viewers started per second.
    #[arg(long, default_value_t = 20.0)]
    ramp_per_sec: f64,
    /// Length of the steady window after the ramp (e.g. 60s, 2m, 500ms).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Wait after the last viewer started before the steady window opens.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    settle: Duration,
    /// Publish alone this long before the first viewer starts and the
    /// server's starting RSS is read. The server's own per-stream state
    /// grows for a while after a publisher connects (relaycast's LL-HLS
    /// packager keeps a 40 s window of the source); without a warm-up that
    /// growth is counted in the RSS per viewer.
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Include one entry per viewer in the JSON.
    #[arg(long)]
    per_viewer: bool,
    /// Publish three rid layers q/h/f (default).
    #[arg(long = "simulcast", overrides_with = "no_simulcast")]
    _simulcast: bool,
    /// Publish one 1280x720 layer without rids.
    #[arg(long = "no-simulcast")]
    no_simulcast: bool,
    /// PID of the server process (CPU and RSS are read from /proc/PID).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Find the server PID by a substring of its command line.
    #[arg(long, conflicts_with = "server_pid")]
    server_cmd: Option<String>,
    /// Start `PATH serve` on a temporary data dir with OS-chosen loopback ports.
    #[arg(long, value_name = "PATH_TO_RELAYCAST")]
    spawn_server: Option<PathBuf>,
    /// Viewer side: drop this percentage of incoming media datagrams.
    #[arg(long, default_value_t = 0.0)]
    drop_percent: f64,
    /// Viewer side: drop incoming media above this rate (token bucket).
    #[arg(long)]
    cap_kbps: Option<u64>,
    /// Runtime threads for the viewers.
    #[arg(long, default_value_t = 2)]
    load_threads: usize,
    /// Where packets are counted for the server's CPU per packet.
    #[arg(long, value_enum, default_value_t = CountPackets::Auto)]
    count_packets: CountPackets,
}

/// Parses `60`, `60s`, `500ms`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("duration must be positive".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Floor(args)) => floor_main(&args),
        None => run_main(&cli.run),
    }
}

fn floor_main(args: &FloorArgs) -> Result<()> {
    let cfg = floor::FloorConfig {
        viewers: args.viewers,
        sockets: args
            .sockets
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        settle: args.settle,
        duration: args.duration,
        twcc: !args.no_twcc,
    };
    let report = floor::run(&cfg)?;
    print_report(&report.table(), &report, args.json)
}

fn run_main(cli: &RunArgs) -> Result<()> {
    if cli.ramp_per_sec.is_nan() || cli.ramp_per_sec <= 0.0 {
        bail!("--ramp-per-sec must be positive");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.load_threads.max(1))
        .thread_name_fn(|| {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            format!(
                "viewers-{}",
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        })
        .enable_all()
        .build()
        .context("building the runtime")?;
    let report = rt.block_on(run(cli))?;
    print_report(&report.table(), &report, cli.json)
}

/// Prints a report's table, or with `--json` the JSON on stdout and the
/// table on stderr.
fn print_report(table: &str, report: &impl serde::Serialize, json: bool) -> Result<()> {
    if json {
        eprint!("{table}");
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("serialising the report")?
        );
    } else {
        print!("{table}");
    }
    Ok(())
}

/// A point in time with what the server had spent by then.
struct Snapshot {
    at: Instant,
    cpu: Option<f64>,
    rss: Option<u64>,
    metrics: Result<Metrics, String>,
    /// RTP (packets, bytes) received so far by all viewers.
    at_viewers: (u64, u64),
    own_cpu: Option<f64>,
    rcvbuf_errors: Option<u64>,
}

async fn snapshot(
    http: &reqwest::Client,
    metrics_base: &str,
    pid: Option<u32>,
    viewers: &[Arc<Received>],
) -> Snapshot {
    let metrics = probe::fetch_metrics(http, metrics_base)
        .await
        .map_err(|e| format!("{e:#}"))
        .and_then(|m| {
            if m.get(PACKETS_OUT).is_some() {
                Ok(m)
            } else {
                Err(format!(
                    "{metrics_base}/metrics has no {PACKETS_OUT} (not relaycast)"
                ))
            }
        });
    Snapshot {
        at: Instant::now(),
        cpu: pid.and_then(|p| probe::cpu_seconds(p).ok()),
        rss: pid.and_then(|p| probe::rss_kib(p).ok()),
        metrics,
        at_viewers: received::total(viewers),
        own_cpu: probe::cpu_seconds(std::process::id()).ok(),
        rcvbuf_errors: probe::udp_rcvbuf_errors(),
    }
}

/// Where the run publishes, plays, and reads the server's counters.
struct Endpoints {
    whip: String,
    whep: String,
    /// `/metrics` is looked for under it.
    base: String,
}

impl Endpoints {
    fn new(cli: &RunArgs, spawned: Option<&spawn::SpawnedServer>) -> Result<Endpoints> {
        let base = match (
            spawned,
            &cli.url,
            cli.whep_url.as_ref().or(cli.whip_url.as_ref()),
        ) {
            (Some(s), _, _) => s.base_url.clone(),
            (None, Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, None, Some(endpoint)) => whip::origin(endpoint)?,
            (None, None, None) => DEFAULT_URL.to_string(),
        };
        Ok(Endpoints {
            whip: cli
                .whip_url
                .clone()
                .unwrap_or_else(|| format!("{base}/whip/{}", cli.stream)),
            whep: cli
                .whep_url
                .clone()
                .unwrap_or_else(|| format!("{base}/whep/{}", cli.stream)),
            base,
        })
    }
}

async fn run(cli: &RunArgs) -> Result<Report> {
    let simulcast = !cli.no_simulcast;
    let spawned = match &cli.spawn_server {
        Some(path) => {
            let s = spawn::SpawnedServer::start(path, &cli.stream)?;
            eprintln!("spawned relaycast (pid {}) at {}", s.pid, s.base_url);
            Some(s)
        }
        None => None,
    };
    let endpoints = Endpoints::new(cli, spawned.as_ref())?;
    let key = match (&spawned, &cli.key, &cli.whip_url) {
        (Some(s), _, _) => Some(s.key.clone()),
        (None, Some(k), _) => Some(k.clone()),
        // Another server's endpoint: publish without a credential.
        (None, None, Some(_)) => None,
        (None, None, None) => {
            bail!("--key (or RELAYCAST_LOAD_KEY) is needed unless --spawn-server or --whip-url")
        }
    };
    let pid = match (&spawned, cli.server_pid, &cli.server_cmd) {
        (Some(s), _, _) => Some(s.pid),
        (None, Some(p), _) => Some(p),
        (None, None, Some(cmd)) => Some(probe::find_pid(cmd)?),
        (None, None, None) => {
            eprintln!("no --server-pid/--server-cmd: server CPU and RSS are not reported");
            None
        }
    };
    let result = drive(cli, simulcast, &endpoints, key, pid).await;
    if let (Err(_), Some(s)) = (&result, &spawned) {
        eprintln!("server log (tail):\n{}", s.log_tail());
    }
    let mut report = result?;
    report.config.spawned_server = spawned.is_some();
    Ok(report)
}

async fn drive(
    cli: &RunArgs,
    simulcast: bool,
    endpoints: &Endpoints,
    key: Option<String>,
    pid: Option<u32>,
) -> Result<Report> {
    let base = endpoints.base.as_str();
    let http = whip::client()?;

    // 1. Encode once, before anything is measured.
    let encode_start = Instant::now();
    let layers = tokio::task::spawn_blocking(|| source::encode_layers(&source::SIMULCAST))
        .await
        .context("encoder task")??;
    let encode_s = encode_start.elapsed().as_secs_f64();
    let layer_info: Vec<LayerInfo> = layers
        .iter()
        .filter(|l| simulcast || l.spec.width == 1280)
        .map(|l| LayerInfo {
            rid: l.spec.rid.to_string(),
            width: l.spec.width,
            height: l.spec.height,
            target_kbps: l.spec.bitrate_bps / 1000,
            actual_kbps: l.bytes_per_loop() as f64 * 8.0 / source::GOP.as_secs_f64() / 1000.0,
            keyframe_bytes: l.frames.first().map_or(0, |f| f.len()),
        })
        .collect();
    eprintln!("encoded {} layers in {encode_s:.1} s", layers.len());
    let layers = Arc::new(layers);

    // 2. Publisher, on its own thread.
    let epoch = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (connected_tx, connected_rx) = oneshot::channel();
    let pub_cfg = publisher::PublisherConfig {
        whip_url: endpoints.whip.clone(),
        key,
        simulcast,
        layers,
        epoch,
    };
    let pub_stop = stop_rx.clone();
    let publisher_thread = std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("publisher runtime")?;
            rt.block_on(publisher::run(pub_cfg, connected_tx, pub_stop))
        })
        .context("starting the publisher thread")?;
    match tokio::time::timeout(publisher::CONNECT_TIMEOUT, connected_rx).await {
        Ok(Ok(())) => {}
        _ => {
            let _ = stop_tx.send(true);
            let err = match publisher_thread.join() {
                Ok(Err(e)) => format!("{e:#}"),
                _ => "timed out".into(),
            };
            bail!("the publisher did not connect: {err}");
        }
    }
    eprintln!("publisher connected");
    let warmup = cli.warmup.unwrap_or_default();
    if !warmup.is_zero() {
        eprintln!("warming up for {warmup:?} before the viewers");
    }
    tokio::time::sleep(Duration::from_millis(500).max(warmup)).await;
    let received: Vec<Arc<Received>> = (0..cli.viewers)
        .map(|_| Arc::new(Received::default()))
        .collect();
    let start = snapshot(&http, base, pid, &received).await;

    // RSS peak sampler.
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(start.rss.unwrap_or(0)));
    let sampler = pid.map(|pid| {
        let peak = peak.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(kib) = probe::rss_kib(pid) {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        })
    });

    // 3. Ramp viewers up.
    let impairment = ImpairmentConfig {
        drop_percent: cli.drop_percent,
        cap_kbps: cli.cap_kbps,
    };
    let ramp_start = Instant::now();
    let mut handles = Vec::with_capacity(cli.viewers);
    for (id, counter) in received.iter().enumerate() {
        let due = ramp_start + Duration::from_secs_f64(id as f64 / cli.ramp_per_sec);
        tokio::time::sleep_until(due.into()).await;
        let cfg = ViewerConfig {
            id,
            whep_url: endpoints.whep.clone(),
            token: cli.token.clone(),
            epoch,
            impairment,
            http: http.clone(),
            received: counter.clone(),
        };
        handles.push(tokio::spawn(viewer::run(cfg, stop_rx.clone())));
    }
    eprintln!(
        "{} viewers started in {:.1} s",
        cli.viewers,
        ramp_start.elapsed().as_secs_f64()
    );
    tokio::time::sleep(cli.settle).await;

    // 4. Steady window.
    let steady_start = snapshot(&http, base, pid, &received).await;
    tokio::time::sleep(cli.duration).await;
    let end = snapshot(&http, base, pid, &received).await;
    let own_threads = probe::cpu_by_thread_name(std::process::id());
    // Read while every socket is still open.
    let server_socket_drops = pid.and_then(probe::udp_socket_drops);
    let load_socket_drops = probe::udp_socket_drops(std::process::id());

    // 5. Stop and collect.
    let _ = stop_tx.send(true);
    let mut results: Vec<ViewerResult> = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await.context("viewer task panicked")?);
    }
    let publisher_report = match publisher_thread.join() {
        Ok(r) => r?,
        Err(_) => bail!("publisher thread panicked"),
    };
    if let Some(s) = sampler {
        let _ = s.await;
    }

    let rids: Vec<String> = report_rids(&layer_info);
    let viewers = summarise_viewers(&results, end.at, &rids);
    let delays: Vec<u32> = results
        .iter()
        .flat_map(|r| r.tracker.delays_us.iter().copied())
        .collect();
    let join_ms = Summary::from_durations(results.iter().filter_map(|r| r.tracker.join_time()));
    let per_viewer = cli
        .per_viewer
        .then(|| results.iter().map(per_viewer).collect());

    let server = match pid {
        Some(pid) => {
            let mut section = server_section(
                pid,
                &start,
                &steady_start,
                &end,
                peak.load(std::sync::atomic::Ordering::Relaxed),
                viewers.joined.max(1),
                cli.count_packets,
            )?;
            section.udp_socket_drops = server_socket_drops;
            Some(section)
        }
        None => None,
    };
    let steady_s = end.at.duration_since(steady_start.at).as_secs_f64();
    let own_steady = end.own_cpu.zip(steady_start.own_cpu).map(|(e, s)| e - s);
    Ok(Report {
        config: RunConfig {
            url: base.to_string(),
            whip_url: endpoints.whip.clone(),
            whep_url: endpoints.whep.clone(),
            stream: cli.stream.clone(),
            viewers: cli.viewers,
            ramp_per_sec: cli.ramp_per_sec,
            duration_s: cli.duration.as_secs_f64(),
            settle_s: cli.settle.as_secs_f64(),
            warmup_s: cli.warmup.unwrap_or_default().as_secs_f64(),
            simulcast,
            drop_percent: cli.drop_percent,
            cap_kbps: cli.cap_kbps,
            load_threads: cli.load_threads,
            spawned_server: false,
        },
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            }),
        },
        publisher: PublisherSection {
            layers: layer_info,
            encode_s,
            run: publisher_report,
        },
        viewers,
        delay_ms: Summary::from_us(delays),
        join_ms,
        server,
        load_tool: LoadToolSection {
            steady_cpu_s: own_steady,
            steady_cpu_percent: own_steady.map(|c| c / steady_s * 100.0),
            threads_cpu_s: own_threads,
            process_cpu_s: end.own_cpu,
            udp_socket_drops: load_socket_drops,
        },
        per_viewer,
    })
}

/// Layer index (as stamped) → rid.
fn report_rids(layers: &[LayerInfo]) -> Vec<String> {
    layers.iter().map(|l| l.rid.clone()).collect()
}

fn summarise_viewers(results: &[ViewerResult], end: Instant, rids: &[String]) -> ViewerSection {
    let mut v = ViewerSection {
        requested: results.len(),
        frames_min: u64::MAX,
        ..ViewerSection::default()
    };
    let mut connects = Vec::new();
    for r in results {
        let t = &r.tracker;
        if r.error.is_none() {
            v.sessions_created += 1;
        }
        if let Some(e) = &r.error {
            *v.errors.entry(e.clone()).or_insert(0) += 1;
        }
        let joined = t.joined.is_some();
        if joined {
            v.joined += 1;
        } else {
            v.never_joined += 1;
        }
        if r.disconnected {
            v.disconnected += 1;
        }
        if !joined || r.disconnected {
            v.lost_viewers += 1;
        }
        if joined
            && t.last_frame_at()
                .is_none_or(|at| end.saturating_duration_since(at) > Duration::from_secs(1))
        {
            v.stalled_at_end += 1;
        }
        if t.frames > 0 {
            v.with_frames += 1;
        }
        v.frames_total += t.frames;
        v.frames_min = v.frames_min.min(t.frames);
        v.lost_frames += t.lost;
        v.freezes += t.freezes;
        if t.freezes > 0 {
            v.viewers_with_freezes += 1;
        }
        v.frozen_s_total += t.frozen.as_secs_f64();
        v.longest_gap_ms = v.longest_gap_ms.max(t.longest_gap.as_secs_f64() * 1000.0);
        v.unstamped_frames += t.unstamped;
        v.catch_up_frames += t.catch_up;
        v.layer_switches += t.layer_switches;
        for (i, n) in t
            .frames_by_layer
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
        {
            let rid = rids.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
            *v.frames_by_layer.entry(rid).or_insert(0) += n;
        }
        v.impairment_drops += r.impairment_drops;
        v.datagrams += r.datagrams;
        connects.extend(r.connected_after);
    }
    if results.is_empty() {
        v.frames_min = 0;
    }
    v.frames_mean = v.frames_total as f64 / results.len().max(1) as f64;
    let expected = v.frames_total + v.lost_frames;
    v.loss_percent = if expected == 0 {
        0.0
    } else {
        v.lost_frames as f64 * 100.0 / expected as f64
    };
    v.connect_ms = Summary::from_durations(connects);
    v
}

fn per_viewer(r: &ViewerResult) -> PerViewer {
    let s = Summary::from_us(r.tracker.delays_us.clone());
    PerViewer {
        id: r.id,
        join_ms: r.tracker.join_time().map(|d| d.as_secs_f64() * 1000.0),
        frames: r.tracker.frames,
        lost_frames: r.tracker.lost,
        freezes: r.tracker.freezes,
        delay_p50_ms: s.map(|s| s.p50_ms),
        delay_p99_ms: s.map(|s| s.p99_ms),
        disconnected: r.disconnected,
        error: r.error.clone(),
    }
}

fn server_section(
    pid: u32,
    start: &Snapshot,
    steady: &Snapshot,
    end: &Snapshot,
    peak_rss: u64,
    viewers: usize,
    count: CountPackets,
) -> Result<ServerSection> {
    let seconds = end.at.duration_since(steady.at).as_secs_f64();
    let cpu_s = end.cpu.zip(steady.cpu).map(|(e, s)| e - s);
    let (packets, bytes, metrics_error) = match (&steady.metrics, &end.metrics) {
        (Ok(s), Ok(e)) => (
            e.delta(s, PACKETS_OUT),
            e.delta(s, "relaycast_udp_bytes_out_total"),
            None,
        ),
        (Err(err), _) | (_, Err(err)) => (None, None, Some(err.clone())),
    };
    let at_viewers = end.at_viewers.0.saturating_sub(steady.at_viewers.0) as f64;
    let at_viewers_bytes = end.at_viewers.1.saturating_sub(steady.at_viewers.1) as f64;
    let counted_at = match (count, packets) {
        (CountPackets::Server, None) => bail!(
            "--count-packets server: no relaycast /metrics ({})",
            metrics_error.as_deref().unwrap_or("no packet counter")
        ),
        (CountPackets::Server, Some(_)) | (CountPackets::Auto, Some(_)) => {
            PacketCount::ServerMetrics
        }
        (CountPackets::Viewers, _) | (CountPackets::Auto, None) => PacketCount::Viewers,
    };
    let counted = match counted_at {
        PacketCount::ServerMetrics => packets,
        PacketCount::Viewers => Some(at_viewers),
    };
    let mut metric_deltas = BTreeMap::new();
    if let (Ok(s), Ok(e)) = (&start.metrics, &end.metrics) {
        for (series, value) in &e.0 {
            let counter = series.contains("_total");
            if counter {
                metric_deltas.insert(series.clone(), value - s.get(series).unwrap_or(0.0));
            }
        }
    }
    let per_packet = cpu_s.zip(counted).filter(|(_, p)| *p > 0.0);
    let per_viewer_packet = cpu_s.filter(|_| at_viewers > 0.0);
    Ok(ServerSection {
        pid,
        cpu_s_total: end.cpu.zip(start.cpu).map(|(e, s)| e - s),
        rss_kib_start: start.rss,
        rss_kib_end: end.rss,
        rss_kib_peak: Some(peak_rss.max(end.rss.unwrap_or(0))).filter(|p| *p > 0),
        rss_kib_per_viewer: end
            .rss
            .zip(start.rss)
            .map(|(e, s)| (e as f64 - s as f64) / viewers as f64),
        steady: SteadyWindow {
            seconds,
            cpu_s,
            cpu_percent: cpu_s.map(|c| c / seconds * 100.0),
            cpu_ms_per_viewer_per_s: cpu_s.map(|c| c * 1000.0 / viewers as f64 / seconds),
            packets_counted_at: counted_at,
            packets_out: packets,
            packets_out_per_s: packets.map(|p| p / seconds),
            packets_per_cpu_s: per_packet.map(|(c, p)| p / c),
            cpu_us_per_packet: per_packet.map(|(c, p)| c * 1e6 / p),
            mbit_out_per_s: bytes.map(|b| b * 8.0 / seconds / 1e6),
            viewer_rtp_packets: at_viewers,
            viewer_rtp_packets_per_s: at_viewers / seconds,
            viewer_rtp_mbit_per_s: at_viewers_bytes * 8.0 / seconds / 1e6,
            cpu_us_per_viewer_packet: per_viewer_packet.map(|c| c * 1e6 / at_viewers),
        },
        metric_deltas,
        metrics_error,
        system_udp_rcvbuf_errors: end
            .rcvbuf_errors
            .zip(start.rcvbuf_errors)
            .map(|(e, s)| e.saturating_sub(s)),
        udp_socket_drops: None,
        forward_delay_ms: match (&steady.metrics, &end.metrics) {
            (Ok(s), Ok(e)) => e
                .histogram_since(s, "relaycast_forward_delay_seconds")
                .map(|h| ServerDelay {
                    frames: h.count,
                    mean_ms: h.mean * 1000.0,
                    p50_ms: h.p50 * 1000.0,
                    p95_ms: h.p95 * 1000.0,
                    p99_ms: h.p99 * 1000.0,
                }),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
