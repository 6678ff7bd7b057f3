//! A forwarder in a box, on a virtual clock: the sfu's [`Control`] and
//! engines (one per worker), plus str0m clients as publishers and viewers,
//! joined by a simulated network (delay, loss, capacity). No sockets, no
//! threads, no wall clock: each run is deterministic and takes
//! milliseconds of real time per second of virtual time.
#![allow(dead_code)] // each test binary uses part of it
#![allow(clippy::disallowed_methods)] // the virtual clock starts at one real instant

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu::engine::{Command, Engine, Output};
use sfu::{Control, LayerCap, SessionId, SfuConfig, StreamEventKind};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc, RtcConfig};

pub const FPS: u64 = 30;
pub const TICKS_PER_FRAME: u64 = 90_000 / FPS;

/// One direction of a client's access link.
#[derive(Clone, Debug)]
pub struct Link {
    pub delay: Duration,
    /// Share of datagrams lost, 0.0..1.0.
    pub loss: f64,
    /// Serialization rate; `None`: unlimited.
    pub capacity_bps: Option<u64>,
    /// Longest queue before tail drop (with a capacity).
    pub max_queue: Duration,
    free_at: Option<Instant>,
}

impl Link {
    pub fn new(delay_ms: u64) -> Link {
        Link {
            delay: Duration::from_millis(delay_ms),
            loss: 0.0,
            capacity_bps: None,
            max_queue: Duration::from_millis(150),
            free_at: None,
        }
    }

    /// When a datagram of `len` bytes sent at `now` arrives; `None`: dropped.
    fn pass(&mut self, now: Instant, len: usize, rng: &mut Rng) -> Option<Instant> {
        if self.loss > 0.0 && rng.unit() < self.loss {
            return None;
        }
        let depart = match self.capacity_bps {
            None => now,
            Some(bps) => {
                let start = self.free_at.map_or(now, |f| f.max(now));
                if start.saturating_duration_since(now) > self.max_queue {
                    return None;
                }
                let tx = Duration::from_nanos((len as u64 + 28) * 8 * 1_000_000_000 / bps.max(1));
                self.free_at = Some(start + tx);
                start + tx
            }
        };
        Some(depart + self.delay)
    }
}

/// A small deterministic generator (xorshift64*), so loss patterns repeat.
pub struct Rng(u64);

impl Rng {
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A frame a viewer received.
#[derive(Clone, Debug)]
pub struct Got {
    pub at: Instant,
    /// Layer tag the publisher wrote into the payload.
    pub layer: u8,
    /// Publisher's frame number, from the payload.
    pub number: u64,
    pub keyframe: bool,
    pub contiguous: bool,
    pub first_seq: u64,
    pub last_seq: u64,
    pub rtp_time: u64,
}

/// A synthetic H.264 publisher: `layers` (rid, bytes per delta frame),
/// keyframes three times as large, every `gop` frames or when asked (unless
/// it ignores requests, as OBS does).
pub struct PublisherSource {
    pub mid: Mid,
    pub layers: Vec<(Option<Rid>, usize)>,
    pub gop: u64,
    pub honor_requests: bool,
    pub frame_no: u64,
    pub next_frame: Instant,
    keyframe_due: Vec<bool>,
    /// Added to the RTP time (a new session starts somewhere else).
    pub rtp_base: u64,
    pub pt: Option<Pt>,
}

pub enum Role {
    Publisher(PublisherSource),
    Viewer,
}

pub struct Client {
    pub name: String,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    timeout: Instant,
    pub down: Link,
    pub up: Link,
    pub role: Role,
    pub session: Option<SessionId>,
    pub connected_at: Option<Instant>,
    pub got: Vec<Got>,
    /// Keyframe requests this client received (publishers).
    pub requests: Vec<(Instant, Option<Rid>)>,
    /// Datagrams lost on its down link.
    pub lost: usize,
    pub alive: bool,
}

struct Datagram {
    at: Instant,
    order: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Datagram {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Datagram {}
impl PartialOrd for Datagram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Datagram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(o.at, o.order))
    }
}

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub control: Control,
    pub engines: Vec<Engine>,
    engine_timeouts: Vec<Instant>,
    commands: Vec<(usize, Command)>,
    pub clients: Vec<Client>,
    net: BinaryHeap<Reverse<Datagram>>,
    order: u64,
    pub rng: Rng,
    pub events: Vec<(Instant, String, StreamEventKind)>,
    pub ended: Vec<SessionId>,
    /// Cross-worker commands carried.
    pub cross_worker: usize,
    /// Datagrams the engines sent.
    pub datagrams_out: u64,
}

