//! The forwarding engine of one media worker, sans-IO: the sessions the
//! worker owns, the routing of frames to its viewers, GOP catch-ups and
//! keyframe requests. It reads no clock, owns no socket and sends on no
//! channel; time comes in with every call and everything it wants done
//! comes out of [`Engine::poll_output`]. The worker (`worker.rs`) is the
//! thin driver around it; tests drive it on a virtual clock.
//!
//! ## Contract
//! After each input (`handle_datagram`, `handle_command`, `handle_timeout`)
//! the caller drains [`Engine::poll_output`] until it returns
//! [`Output::Timeout`], passing a fresh `now` each time, and calls
//! `handle_timeout` when that time comes. A frame for many viewers is
//! written one viewer per poll step, so a viewer's datagrams leave while
//! the frame is hot and what waits in the engine is one viewer's burst, not
//! the whole fan-out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Input, Output as RtcOutput, Rtc, RtcError};

use crate::frame::{Frame, StreamId};
use crate::gop_cache::{GopCache, MAX_BURST_SPAN};
use crate::layers::LayerCap;
use crate::metrics::{DropReason, KeyframeOrigin, Metrics};
use crate::peer::{Effects, GopBurst, Peer, PeerRole, CONNECT_DEADLINE};
use crate::stream::StreamHub;
use crate::{IceCredentials, SessionId, StreamEventKind};

/// Something for an engine to do, from the control side ([`crate::Sfu`])
/// or from another worker's engine ([`Output::ToWorker`]).
pub struct Command(pub(crate) Cmd);

pub(crate) enum Cmd {
    AddPeer(Box<Peer>),
    Frame {
        hub: Arc<StreamHub>,
        frame: Arc<Frame>,
    },
    RequestKeyframe {
        session: SessionId,
        /// Layer id, or `None` for the publisher's main layer.
        layer: Option<u8>,
    },
    SetLayerCap {
        session: SessionId,
        cap: LayerCap,
    },
    /// A text message for the data channels of the stream's viewers here.
    Data {
        hub: Arc<StreamHub>,
        data: Arc<[u8]>,
    },
    Close {
        session: SessionId,
    },
    AddCandidates {
        session: SessionId,
        candidates: Vec<Candidate>,
    },
}

/// A datagram to send from the worker's socket.
#[derive(Debug)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// What the engine asks of its driver.
pub enum Output {
    Transmit(Transmit),
    /// Hand `command` to worker `worker`'s engine (never this one). A full
    /// queue drops it; the driver counts the drop as `queue_full`.
    ToWorker {
        worker: usize,
        command: Command,
    },
    /// A stream went live, stalled, resumed or ended.
    StreamEvent {
        stream: String,
        kind: StreamEventKind,
    },
    /// The session is gone from this worker (closed, failed, never
    /// connected): the control side forgets it.
    SessionEnded(SessionId),
    /// Nothing more to do until this time (or the next input).
    Timeout(Instant),
}

/// A joining viewer's catch-up: after the cached GOP's keyframe, the rest
/// of the GOP goes out one frame per [`CATCH_UP_GAP`] (a 2 s GOP of 720p is
/// ~200 packets: written at once it overflows a receiver's socket buffer),
/// and live frames of the stream that arrive meanwhile wait behind it so
/// the viewer gets every frame in order.
struct CatchUp {
    session: SessionId,
    burst: GopBurst,
    frames: Vec<Arc<Frame>>,
    next: usize,
    due: Instant,
    held: Vec<Arc<Frame>>,
}

/// A frame being written to this worker's viewers, one per poll step.
struct Delivery {
    hub: Arc<StreamHub>,
    frame: Arc<Frame>,
    /// Position in `peers` of the next session to look at.
    next: usize,
}

/// Spacing of a catch-up's frames: a 60-frame GOP takes 120 ms, 16 times
/// faster than real time.
const CATCH_UP_GAP: Duration = Duration::from_millis(2);

/// Longest the engine goes without looking at its sessions (reaping,
/// deadlines). Short enough that a stalled publisher is reported within a
/// second.
const IDLE_TICK: Duration = Duration::from_millis(200);

