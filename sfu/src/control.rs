//! The control side of the forwarder, sans-IO: admits sessions (SDP offer →
//! answer, stream slot, worker), keeps the table of streams and sessions,
//! and says which worker a command must reach. It sends nothing: each
//! admission returns the [`Command`] for the chosen worker's engine, and
//! [`crate::Sfu`] (or a test) delivers it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::{Candidate, RtcConfig};

use crate::codecs;
use crate::engine::{Cmd, Command};
use crate::frame::{Epoch, StreamId};
use crate::ingest::{IngestClaim, IngestSession};
use crate::layers::{LayerCap, LayerTable};
use crate::metrics::Metrics;
use crate::offer::Offer;
use crate::peer::{Estimation, Peer, Role};
use crate::session_stats::StatsCell;
use crate::stream::{PublisherSlot, StreamHub};
use crate::tap::{self, Tap};
use crate::{
    SessionAnswer, SessionId, SfuConfig, SfuError, ViewerEstimator, INITIAL_ESTIMATE_BPS,
    VIEWER_STATS_INTERVAL,
};

#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub stream: String,
    pub worker: usize,
    pub role: Role,
    pub stats: Arc<StatsCell>,
}

/// A session admitted by [`Control::publish`] or [`Control::subscribe`]:
/// the answer for the client, and the command that hands the session to
/// its worker's engine.
pub struct Admitted {
    pub answer: SessionAnswer,
    pub worker: usize,
    pub command: Command,
    /// A publisher session of the same credential that this one replaced:
    /// its worker and the command that closes it there.
    pub replaced: Option<(usize, Command)>,
}

/// A session ended by [`Control::close`].
pub struct Closed {
    pub worker: usize,
    pub command: Command,
    /// The stream whose publisher this was (now ended).
    pub ended: Option<String>,
}

pub struct Control {
    candidate_addrs: Vec<SocketAddr>,
    metrics: Metrics,
    streams: Mutex<HashMap<String, Arc<StreamHub>>>,
    sessions: Mutex<HashMap<SessionId, SessionInfo>>,
    next_stream_id: AtomicU64,
    /// Publisher sessions admitted so far (their epochs).
    next_session: AtomicU64,
    next_worker: AtomicUsize,
    max_sessions: usize,
    pace_viewers: bool,
    twcc_send_history: usize,
    viewer_estimator: ViewerEstimator,
    /// One DTLS certificate for every session: generating one per session
    /// would cost a key generation on every POST.
    dtls_cert: Option<DtlsCert>,
}

impl Control {
    /// A control side for workers whose ICE candidates carry
    /// `candidate_addrs` (worker `i` has the `i`th).
    pub fn new(cfg: &SfuConfig, candidate_addrs: Vec<SocketAddr>, metrics: Metrics) -> Control {
        Control {
            candidate_addrs,
            metrics,
            streams: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_stream_id: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            next_worker: AtomicUsize::new(0),
            max_sessions: cfg.max_sessions.max(1),
            pace_viewers: cfg.pace_viewers,
            twcc_send_history: cfg.twcc_send_history,
            viewer_estimator: cfg.viewer_estimator,
            dtls_cert: str0m::crypto::from_feature_flags()
                .dtls_provider
                .generate_certificate(),
        }
    }

    pub fn workers(&self) -> usize {
        self.candidate_addrs.len()
    }