pub fn config(workers: usize) -> SfuConfig {
    SfuConfig {
        bind_ip: [127, 0, 0, 1].into(),
        public_ip: [10, 0, 0, 1].into(),
        first_port: 5000,
        workers,
        max_sessions: 1000,
        udp_gso: false,
        pace_viewers: false,
        twcc_send_history: sfu::DEFAULT_TWCC_SEND_HISTORY,
        viewer_estimator: sfu::ViewerEstimator::Twcc,
    }
}

/// The workers' public addresses under `cfg` (`public_ip`, `first_port` + N).
fn worker_addrs(cfg: &SfuConfig) -> Vec<SocketAddr> {
    (0..cfg.workers)
        .map(|i| SocketAddr::new(cfg.public_ip, cfg.first_port + i as u16))
        .collect()
}

/// A [`Control`] of `workers` workers and no engines, for tests of the answers alone.
pub fn control(workers: usize) -> Control {
    let cfg = config(workers);
    let metrics = sfu::Metrics::new(&prometheus::Registry::new()).expect("metrics");
    Control::new(&cfg, worker_addrs(&cfg), metrics)
}

impl Sim {
    pub fn new(workers: usize) -> Sim {
        Sim::with_config(config(workers))
    }

    pub fn with_config(cfg: SfuConfig) -> Sim {
        let start = Instant::now();
        let addrs = worker_addrs(&cfg);
        let metrics = sfu::Metrics::new(&prometheus::Registry::new()).expect("metrics");
        let engines = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Engine::new(i, *a, metrics.clone(), start))
            .collect();
        Sim {
            start,
            now: start,
            control: Control::new(&cfg, addrs.clone(), metrics),
            engines,
            engine_timeouts: vec![start; cfg.workers],
            commands: Vec::new(),
            clients: Vec::new(),
            net: BinaryHeap::new(),
            order: 0,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            events: Vec::new(),
            ended: Vec::new(),
            cross_worker: 0,
            datagrams_out: 0,
        }
    }

    pub fn metrics(&self) -> &sfu::Metrics {
        self.control.metrics()
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn at(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.start)
    }

    fn new_client(&mut self, name: &str, rtc: Rtc, role: Role) -> usize {
        let i = self.clients.len();
        let addr: SocketAddr = SocketAddr::new([10, 0, 1, (i + 1) as u8].into(), 6000);
        let mut rtc = rtc;
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        self.clients.push(Client {
            name: name.to_string(),
            addr,
            rtc,
            timeout: self.now,
            down: Link::new(10),
            up: Link::new(10),
            role,
            session: None,
            connected_at: None,
            got: Vec::new(),
            requests: Vec::new(),
            lost: 0,
            alive: true,
        });
        i
    }

    /// A publisher client of `layers` (rid, delta-frame bytes; one layer
    /// without a rid for a non-simulcast publisher), admitted on `worker`.
    pub fn publish(
        &mut self,
        stream: &str,
        owner: &str,
        worker: usize,
        layers: &[(Option<&str>, usize)],
        gop: u64,
        honor_requests: bool,
    ) -> usize {
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_h264(true)
            .build(self.now);
        let rids: Vec<Option<Rid>> = layers.iter().map(|(r, _)| r.map(Rid::from)).collect();
        let simulcast = rids.iter().all(Option::is_some).then(|| {
            let mut s = Simulcast::new();
            for r in rids.iter().flatten() {
                s.add_send_layer(SimulcastLayer::new(r));
            }
            s
        });
        let mut api = rtc.sdp_api();
        let mid = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some("sim".into()),
            Some("video".into()),
            simulcast,
        );
        let (offer, pending) = api.apply().expect("publisher offer");
        let source = PublisherSource {
            mid,
            layers: rids.into_iter().zip(layers.iter().map(|l| l.1)).collect(),
            gop,
            honor_requests,
            frame_no: 0,
            next_frame: self.now,
            keyframe_due: vec![true; layers.len()],
            rtp_base: 0,
            pt: None,
        };
        let i = self.new_client(owner, rtc, Role::Publisher(source));
        let admitted = self
            .control
            .publish(
                self.now,
                worker,
                stream,
                parse(&offer.to_sdp_string()),
                owner,
            )
            .expect("publisher admitted");
        self.admit(i, pending, admitted);
        i
    }

    /// A viewer client (H.264 video, receive only) admitted on `worker`
    /// (`None`: the control's choice).
    pub fn view(&mut self, stream: &str, worker: Option<usize>, cap: LayerCap) -> usize {
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_h264(true)
            .build(self.now);
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("viewer offer");
        let i = self.new_client("viewer", rtc, Role::Viewer);
        let worker = worker.unwrap_or_else(|| self.control.viewer_worker(stream));
        let admitted = self
            .control
            .subscribe(self.now, worker, stream, parse(&offer.to_sdp_string()), cap)
            .expect("viewer admitted");
        self.admit(i, pending, admitted);
        i
    }

    fn admit(&mut self, client: usize, pending: SdpPendingOffer, admitted: sfu::Admitted) {
        let answer = SdpAnswer::from_sdp_string(&admitted.answer.sdp).expect("answer parses");
        self.clients[client]
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        self.clients[client].session = Some(admitted.answer.session);
        self.commands.push((admitted.worker, admitted.command));
        if let Some(replaced) = admitted.replaced {
            self.commands.push(replaced);
        }
    }

    /// Closes a session as a WHIP/WHEP DELETE does.
    pub fn close(&mut self, session: SessionId) {
        let closed = self.control.close(session).expect("known session");
        if let Some(stream) = closed.ended {
            self.events.push((self.now, stream, StreamEventKind::Ended));
        }
        self.commands.push((closed.worker, closed.command));
    }

    /// Stops a client (it goes silent, as a crashed peer would).
    pub fn silence(&mut self, client: usize) {
        self.clients[client].alive = false;
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    pub fn run_until(&mut self, end: Instant) {
        while self.now < end {
            self.step(end);
        }
    }

    /// Runs until `done` holds or `limit` passes; true when it held.
    pub fn run_until_cond(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step(end);
        }
        done(self)
    }

    fn send(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
        via: Option<(usize, bool)>,
    ) {
        let at = match via {
            Some((c, down)) => {
                let now = self.now;
                let client = &mut self.clients[c];
                let link = if down {
                    &mut client.down
                } else {
                    &mut client.up
                };
                match link.pass(now, bytes.len(), &mut self.rng) {
                    Some(at) => at,
                    None => {
                        if down {
                            client.lost += 1;
                        }
                        return;
                    }
                }
            }
            None => self.now,
        };
        self.order += 1;
        self.net.push(Reverse(Datagram {
            at,
            order: self.order,
            from,
            to,
            bytes,
        }));
    }

    fn client_by_addr(&self, a: SocketAddr) -> Option<usize> {
        self.clients.iter().position(|c| c.addr == a)
    }

    fn drain_engine(&mut self, w: usize) {
        loop {
            let now = self.now;
            match self.engines[w].poll_output(now) {
                Output::Transmit(t) => {
                    self.datagrams_out += 1;
                    let from = self.control.candidate_addrs()[w];
                    let via = self.client_by_addr(t.destination).map(|c| (c, true));
                    self.send(from, t.destination, t.contents, via);
                }
                Output::ToWorker { worker, command } => {
                    assert_ne!(worker, w, "an engine hands itself nothing");
                    self.cross_worker += 1;
                    self.commands.push((worker, command));
                }
                Output::StreamEvent { stream, kind } => self.events.push((now, stream, kind)),
                Output::SessionEnded(s) => {
                    self.control.forget(s);
                    self.ended.push(s);
                }
                Output::Timeout(t) => {
                    self.engine_timeouts[w] = t;
                    break;
                }
            }
        }
    }

    fn drain_client(&mut self, c: usize) {
        loop {
            let now = self.now;
            let client = &mut self.clients[c];
            if !client.alive {
                client.timeout = now + Duration::from_secs(3600);
                return;
            }
            let out = match client.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => panic!("client {} poll: {e}", client.name),
            };
            match out {
                RtcOutput::Timeout(t) => {
                    client.timeout = t;
                    break;
                }
                RtcOutput::Transmit(t) => {
                    let from = client.addr;
                    self.send(from, t.destination, t.contents.into(), Some((c, false)));
                }
                RtcOutput::Event(e) => match e {
                    Event::Connected => client.connected_at = Some(now),
                    Event::KeyframeRequest(r) => {
                        client.requests.push((now, r.rid));
                        if let Role::Publisher(p) = &mut client.role {
                            if p.honor_requests {
                                for (i, (rid, _)) in p.layers.iter().enumerate() {
                                    if r.rid.is_none() || *rid == r.rid {
                                        p.keyframe_due[i] = true;
                                    }
                                }
                            }
                        }
                    }
                    Event::MediaData(d) => {
                        let (layer, number) = parse_tag(&d.data);
                        client.got.push(Got {
                            at: now,
                            layer,
                            number,
                            keyframe: d.is_keyframe(),
                            contiguous: d.contiguous,
                            first_seq: **d.seq_range.start(),
                            last_seq: **d.seq_range.end(),
                            rtp_time: d.time.numer(),
                        });
                    }
                    _ => {}
                },
            }
        }
    }

    /// Writes the publishers' frames that are due.
    fn publish_frames(&mut self) {
        let now = self.now;
        for client in &mut self.clients {
            if !client.alive || client.connected_at.is_none() {
                continue;
            }
            let Role::Publisher(p) = &mut client.role else {
                continue;
            };
            if now < p.next_frame {
                continue;
            }
            let pt = match p.pt {
                Some(pt) => pt,
                None => {
                    let Some(w) = client.rtc.writer(p.mid) else {
                        continue;
                    };
                    let Some(pt) = w
                        .payload_params()
                        .find(|x| x.spec().codec == Codec::H264)
                        .map(|x| x.pt())
                    else {
                        continue;
                    };
                    p.pt = Some(pt);
                    pt
                }
            };
            let n = p.frame_no;
            for (i, (rid, size)) in p.layers.iter().enumerate() {
                let keyframe = p.keyframe_due[i] || n.is_multiple_of(p.gop);
                p.keyframe_due[i] = false;
                let data = frame_bytes(
                    i as u8,
                    keyframe,
                    n,
                    if keyframe { size * 3 } else { *size },
                );
                let Some(mut w) = client.rtc.writer(p.mid) else {
                    continue;
                };
                if let Some(rid) = rid {
                    w = w.rid(*rid);
                }
                let time = MediaTime::new(p.rtp_base + n * TICKS_PER_FRAME, Frequency::NINETY_KHZ);
                w.write(pt, now, time, data).expect("publisher write");
            }
            p.frame_no += 1;
            p.next_frame += Duration::from_micros(1_000_000 / FPS);
        }
    }

    /// One step: carry out every pending output and command, deliver what
    /// arrives now, then move the clock to the next thing that happens.
    fn step(&mut self, end: Instant) {
        for (w, cmd) in std::mem::take(&mut self.commands) {
            self.engines[w].handle_command(self.now, cmd);
            self.drain_engine(w);
        }
        self.publish_frames();
        for c in 0..self.clients.len() {
            if self.clients[c].alive && self.clients[c].timeout <= self.now {
                let now = self.now;
                self.clients[c]
                    .rtc
                    .handle_input(Input::Timeout(now))
                    .expect("client timeout");
            }
            self.drain_client(c);
        }
        for w in 0..self.engines.len() {
            if self.engine_timeouts[w] <= self.now {
                self.engines[w].handle_timeout(self.now);
            }
            self.drain_engine(w);
        }
        while self.net.peek().is_some_and(|Reverse(d)| d.at <= self.now) {
            let Some(Reverse(d)) = self.net.pop() else {
                break;
            };
            if let Some(w) = self
                .control
                .candidate_addrs()
                .iter()
                .position(|a| *a == d.to)
            {
                self.engines[w].handle_datagram(self.now, d.from, &d.bytes);
                self.drain_engine(w);
            } else if let Some(c) = self.client_by_addr(d.to) {
                if !self.clients[c].alive {
                    continue;
                }
                let now = self.now;
                let input = Input::Receive(
                    now,
                    Receive::new(Protocol::Udp, d.from, d.to, &d.bytes).expect("datagram"),
                );
                if self.clients[c].rtc.accepts(&input) {
                    self.clients[c]
                        .rtc
                        .handle_input(input)
                        .expect("client input");
                }
                self.drain_client(c);
            }
        }
        if !self.commands.is_empty() {
            return;
        }
        let mut next = end;
        next = next.min(self.engine_timeouts.iter().copied().min().unwrap_or(end));
        for c in &self.clients {
            if c.alive {
                next = next.min(c.timeout);
                if let Role::Publisher(p) = &c.role {
                    if c.connected_at.is_some() {
                        next = next.min(p.next_frame);
                    }
                }
            }
        }
        if let Some(Reverse(d)) = self.net.peek() {
            next = next.min(d.at);
        }
        // Never stand still; never jump more than a millisecond (timers
        // are cheap, and keeps steps comparable to a real loop's).
        self.now = next
            .max(self.now + Duration::from_micros(50))
            .min(self.now + Duration::from_millis(1));
    }

    pub fn publisher_mut(&mut self, c: usize) -> &mut PublisherSource {
        match &mut self.clients[c].role {
            Role::Publisher(p) => p,
            Role::Viewer => panic!("client {c} is a viewer"),
        }
    }
}

