//! `relaycast-load floor`: the irreducible cost of forwarding a packet, to
//! measure a server against. The same 720p H.264 stream the synthetic
//! publisher sends (its frames, stamped alike, cut into RTP payloads by
//! str0m's packetizer at the payload size the server uses), sent to N
//! sockets that only drain, doing per packet and viewer only what any SFU
//! must: write the RTP header (with abs-send-time and transport-wide
//! sequence number, as str0m does for an estimating viewer), SRTP-protect
//! it with AEAD_AES_128_GCM (str0m's cipher), and hand it to the kernel in
//! GSO batches — one batch per viewer and frame, as the server's workers
//! flush. No ICE, DTLS, RTCP, NACK buffers, bandwidth estimation or layer
//! selection: that is what a server spends above the floor.
//!
//! ## Run loop
//! `--sockets` sender threads (`floor-send-N`, one UDP socket each, like
//! relaycast's media workers: one per core by default) each own a share of
//! the viewers and send every 1/30 s the next frame of the looped GOP to
//! each of them. One thread (`floor-drain`) drains the receiving sockets
//! (a tokio runtime, GRO reads) and counts what arrives.
//!
//! ## What is measured
//! After `--settle`, over `--duration`: CPU of the sender threads (from
//! `/proc/self/task/*/stat`; the receive path of loopback runs in the
//! sender's system call, as it does for a server) per packet sent, and per
//! viewer-second; the drain threads' CPU is reported apart and left out.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use str0m::unversioned::{H264Packetizer, Packetizer};
use tokio::sync::watch;

use crate::gso_sender::{GsoSender, SendCounts};
use crate::probe;
use crate::received::{self, Received};
use crate::rtc_driver::BatchRecv;
use crate::sei::{stamp_access_unit, Stamp};
use crate::source::{self, FRAME_INTERVAL, TICKS_PER_FRAME};
use crate::srtp_gcm::{SrtpSender, TAG_LEN};

/// RTP payload bytes per packet: str0m's datagram target less the SRTP
/// tag, aligned down to the cipher block (what relaycast's shared
/// packetization uses, `sfu::rtp_out::PAYLOAD_MTU`).
const PAYLOAD_MTU: usize = {
    let rtp = str0m::DATAGRAM_MTU_TARGET - TAG_LEN;
    rtp - rtp % 16
};
/// Dynamic payload type for H.264 (any will do: nobody decodes).
const PT_H264: u8 = 96;
/// Extension ids of str0m's standard map.
const EXT_ABS_SEND_TIME: u8 = 2;
const EXT_TRANSPORT_CC: u8 = 3;
const THREAD_SEND: &str = "floor-send";
const THREAD_DRAIN: &str = "floor-drain";

pub struct FloorConfig {
    pub viewers: usize,
    pub sockets: usize,
    pub settle: Duration,
    pub duration: Duration,
    /// Write the transport-wide sequence number extension (an estimating
    /// viewer's packets: 24-byte header) or not (20 bytes).
    pub twcc: bool,
}

#[derive(Debug, Serialize)]
pub struct FloorReport {
    pub viewers: usize,
    pub sockets: usize,
    pub gso: bool,
    pub stream: StreamInfo,
    pub seconds: f64,
    pub packets_sent: u64,
    pub packets_per_s: f64,
    pub mbit_per_s: f64,
    pub mean_datagram_bytes: f64,
    /// Datagrams per `sendmsg`.
    pub packets_per_call: f64,
    /// Not sent: send buffer full (the drain fell behind) or an error.
    pub send_failed: u64,
    /// Frames a sender thread skipped because it fell more than a frame
    /// behind (it could not keep up: the result is then a ceiling, not a
    /// cost).
    pub frames_skipped: u64,
    pub packets_received: u64,
    pub loss_percent: f64,
    /// CPU of the sender threads over the window.
    pub sender_cpu_s: Option<f64>,
    pub sender_cpu_percent: Option<f64>,
    pub cpu_us_per_packet: Option<f64>,
    pub cpu_ms_per_viewer_per_s: Option<f64>,
    pub drain_cpu_s: Option<f64>,
    pub process_cpu_s: Option<f64>,
    pub cores: usize,
}

#[derive(Debug, Serialize)]
pub struct StreamInfo {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub kbps: f64,
    pub frames_per_loop: usize,
    pub packets_per_loop: usize,
    pub payload_mtu: usize,
    pub mean_payload_bytes: f64,
    pub rtp_header_bytes: usize,
}

