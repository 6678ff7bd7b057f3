//! The run's result: one serialisable struct (the `--json` output) and its
//! human-readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::publisher::PublisherReport;
use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct Report {
    pub config: RunConfig,
    pub machine: Machine,
    pub publisher: PublisherSection,
    pub viewers: ViewerSection,
    /// Publisher write → viewer has the whole frame, over all stamped frames
    /// of all viewers after their join.
    pub delay_ms: Option<Summary>,
    /// WHEP POST → first keyframe, over joined viewers.
    pub join_ms: Option<Summary>,
    pub server: Option<ServerSection>,
    pub load_tool: LoadToolSection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_viewer: Option<Vec<PerViewer>>,
}

#[derive(Debug, Serialize)]
pub struct RunConfig {
    /// Base URL (`/metrics` under it).
    pub url: String,
    pub whip_url: String,
    pub whep_url: String,
    pub stream: String,
    pub viewers: usize,
    pub ramp_per_sec: f64,
    pub duration_s: f64,
    pub settle_s: f64,
    /// Publisher alone before the viewers and the starting RSS.
    pub warmup_s: f64,
    pub simulcast: bool,
    pub drop_percent: f64,
    pub cap_kbps: Option<u64>,
    pub load_threads: usize,
    pub spawned_server: bool,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LayerInfo {
    pub rid: String,
    pub width: usize,
    pub height: usize,
    pub target_kbps: u32,
    /// Encoded rate of the looped GOP.
    pub actual_kbps: f64,
    pub keyframe_bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct PublisherSection {
    pub layers: Vec<LayerInfo>,
    pub encode_s: f64,
    #[serde(flatten)]
    pub run: PublisherReport,
}

#[derive(Debug, Default, Serialize)]
pub struct ViewerSection {
    pub requested: usize,
    /// WHEP POST answered 201.
    pub sessions_created: usize,
    /// Received a keyframe.
    pub joined: usize,
    pub never_joined: usize,
    /// Session died before the end.
    pub disconnected: usize,
    /// Never joined or disconnected (each viewer counted once).
    pub lost_viewers: usize,
    /// Joined, but no frame in the last second of the run.
    pub stalled_at_end: usize,
    pub with_frames: usize,
    pub frames_total: u64,
    pub frames_min: u64,
    pub frames_mean: f64,
    /// Frames missing from the SEI sequence numbers.
    pub lost_frames: u64,
    pub loss_percent: f64,
    pub freezes: u64,
    pub viewers_with_freezes: usize,
    pub frozen_s_total: f64,
    pub longest_gap_ms: f64,
    pub unstamped_frames: u64,
    /// Frames replayed from the server's GOP cache at join (excluded from
    /// the forwarding delay).
    pub catch_up_frames: u64,
    pub layer_switches: u64,
    /// Frames received per publisher layer (rid): which layer the server forwarded.
    pub frames_by_layer: BTreeMap<String, u64>,
    pub connect_ms: Option<Summary>,
    pub impairment_drops: u64,
    pub datagrams: u64,
    /// Distinct errors (POST refused, …) with how many viewers hit each.
    pub errors: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct PerViewer {
    pub id: usize,
    pub join_ms: Option<f64>,
    pub frames: u64,
    pub lost_frames: u64,
    pub freezes: u64,
    pub delay_p50_ms: Option<f64>,
    pub delay_p99_ms: Option<f64>,
    pub disconnected: bool,
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ServerSection {
    pub pid: u32,
    /// Server CPU over the whole run (publisher connected → end).
    pub cpu_s_total: Option<f64>,
    pub rss_kib_start: Option<u64>,
    pub rss_kib_end: Option<u64>,
    pub rss_kib_peak: Option<u64>,
    /// (end − start) / viewers.
    pub rss_kib_per_viewer: Option<f64>,
    /// The steady window: all viewers started, `duration` long.
    pub steady: SteadyWindow,
    /// Counter increases over the whole run, from `/metrics`.
    pub metric_deltas: BTreeMap<String, f64>,
    pub metrics_error: Option<String>,
    /// Datagrams the kernel dropped on full socket receive buffers during
    /// the run, system-wide (server and this tool).
    pub system_udp_rcvbuf_errors: Option<u64>,
    /// Datagrams dropped on the server's own full socket buffers (its read
    /// loop fell behind: publisher packets lost on ingest), at the end.
    pub udp_socket_drops: Option<u64>,
    /// The delay the server itself adds, from its own histogram
    /// (`relaycast_forward_delay_seconds`: live frame complete at ingest →
    /// the send pass after its write to a viewer; what a viewer's pacer
    /// holds back is not in it), over the steady window.
    pub forward_delay_ms: Option<ServerDelay>,
}

#[derive(Debug, Default, Serialize)]
pub struct ServerDelay {
    pub frames: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// Which packets `cpu_us_per_packet` divides by.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketCount {
    /// Datagrams the server says it sent (`relaycast_udp_packets_out_total`:
    /// RTP, RTCP and STUN alike, each datagram of a GSO batch counted).
    #[default]
    ServerMetrics,
    /// RTP datagrams this tool's viewers received (a server without
    /// relaycast's `/metrics`; what the kernel dropped is not counted).
    Viewers,
}

#[derive(Debug, Default, Serialize)]
pub struct SteadyWindow {
    pub seconds: f64,
    pub cpu_s: Option<f64>,
    /// Of one core (200 % = both cores of a 2-core machine).
    pub cpu_percent: Option<f64>,
    pub cpu_ms_per_viewer_per_s: Option<f64>,
    /// Where the packets of `packets_per_cpu_s` and `cpu_us_per_packet`
    /// were counted.
    pub packets_counted_at: PacketCount,
    /// `relaycast_udp_packets_out_total` increase.
    pub packets_out: Option<f64>,
    pub packets_out_per_s: Option<f64>,
    pub packets_per_cpu_s: Option<f64>,
    pub cpu_us_per_packet: Option<f64>,
    pub mbit_out_per_s: Option<f64>,
    /// RTP datagrams the viewers received.
    pub viewer_rtp_packets: f64,
    pub viewer_rtp_packets_per_s: f64,
    pub viewer_rtp_mbit_per_s: f64,
    /// Server CPU per RTP packet received by the viewers, whichever way
    /// `cpu_us_per_packet` counted.
    pub cpu_us_per_viewer_packet: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct LoadToolSection {
    /// CPU of this process over the steady window.
    pub steady_cpu_s: Option<f64>,
    pub steady_cpu_percent: Option<f64>,
    /// CPU per thread name over the whole process life (encoder threads
    /// have exited and are only in the process total).
    pub threads_cpu_s: BTreeMap<String, f64>,
    pub process_cpu_s: Option<f64>,
    /// Datagrams dropped on this tool's full socket buffers (viewers or the
    /// publisher read too slowly: that loss is the load tool's, not the server's).
    pub udp_socket_drops: Option<u64>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn summary_line(label: &str, s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "{label:<28} p50 {:>8.1}  p95 {:>8.1}  p99 {:>8.1}  max {:>8.1}  (n={})\n",
            s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms, s.n
        ),
        None => format!("{label:<28} -\n"),
    }
}

impl Report {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let c = &self.config;
        let _ = writeln!(
            t,
            "relaycast-load: {} viewers of {} at {} ({}), ramp {}/s, steady {:.0} s",
            c.viewers,
            c.stream,
            c.whep_url,
            if c.simulcast {
                "simulcast q/h/f"
            } else {
                "one 720p layer"
            },
            c.ramp_per_sec,
            c.duration_s
        );
        let _ = writeln!(t, "publishing to {}", c.whip_url);
        if c.drop_percent > 0.0 || c.cap_kbps.is_some() {
            let _ = writeln!(
                t,
                "impairment: drop {}%, cap {}",
                c.drop_percent,
                c.cap_kbps.map_or("none".into(), |k| format!("{k} kbit/s"))
            );
        }
        let p = &self.publisher;
        for l in &p.layers {
            let _ = writeln!(
                t,
                "  layer {:<2} {:>4}x{:<4} {:>6.0} kbit/s (target {}), keyframe {} B",
                l.rid, l.width, l.height, l.actual_kbps, l.target_kbps, l.keyframe_bytes
            );
        }
        let _ = writeln!(
            t,
            "publisher: {} frames sent, {} keyframe requests answered{}",
            p.run.frames_sent,
            p.run.keyframe_requests,
            if p.run.disconnected {
                ", DISCONNECTED"
            } else {
                ""
            }
        );
        let v = &self.viewers;
        let _ = writeln!(t, "\nviewers");
        let _ = writeln!(
            t,
            "  joined {}/{}   lost {} (never joined {}, disconnected {})   stalled at end {}",
            v.joined, v.requested, v.lost_viewers, v.never_joined, v.disconnected, v.stalled_at_end
        );
        let _ = writeln!(
            t,
            "  frames {} (min {} per viewer)   lost frames {} ({:.3} %)   freezes {} in {} viewers ({:.1} s)   longest gap {:.0} ms",
            v.frames_total,
            v.frames_min,
            v.lost_frames,
            v.loss_percent,
            v.freezes,
            v.viewers_with_freezes,
            v.frozen_s_total,
            v.longest_gap_ms
        );
        let layers: Vec<String> = v
            .frames_by_layer
            .iter()
            .map(|(rid, n)| format!("{rid} {n}"))
            .collect();
        let _ = writeln!(
            t,
            "  frames by layer: {}   layer switches {}   replayed at join (GOP cache, not in delay) {}",
            layers.join(", "),
            v.layer_switches,
            v.catch_up_frames
        );
        if v.impairment_drops > 0 {
            let _ = writeln!(
                t,
                "  datagrams dropped by impairment {}",
                v.impairment_drops
            );
        }
        for (e, n) in &v.errors {
            let _ = writeln!(t, "  error ×{n}: {e}");
        }
        t.push_str(&summary_line("  join (POST→keyframe) ms", &self.join_ms));
        t.push_str(&summary_line("  connect (POST→DTLS) ms", &v.connect_ms));
        t.push_str(&summary_line("  forwarding delay ms", &self.delay_ms));
        if let Some(s) = &self.server {
            let w = &s.steady;
            let _ = writeln!(t, "\nserver (pid {})", s.pid);
            let _ = writeln!(
                t,
                "  steady {:.1} s: CPU {} s = {} %   {} ms CPU per viewer per s",
                w.seconds,
                opt(w.cpu_s, 2),
                opt(w.cpu_percent, 1),
                opt(w.cpu_ms_per_viewer_per_s, 3)
            );
            match w.packets_counted_at {
                PacketCount::ServerMetrics => {
                    let _ = writeln!(
                        t,
                        "  packets out {} ({} /s, {} Mbit/s)   {} packets per CPU-second = {} µs CPU per packet \
                         (counted by the server's /metrics)",
                        opt(w.packets_out, 0),
                        opt(w.packets_out_per_s, 0),
                        opt(w.mbit_out_per_s, 1),
                        opt(w.packets_per_cpu_s, 0),
                        opt(w.cpu_us_per_packet, 2)
                    );
                    let _ = writeln!(
                        t,
                        "  RTP packets received by the viewers {:.0} ({:.0} /s, {:.1} Mbit/s) = {} µs CPU per received packet",
                        w.viewer_rtp_packets,
                        w.viewer_rtp_packets_per_s,
                        w.viewer_rtp_mbit_per_s,
                        opt(w.cpu_us_per_viewer_packet, 2)
                    );
                }
                PacketCount::Viewers => {
                    let _ = writeln!(
                        t,
                        "  RTP packets received by the viewers {:.0} ({:.0} /s, {:.1} Mbit/s)   {} packets per CPU-second = {} µs CPU per packet \
                         (counted at the viewers: {})",
                        w.viewer_rtp_packets,
                        w.viewer_rtp_packets_per_s,
                        w.viewer_rtp_mbit_per_s,
                        opt(w.packets_per_cpu_s, 0),
                        opt(w.cpu_us_per_packet, 2),
                        if s.metrics_error.is_some() {
                            "no relaycast /metrics"
                        } else {
                            "--count-packets viewers"
                        }
                    );
                }
            }
            let kib =
                |v: Option<u64>| v.map_or("-".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0));
            let _ = writeln!(
                t,
                "  RSS start {}  end {}  peak {}  per viewer {} KiB ({})   CPU whole run {} s",
                kib(s.rss_kib_start),
                kib(s.rss_kib_end),
                kib(s.rss_kib_peak),
                opt(s.rss_kib_per_viewer, 0),
                if self.config.warmup_s > 0.0 {
                    format!("start read after a {:.0} s warm-up", self.config.warmup_s)
                } else {
                    "no warm-up: includes the stream's own growth".to_string()
                },
                opt(s.cpu_s_total, 2)
            );
            if let Some(d) = &s.forward_delay_ms {
                let _ = writeln!(
                    t,
                    "  delay added by the server (its histogram) ms   p50 {:.2}  p95 {:.2}  p99 {:.2}  mean {:.2}  (n={:.0})",
                    d.p50_ms, d.p95_ms, d.p99_ms, d.mean_ms, d.frames
                );
            }
            let drops: Vec<String> = s
                .metric_deltas
                .iter()
                .filter(|(k, v)| k.starts_with("relaycast_drops_total") && **v > 0.0)
                .map(|(k, v)| format!("{} {v}", k.trim_start_matches("relaycast_drops_total")))
                .collect();
            if !drops.is_empty() {
                let _ = writeln!(t, "  server drops: {}", drops.join(", "));
            }
            if let Some(n) = s.system_udp_rcvbuf_errors.filter(|n| *n > 0) {
                let _ = writeln!(
                    t,
                    "  kernel: {n} UDP datagrams dropped on full receive buffers (system-wide); \
                     on the server's sockets {}, on the load tool's {}",
                    s.udp_socket_drops.map_or("-".into(), |d| d.to_string()),
                    self.load_tool
                        .udp_socket_drops
                        .map_or("-".into(), |d| d.to_string())
                );
            }
            if let Some(e) = &s.metrics_error {
                let _ = writeln!(t, "  /metrics: {e}");
            }
        }
        let l = &self.load_tool;
        let threads: Vec<String> = l
            .threads_cpu_s
            .iter()
            .map(|(k, v)| format!("{k} {v:.2} s"))
            .collect();
        let _ = writeln!(
            t,
            "\nload tool: steady CPU {} % ; by thread: {}",
            opt(l.steady_cpu_percent, 1),
            threads.join(", ")
        );
        t
    }
}