pub struct Engine {
    index: usize,
    /// Address put in our ICE candidate; the destination of every datagram
    /// as the ICE agent must see it.
    candidate_addr: SocketAddr,
    metrics: Metrics,
    /// Boxed: a `Peer` is ~10 KB (str0m's `Rtc` inline), so a vector of
    /// them would move every session at each growth and keep up to twice
    /// the slots it needs.
    peers: Vec<Box<Peer>>,
    /// Position of each session in `peers`.
    positions: HashMap<SessionId, usize>,
    by_addr: HashMap<SocketAddr, SessionId>,
    /// Current GOP of each stream and layer whose video reaches this worker.
    gops: HashMap<(StreamId, u8), (Arc<StreamHub>, GopCache)>,
    /// Joining viewers still being sent their GOP (see [`CatchUp`]).
    catch_ups: Vec<CatchUp>,
    deliveries: VecDeque<Delivery>,
    out: VecDeque<Output>,
    /// No session needs a timeout before this; may be early, never late.
    earliest: Instant,
}

impl Engine {
    pub fn new(index: usize, candidate_addr: SocketAddr, metrics: Metrics, now: Instant) -> Engine {
        Engine {
            index,
            candidate_addr,
            metrics,
            peers: Vec::new(),
            positions: HashMap::new(),
            by_addr: HashMap::new(),
            gops: HashMap::new(),
            catch_ups: Vec::new(),
            deliveries: VecDeque::new(),
            out: VecDeque::new(),
            earliest: now,
        }
    }

