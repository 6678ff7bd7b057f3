//! # sfu — the selective forwarding unit
//!
//! Owns WebRTC sessions (publishers and viewers, each an `str0m::Rtc`), the
//! routing of a publisher's media to the viewers of its stream, keyframe
//! requests, and timeline continuity when a publisher leaves and returns.
//! It knows nothing of HTTP, tokens or databases.
//!
//! ## Sans-IO cores, thin drivers
//! [`Control`] admits sessions (one parsed [`Offer`] → str0m `Rtc` and
//! answer, publisher slot, worker) and returns the [`engine::Command`] for
//! the chosen worker; [`engine::Engine`], one per worker, owns that
//! worker's sessions and does the forwarding, taking time as an argument and
//! handing out datagrams, commands for other workers and events from
//! `poll_output`. [`Sfu`] is the handle: `Sfu::start` binds one UDP socket
//! per worker (ports `first_port`, `first_port + 1`, …) and runs each
//! engine's driver (`worker.rs`) on its own thread with a single-threaded
//! tokio runtime. ICE is lite: the server never sends checks, it answers
//! them, so peers that sent an offer without candidates (OBS ≥ 30.2) are
//! learnt as peer-reflexive. `tests/` drives the same cores on a virtual
//! clock.
//!
//! ## Fan-out
//! A publisher's depacketized frame becomes one `Arc<Frame>`, handed once to
//! each worker that has viewers of the stream (a bounded queue: when full the
//! frame is dropped and counted, the publisher's worker never waits). Each
//! worker writes it to its viewers, remapping payload types and rebasing RTP
//! time so a viewer sees one continuous track across publisher sessions.
//!
//! ## Time
//! Only the drivers read the clock (`clippy.toml` disallows it elsewhere)
//! and pass `now` into everything below them.

mod codecs;
mod control;
pub mod engine;
pub mod fragment;
mod frame;
mod gop_cache;
pub mod h264;
pub mod ingest;
pub mod layers;
pub mod metrics;
mod offer;
mod peer;
mod picture;
mod rtp_out;
mod session_stats;
#[cfg(test)]
mod sim_tests;
mod stream;
mod stun_binding;
mod tap;
mod tx_batch;
mod worker;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use str0m::Candidate;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use crate::control::{Admitted, Closed, Control};
use crate::engine::{Command, Engine};
pub use crate::frame::{Epoch, Frame};
pub use crate::ingest::{Ingest, IngestCodec, IngestError, IngestFrame, IngestSession};
pub use crate::layers::{LayerCap, LayerInfo, LayerTable};
pub use crate::metrics::Metrics;
pub use crate::offer::Offer;
pub use crate::peer::Role;
pub use crate::session_stats::{SessionStats, StatsCell};
pub use crate::tap::{StreamEvent, StreamEventKind, Tap, STALL_AFTER};
use crate::worker::{Inbox, Worker};
pub use str0m::format::Codec;
pub use str0m::media::{Frequency, MediaKind, MediaTime};

/// Capacity of each worker's inbound queue (frames and commands).
const WORKER_QUEUE: usize = 8192;

/// Bandwidth a simulcast viewer is assumed to have until its estimator
/// knows better: enough for a typical middle layer.
const INITIAL_ESTIMATE_BPS: u64 = 1_200_000;

/// Stream events buffered for a slow subscriber before it starts missing them.
const EVENT_QUEUE: usize = 1024;

/// Identifies one WebRTC session; also the last segment of its WHIP/WHEP
/// resource URL, so it is random and unguessable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u128);

impl SessionId {
    fn random() -> SessionId {
        SessionId(rand::random())
    }