    pub fn candidate_addrs(&self) -> &[SocketAddr] {
        &self.candidate_addrs
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn hub(&self, stream: &str) -> Arc<StreamHub> {
        let mut streams = self.streams.lock();
        streams
            .entry(stream.to_string())
            .or_insert_with(|| {
                Arc::new(StreamHub::new(
                    StreamId(self.next_stream_id.fetch_add(1, Ordering::Relaxed)),
                    stream.to_string(),
                    self.workers(),
                ))
            })
            .clone()
    }

    pub(crate) fn existing_hub(&self, stream: &str) -> Option<Arc<StreamHub>> {
        self.streams.lock().get(stream).cloned()
    }

    /// Whether a publisher is currently live on the stream.
    pub fn is_live(&self, stream: &str) -> bool {
        self.existing_hub(stream)
            .is_some_and(|h| h.publisher().is_some())
    }

    /// Attaches a tap to a stream (see [`crate::Sfu::tap`]).
    pub fn tap(&self, stream: &str, capacity: usize) -> Tap {
        let (tx, tap) = tap::tap_channel(capacity);
        self.hub(stream).add_tap(tx);
        tap
    }

    /// The stream's simulcast layers as last measured (lowest first).
    pub fn layers(&self, stream: &str) -> LayerTable {
        self.existing_hub(stream)
            .map(|h| h.layers())
            .unwrap_or_default()
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
        self.existing_hub(stream).map_or(0, |h| h.viewer_total())
    }

    /// The worker of the stream's publisher and the command asking it for
    /// a keyframe of its main layer.
    pub fn keyframe_request(&self, stream: &str) -> Option<(usize, Command)> {
        let publisher = self.existing_hub(stream)?.publisher()?;
        Some((
            publisher.worker,
            Command(Cmd::RequestKeyframe {
                session: publisher.session,
                layer: None,
            }),
        ))
    }

    /// A text message for the viewers of `stream`: one command per worker
    /// that has some.
    pub fn data(&self, stream: &str, data: &Arc<[u8]>) -> Vec<(usize, Command)> {
        let Some(hub) = self.existing_hub(stream) else {
            return Vec::new();
        };
        (0..self.workers())
            .filter(|w| hub.viewers_on(*w) > 0)
            .map(|w| {
                (
                    w,
                    Command(Cmd::Data {
                        hub: hub.clone(),
                        data: Arc::clone(data),
                    }),
                )
            })
            .collect()
    }

    pub fn session_stats(&self, session: SessionId) -> Option<Arc<StatsCell>> {
        self.sessions
            .lock()
            .get(&session)
            .map(|i| Arc::clone(&i.stats))
    }

    /// The session's stream and role, if it exists.
    pub fn session(&self, session: SessionId) -> Option<(String, Role)> {
        self.sessions
            .lock()
            .get(&session)
            .map(|s| (s.stream.clone(), s.role))
    }

    /// The worker that owns the session.
    pub fn session_worker(&self, session: SessionId) -> Result<usize, SfuError> {
        self.sessions
            .lock()
            .get(&session)
            .map(|s| s.worker)
            .ok_or(SfuError::UnknownSession)
    }

    /// A worker reported the session gone ([`crate::engine::Output::SessionEnded`]).
    pub fn forget(&self, session: SessionId) {
        self.sessions.lock().remove(&session);
    }

    /// Round-robin choice of a worker for a new publisher.
    pub fn pick_worker(&self) -> usize {
        self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers().max(1)
    }

    /// The worker a new viewer of `stream` goes to: the one with fewest
    /// viewers of it, round-robin among equals.
    pub fn viewer_worker(&self, stream: &str) -> usize {
        let hub = self.hub(stream);
        let start = self.pick_worker();
        let n = self.workers().max(1);
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|w| hub.viewers_on(*w))
            .unwrap_or(0)
    }

    fn check_capacity(&self) -> Result<(), SfuError> {
        if self.sessions.lock().len() >= self.max_sessions {
            return Err(SfuError::Full);
        }
        Ok(())
    }

    fn base_config(&self) -> RtcConfig {
        // Candidates in every bundled m-line, not only the first: aiortc reads them from
        // the last m-line of the group (docs/aiortc-bundle-candidates.md).
        let cfg = RtcConfig::new()
            .set_ice_lite(true)
            .set_candidates_in_every_mline(true);
        match &self.dtls_cert {
            Some(cert) => cfg.set_dtls_cert(cert.clone()),
            None => cfg,
        }
    }