    /// The worker this engine is (its index among the control's workers).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The next thing to do. Writes the pending frame to the next viewer
    /// when nothing else is queued.
    pub fn poll_output(&mut self, now: Instant) -> Output {
        loop {
            if let Some(o) = self.out.pop_front() {
                return o;
            }
            if !self.step_delivery(now) {
                return Output::Timeout(self.earliest);
            }
        }
    }

    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd.0 {
            Cmd::AddPeer(mut peer) => {
                peer.conn.next_timeout = now;
                self.positions.insert(peer.conn.session, self.peers.len());
                self.peers.push(peer);
                let idx = self.peers.len() - 1;
                self.poll(idx, now);
            }
            Cmd::Frame { hub, frame } => self.deliver(hub, frame),
            Cmd::RequestKeyframe { session, layer } => {
                let Some(idx) = self.find(session) else {
                    return;
                };
                let Some((conn, publisher)) = self.peers[idx].publisher() else {
                    tracing::debug!(%session, "keyframe request for a viewer session ignored");
                    return;
                };
                publisher.request_keyframe(conn, now, &self.metrics, layer);
                self.poll(idx, now);
            }
            Cmd::SetLayerCap { session, cap } => {
                let viewer = self.find(session).and_then(|i| self.peers[i].viewer());
                match viewer {
                    Some((_, viewer)) => viewer.set_layer_cap(cap),
                    None => tracing::debug!(%session, "layer cap for no viewer session ignored"),
                }
            }
            Cmd::Data { hub, data } => {
                for idx in 0..self.peers.len() {
                    if !self.peers[idx].views(hub.id) {
                        continue;
                    }
                    let Some((conn, viewer)) = self.peers[idx].viewer() else {
                        continue;
                    };
                    if viewer.send_data(conn, &data) {
                        self.metrics.data_messages.inc();
                        self.poll(idx, now);
                    }
                }
            }
            Cmd::Close { session } => {
                if let Some(idx) = self.find(session) {
                    let rtc = &mut self.peers[idx].conn.rtc;
                    // close() sends DTLS close_notify and RTCP BYE so the peer
                    // learns at once; the session goes when that has drained.
                    if rtc.close().is_err() {
                        rtc.disconnect();
                    }
                    self.poll(idx, now);
                }
                self.earliest = now;
            }
            Cmd::AddCandidates {
                session,
                candidates,
            } => {
                if let Some(idx) = self.find(session) {
                    for c in candidates {
                        self.peers[idx].conn.rtc.add_remote_candidate(c);
                    }
                    self.poll(idx, now);
                }
            }
        }
    }

    /// ICE restart: installs the remote's new credentials and returns ours
    /// (`None`: no such session here, or the restart was refused).
    pub fn ice_restart(
        &mut self,
        now: Instant,
        session: SessionId,
        remote: &IceCredentials,
    ) -> Option<IceCredentials> {
        let idx = self.find(session)?;
        let creds = self.peers[idx].conn.ice_restart(remote);
        self.poll(idx, now);
        creds
    }

    fn find(&self, session: SessionId) -> Option<usize> {
        self.positions.get(&session).copied()
    }

    /// A datagram that arrived on the worker's socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.metrics.packets_in.inc();
        self.metrics.bytes_in.inc_by(data.len() as u64);
        let Ok(contents) = DatagramRecv::try_from(data) else {
            if !self.answer_stun_binding(data, source) {
                self.metrics.drop(DropReason::Malformed);
            }
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.candidate_addr,
                contents,
            },
        );
        // Only a STUN check (first byte 0..=3, RFC 7983) can introduce a new
        // address; anything else from an unknown address is not scanned for.
        let is_stun = data.first().is_some_and(|b| *b < 4);
        let idx = match self.by_addr.get(&source).and_then(|s| self.find(*s)) {
            Some(idx) if self.peers[idx].conn.rtc.accepts(&input) => Some(idx),
            _ if is_stun => self.peers.iter().position(|p| p.conn.rtc.accepts(&input)),
            _ => None,
        };
        let Some(idx) = idx else {
            if !self.answer_stun_binding(data, source) {
                self.metrics.drop(DropReason::UnknownPeer);
            }
            return;
        };
        let conn = &mut self.peers[idx].conn;
        self.by_addr.insert(source, conn.session);
        if let Err(e) = conn.rtc.handle_input(input) {
            tracing::debug!(session = %conn.session, "input rejected, closing: {e}");
            conn.rtc.disconnect();
        }
        self.poll(idx, now);
    }

    /// Plain STUN binding requests (no ICE username) are answered, so the
    /// media port doubles as the STUN server the WHIP/WHEP Link header names.
    fn answer_stun_binding(&mut self, data: &[u8], source: SocketAddr) -> bool {
        let mut out = [0u8; 64];
        match crate::stun_binding::respond(data, source, &mut out) {
            Some(n) => {
                self.out.push_back(Output::Transmit(Transmit {
                    destination: source,
                    contents: out[..n].to_vec(),
                }));
                true
            }
            None => false,
        }
    }

    /// Time has come (the last [`Output::Timeout`], or later): drives the
    /// sessions' timers and catch-ups, reaps what ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        // A driver that did not drain its output before this input: finish
        // the fan-out first, so reaping cannot move a viewer under it.
        while self.step_delivery(now) {}
        if now < self.earliest {
            return;
        }
        for idx in 0..self.peers.len() {
            let peer = &mut self.peers[idx];
            if peer.conn.next_timeout > now {
                continue;
            }
            if let Err(e) = peer.conn.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(session = %peer.conn.session, "timeout handling failed: {e}");
                peer.conn.rtc.disconnect();
            }
            if let Some((conn, publisher)) = peer.publisher() {
                publisher.serve_pending_keyframe_requests(conn, now, &self.metrics);
            }
            self.poll(idx, now);
        }
        self.advance_catch_ups(now);
        self.reap(now);
        self.earliest = self
            .peers
            .iter()
            .map(|p| p.conn.next_timeout)
            .chain(self.catch_ups.iter().map(|c| c.due))
            .fold(now + IDLE_TICK, Instant::min);
    }

    /// Ends every session (the worker is shutting down); their endings come
    /// out of [`Engine::poll_output`].
    pub fn shutdown(&mut self) {
        self.deliveries.clear();
        self.catch_ups.clear();
        self.positions.clear();
        self.by_addr.clear();
        for mut p in std::mem::take(&mut self.peers) {
            p.conn.rtc.disconnect();
            self.forget(&p);
        }
    }

    /// Writes the next GOP frame of every catch-up that is due; a finished
    /// one hands the viewer the live frames held meanwhile.
    fn advance_catch_ups(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.catch_ups.len() {
            let (due, session) = (self.catch_ups[i].due, self.catch_ups[i].session);
            if due > now {
                i += 1;
                continue;
            }
            let Some(idx) = self.find(session) else {
                self.catch_ups.swap_remove(i);
                continue;
            };
            let c = &mut self.catch_ups[i];
            if let Some(frame) = c.frames.get(c.next).cloned() {
                let n = c.next;
                c.next += 1;
                c.due = now + CATCH_UP_GAP;
                let burst = c.burst;
                if let Some((conn, viewer)) = self.peers[idx].viewer() {
                    viewer.write_gop_frame(conn, &burst, n, &frame, now, &self.metrics);
                }
                self.send_written(idx, now);
                self.earliest = self.earliest.min(now + CATCH_UP_GAP);
            }
            let c = &self.catch_ups[i];
            if c.next < c.frames.len() {
                i += 1;
                continue;
            }
            let done = self.catch_ups.swap_remove(i);
            for frame in &done.held {
                self.deliver_to(idx, frame, now);
            }
        }
    }

    /// Drains one session's output until it asks for a timeout, queueing
    /// what it transmits and acting on its events.
    fn poll(&mut self, idx: usize, now: Instant) {
        let mut fx = Effects::default();
        let mut at = now;
        loop {
            let peer = &mut self.peers[idx];
            if !peer.conn.rtc.is_alive() {
                peer.conn.next_timeout = now;
                self.earliest = now;
                break;
            }
            match poll_rtc(&mut peer.conn.rtc, &mut at, || now) {
                Ok(RtcOutput::Timeout(t)) => {
                    peer.conn.next_timeout = t;
                    self.earliest = self.earliest.min(t);
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    peer.conn.stats.sent(t.contents.len());
                    self.out.push_back(Output::Transmit(Transmit {
                        destination: t.destination,
                        contents: t.contents.into(),
                    }));
                }
                Ok(RtcOutput::Event(e)) => peer.handle_event(e, now, &mut fx),
                Err(e) => {
                    tracing::debug!(session = %peer.conn.session, "poll_output failed, closing: {e}");
                    peer.conn.rtc.disconnect();
                }
            }
        }
        let hub = self.peers[idx].conn.hub.clone();
        if fx.viewer_joined {
            let layer = self.peers[idx]
                .viewer()
                .and_then(|(conn, viewer)| viewer.join_layer(conn, now));
            if !self.send_gop(idx, layer, now) {
                if let Some((_, viewer)) = self.peers[idx].viewer() {
                    viewer.note_keyframe_request(now);
                }
                self.metrics.keyframe_request(KeyframeOrigin::ViewerJoin);
                self.route_keyframe_request(&hub, now, layer);
            }
        }
        for (origin, layer) in fx.keyframe_requests {
            self.metrics.keyframe_request(origin);
            self.route_keyframe_request(&hub, now, layer);
        }
        if let Some(source) = fx.estimate {
            self.metrics.estimate(source);
        }
        if let Some(kind) = fx.stream_event {
            self.out.push_back(Output::StreamEvent {
                stream: hub.name.clone(),
                kind,
            });
        }
        for frame in fx.frames {
            if frame.top {
                let dropped = hub.offer_to_taps(&frame);
                for _ in 0..dropped {
                    self.metrics.drop(DropReason::TapFull);
                }
            }
            self.fan_out(&hub, frame);
        }
    }

    /// Gives a joining viewer its stream's cached GOP, if there is a live one.
    fn send_gop(&mut self, idx: usize, layer: Option<u8>, now: Instant) -> bool {
        let hub = self.peers[idx].conn.hub.clone();
        let Some(layer) = layer else {
            return false;
        };
        let Some((_, gop)) = self.gops.get(&(hub.id, layer)) else {
            return false;
        };
        if !gop.epoch().is_some_and(|e| hub.is_active_epoch(e)) {
            return false;
        }
        if gop.span() > MAX_BURST_SPAN {
            return false;
        }
        let frames = gop.frames().to_vec();
        let Some((conn, viewer)) = self.peers[idx].viewer() else {
            return false;
        };
        let Some(burst) = viewer.begin_gop(conn, &frames) else {
            return false;
        };
        let session = conn.session;
        self.metrics.gop_bursts.inc();
        // The keyframe now, the rest paced (see `CatchUp`).
        if let Some(first) = frames.first() {
            viewer.write_gop_frame(conn, &burst, 0, first, now, &self.metrics);
            self.send_written(idx, now);
        }
        if frames.len() > 1 {
            let due = now + CATCH_UP_GAP;
            self.catch_ups.push(CatchUp {
                session,
                burst,
                frames,
                next: 1,
                due,
                held: Vec::new(),
            });
            self.earliest = self.earliest.min(due);
        }
        true
    }

    fn route_keyframe_request(&mut self, hub: &StreamHub, now: Instant, layer: Option<u8>) {
        let Some(publisher) = hub.publisher() else {
            return;
        };
        if publisher.worker == self.index {
            let peer = self.find(publisher.session).map(|i| &mut self.peers[i]);
            if let Some((conn, p)) = peer.and_then(|p| p.publisher()) {
                p.request_keyframe(conn, now, &self.metrics, layer);
                // Output is drained by the next timeout pass.
                conn.next_timeout = now;
                self.earliest = now;
            }
        } else {
            self.out.push_back(Output::ToWorker {
                worker: publisher.worker,
                command: Command(Cmd::RequestKeyframe {
                    session: publisher.session,
                    layer,
                }),
            });
        }
    }

    fn fan_out(&mut self, hub: &Arc<StreamHub>, frame: Arc<Frame>) {
        // Video goes to every worker, viewers or not, so each keeps the
        // stream's current GOP for viewers that join there.
        let video = frame.kind == str0m::media::MediaKind::Video;
        for w in 0..hub.workers() {
            if !video && hub.viewers_on(w) == 0 {
                continue;
            }
            if w == self.index {
                self.deliver(hub.clone(), frame.clone());
            } else {
                self.out.push_back(Output::ToWorker {
                    worker: w,
                    command: Command(Cmd::Frame {
                        hub: hub.clone(),
                        frame: frame.clone(),
                    }),
                });
            }
        }
    }

    /// Keeps a video frame in its GOP and queues it for this worker's
    /// viewers of the stream.
    fn deliver(&mut self, hub: Arc<StreamHub>, frame: Arc<Frame>) {
        if frame.kind == str0m::media::MediaKind::Video {
            self.gops
                .entry((hub.id, frame.layer))
                .or_insert_with(|| (hub.clone(), GopCache::default()))
                .1
                .push(&frame);
        }
        self.deliveries.push_back(Delivery {
            hub,
            frame,
            next: 0,
        });
    }

    /// Writes the oldest pending frame to its next viewer. False when no
    /// frame is pending.
    fn step_delivery(&mut self, now: Instant) -> bool {
        let Some(mut d) = self.deliveries.pop_front() else {
            return false;
        };
        while d.next < self.peers.len() {
            let idx = d.next;
            d.next += 1;
            let peer = &self.peers[idx];
            if !peer.views(d.hub.id) {
                continue;
            }
            if let Some(c) = self
                .catch_ups
                .iter_mut()
                .find(|c| c.session == peer.conn.session)
            {
                c.held.push(d.frame.clone());
                continue;
            }
            let frame = d.frame.clone();
            self.deliveries.push_front(d);
            self.deliver_to(idx, &frame, now);
            return true;
        }
        true
    }

    /// Writes a live frame to the viewer at `idx` and queues its datagrams
    /// (see [`Engine::send_written`]). The time from the frame's ingest to
    /// here is `relaycast_forward_delay_seconds`.
    fn deliver_to(&mut self, idx: usize, frame: &Arc<Frame>, now: Instant) {
        let Some((conn, viewer)) = self.peers[idx].viewer() else {
            return;
        };
        let mut fx = Effects::default();
        let written = viewer.write_frame(conn, frame, now, &self.metrics, &mut fx);
        let hub = conn.hub.clone();
        for (origin, layer) in fx.keyframe_requests {
            self.metrics.keyframe_request(origin);
            self.route_keyframe_request(&hub, now, layer);
        }
        if written {
            self.send_written(idx, now);
            let delay = now.saturating_duration_since(frame.ready_at);
            self.metrics.forward_delay.observe(delay.as_secs_f64());
        } else {
            self.poll(idx, now);
        }
    }

    /// Drains what was just written to the viewer at `idx`: a timeout input
    /// releases str0m's queue at once (not on the next timeout pass). A
    /// large frame is written a chunk at a time
    /// ([`crate::peer::WRITE_CHUNK`]), each chunk drained before the next is
    /// written, which keeps str0m's per-viewer send queue small.
    fn send_written(&mut self, idx: usize, now: Instant) {
        loop {
            let conn = &mut self.peers[idx].conn;
            if let Err(e) = conn.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(session = %conn.session, "timeout handling failed: {e}");
                conn.rtc.disconnect();
            }
            self.poll(idx, now);
            let Some((conn, viewer)) = self.peers[idx].viewer() else {
                break;
            };
            if !conn.rtc.is_alive() || !viewer.write_next_chunk(conn) {
                break;
            }
        }
    }

    /// Removes sessions that ended or never connected, and GOPs of
    /// publisher sessions that ended.
    fn reap(&mut self, now: Instant) {
        self.gops
            .retain(|_, (hub, gop)| gop.epoch().is_some_and(|e| hub.is_active_epoch(e)));
        for p in &mut self.peers {
            let stall = p
                .publisher()
                .and_then(|(conn, p)| p.check_stall(&conn.hub, now));
            if let Some(kind) = stall {
                self.out.push_back(Output::StreamEvent {
                    stream: p.conn.hub.name.clone(),
                    kind,
                });
            }
        }
        let mut i = 0;
        while i < self.peers.len() {
            let c = &mut self.peers[i].conn;
            if !c.connected && now.saturating_duration_since(c.created) > CONNECT_DEADLINE {
                tracing::info!(session = %c.session, "session never connected; closing");
                c.rtc.disconnect();
            }
            if c.rtc.is_alive() {
                i += 1;
                continue;
            }
            let p = self.peers.swap_remove(i);
            self.positions.remove(&p.conn.session);
            if let Some(moved) = self.peers.get(i) {
                self.positions.insert(moved.conn.session, i);
            }
            self.by_addr.retain(|_, s| *s != p.conn.session);
            self.forget(&p);
        }
    }

    fn forget(&mut self, p: &Peer) {
        let c = &p.conn;
        tracing::info!(session = %c.session, stream = %c.hub.name, role = ?p.role(), "session ended");
        match p.role {
            PeerRole::Publisher(_) => {
                // Only the slot's holder is counted: a replaced session or
                // one already ended by DELETE left the gauge then.
                if c.hub.clear_publisher(c.session) {
                    self.metrics.publishers.dec();
                    self.out.push_back(Output::StreamEvent {
                        stream: c.hub.name.clone(),
                        kind: StreamEventKind::Ended,
                    });
                }
            }
            PeerRole::Viewer(_) => {
                c.hub.remove_viewer(self.index);
                self.metrics.viewers.dec();
            }
        }
        self.out.push_back(Output::SessionEnded(c.session));
    }
}