    pub fn parse(s: &str) -> Option<SessionId> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Local address the media sockets bind to.
    pub bind_ip: IpAddr,
    /// Address advertised in ICE candidates.
    pub public_ip: IpAddr,
    /// First UDP port; worker `i` uses `first_port + i`. 0 lets the OS choose.
    pub first_port: u16,
    pub workers: usize,
    /// Publishers and viewers together; more get [`SfuError::Full`].
    pub max_sessions: usize,
    /// Send runs of datagrams to one viewer as one UDP GSO call where the
    /// kernel supports it (see `tx_batch`).
    pub udp_gso: bool,
    /// Pace bandwidth-estimating viewers' video at 1.1x their estimate
    /// (str0m's leaky-bucket pacer) instead of forwarding it as it comes.
    /// Off by default: a keyframe then reaches the viewer in one burst,
    /// as the publisher's encoder produced it, instead of over ~100 ms.
    pub pace_viewers: bool,
    /// Sent packets a bandwidth-estimating viewer remembers for its TWCC
    /// feedback (str0m's default is 1000, ~80 B each): it must cover one
    /// feedback interval plus a round trip of the viewer's packets.
    pub twcc_send_history: usize,
    /// Where simulcast viewers' bandwidth estimates come from.
    pub viewer_estimator: ViewerEstimator,
}

/// The source of a simulcast viewer's bandwidth estimate (its layer choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewerEstimator {
    /// Send-side: the viewer reports every packet's arrival (transport-wide
    /// congestion control feedback) and str0m's estimator, with padding
    /// probes, computes the estimate here. Moves up as well as down.
    #[default]
    Twcc,
    /// Receive-side: transport-wide sequence numbers are not negotiated,
    /// so a browser runs its own estimator and reports it in REMB messages;
    /// the server keeps no send records, runs no estimator and sends no
    /// padding. Viewers start on the best layer they may have; the estimate
    /// can only grow with what the viewer receives, so a viewer moved down
    /// comes back up only as far as its layer's own rate lets the browser
    /// see room.
    Remb,
}

