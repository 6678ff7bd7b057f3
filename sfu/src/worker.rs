//! A media worker: one UDP socket, the sessions assigned to it, and a thin
//! tokio loop that moves datagrams and time into their `Rtc`s and drains
//! their output. Frames for viewers on other workers cross once per worker,
//! by reference.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, IceCreds, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::gop_cache::{GopCache, MAX_BURST_SPAN};
use crate::layers::LayerCap;
use crate::metrics::{DropReason, KeyframeOrigin};
use crate::peer::{Effects, GopBurst, Peer, PeerKind, Role, CONNECT_DEADLINE};
use crate::stream::{session_epoch, Frame, StreamHub};
use crate::tx_batch::TxBatch;
use crate::{SessionId, Shared};

pub(crate) enum Command {
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
    IceRestart {
        session: SessionId,
        remote: IceCreds,
        reply: oneshot::Sender<Option<IceCreds>>,
    },
    Shutdown,
}

pub(crate) struct Worker {
    index: usize,
    socket: UdpSocket,
    /// Outgoing datagrams (batched per destination with GSO).
    tx: TxBatch,
    /// Address put in our ICE candidate; the destination of every datagram
    /// as the ICE agent must see it.
    candidate_addr: SocketAddr,
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    peers: Vec<Peer>,
    /// Position of each session in `peers`.
    positions: HashMap<SessionId, usize>,
    by_addr: HashMap<SocketAddr, SessionId>,
    local_frames: Vec<(Arc<StreamHub>, Arc<Frame>)>,
    /// Current GOP of each stream and layer whose video reaches this worker.
    gops: HashMap<(u64, u8), (Arc<StreamHub>, GopCache)>,
    /// Joining viewers still being sent their GOP (see [`CatchUp`]).
    catch_ups: Vec<CatchUp>,
    /// No session needs a timeout before this; lets the loop skip scanning
    /// every session on every datagram. May be early, never late.
    earliest: Instant,
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

/// Spacing of a catch-up's frames: a 60-frame GOP takes 120 ms, 16 times
/// faster than real time.
const CATCH_UP_GAP: Duration = Duration::from_millis(2);

/// Datagrams read per loop turn after the one that woke it.
const RECV_BATCH: usize = 64;

/// Longest the loop sleeps without looking at its sessions (reaping, deadlines).
/// Short enough that a stalled publisher is reported within a second.
const IDLE_TICK: Duration = Duration::from_millis(200);

impl Worker {
    pub fn new(
        index: usize,
        socket: UdpSocket,
        candidate_addr: SocketAddr,
        rx: mpsc::Receiver<Command>,
        shared: Arc<Shared>,
        udp_gso: bool,
    ) -> Worker {
        let tx = TxBatch::new(&socket, udp_gso);
        if udp_gso && !tx.batching() {
            tracing::info!(
                worker = index,
                "UDP GSO unavailable; sending datagrams one by one"
            );
        }
        Worker {
            tx,
            index,
            socket,
            candidate_addr,
            rx,
            shared,
            peers: Vec::new(),
            positions: HashMap::new(),
            by_addr: HashMap::new(),
            local_frames: Vec::new(),
            gops: HashMap::new(),
            catch_ups: Vec::new(),
            earliest: Instant::now(),
        }
    }