    fn build_session(
        &self,
        cfg: RtcConfig,
        worker: usize,
        offer: SdpOffer,
        now: Instant,
    ) -> Result<(str0m::Rtc, SessionAnswer), SfuError> {
        let mut rtc = cfg.build(now);
        let addr = *self
            .candidate_addrs
            .get(worker)
            .ok_or(SfuError::WorkerGone)?;
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

    /// Admits a publisher's offer for `stream` on `worker`. `owner`
    /// identifies the credential; the same owner replaces a live session
    /// (OBS reconnects that way), another one gets [`SfuError::StreamBusy`].
    pub fn publish(
        &self,
        now: Instant,
        worker: usize,
        stream: &str,
        offer: Offer,
        owner: &str,
    ) -> Result<Admitted, SfuError> {
        if !offer.can_publish() {
            return Err(SfuError::NoMedia { action: "publish" });
        }
        self.check_capacity()?;
        let hub = self.hub(stream);
        // Cheap early refusal; the binding check is `claim` below.
        if hub.held_by_other(owner) {
            return Err(SfuError::StreamBusy);
        }
        let cfg = codecs::publisher_config(self.base_config());
        let simulcast = offer.is_simulcast();
        let (parsed, offer_sdp) = offer.into_parts();
        let (rtc, answer) = self.build_session(cfg, worker, parsed, now)?;
        if answer_rejects_everything(&answer.sdp) {
            return Err(SfuError::NoCommonCodec);
        }
        let epoch = Epoch::of_session(self.next_session.fetch_add(1, Ordering::Relaxed));
        let peer = Peer::new_publisher(answer.session, hub.clone(), rtc, offer_sdp, epoch, now);
        let replaced = hub
            .claim(
                PublisherSlot {
                    session: answer.session,
                    worker,
                    owner: owner.to_string(),
                },
                epoch,
                simulcast,
            )
            .map_err(|_| SfuError::StreamBusy)?;
        self.sessions.lock().insert(
            answer.session,
            SessionInfo {
                stream: stream.to_string(),
                worker,
                role: Role::Publisher,
                stats: Arc::clone(&peer.conn.stats),
            },
        );
        // The gauge counts held publisher slots: a replacement takes over
        // the slot (and its count) at once; the replaced session, closing
        // or never connected, no longer holds it (see `clear_publisher`).
        if replaced.is_none() {
            self.metrics.publishers.inc();
        }
        if let Some(old) = &replaced {
            tracing::info!(stream, old = %old.session, new = %answer.session, "publisher replaced by the same credential");
        }
        tracing::info!(stream, session = %answer.session, worker, "publisher session created");
        Ok(Admitted {
            answer,
            worker,
            command: Command(Cmd::AddPeer(Box::new(peer))),
            replaced: replaced.map(|old| {
                (
                    old.worker,
                    Command(Cmd::Close {
                        session: old.session,
                    }),
                )
            }),
        })
    }

    /// Claims `stream`'s publisher slot for a non-WebRTC publisher (RTMP,
    /// SRT; see [`crate::ingest`]): the same owner check and swap as
    /// [`Control::publish`], a fresh epoch, no worker session. The claim
    /// carries, when it replaced a publisher, that one's worker and the
    /// command that closes it there (an ingest it replaced has no worker
    /// session: the command finds nothing, and the old ingest sees it lost
    /// the slot on its next push).
    pub fn claim_ingest(&self, stream: &str, owner: &str) -> Result<IngestClaim, SfuError> {
        let hub = self.hub(stream);
        let epoch = Epoch::of_session(self.next_session.fetch_add(1, Ordering::Relaxed));
        let session = SessionId::random();
        let replaced = hub
            .claim(
                PublisherSlot {
                    session,
                    // Keyframe requests routed here find no session (an
                    // ingest cannot be asked for one) and are ignored.
                    worker: self.pick_worker(),
                    owner: owner.to_string(),
                },
                epoch,
                false,
            )
            .map_err(|_| SfuError::StreamBusy)?;
        if replaced.is_none() {
            self.metrics.publishers.inc();
        } else {
            tracing::info!(
                stream,
                "publisher replaced by an ingest of the same credential"
            );
        }
        tracing::info!(stream, %session, "ingest publisher claimed the stream");
        Ok(IngestClaim {
            session: IngestSession::new(hub, session, epoch, self.metrics.clone()),
            replaced: replaced.map(|old| {
                (
                    old.worker,
                    Command(Cmd::Close {
                        session: old.session,
                    }),
                )
            }),
        })
    }

    /// Admits a viewer's offer for `stream` on `worker` (see
    /// [`Control::viewer_worker`]); the viewer starts receiving when (or as
    /// soon as) the stream has a publisher.
    pub fn subscribe(
        &self,
        now: Instant,
        worker: usize,
        stream: &str,
        offer: Offer,
        cap: LayerCap,
    ) -> Result<Admitted, SfuError> {
        if !offer.can_view() {
            return Err(SfuError::NoMedia { action: "receive" });
        }
        self.check_capacity()?;
        let hub = self.hub(stream);
        let mut cfg = codecs::viewer_config(
            self.base_config(),
            offer.h264_profiles(),
            hub.h264_profile(),
        )
        .set_stats_interval(Some(VIEWER_STATS_INTERVAL));
        // Bandwidth estimation (TWCC) drives the layer choice; without
        // simulcast there is nothing to choose, and its pacing would only
        // slow the join burst. With REMB the viewer estimates for itself.
        let bwe = hub.is_simulcast() && self.viewer_estimator == ViewerEstimator::Twcc;
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
        let (parsed, offer_sdp) = offer.into_parts();
        let (rtc, answer) = self.build_session(cfg, worker, parsed, now)?;
        if answer_rejects_everything(&answer.sdp)
            || !answer_has_forwardable_video_or_audio(&answer.sdp)
        {
            return Err(SfuError::NoCommonCodec);
        }
        let peer = Peer::new_viewer(
            answer.session,
            hub.clone(),
            rtc,
            offer_sdp,
            now,
            cap,
            Estimation::new(bwe, self.pace_viewers),
        );
        self.sessions.lock().insert(
            answer.session,
            SessionInfo {
                stream: stream.to_string(),
                worker,
                role: Role::Viewer,
                stats: Arc::clone(&peer.conn.stats),
            },
        );
        hub.add_viewer(worker);
        self.metrics.viewers.inc();
        tracing::info!(stream, session = %answer.session, worker, "viewer session created");
        Ok(Admitted {
            answer,
            worker,
            command: Command(Cmd::AddPeer(Box::new(peer))),
            replaced: None,
        })
    }

    /// Ends a session (WHIP/WHEP DELETE): forgotten at once, so a second
    /// DELETE is refused even before its worker reaps it.
    pub fn close(&self, session: SessionId) -> Result<Closed, SfuError> {
        let info = self
            .sessions
            .lock()
            .remove(&session)
            .ok_or(SfuError::UnknownSession)?;
        let mut ended = None;
        if info.role == Role::Publisher {
            let hub = self.existing_hub(&info.stream);
            if hub.is_some_and(|h| h.clear_publisher(session)) {
                self.metrics.publishers.dec();
                ended = Some(info.stream);
            }
        }
        Ok(Closed {
            worker: info.worker,
            command: Command(Cmd::Close { session }),
            ended,
        })
    }

    /// The command that changes a viewer's simulcast layer cap.
    pub fn set_layer_cap(
        &self,
        session: SessionId,
        cap: LayerCap,
    ) -> Result<(usize, Command), SfuError> {
        let worker = self.session_worker(session)?;
        Ok((worker, Command(Cmd::SetLayerCap { session, cap })))
    }

    /// The command that adds trickled remote candidates to a session.
    pub fn add_candidates(
        &self,
        session: SessionId,
        candidates: Vec<Candidate>,
    ) -> Result<(usize, Command), SfuError> {
        let worker = self.session_worker(session)?;
        Ok((
            worker,
            Command(Cmd::AddCandidates {
                session,
                candidates,
            }),
        ))
    }

    /// The candidate lines (`candidate:…`) of a session's worker, for ICE
    /// restart answers.
    pub fn local_candidate_lines(&self, session: SessionId) -> Result<Vec<String>, SfuError> {
        let worker = self.session_worker(session)?;
        let addr = *self
            .candidate_addrs
            .get(worker)
            .ok_or(SfuError::WorkerGone)?;
        let c = Candidate::host(addr, "udp").map_err(|e| SfuError::BadFragment {
            reason: e.to_string(),
        })?;
        Ok(vec![c.to_sdp_string()])
    }
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