/// One frame of the loop: its RTP payloads, in order.
struct Frame {
    payloads: Vec<Vec<u8>>,
}

/// What one sender thread has done so far, published after every frame.
#[derive(Default)]
struct SharedCounts {
    packets: AtomicU64,
    bytes: AtomicU64,
    calls: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

impl SharedCounts {
    fn publish(&self, c: &SendCounts, skipped: u64) {
        self.packets.store(c.packets, Ordering::Relaxed);
        self.bytes.store(c.bytes, Ordering::Relaxed);
        self.calls.store(c.calls, Ordering::Relaxed);
        self.failed.store(c.failed, Ordering::Relaxed);
        self.skipped.store(skipped, Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    packets: u64,
    bytes: u64,
    calls: u64,
    failed: u64,
    skipped: u64,
}

fn totals(all: &[Arc<SharedCounts>]) -> Totals {
    all.iter().fold(Totals::default(), |t, c| Totals {
        packets: t.packets + c.packets.load(Ordering::Relaxed),
        bytes: t.bytes + c.bytes.load(Ordering::Relaxed),
        calls: t.calls + c.calls.load(Ordering::Relaxed),
        failed: t.failed + c.failed.load(Ordering::Relaxed),
        skipped: t.skipped + c.skipped.load(Ordering::Relaxed),
    })
}

/// One viewer as a sender thread sees it: an address and an SRTP context.
struct Destination {
    addr: SocketAddr,
    srtp: SrtpSender,
    twcc_seq: u16,
}

pub fn run(cfg: &FloorConfig) -> Result<FloorReport> {
    if cfg.viewers == 0 || cfg.sockets == 0 {
        bail!("--viewers and --sockets must be positive");
    }
    let spec = source::SIMULCAST
        .iter()
        .copied()
        .find(|l| l.width == 1280)
        .context("no 720p layer in the publisher's set")?;
    let encode_start = Instant::now();
    let layer = source::encode_layers(&[spec])?
        .into_iter()
        .next()
        .context("the encoder returned no layer")?;
    eprintln!(
        "encoded {}x{} in {:.1} s",
        spec.width,
        spec.height,
        encode_start.elapsed().as_secs_f64()
    );
    let frames = Arc::new(packetize(&layer.frames)?);
    let header_len = if cfg.twcc { 24 } else { 20 };
    let packets_per_loop: usize = frames.iter().map(|f| f.payloads.len()).sum();
    let payload_bytes: usize = frames
        .iter()
        .flat_map(|f| f.payloads.iter().map(Vec::len))
        .sum();
    let stream = StreamInfo {
        width: spec.width,
        height: spec.height,
        fps: source::FPS,
        kbps: layer.bytes_per_loop() as f64 * 8.0 / source::GOP.as_secs_f64() / 1000.0,
        frames_per_loop: frames.len(),
        packets_per_loop,
        payload_mtu: PAYLOAD_MTU,
        mean_payload_bytes: payload_bytes as f64 / packets_per_loop.max(1) as f64,
        rtp_header_bytes: header_len,
    };

    // Receivers, drained on their own thread.
    let mut receivers = Vec::with_capacity(cfg.viewers);
    for _ in 0..cfg.viewers {
        let s = UdpSocket::bind("127.0.0.1:0").context("binding a receiving socket")?;
        s.set_nonblocking(true).context("non-blocking socket")?;
        receivers.push(s);
    }
    let addrs: Vec<SocketAddr> = receivers
        .iter()
        .map(|s| s.local_addr().context("receiver address"))
        .collect::<Result<_>>()?;
    let counters: Vec<Arc<Received>> = (0..cfg.viewers)
        .map(|_| Arc::new(Received::default()))
        .collect();
    let (stop_drain_tx, stop_drain_rx) = watch::channel(false);
    let drain = {
        let counters = counters.clone();
        std::thread::Builder::new()
            .name(format!("{THREAD_DRAIN}-0"))
            .spawn(move || drain_all(receivers, counters, stop_drain_rx))
            .context("starting the drain thread")?
    };

    // Senders, viewers dealt round-robin.
    let mut shares: Vec<Vec<Destination>> = (0..cfg.sockets).map(|_| Vec::new()).collect();
    for (i, addr) in addrs.iter().enumerate() {
        let srtp = SrtpSender::new(
            rand::random(),
            rand::random(),
            rand::random(),
            rand::random::<u16>() >> 1,
        );
        shares[i % cfg.sockets].push(Destination {
            addr: *addr,
            srtp,
            twcc_seq: 0,
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now() + Duration::from_millis(100);
    let mut shared = Vec::new();
    let mut senders = Vec::new();
    let mut gso = true;
    for (i, share) in shares.into_iter().enumerate() {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding a sending socket")?;
        let sender = GsoSender::new(socket)?;
        gso &= sender.batching();
        let counts = Arc::new(SharedCounts::default());
        shared.push(counts.clone());
        let (frames, stop) = (frames.clone(), stop.clone());
        let twcc = cfg.twcc;
        senders.push(
            std::thread::Builder::new()
                .name(format!("{THREAD_SEND}-{i}"))
                .spawn(move || send_loop(sender, share, &frames, twcc, start, &stop, &counts))
                .context("starting a sender thread")?,
        );
    }
    eprintln!(
        "floor: {} viewers on {} sender sockets, GSO {}",
        cfg.viewers,
        cfg.sockets,
        if gso { "on" } else { "off" }
    );

    // The window.
    std::thread::sleep(cfg.settle + Duration::from_millis(100));
    let me = std::process::id();
    let t0 = Instant::now();
    let threads0 = probe::cpu_by_thread_name(me);
    let process0 = probe::cpu_seconds(me).ok();
    let sent0 = totals(&shared);
    let recv0 = received::total(&counters);
    std::thread::sleep(cfg.duration);
    let seconds = t0.elapsed().as_secs_f64();
    let threads1 = probe::cpu_by_thread_name(me);
    let process1 = probe::cpu_seconds(me).ok();
    let sent1 = totals(&shared);
    let recv1 = received::total(&counters);

    stop.store(true, Ordering::Relaxed);
    let mut thread_error = None;
    for s in senders {
        match s.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => thread_error = Some(e),
            Err(_) => bail!("a sender thread panicked"),
        }
    }
    let _ = stop_drain_tx.send(true);
    if drain.join().is_err() {
        bail!("the drain thread panicked");
    }
    if let Some(e) = thread_error {
        return Err(e.context("a sender thread failed"));
    }

    let cpu = |name: &str| {
        let (a, b) = (threads0.get(name)?, threads1.get(name)?);
        Some(b - a)
    };
    let sender_cpu_s = cpu(THREAD_SEND);
    let packets = sent1.packets - sent0.packets;
    let bytes = sent1.bytes - sent0.bytes;
    let received = recv1.0 - recv0.0;
    let per_packet = sender_cpu_s.filter(|_| packets > 0);
    Ok(FloorReport {
        viewers: cfg.viewers,
        sockets: cfg.sockets,
        gso,
        stream,
        seconds,
        packets_sent: packets,
        packets_per_s: packets as f64 / seconds,
        mbit_per_s: bytes as f64 * 8.0 / seconds / 1e6,
        mean_datagram_bytes: bytes as f64 / packets.max(1) as f64,
        packets_per_call: packets as f64 / (sent1.calls - sent0.calls).max(1) as f64,
        send_failed: sent1.failed - sent0.failed,
        frames_skipped: sent1.skipped - sent0.skipped,
        packets_received: received,
        loss_percent: if packets == 0 {
            0.0
        } else {
            packets.saturating_sub(received) as f64 * 100.0 / packets as f64
        },
        sender_cpu_s,
        sender_cpu_percent: sender_cpu_s.map(|c| c / seconds * 100.0),
        cpu_us_per_packet: per_packet.map(|c| c * 1e6 / packets as f64),
        cpu_ms_per_viewer_per_s: sender_cpu_s.map(|c| c * 1000.0 / cfg.viewers as f64 / seconds),
        drain_cpu_s: cpu(THREAD_DRAIN),
        process_cpu_s: process1.zip(process0).map(|(b, a)| b - a),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// The GOP's frames, stamped as the publisher stamps them and cut into RTP
/// payloads by str0m's H.264 packetizer (SPS and PPS go as one STAP-A,
/// large NAL units as FU-A).
fn packetize(frames: &[Arc<[u8]>]) -> Result<Vec<Frame>> {
    let mut packetizer = H264Packetizer::default();
    frames
        .iter()
        .enumerate()
        .map(|(i, au)| {
            let stamp = Stamp {
                send_us: 0,
                seq: i as u64,
                layer: 2,
            };
            let data = stamp_access_unit(au, &stamp);
            let payloads = packetizer
                .packetize(PAYLOAD_MTU, &data)
                .map_err(|e| anyhow::anyhow!("packetizing frame {i}: {e}"))?;
            if payloads.is_empty() {
                bail!("frame {i} gave no packets");
            }
            Ok(Frame { payloads })
        })
        .collect()
}

/// abs-send-time (RFC 5285 use in WebRTC): seconds in 6.18 fixed point,
/// 24 bits.
fn abs_send_time(now: SystemTime) -> u32 {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let fixed = (d.as_secs() << 18) | ((u64::from(d.subsec_nanos()) << 18) / 1_000_000_000);
    (fixed & 0x00ff_ffff) as u32
}

/// Writes an RTP header with a one-byte-header extension block (RFC 8285)
/// into `out`; returns its length (20, or 24 with TWCC).
fn write_header(
    out: &mut [u8],
    marker: bool,
    seq: u16,
    time: u32,
    ssrc: u32,
    abs: u32,
    twcc: Option<u16>,
) -> usize {
    out[0] = 0x90; // V=2, X=1
    out[1] = (u8::from(marker) << 7) | PT_H264;
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&time.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    out[12..14].copy_from_slice(&[0xBE, 0xDE]);
    out[16] = (EXT_ABS_SEND_TIME << 4) | 2;
    out[17..20].copy_from_slice(&abs.to_be_bytes()[1..]);
    match twcc {
        Some(n) => {
            out[14..16].copy_from_slice(&2u16.to_be_bytes());
            out[20] = (EXT_TRANSPORT_CC << 4) | 1;
            out[21..23].copy_from_slice(&n.to_be_bytes());
            out[23] = 0;
            24
        }
        None => {
            out[14..16].copy_from_slice(&1u16.to_be_bytes());
            20
        }
    }
}

/// One sender thread: every frame interval, the next frame to each of its
/// viewers, one GSO batch per viewer.
fn send_loop(
    mut sender: GsoSender,
    mut viewers: Vec<Destination>,
    frames: &[Frame],
    twcc: bool,
    start: Instant,
    stop: &AtomicBool,
    shared: &SharedCounts,
) -> Result<()> {
    let header_len = if twcc { 24 } else { 20 };
    let mut k: u64 = 0;
    let mut skipped = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_nanos(FRAME_INTERVAL.as_nanos() as u64 * k);
        let now = Instant::now();
        if let Some(wait) = due.checked_duration_since(now) {
            std::thread::sleep(wait);
        } else if now.duration_since(due) > FRAME_INTERVAL {
            // More than a frame behind: skip to the current one.
            let behind = (now.duration_since(due).as_nanos() / FRAME_INTERVAL.as_nanos()) as u64;
            skipped += behind;
            k += behind;
        }
        let frame = &frames[(k % frames.len() as u64) as usize];
        let time = (k * TICKS_PER_FRAME) as u32;
        let abs = abs_send_time(SystemTime::now());
        let last = frame.payloads.len() - 1;
        for v in &mut viewers {
            for (i, payload) in frame.payloads.iter().enumerate() {
                let seq = v.srtp.next_seq();
                let ssrc = v.srtp.ssrc();
                let twcc_seq = twcc.then_some(v.twcc_seq);
                let srtp = &mut v.srtp;
                sender.push_with(v.addr, header_len + payload.len() + TAG_LEN, |out| {
                    let hlen = write_header(out, i == last, seq, time, ssrc, abs, twcc_seq);
                    srtp.protect(out, hlen, payload)
                })?;
                v.twcc_seq = v.twcc_seq.wrapping_add(1);
            }
            // Like a server's worker after draining one session.
            sender.flush();
        }
        shared.publish(&sender.counts, skipped);
        k += 1;
    }
    Ok(())
}

/// Drains every receiving socket until `stop` flips, counting datagrams.
fn drain_all(
    sockets: Vec<UdpSocket>,
    counters: Vec<Arc<Received>>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("drain runtime")?;
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(sockets.len());
        for (socket, counter) in sockets.into_iter().zip(counters) {
            let socket = tokio::net::UdpSocket::from_std(socket).context("registering a socket")?;
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let rx = BatchRecv::new(&socket);
                let mut buf = vec![0u8; rx.buffer_len()];
                let (mut packets, mut bytes) = (0u64, 0u64);
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        r = socket.readable() => {
                            if r.is_err() {
                                break;
                            }
                            while let Some(batch) = rx.try_recv(&socket, &mut buf) {
                                for d in batch.datagrams(&buf) {
                                    packets += 1;
                                    bytes += d.len() as u64;
                                }
                            }
                            counter.store(packets, bytes);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

impl FloorReport {
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>, d: usize| v.map_or("-".into(), |v| format!("{v:.d$}"));
        let s = &self.stream;
        format!(
            "floor: {viewers} viewers, {sockets} sender sockets/threads, GSO {gso}, steady {secs:.1} s\n\
             \x20 stream {w}x{h} {fps} fps {kbps:.0} kbit/s: {ppl} packets per {fpl}-frame loop, \
             payload ≤ {mtu} B (mean {mp:.0} B), RTP header {hb} B, + {tag} B SRTP tag\n\
             \x20 sent {sent} packets ({pps:.0} /s, {mbit:.1} Mbit/s, mean {md:.0} B), {ppc:.1} per sendmsg, \
             failed {failed}, frames skipped {skipped}\n\
             \x20 received {recv} ({loss:.3} % lost)\n\
             \x20 sender CPU {cpu} s = {pct} %   {us} µs CPU per packet   {ms} ms CPU per viewer per s\n\
             \x20 drain CPU {drain} s, process CPU {proc} s (not counted)\n",
            viewers = self.viewers,
            sockets = self.sockets,
            gso = if self.gso { "on" } else { "off" },
            secs = self.seconds,
            w = s.width,
            h = s.height,
            fps = s.fps,
            kbps = s.kbps,
            ppl = s.packets_per_loop,
            fpl = s.frames_per_loop,
            mtu = s.payload_mtu,
            mp = s.mean_payload_bytes,
            hb = s.rtp_header_bytes,
            tag = TAG_LEN,
            sent = self.packets_sent,
            pps = self.packets_per_s,
            mbit = self.mbit_per_s,
            md = self.mean_datagram_bytes,
            ppc = self.packets_per_call,
            failed = self.send_failed,
            skipped = self.frames_skipped,
            recv = self.packets_received,
            loss = self.loss_percent,
            cpu = opt(self.sender_cpu_s, 2),
            pct = opt(self.sender_cpu_percent, 1),
            us = opt(self.cpu_us_per_packet, 3),
            ms = opt(self.cpu_ms_per_viewer_per_s, 4),
            drain = opt(self.drain_cpu_s, 2),
            proc = opt(self.process_cpu_s, 2),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_abs_send_time_and_an_optional_transport_sequence() {
        let mut out = [0u8; 24];
        let n = write_header(
            &mut out,
            true,
            0x1234,
            90_000,
            0xdead_beef,
            0xabcdef,
            Some(7),
        );
        assert_eq!(n, 24);
        assert_eq!(out[0] >> 6, 2, "version 2");
        assert_eq!(out[0] & 0x10, 0x10, "extension bit");
        assert_eq!(out[1], 0x80 | PT_H264, "marker and PT");
        assert_eq!(&out[2..4], &[0x12, 0x34]);
        assert_eq!(&out[8..12], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&out[12..16], &[0xBE, 0xDE, 0, 2], "two extension words");
        assert_eq!(&out[16..20], &[0x22, 0xab, 0xcd, 0xef]);
        assert_eq!(&out[20..24], &[0x31, 0, 7, 0]);
        let n = write_header(&mut out, false, 1, 0, 1, 0, None);
        assert_eq!(n, 20);
        assert_eq!(out[1], PT_H264);
        assert_eq!(&out[12..16], &[0xBE, 0xDE, 0, 1]);
    }

    #[test]
    fn abs_send_time_is_6_18_fixed_point_seconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(abs_send_time(t), (1 << 18) | (1 << 17));
        let t = UNIX_EPOCH + Duration::from_secs(64);
        assert_eq!(abs_send_time(t), 0, "wraps every 64 s");
    }

    #[test]
    fn frames_are_cut_at_the_payload_mtu_with_the_stamp_in_its_own_packet() {
        // SPS, PPS, and a 3000-byte IDR slice.
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        au.extend_from_slice(&[0, 0, 0, 1, 0x65]);
        au.extend(std::iter::repeat_n(0xAB, 3000));
        let frames = packetize(&[Arc::from(au)]).expect("packetizes");
        let p = &frames[0].payloads;
        assert!(p.iter().all(|pk| pk.len() <= PAYLOAD_MTU));
        assert_eq!(p[0][0] & 0x1f, 24, "SPS and PPS as one STAP-A");
        assert_eq!(p[1][0] & 0x1f, 6, "the stamp's SEI on its own");
        assert!(
            p[2..].iter().all(|pk| pk[0] & 0x1f == 28),
            "the slice as FU-A"
        );
        assert_eq!(PAYLOAD_MTU, 1120);
    }
}
