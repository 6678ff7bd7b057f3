//! # sfu — the selective forwarding unit
//!
//! Owns WebRTC sessions (publishers and viewers, each an `str0m::Rtc`), the
//! routing of a publisher's media to the viewers of its stream, keyframe
//! requests, and timeline continuity when a publisher leaves and returns.
//! It knows nothing of HTTP, tokens or databases.
//!
//! ## Run loop
//! `Sfu::start` binds one UDP socket per worker (ports `first_port`,
//! `first_port + 1`, …) and runs each worker on its own thread with a
//! single-threaded tokio runtime. A worker feeds datagrams and timeouts into
//! the `Rtc`s it owns (sans-IO) and drains their output. ICE is lite: the
//! server never sends checks, it answers them, so peers that sent an offer
//! without candidates (OBS ≥ 30.2) are learnt as peer-reflexive.
//!
//! ## Fan-out
//! A publisher's depacketized frame becomes one `Arc<Frame>`, handed once to
//! each worker that has viewers of the stream (a bounded queue: when full the
//! frame is dropped and counted, the publisher's worker never waits). Each
//! worker writes it to its viewers, remapping payload types and rebasing RTP
//! time so a viewer sees one continuous track across publisher sessions.
//!
//! ## Time
//! Workers read the clock and pass `now` into everything below them.

mod codecs;
mod gop_cache;
pub mod h264;
pub mod layers;
pub mod metrics;
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

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::{Candidate, IceCreds, RtcConfig};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use crate::layers::{LayerCap, LayerInfo, LayerTable};
pub use crate::metrics::Metrics;
pub use crate::peer::Role;
use crate::peer::{Estimation, Peer};
pub use crate::session_stats::{SessionStats, StatsCell};
pub use crate::stream::Frame;
use crate::stream::{PublisherSlot, StreamHub};
pub use crate::tap::{StreamEvent, StreamEventKind, Tap, STALL_AFTER};
use crate::worker::{Command, Worker};
pub use str0m::format::Codec;
pub use str0m::media::{MediaKind, MediaTime};

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

#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub stream: String,
    pub worker: usize,
    pub role: Role,
    pub stats: Arc<StatsCell>,
}

pub(crate) struct WorkerLink {
    pub tx: mpsc::Sender<Command>,
    pub candidate_addr: SocketAddr,
}

pub(crate) struct Shared {
    pub workers: Vec<WorkerLink>,
    pub sessions: Mutex<HashMap<SessionId, SessionInfo>>,
    pub metrics: Metrics,
    pub events: broadcast::Sender<StreamEvent>,
}

impl Shared {
    pub fn emit(&self, stream: &str, kind: StreamEventKind) {
        tracing::info!(stream, event = ?kind, "stream event");
        // No receiver is not an error: nobody listens yet.
        let _ = self.events.send(StreamEvent {
            stream: stream.to_string(),
            kind,
            at: std::time::SystemTime::now(),
        });
    }
}

/// Handle to the running forwarder; cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    shared: Arc<Shared>,
    streams: Arc<Mutex<HashMap<String, Arc<StreamHub>>>>,
    next_stream_id: Arc<AtomicU64>,
    next_epoch: Arc<AtomicU64>,
    next_worker: Arc<AtomicUsize>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    max_sessions: usize,
    pace_viewers: bool,
    twcc_send_history: usize,
    /// One DTLS certificate for every session: generating one per session
    /// would cost a key generation on every POST.
    dtls_cert: Option<DtlsCert>,
}