    pub async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            if now >= self.earliest {
                self.drive_timeouts(now);
                self.reap(now);
                self.earliest = self
                    .peers
                    .iter()
                    .map(|p| p.next_timeout)
                    .chain(self.catch_ups.iter().map(|c| c.due))
                    .fold(now + IDLE_TICK, Instant::min);
            }
            let next = self.earliest.max(now + Duration::from_micros(200));
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.handle_command(cmd, Instant::now()),
                },
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => {
                        let now = Instant::now();
                        if let Some(data) = buf.get(..n) {
                            self.handle_datagram(data, source, now);
                        }
                        // Drain what else is queued before looking at timers
                        // and commands again: one loop turn per datagram
                        // would let the kernel queue overflow under load.
                        for _ in 0..RECV_BATCH {
                            let Ok((n, source)) = self.socket.try_recv_from(&mut buf) else {
                                break;
                            };
                            if let Some(data) = buf.get(..n) {
                                self.handle_datagram(data, source, Instant::now());
                            }
                        }
                    }
                    Err(e) => {
                        // ICMP errors surface here on some platforms; they are not fatal.
                        tracing::debug!(worker = self.index, "recv_from: {e}");
                    }
                },
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
        self.positions.clear();
        for mut p in std::mem::take(&mut self.peers) {
            p.rtc.disconnect();
            self.forget(&p);
        }
    }

    fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::AddPeer(peer) => {
                let mut peer = *peer;
                peer.next_timeout = now;
                self.positions.insert(peer.session, self.peers.len());
                self.peers.push(peer);
                let idx = self.peers.len() - 1;
                self.poll(idx, now);
            }
            Command::Frame { hub, frame } => {
                self.deliver(&hub, &frame, now);
            }
            Command::RequestKeyframe { session, layer } => {
                if let Some(idx) = self.find(session) {
                    self.peers[idx].request_keyframe(now, &self.shared.metrics, layer);
                    self.poll(idx, now);
                }
            }
            Command::SetLayerCap { session, cap } => {
                if let Some(idx) = self.find(session) {
                    self.peers[idx].set_layer_cap(cap);
                }
            }
            Command::Data { hub, data } => {
                for idx in 0..self.peers.len() {
                    let peer = &mut self.peers[idx];
                    if peer.hub.id != hub.id || peer.role() != Role::Viewer {
                        continue;
                    }
                    if peer.send_data(&data) {
                        self.shared.metrics.data_messages.inc();
                        self.poll(idx, now);
                    }
                }
            }
            Command::Close { session } => {
                if let Some(idx) = self.find(session) {
                    let peer = &mut self.peers[idx];
                    // close() sends DTLS close_notify and RTCP BYE so the peer
                    // learns at once; the session goes when that has drained.
                    if peer.rtc.close().is_err() {
                        peer.rtc.disconnect();
                    }
                    self.poll(idx, now);
                }
                self.earliest = now;
            }
            Command::AddCandidates {
                session,
                candidates,
            } => {
                if let Some(idx) = self.find(session) {
                    for c in candidates {
                        self.peers[idx].rtc.add_remote_candidate(c);
                    }
                    self.poll(idx, now);
                }
            }
            Command::IceRestart {
                session,
                remote,
                reply,
            } => {
                let creds = self.find(session).and_then(|idx| {
                    let creds = self.peers[idx].ice_restart(&remote);
                    self.poll(idx, now);
                    creds
                });
                let _ = reply.send(creds);
            }
            Command::Shutdown => {}
        }
        self.flush_local(now);
    }

    fn find(&self, session: SessionId) -> Option<usize> {
        self.positions.get(&session).copied()
    }

    fn handle_datagram(&mut self, data: &[u8], source: SocketAddr, now: Instant) {
        let metrics = &self.shared.metrics;
        metrics.packets_in.inc();
        metrics.bytes_in.inc_by(data.len() as u64);
        let Ok(contents) = DatagramRecv::try_from(data) else {
            if !self.answer_stun_binding(data, source) {
                metrics.drop(DropReason::Malformed);
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
            Some(idx) if self.peers[idx].rtc.accepts(&input) => Some(idx),
            _ if is_stun => self.peers.iter().position(|p| p.rtc.accepts(&input)),
            _ => None,
        };
        let Some(idx) = idx else {
            if !self.answer_stun_binding(data, source) {
                self.shared.metrics.drop(DropReason::UnknownPeer);
            }
            return;
        };
        self.by_addr.insert(source, self.peers[idx].session);
        if let Err(e) = self.peers[idx].rtc.handle_input(input) {
            tracing::debug!(session = %self.peers[idx].session, "input rejected, closing: {e}");
            self.peers[idx].rtc.disconnect();
        }
        self.poll(idx, now);
        self.flush_local(now);
    }

    /// Plain STUN binding requests (no ICE username) are answered, so the
    /// media port doubles as the STUN server the WHIP/WHEP Link header names.
    fn answer_stun_binding(&self, data: &[u8], source: SocketAddr) -> bool {
        let mut out = [0u8; 64];
        match crate::stun_binding::respond(data, source, &mut out) {
            Some(n) => {
                self.send(&out[..n], source);
                true
            }
            None => false,
        }
    }

    /// Sends one datagram at once (nothing is pending in the batch
    /// outside [`Worker::poll`]).
    fn send(&self, bytes: &[u8], dest: SocketAddr) {
        crate::tx_batch::send_one(&self.socket, &self.shared.metrics, bytes, dest);
    }

    fn drive_timeouts(&mut self, now: Instant) {
        for idx in 0..self.peers.len() {
            if self.peers[idx].next_timeout <= now {
                if let Err(e) = self.peers[idx].rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(session = %self.peers[idx].session, "timeout handling failed: {e}");
                    self.peers[idx].rtc.disconnect();
                }
                self.peers[idx].serve_pending_keyframe_requests(now, &self.shared.metrics);
                self.poll(idx, now);
            }
        }
        self.advance_catch_ups(now);
        self.flush_local(now);
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
                self.peers[idx].write_gop_frame(&burst, n, &frame, now, &self.shared.metrics);
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

    /// Drains one peer's output until it asks for a timeout, sending what it
    /// transmits and acting on its events.
    fn poll(&mut self, idx: usize, now: Instant) {
        let mut fx = Effects::default();
        let mut at = now;
        loop {
            let peer = &mut self.peers[idx];
            if !peer.rtc.is_alive() {
                peer.next_timeout = now;
                self.earliest = now;
                break;
            }
            match poll_output(&mut peer.rtc, &mut at, Instant::now) {
                Ok(Output::Timeout(t)) => {
                    peer.next_timeout = t;
                    self.earliest = self.earliest.min(t);
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    peer.stats.sent(t.contents.len());
                    self.tx.push(
                        &self.socket,
                        &self.shared.metrics,
                        &t.contents,
                        t.destination,
                    );
                }
                Ok(Output::Event(e)) => peer.handle_event(e, now, &mut fx),
                Err(e) => {
                    tracing::debug!(session = %peer.session, "poll_output failed, closing: {e}");
                    peer.rtc.disconnect();
                }
            }
        }
        self.tx.flush(&self.socket, &self.shared.metrics);
        let hub = self.peers[idx].hub.clone();
        if fx.viewer_joined {
            let layer = self.peers[idx].join_layer(now);
            if !self.send_gop(idx, layer, now) {
                self.peers[idx].note_keyframe_request(now);
                self.shared
                    .metrics
                    .keyframe_request(KeyframeOrigin::ViewerJoin);
                self.route_keyframe_request(&hub, now, layer);
            }
        }
        for (origin, layer) in fx.keyframe_requests {
            self.shared.metrics.keyframe_request(origin);
            self.route_keyframe_request(&hub, now, layer);
        }
        if let Some(kind) = fx.stream_event {
            self.shared.emit(&hub.name, kind);
        }
        for frame in fx.frames {
            if frame.top {
                let dropped = hub.offer_to_taps(&frame);
                for _ in 0..dropped {
                    self.shared.metrics.drop(DropReason::TapFull);
                }
            }
            self.fan_out(&hub, frame);
        }
    }

    /// Gives a joining viewer its stream's cached GOP, if there is a live one.
    fn send_gop(&mut self, idx: usize, layer: Option<u8>, now: Instant) -> bool {
        let hub = self.peers[idx].hub.clone();
        let Some(layer) = layer else {
            return false;
        };
        let Some((_, gop)) = self.gops.get(&(hub.id, layer)) else {
            return false;
        };
        if !gop
            .epoch()
            .is_some_and(|e| hub.is_active_epoch(session_epoch(e)))
        {
            return false;
        }
        if gop.span() > MAX_BURST_SPAN {
            return false;
        }
        let frames = gop.frames().to_vec();
        let Some(burst) = self.peers[idx].begin_gop(&frames) else {
            return false;
        };
        let session = self.peers[idx].session;
        self.shared.metrics.gop_bursts.inc();
        // The keyframe now, the rest paced (see `CatchUp`).
        if let Some(first) = frames.first() {
            self.peers[idx].write_gop_frame(&burst, 0, first, now, &self.shared.metrics);
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
            if let Some(idx) = self.find(publisher.session) {
                self.peers[idx].request_keyframe(now, &self.shared.metrics, layer);
                // Output is drained by the loop's next timeout pass.
                self.peers[idx].next_timeout = now;
                self.earliest = now;
            }
        } else if let Some(w) = self.shared.workers.get(publisher.worker) {
            if w.tx
                .try_send(Command::RequestKeyframe {
                    session: publisher.session,
                    layer,
                })
                .is_err()
            {
                self.shared.metrics.drop(DropReason::QueueFull);
            }
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
                self.local_frames.push((hub.clone(), frame.clone()));
            } else if let Some(link) = self.shared.workers.get(w) {
                let cmd = Command::Frame {
                    hub: hub.clone(),
                    frame: frame.clone(),
                };
                if link.tx.try_send(cmd).is_err() {
                    self.shared.metrics.drop(DropReason::QueueFull);
                }
            }
        }
    }

    fn flush_local(&mut self, now: Instant) {
        while !self.local_frames.is_empty() {
            let frames = std::mem::take(&mut self.local_frames);
            for (hub, frame) in frames {
                self.deliver(&hub, &frame, now);
            }
        }
    }

    fn deliver(&mut self, hub: &Arc<StreamHub>, frame: &Arc<Frame>, now: Instant) {
        let stream = hub.id;
        if frame.kind == str0m::media::MediaKind::Video {
            self.gops
                .entry((stream, frame.layer))
                .or_insert_with(|| (hub.clone(), GopCache::default()))
                .1
                .push(frame);
        }
        for idx in 0..self.peers.len() {
            let peer = &self.peers[idx];
            if peer.hub.id != stream || peer.role() != Role::Viewer {
                continue;
            }
            if let Some(c) = self
                .catch_ups
                .iter_mut()
                .find(|c| c.session == peer.session)
            {
                c.held.push(frame.clone());
                continue;
            }
            self.deliver_to(idx, frame, now);
        }
    }

    /// Writes a live frame to the viewer at `idx` and sends it at once (see
    /// [`Worker::send_written`]), so each viewer's datagrams leave while the
    /// frame is hot and before the next viewer's are built. The time from
    /// the frame's ingest to here is `relaycast_forward_delay_seconds`.
    fn deliver_to(&mut self, idx: usize, frame: &Arc<Frame>, now: Instant) {
        let peer = &mut self.peers[idx];
        let mut fx = Effects::default();
        let written = peer.write_frame(frame, now, &self.shared.metrics, &mut fx);
        let hub = peer.hub.clone();
        for (origin, layer) in fx.keyframe_requests {
            self.shared.metrics.keyframe_request(origin);
            self.route_keyframe_request(&hub, now, layer);
        }
        if written {
            self.send_written(idx, now);
            let delay = Instant::now().saturating_duration_since(frame.ready_at);
            self.shared
                .metrics
                .forward_delay
                .observe(delay.as_secs_f64());
        } else {
            self.poll(idx, now);
        }
    }

    /// Sends what was just written to the viewer at `idx`: a timeout input
    /// releases str0m's queue at once (not on the loop's next timeout pass)
    /// and the drain sends it. A large frame is written a chunk at a time
    /// ([`crate::peer::WRITE_CHUNK`]), each chunk sent before the next is
    /// written, which keeps str0m's per-viewer send queue small.
    fn send_written(&mut self, idx: usize, now: Instant) {
        loop {
            let peer = &mut self.peers[idx];
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(Instant::now())) {
                tracing::debug!(session = %peer.session, "timeout handling failed: {e}");
                peer.rtc.disconnect();
            }
            self.poll(idx, now);
            let peer = &mut self.peers[idx];
            if !peer.rtc.is_alive() || !peer.write_next_chunk() {
                break;
            }
        }
    }

    /// Removes sessions that ended or never connected, and GOPs of
    /// publisher sessions that ended.
    fn reap(&mut self, now: Instant) {
        self.gops.retain(|_, (hub, gop)| {
            gop.epoch()
                .is_some_and(|e| hub.is_active_epoch(session_epoch(e)))
        });
        for p in &mut self.peers {
            if let Some(kind) = p.check_stall(now) {
                self.shared.emit(&p.hub.name, kind);
            }
        }
        let mut i = 0;
        while i < self.peers.len() {
            let p = &mut self.peers[i];
            if !p.connected && now.saturating_duration_since(p.created) > CONNECT_DEADLINE {
                tracing::info!(session = %p.session, "session never connected; closing");
                p.rtc.disconnect();
            }
            if p.rtc.is_alive() {
                i += 1;
                continue;
            }
            let p = self.peers.swap_remove(i);
            self.positions.remove(&p.session);
            if let Some(moved) = self.peers.get(i) {
                self.positions.insert(moved.session, i);
            }
            self.by_addr.retain(|_, s| *s != p.session);
            self.forget(&p);
        }
    }

    fn forget(&self, p: &Peer) {
        tracing::info!(session = %p.session, stream = %p.hub.name, role = ?p.role(), "session ended");
        match p.kind {
            PeerKind::Publisher(_) => {
                // Only the slot's holder is counted: a replaced session or
                // one already ended by DELETE left the gauge then.
                if p.hub.clear_publisher(p.session) {
                    self.shared.metrics.publishers.dec();
                    self.shared.emit(&p.hub.name, crate::StreamEventKind::Ended);
                }
            }
            PeerKind::Viewer(_) => {
                p.hub.remove_viewer(self.index);
                self.shared.metrics.viewers.dec();
            }
        }
        self.shared.sessions.lock().remove(&p.session);
    }
}

/// The next output of a session, feeding it the timeouts it asks for "now"
/// on the spot. str0m's pacer (sessions with bandwidth estimation) releases
/// one packet per timeout input and then asks for an immediate timeout;
/// breaking out there would send one packet per worker loop turn (each turn
/// rescanning every session, the loop sleeping at least a timer tick in
/// between), so a keyframe would trickle out over tens of milliseconds and
/// never form a GSO run. The pacer's "now" is its last input plus 1 µs (so
/// packets get distinct send times): a timeout that close is fed at its own
/// time. `at` is the time last fed (start it at the session's last input);
/// `clock` moves it on. A timeout is fed at most once without output in
/// between, so a timer that does not advance cannot spin here.
pub(crate) fn poll_output(
    rtc: &mut Rtc,
    at: &mut Instant,
    clock: impl Fn() -> Instant,
) -> Result<Output, RtcError> {
    const IMMEDIATE: Duration = Duration::from_micros(1);
    let mut fed = false;
    loop {
        let out = rtc.poll_output()?;
        if let Output::Timeout(t) = out {
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