/// The next output of a session, feeding it the timeouts it asks for "now"
/// on the spot. str0m's pacer (sessions with bandwidth estimation) releases
/// the media its budget allows in one drain (vendor/str0m patch 2), but
/// after each padding or probe-cluster packet it asks for a timeout 1 µs
/// after its last input; breaking out there would send one such packet per
/// worker loop turn (each turn rescanning every session, the loop sleeping
/// at least a timer tick in between). The pacer's "now" is its last input plus 1 µs (so
/// packets get distinct send times): a timeout that close is fed at its own
/// time. `at` is the time last fed (start it at the session's last input);
/// `clock` moves it on. A timeout is fed at most once without output in
/// between, so a timer that does not advance cannot spin here.
pub(crate) fn poll_rtc(
    rtc: &mut Rtc,
    at: &mut Instant,
    clock: impl Fn() -> Instant,
) -> Result<RtcOutput, RtcError> {
    const IMMEDIATE: Duration = Duration::from_micros(1);
    let mut fed = false;
    loop {
        let out = rtc.poll_output()?;
        if let RtcOutput::Timeout(t) = out {
            if !fed {
                let now = clock().max(*at);
                if t <= now + IMMEDIATE {
                    fed = true;
                    *at = t.max(now);
                    rtc.handle_input(Input::Timeout(*at))?;
                    continue;
                }
            }
        }
        return Ok(out);
    }
}