fn parse(sdp: &str) -> sfu::Offer {
    sfu::Offer::parse(sdp).expect("offer parses")
}

/// An H.264 access unit of one NAL unit (IDR or non-IDR slice) carrying
/// its layer and frame number as text, with no zero bytes after the start
/// code (so no start code appears inside).
pub fn frame_bytes(layer: u8, keyframe: bool, n: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }, layer + 1];
    v.extend_from_slice(format!("{n}.").as_bytes());
    v.resize(size.max(v.len()), 0x5a);
    v
}

/// The layer and frame number [`frame_bytes`] wrote (`u8::MAX`, 0 if
/// unreadable).
pub fn parse_tag(data: &[u8]) -> (u8, u64) {
    let Some(pos) = data.windows(4).position(|w| w == [0, 0, 0, 1]) else {
        return (u8::MAX, 0);
    };
    let body = &data[pos + 4..];
    let layer = body.get(1).map_or(u8::MAX, |t| t.wrapping_sub(1));
    let digits: String = body
        .get(2..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    (layer, digits.parse().unwrap_or(0))
}

/// Ingest publishers (RTMP/SRT, no WebRTC session): the sans-IO
/// `IngestSession` driven on the simulation's clock.
impl Sim {
    /// Claims `stream` for a non-WebRTC publisher with `owner`'s credential.
    pub fn ingest(
        &mut self,
        stream: &str,
        owner: &str,
    ) -> Result<sfu::IngestSession, sfu::SfuError> {
        let claim = self.control.claim_ingest(stream, owner)?;
        if let Some(replaced) = claim.replaced {
            self.commands.push(replaced);
        }
        Ok(claim.session)
    }

    /// Pushes one access unit now; its commands reach the engines on the
    /// next step, its events are recorded.
    pub fn ingest_push(
        &mut self,
        ingest: &mut sfu::IngestSession,
        frame: sfu::IngestFrame,
    ) -> Result<(), sfu::IngestError> {
        let mut out = Vec::new();
        let result = ingest.push(self.now, frame, &mut out);
        for o in out {
            match o {
                sfu::ingest::IngestOutput::ToWorker { worker, command } => {
                    self.commands.push((worker, command))
                }
                sfu::ingest::IngestOutput::StreamEvent { stream, kind } => {
                    self.events.push((self.now, stream, kind))
                }
            }
        }
        result
    }

    /// Ends an ingest session, recording `Ended` if it still held the stream.
    pub fn ingest_end(&mut self, ingest: &mut sfu::IngestSession) {
        if let Some(kind) = ingest.end() {
            let stream = ingest.stream().to_string();
            self.events.push((self.now, stream, kind));
        }
    }
}