impl Sfu {
    /// Binds the media sockets and starts the workers.
    pub fn start(cfg: &SfuConfig, metrics: Metrics) -> Result<Sfu, SfuError> {
        let workers = cfg.workers.max(1);
        let mut links = Vec::with_capacity(workers);
        let mut pending = Vec::with_capacity(workers);
        for i in 0..workers {
            let port = if cfg.first_port == 0 {
                0
            } else {
                cfg.first_port.saturating_add(i as u16)
            };
            let socket = bind_media_socket(SocketAddr::new(cfg.bind_ip, port))?;
            let local = socket.local_addr()?;
            let candidate_addr = SocketAddr::new(cfg.public_ip, local.port());
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            links.push(WorkerLink { tx, candidate_addr });
            pending.push((socket, candidate_addr, rx));
        }
        let shared = Arc::new(Shared {
            workers: links,
            sessions: Mutex::new(HashMap::new()),
            metrics,
            events: broadcast::channel(EVENT_QUEUE).0,
        });
        let mut threads = Vec::new();
        let udp_gso = cfg.udp_gso;
        for (i, (socket, candidate_addr, rx)) in pending.into_iter().enumerate() {
            let shared = shared.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        match tokio::net::UdpSocket::from_std(socket) {
                            Ok(socket) => {
                                Worker::new(i, socket, candidate_addr, rx, shared, udp_gso)
                                    .run()
                                    .await
                            }
                            Err(e) => tracing::error!("media worker {i} could not start: {e}"),
                        }
                    })
                })?;
            threads.push(handle);
        }
        tracing::info!(
            workers,
            addrs = ?shared.workers.iter().map(|w| w.candidate_addr).collect::<Vec<_>>(),
            "media workers started"
        );
        Ok(Sfu {
            shared,
            streams: Arc::new(Mutex::new(HashMap::new())),
            next_stream_id: Arc::new(AtomicU64::new(1)),
            next_epoch: Arc::new(AtomicU64::new(1 << stream::EPOCH_LAYER_BITS)),
            next_worker: Arc::new(AtomicUsize::new(0)),
            threads: Arc::new(Mutex::new(threads)),
            max_sessions: cfg.max_sessions.max(1),
            pace_viewers: cfg.pace_viewers,
            twcc_send_history: cfg.twcc_send_history,
            dtls_cert: str0m::crypto::from_feature_flags()
                .dtls_provider
                .generate_certificate(),
        })
    }

    /// Addresses advertised in ICE candidates, one per worker.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .workers
            .iter()
            .map(|w| w.candidate_addr)
            .collect()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    fn hub(&self, stream: &str) -> Arc<StreamHub> {
        let mut streams = self.streams.lock();
        streams
            .entry(stream.to_string())
            .or_insert_with(|| {
                Arc::new(StreamHub::new(
                    self.next_stream_id.fetch_add(1, Ordering::Relaxed),
                    stream.to_string(),
                    self.shared.workers.len(),
                ))
            })
            .clone()
    }

    /// Whether a publisher is currently live on the stream.
    pub fn is_live(&self, stream: &str) -> bool {
        self.streams
            .lock()
            .get(stream)
            .is_some_and(|h| h.publisher().is_some())
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
        let (tx, tap) = tap::tap_channel(capacity);
        self.hub(stream).add_tap(tx);
        tap
    }

    /// Changes a viewer's simulcast layer cap (WHEP layer control).
    pub async fn set_layer_cap(&self, session: SessionId, cap: LayerCap) -> Result<(), SfuError> {
        let worker = self.session_worker(session)?;
        self.send(worker, Command::SetLayerCap { session, cap })
            .await
    }

    /// The stream's simulcast layers as last measured (lowest first).
    pub fn layers(&self, stream: &str) -> LayerTable {
        self.streams
            .lock()
            .get(stream)
            .map(|h| h.layers())
            .unwrap_or_default()
    }

    /// Asks the stream's publisher for a keyframe (throttled like viewer
    /// requests). False when nobody publishes the stream.
    pub fn request_keyframe(&self, stream: &str) -> bool {
        let Some(publisher) = self.streams.lock().get(stream).and_then(|h| h.publisher()) else {
            return false;
        };
        let Some(w) = self.shared.workers.get(publisher.worker) else {
            return false;
        };
        w.tx.try_send(Command::RequestKeyframe {
            session: publisher.session,
            layer: None,
        })
        .is_ok()
    }

    /// Sends `data` (a UTF-8 text message) to every viewer of `stream` that
    /// opened a data channel. Nothing waits: a worker whose queue is full
    /// misses it (counted as a `queue_full` drop), and a viewer whose channel
    /// is backed up skips it. Returns how many workers it was handed to.
    pub fn send_data(&self, stream: &str, data: Arc<[u8]>) -> usize {
        let Some(hub) = self.streams.lock().get(stream).cloned() else {
            return 0;
        };
        let mut reached = 0;
        for (w, link) in self.shared.workers.iter().enumerate() {
            if hub.viewers_on(w) == 0 {
                continue;
            }
            let cmd = Command::Data {
                hub: hub.clone(),
                data: Arc::clone(&data),
            };
            if link.tx.try_send(cmd).is_ok() {
                reached += 1;
            } else {
                self.shared.metrics.drop(metrics::DropReason::QueueFull);
            }
        }
        reached
    }

    /// A session's counters (viewers: bytes, loss, layers shown), kept up to
    /// date by its worker; the handle stays readable after the session ends.
    pub fn session_stats(&self, session: SessionId) -> Option<Arc<StatsCell>> {
        self.shared
            .sessions
            .lock()
            .get(&session)
            .map(|i| Arc::clone(&i.stats))
    }

    /// Names of the streams with a publisher now.
    pub fn live_streams(&self) -> Vec<String> {
        self.streams
            .lock()
            .values()
            .filter(|h| h.publisher().is_some())
            .map(|h| h.name.clone())
            .collect()
    }

    /// Number of viewers of a stream across workers.
    pub fn viewer_count(&self, stream: &str) -> usize {
        self.streams
            .lock()
            .get(stream)
            .map_or(0, |h| h.viewer_total())
    }

    fn pick_worker(&self) -> usize {
        self.next_worker.fetch_add(1, Ordering::Relaxed) % self.shared.workers.len()
    }

    fn base_config(&self) -> RtcConfig {
        let cfg = RtcConfig::new().set_ice_lite(true);
        match &self.dtls_cert {
            Some(cert) => cfg.set_dtls_cert(cert.clone()),
            None => cfg,
        }
    }

    fn build_session(
        &self,
        cfg: RtcConfig,
        worker: usize,
        offer_sdp: &str,
        now: Instant,
    ) -> Result<(str0m::Rtc, SessionAnswer), SfuError> {
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| SfuError::BadOffer {
            reason: e.to_string(),
        })?;
        let mut rtc = cfg.build(now);
        let addr = self.shared.workers[worker].candidate_addr;
        let candidate = Candidate::host(addr, "udp").map_err(|e| SfuError::BadOffer {
            reason: format!("candidate: {e}"),
        })?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::BadOffer {
                reason: e.to_string(),
            })?;
        let creds = rtc.direct_api().local_ice_credentials();
        let sdp = answer.to_sdp_string();
        Ok((
            rtc,
            SessionAnswer {
                session: SessionId::random(),
                sdp,
                ice_ufrag: creds.ufrag,
                ice_pwd: creds.pass,
            },
        ))
    }

    /// Accepts a publisher's offer for `stream`. `owner` identifies the
    /// credential; the same owner replaces a live session (OBS reconnects
    /// that way), another one gets [`SfuError::StreamBusy`].
    pub async fn publish(
        &self,
        stream: &str,
        offer_sdp: &str,
        owner: &str,
    ) -> Result<SessionAnswer, SfuError> {
        if !offer_has_media(offer_sdp, true) {
            return Err(SfuError::NoMedia { action: "publish" });
        }
        self.check_capacity()?;
        let hub = self.hub(stream);
        // Cheap early refusal; the binding check is `claim` below.
        if hub.held_by_other(owner) {
            return Err(SfuError::StreamBusy);
        }
        let now = Instant::now();
        let worker = self.pick_worker();
        let cfg = codecs::publisher_config(self.base_config());
        let (rtc, answer) = self.build_session(cfg, worker, offer_sdp, now)?;
        if answer_rejects_everything(&answer.sdp) {
            return Err(SfuError::NoCommonCodec);
        }
        let epoch = self
            .next_epoch
            .fetch_add(1 << stream::EPOCH_LAYER_BITS, Ordering::Relaxed);
        let peer = Peer::new_publisher(
            answer.session,
            hub.clone(),
            rtc,
            offer_sdp.to_string(),
            epoch,
            now,
        );
        // Queue space first: from here to the send nothing awaits, so a
        // client hanging up cannot leave bookkeeping without a session.
        let permit = self.reserve(worker).await?;
        let replaced = hub
            .claim(
                PublisherSlot {
                    session: answer.session,
                    worker,
                    owner: owner.to_string(),
                },
                epoch,
                offer_sdp
                    .lines()
                    .any(|l| l.trim_start().starts_with("a=simulcast:")),
            )
            .map_err(|_| SfuError::StreamBusy)?;
        self.shared.sessions.lock().insert(
            answer.session,
            SessionInfo {
                stream: stream.to_string(),
                worker,
                role: Role::Publisher,
                stats: Arc::clone(&peer.stats),
            },
        );
        // The gauge counts held publisher slots: a replacement takes over
        // the slot (and its count) at once; the replaced session, closing
        // or never connected, no longer holds it (see `clear_publisher`).
        if replaced.is_none() {
            self.shared.metrics.publishers.inc();
        }
        permit.send(Command::AddPeer(Box::new(peer)));
        if let Some(old) = replaced {
            tracing::info!(stream, old = %old.session, new = %answer.session, "publisher replaced by the same credential");
            let sfu = self.clone();
            tokio::spawn(async move {
                let _ = sfu
                    .send(
                        old.worker,
                        Command::Close {
                            session: old.session,
                        },
                    )
                    .await;
            });
        }
        tracing::info!(stream, session = %answer.session, worker, "publisher session created");
        Ok(answer)
    }

    /// Accepts a viewer's offer for `stream`; the viewer starts receiving
    /// when (or as soon as) the stream has a publisher.
    pub async fn subscribe(
        &self,
        stream: &str,
        offer_sdp: &str,
    ) -> Result<SessionAnswer, SfuError> {
        self.subscribe_with(stream, offer_sdp, LayerCap::Auto).await
    }

    /// [`Sfu::subscribe`] with a cap on the simulcast layer the viewer gets.
    pub async fn subscribe_with(
        &self,
        stream: &str,
        offer_sdp: &str,
        cap: LayerCap,
    ) -> Result<SessionAnswer, SfuError> {
        if !offer_has_media(offer_sdp, false) {
            return Err(SfuError::NoMedia { action: "receive" });
        }
        self.check_capacity()?;
        let hub = self.hub(stream);
        let now = Instant::now();
        let worker = self.least_loaded_worker(&hub);
        let mut cfg = codecs::viewer_config(self.base_config(), offer_sdp, hub.h264_profile())
            .set_stats_interval(Some(VIEWER_STATS_INTERVAL));
        // Bandwidth estimation (TWCC) drives the layer choice; without
        // simulcast there is nothing to choose, and its pacing would only
        // slow the join burst.
        let bwe = hub.is_simulcast();
        if bwe {
            cfg = cfg
                .enable_bwe(Some(str0m::bwe::Bitrate::bps(INITIAL_ESTIMATE_BPS)))
                .set_twcc_send_history(self.twcc_send_history);
        } else {
            // Without an estimator the viewer's transport-wide feedback has
            // no reader, yet str0m would keep a send record per packet for it
            // (~160 KB per viewer at 1.5 Mbit/s): not negotiated at all.
            cfg = cfg.set_extension_map(codecs::extensions_without_twcc());
        }
        let (rtc, answer) = self.build_session(cfg, worker, offer_sdp, now)?;
        if answer_rejects_everything(&answer.sdp)
            || !answer_has_forwardable_video_or_audio(&answer.sdp)
        {
            return Err(SfuError::NoCommonCodec);
        }
        let peer = Peer::new_viewer(
            answer.session,
            hub.clone(),
            rtc,
            offer_sdp.to_string(),
            now,
            cap,
            Estimation::new(bwe, self.pace_viewers),
        );
        let permit = self.reserve(worker).await?;
        self.shared.sessions.lock().insert(
            answer.session,
            SessionInfo {
                stream: stream.to_string(),
                worker,
                role: Role::Viewer,
                stats: Arc::clone(&peer.stats),
            },
        );
        hub.add_viewer(worker);
        self.shared.metrics.viewers.inc();
        permit.send(Command::AddPeer(Box::new(peer)));
        tracing::info!(stream, session = %answer.session, worker, "viewer session created");
        Ok(answer)
    }

    fn check_capacity(&self) -> Result<(), SfuError> {
        if self.shared.sessions.lock().len() >= self.max_sessions {
            return Err(SfuError::Full);
        }
        Ok(())
    }

    async fn reserve(&self, worker: usize) -> Result<mpsc::Permit<'_, Command>, SfuError> {
        let link = self
            .shared
            .workers
            .get(worker)
            .ok_or(SfuError::WorkerGone)?;
        link.tx.reserve().await.map_err(|_| SfuError::WorkerGone)
    }

    fn least_loaded_worker(&self, hub: &StreamHub) -> usize {
        // Spread one stream's viewers over all workers; round-robin breaks ties.
        let start = self.pick_worker();
        let n = self.shared.workers.len();
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|w| hub.viewers_on(*w))
            .unwrap_or(0)
    }

    async fn send(&self, worker: usize, cmd: Command) -> Result<(), SfuError> {
        let link = self
            .shared
            .workers
            .get(worker)
            .ok_or(SfuError::WorkerGone)?;
        link.tx.send(cmd).await.map_err(|_| SfuError::WorkerGone)
    }

    /// The session's stream and role, if it exists.
    pub fn session(&self, session: SessionId) -> Option<(String, Role)> {
        self.shared
            .sessions
            .lock()
            .get(&session)
            .map(|s| (s.stream.clone(), s.role))
    }

    fn session_worker(&self, session: SessionId) -> Result<usize, SfuError> {
        self.shared
            .sessions
            .lock()
            .get(&session)
            .map(|s| s.worker)
            .ok_or(SfuError::UnknownSession)
    }

    /// Ends a session (WHIP/WHEP DELETE).
    pub async fn close(&self, session: SessionId) -> Result<(), SfuError> {
        let worker = self.session_worker(session)?;
        // Forget it now so a second DELETE is a 404 even before the worker reaps it.
        let info = self.shared.sessions.lock().remove(&session);
        if let Some(info) = info {
            if info.role == Role::Publisher {
                let hub = self.streams.lock().get(&info.stream).cloned();
                if hub.is_some_and(|h| h.clear_publisher(session)) {
                    self.shared.metrics.publishers.dec();
                    self.shared.emit(&info.stream, StreamEventKind::Ended);
                }
            }
        }
        self.send(worker, Command::Close { session }).await
    }

    /// Adds trickled remote candidates (WHIP/WHEP PATCH).
    pub async fn add_candidates(
        &self,
        session: SessionId,
        candidates: Vec<Candidate>,
    ) -> Result<(), SfuError> {
        let worker = self.session_worker(session)?;
        self.send(
            worker,
            Command::AddCandidates {
                session,
                candidates,
            },
        )
        .await
    }

    /// ICE restart: installs the remote's new credentials and returns ours.
    pub async fn ice_restart(
        &self,
        session: SessionId,
        remote: IceCreds,
    ) -> Result<IceCreds, SfuError> {
        let worker = self.session_worker(session)?;
        let (reply, rx) = oneshot::channel();
        self.send(
            worker,
            Command::IceRestart {
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
        let worker = self.session_worker(session)?;
        let addr = self.shared.workers[worker].candidate_addr;
        let c = Candidate::host(addr, "udp").map_err(|e| SfuError::BadFragment {
            reason: e.to_string(),
        })?;
        Ok(vec![c.to_sdp_string()])
    }

    /// Stops the workers and waits for their threads.
    pub async fn shutdown(&self) {
        for w in &self.shared.workers {
            let _ = w.tx.send(Command::Shutdown).await;
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

/// Whether an offer carries audio or video that can flow in the needed
/// direction (towards us for a publisher, from us for a viewer).
fn offer_has_media(sdp: &str, publishing: bool) -> bool {
    let mut in_media = false;
    let mut any = false;
    let mut dir_ok = true;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_media && dir_ok {
                any = true;
            }
            in_media = m.starts_with("audio ") || m.starts_with("video ");
            dir_ok = true; // sendrecv is the default direction
        } else if in_media {
            match line {
                "a=sendonly" => dir_ok = publishing,
                "a=recvonly" => dir_ok = !publishing,
                "a=inactive" => dir_ok = false,
                _ => {}
            }
        }
    }
    any || (in_media && dir_ok)
}

/// An answer whose every audio/video m-line is rejected (port 0).
fn answer_rejects_everything(sdp: &str) -> bool {
    let media: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("m="))
        .filter(|m| m.starts_with("audio") || m.starts_with("video"))
        .collect();
    media.is_empty() || media.iter().all(|m| m.split(' ').nth(1) == Some("0"))
}

fn answer_has_forwardable_video_or_audio(sdp: &str) -> bool {
    sdp.lines().any(|l| {
        let l = l.trim().to_ascii_lowercase();
        l.starts_with("a=rtpmap:")
            && ["opus/", "h264/", "vp8/", "vp9/", "av1/"]
                .iter()
                .any(|c| l.contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_direction_is_read_from_the_offer() {
        let send = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert!(offer_has_media(send, true));
        assert!(!offer_has_media(send, false));
        let recv = send.replace("sendonly", "recvonly");
        assert!(offer_has_media(&recv, false));
        assert!(!offer_has_media(&recv, true));
        assert!(!offer_has_media(
            "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
            true
        ));
    }

    #[test]
    fn session_ids_round_trip_and_reject_garbage() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(SessionId::parse("xyz"), None);
        assert_eq!(SessionId::parse(&"g".repeat(32)), None);
    }
}