/// The default of [`SfuConfig::twcc_send_history`]: a 720p layer with
/// padding probes sends up to ~500 packets/s; Chromium reports every
/// 50-100 ms, so 256 records cover feedback arriving 400 ms late.
pub const DEFAULT_TWCC_SEND_HISTORY: usize = 256;

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The offer is not valid SDP.
    #[error("malformed SDP offer: {reason}")]
    BadOffer { reason: String },
    /// The offer has no audio or video in the needed direction.
    #[error("the offer has no media to {action}")]
    NoMedia { action: &'static str },
    /// Nothing in the offer can be forwarded (codecs).
    #[error("the offer has no codec relaycast can forward for this stream")]
    NoCommonCodec,
    /// Another credential is publishing this stream.
    #[error("the stream already has a publisher")]
    StreamBusy,
    #[error("no such session")]
    UnknownSession,
    /// The trickle/restart fragment could not be understood.
    #[error("malformed ICE fragment: {reason}")]
    BadFragment { reason: String },
    /// A media worker stopped (shutdown in progress).
    #[error("media worker unavailable")]
    WorkerGone,
    /// The server holds as many sessions as it is configured for.
    #[error("server is at its session limit")]
    Full,
    #[error("binding media port: {0}")]
    Io(#[from] std::io::Error),
}

/// ICE credentials (`a=ice-ufrag`, `a=ice-pwd`) of one side of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// What the HTTP layer needs to answer a WHIP/WHEP POST.
#[derive(Debug, Clone)]
pub struct SessionAnswer {
    pub session: SessionId,
    pub sdp: String,
    pub ice_ufrag: String,
    pub ice_pwd: String,
}

/// How often a viewer's egress counters ([`Sfu::session_stats`]) are
/// refreshed.
pub const VIEWER_STATS_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct WorkerLink {
    pub tx: mpsc::Sender<Inbox>,
}

/// What the workers' drivers share with the handle.
pub(crate) struct Shared {
    pub control: Arc<Control>,
    pub workers: Vec<WorkerLink>,
    pub metrics: Metrics,
    pub events: broadcast::Sender<StreamEvent>,
}

impl Shared {
    /// Hands a command to worker `worker`'s inbox without waiting; a full
    /// (or missing) inbox drops it and counts `QueueFull`. Returns whether
    /// it was handed over.
    pub fn send_to_worker(&self, worker: usize, command: Command) -> bool {
        let sent = self
            .workers
            .get(worker)
            .is_some_and(|w| w.tx.try_send(Inbox::Engine(command)).is_ok());
        if !sent {
            self.metrics.drop(metrics::DropReason::QueueFull);
        }
        sent
    }

    pub fn emit(&self, stream: &str, kind: StreamEventKind) {
        tracing::info!(stream, event = ?kind, "stream event");
        // No receiver is not an error: nobody listens yet.
        #[allow(clippy::disallowed_methods)] // events are stamped as the driver emits them
        let _ = self.events.send(StreamEvent {
            stream: stream.to_string(),
            kind,
            at: std::time::SystemTime::now(),
        });
    }
}

/// Handle to the running forwarder; cheap to clone. Admission and lookups
/// are the [`Control`]'s; this delivers its commands to the workers.
#[derive(Clone)]
pub struct Sfu {
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl Sfu {
    /// Binds the media sockets and starts the workers.
    pub fn start(cfg: &SfuConfig, metrics: Metrics) -> Result<Sfu, SfuError> {
        let workers = cfg.workers.max(1);
        let mut links = Vec::with_capacity(workers);
        let mut pending = Vec::with_capacity(workers);
        let mut addrs = Vec::with_capacity(workers);
        for i in 0..workers {
            let port = if cfg.first_port == 0 {
                0
            } else {
                cfg.first_port.saturating_add(i as u16)
            };
            let socket = bind_media_socket(SocketAddr::new(cfg.bind_ip, port))?;
            let local = socket.local_addr()?;
            addrs.push(SocketAddr::new(cfg.public_ip, local.port()));
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            links.push(WorkerLink { tx });
            pending.push((socket, rx));
        }
        let control = Arc::new(Control::new(cfg, addrs.clone(), metrics.clone()));
        let shared = Arc::new(Shared {
            control,
            workers: links,
            metrics,
            events: broadcast::channel(EVENT_QUEUE).0,
        });
        let mut threads = Vec::new();
        let udp_gso = cfg.udp_gso;
        for (i, (socket, rx)) in pending.into_iter().enumerate() {
            let shared = shared.clone();
            #[allow(clippy::disallowed_methods)] // starting the drivers
            let engine = Engine::new(i, addrs[i], shared.metrics.clone(), Instant::now());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        match tokio::net::UdpSocket::from_std(socket) {
                            Ok(socket) => {
                                Worker::new(engine, socket, rx, shared, udp_gso).run().await
                            }
                            Err(e) => tracing::error!("media worker {i} could not start: {e}"),
                        }
                    })
                })?;
            threads.push(handle);
        }
        tracing::info!(workers, addrs = ?addrs, "media workers started");
        Ok(Sfu {
            shared,
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    fn control(&self) -> &Control {
        &self.shared.control
    }

    /// Addresses advertised in ICE candidates, one per worker.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.control().candidate_addrs().to_vec()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Whether a publisher is currently live on the stream.
    pub fn is_live(&self, stream: &str) -> bool {
        self.control().is_live(stream)
    }

    /// Subscribes to stream lifecycle events (live, stalled, resumed, ended).
    pub fn events(&self) -> broadcast::Receiver<StreamEvent> {
        self.shared.events.subscribe()
    }

    /// Attaches a tap to a stream (live or not yet): it receives the frames
    /// viewers get (audio and the top video layer) through a queue of
    /// `capacity` frames; when full, frames are dropped and counted, never
    /// waited for.
    pub fn tap(&self, stream: &str, capacity: usize) -> Tap {
        self.control().tap(stream, capacity)
    }

    /// Changes a viewer's simulcast layer cap (WHEP layer control).
    pub async fn set_layer_cap(&self, session: SessionId, cap: LayerCap) -> Result<(), SfuError> {
        let (worker, cmd) = self.control().set_layer_cap(session, cap)?;
        self.send(worker, cmd).await
    }

    /// The stream's simulcast layers as last measured (lowest first).
    pub fn layers(&self, stream: &str) -> LayerTable {
        self.control().layers(stream)
    }

    /// Asks the stream's publisher for a keyframe (throttled like viewer
    /// requests). False when nobody publishes the stream.
    pub fn request_keyframe(&self, stream: &str) -> bool {
        let Some((worker, cmd)) = self.control().keyframe_request(stream) else {
            return false;
        };
        self.shared
            .workers
            .get(worker)
            .is_some_and(|w| w.tx.try_send(Inbox::Engine(cmd)).is_ok())
    }

    /// Sends `data` (a UTF-8 text message) to every viewer of `stream` that
    /// opened a data channel. Nothing waits: a worker whose queue is full
    /// misses it (counted as a `queue_full` drop), and a viewer whose channel
    /// is backed up skips it. Returns how many workers it was handed to.
    pub fn send_data(&self, stream: &str, data: Arc<[u8]>) -> usize {
        let mut reached = 0;
        for (worker, cmd) in self.control().data(stream, &data) {
            if self.shared.send_to_worker(worker, cmd) {
                reached += 1;
            }
        }
        reached
    }

    /// A session's counters (viewers: bytes, loss, layers shown), kept up to
    /// date by its worker; the handle stays readable after the session ends.
    pub fn session_stats(&self, session: SessionId) -> Option<Arc<StatsCell>> {
        self.control().session_stats(session)
    }

    /// Names of the streams with a publisher now.
    pub fn live_streams(&self) -> Vec<String> {
        self.control().live_streams()
    }

    /// Number of viewers of a stream across workers.
    pub fn viewer_count(&self, stream: &str) -> usize {
        self.control().viewer_count(stream)
    }

    /// Accepts a publisher's offer for `stream`. `owner` identifies the
    /// credential; the same owner replaces a live session (OBS reconnects
    /// that way), another one gets [`SfuError::StreamBusy`].
    pub async fn publish(
        &self,
        stream: &str,
        offer: Offer,
        owner: &str,
    ) -> Result<SessionAnswer, SfuError> {
        let worker = self.control().pick_worker();
        // Queue space first: from admission to the send nothing awaits, so
        // a client hanging up cannot leave bookkeeping without a session.
        let permit = self.reserve(worker).await?;
        #[allow(clippy::disallowed_methods)] // the handle is the control side's clock
        let now = Instant::now();
        let admitted = self.control().publish(now, worker, stream, offer, owner)?;
        permit.send(Inbox::Engine(admitted.command));
        if let Some((old_worker, close)) = admitted.replaced {
            let sfu = self.clone();
            tokio::spawn(async move {
                let _ = sfu.send(old_worker, close).await;
            });
        }
        Ok(admitted.answer)
    }

    /// Claims `stream` for a publisher that is not a WebRTC session (RTMP,
    /// SRT: the `ingest` crate) under the same rules as [`Sfu::publish`]:
    /// the same `owner` replaces a live publisher (WebRTC or not), another
    /// one gets [`SfuError::StreamBusy`]. Frames are then pushed through the
    /// returned [`Ingest`].
    pub async fn ingest(&self, stream: &str, owner: &str) -> Result<Ingest, SfuError> {
        let claim = self.control().claim_ingest(stream, owner)?;
        if let Some((old_worker, close)) = claim.replaced {
            let _ = self.send(old_worker, close).await;
        }
        Ok(Ingest::new(self.shared.clone(), claim.session))
    }

    /// Accepts a viewer's offer for `stream`; the viewer starts receiving
    /// when (or as soon as) the stream has a publisher.
    pub async fn subscribe(&self, stream: &str, offer: Offer) -> Result<SessionAnswer, SfuError> {
        self.subscribe_with(stream, offer, LayerCap::Auto).await
    }

    /// [`Sfu::subscribe`] with a cap on the simulcast layer the viewer gets.
    pub async fn subscribe_with(
        &self,
        stream: &str,
        offer: Offer,
        cap: LayerCap,
    ) -> Result<SessionAnswer, SfuError> {
        let worker = self.control().viewer_worker(stream);
        let permit = self.reserve(worker).await?;
        #[allow(clippy::disallowed_methods)] // the handle is the control side's clock
        let now = Instant::now();
        let admitted = self.control().subscribe(now, worker, stream, offer, cap)?;
        permit.send(Inbox::Engine(admitted.command));
        Ok(admitted.answer)
    }

    async fn reserve(&self, worker: usize) -> Result<mpsc::Permit<'_, Inbox>, SfuError> {
        let link = self
            .shared
            .workers
            .get(worker)
            .ok_or(SfuError::WorkerGone)?;
        link.tx.reserve().await.map_err(|_| SfuError::WorkerGone)
    }

    async fn send(&self, worker: usize, cmd: Command) -> Result<(), SfuError> {
        self.send_inbox(worker, Inbox::Engine(cmd)).await
    }

    async fn send_inbox(&self, worker: usize, msg: Inbox) -> Result<(), SfuError> {
        let link = self
            .shared
            .workers
            .get(worker)
            .ok_or(SfuError::WorkerGone)?;
        link.tx.send(msg).await.map_err(|_| SfuError::WorkerGone)
    }

    /// The session's stream and role, if it exists.
    pub fn session(&self, session: SessionId) -> Option<(String, Role)> {
        self.control().session(session)
    }

    /// Ends a session (WHIP/WHEP DELETE).
    pub async fn close(&self, session: SessionId) -> Result<(), SfuError> {
        let closed = self.control().close(session)?;
        if let Some(stream) = &closed.ended {
            self.shared.emit(stream, StreamEventKind::Ended);
        }
        self.send(closed.worker, closed.command).await
    }

    /// Adds trickled remote candidates (WHIP/WHEP PATCH).
    pub async fn add_candidates(
        &self,
        session: SessionId,
        candidates: Vec<Candidate>,
    ) -> Result<(), SfuError> {
        let (worker, cmd) = self.control().add_candidates(session, candidates)?;
        self.send(worker, cmd).await
    }

    /// ICE restart: installs the remote's new credentials and returns ours.
    pub async fn ice_restart(
        &self,
        session: SessionId,
        remote: IceCredentials,
    ) -> Result<IceCredentials, SfuError> {
        let worker = self.control().session_worker(session)?;
        let (reply, rx) = oneshot::channel();
        self.send_inbox(
            worker,
            Inbox::IceRestart {
                session,
                remote,
                reply,
            },
        )
        .await?;
        rx.await
            .map_err(|_| SfuError::WorkerGone)?
            .ok_or(SfuError::UnknownSession)
    }

    /// The candidate lines (`candidate:…`) of a session's worker, for ICE
    /// restart answers.
    pub fn local_candidate_lines(&self, session: SessionId) -> Result<Vec<String>, SfuError> {
        self.control().local_candidate_lines(session)
    }

    /// Stops the workers and waits for their threads.
    pub async fn shutdown(&self) {
        for w in &self.shared.workers {
            let _ = w.tx.send(Inbox::Shutdown).await;
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Socket buffers for media: a worker sends GOP bursts to joining viewers
/// and receives bursts from many peers between two reads.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

fn bind_media_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel caps these at net.core.{w,r}mem_max; a smaller buffer is
    // not fatal, so failures are only logged.
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("SO_SNDBUF: {e}");
    }
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::warn!("SO_RCVBUF: {e}");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_reject_garbage() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(SessionId::parse("xyz"), None);
        assert_eq!(SessionId::parse(&"g".repeat(32)), None);
    }
}
