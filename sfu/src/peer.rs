//! One WebRTC session (a publisher or a viewer) and what it does with the
//! events its `Rtc` emits. Owned by exactly one worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Rid};
use str0m::{Event, IceConnectionState, IceCreds, Rtc};

use crate::h264;
use crate::layers::{
    LayerCap, LayerInfo, LayerSelect, LayerTable, UpProbe, LAYER_SILENCE, STATS_INTERVAL,
};
use crate::metrics::{DropReason, KeyframeOrigin, Metrics};
use crate::rtp_out::{Packetizers, RtpNumbering, PAYLOAD_MTU};
use crate::session_stats::StatsCell;
use crate::stream::{session_epoch, Frame, StreamHub};
use crate::SessionId;

/// Keyframe requests to a publisher are throttled to one per this interval.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);
/// Video packets a viewer keeps for retransmission, and for how long.
/// Receivers repeat a NACK about every 100 ms (their round-trip guess) up
/// to five times, so a repair is asked for up to ~500 ms after the loss;
/// past ~600 ms it would come too late for a sub-second player anyway.
/// Each entry is ~430 bytes of str0m bookkeeping even when the payload is
/// shared (H.264: a reference to the one copy; frames str0m packetizes per
/// viewer: a copy), and str0m grows the buffer, never shrinking it, to hold
/// whatever was sent within the age: a GOP catch-up at join (2 s of video in
/// ~120 ms) fills it to its cap for good. The cap is
/// [`rtx_history_packets`] of the stream's largest layer, at least
/// [`RTX_CACHE_PACKETS`]: fitting it to a 1.5 Mbit/s layer (192) cost
/// repairs of the catch-up under loss (`relaycast-load --drop-percent 5`,
/// 40 viewers: 6-7 lost frames and freezes up to 0.8 s, against 2-4 and
/// 0.35 s at 256), while a 6 Mbit/s layer needs ~700 for the age.
pub const RTX_CACHE_PACKETS: usize = 256;
/// Ceiling of the fitted cap (~330 KB of entries per viewer).
pub const RTX_CACHE_MAX: usize = 768;
pub const RTX_CACHE_AGE: Duration = Duration::from_millis(600);
/// str0m drops queued retransmissions while they would exceed this share
/// of what a stream sends (a viewer losing much is not flooded with resends).
const RTX_RATIO_CAP: Option<f32> = Some(0.15);
/// A viewer whose data channel holds this much unsent data skips further
/// messages until it drains (a stalled viewer must not grow without bound).
pub const CHANNEL_BACKLOG_LIMIT: usize = 256 * 1024;
/// A session that has not connected by then is given up.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Viewer,
}

pub(crate) struct Peer {
    pub session: SessionId,
    pub hub: Arc<StreamHub>,
    pub rtc: Rtc,
    /// The remote offer the session was (last) negotiated with; an ICE
    /// restart re-applies it with the remote's new credentials.
    pub offer_sdp: String,
    pub created: Instant,
    pub connected: bool,
    pub next_timeout: Instant,
    pub kind: PeerKind,
    /// Counters for analytics, shared with [`crate::Sfu::session_stats`].
    pub stats: Arc<StatsCell>,
}

pub(crate) enum PeerKind {
    Publisher(PublisherState),
    Viewer(ViewerState),
}

pub(crate) struct PublisherState {
    /// Base epoch of this session; a frame's layer id is added to it.
    pub epoch: u64,
    video_mid: Option<Mid>,
    /// Every video encoding seen, by layer id (one, without a rid, when the
    /// publisher does not send simulcast).
    layers: Vec<LayerSeen>,
    /// The main layer (what taps get): the one with the largest keyframes,
    /// or, when it falls silent, one still sending.
    top: Option<u8>,
    top_switches: u64,
    /// Audio frames forwarded so far (video counts per layer).
    audio_index: u64,
    /// Keyframe request throttle, per layer id.
    kf: [KfThrottle; MAX_LAYERS],
    /// When layer statistics were last published to the stream hub.
    stats_at: Option<Instant>,
    /// When the last frame arrived, and whether a stall was reported since.
    last_frame_at: Option<Instant>,
    stalled: bool,
    /// Cuts H.264 and Opus frames into RTP payloads once for all viewers.
    packetizers: Packetizers,
}

/// Encodings beyond this many are not forwarded (browsers send at most three).
const MAX_LAYERS: usize = 4;

struct LayerSeen {
    rid: Option<Rid>,
    last_frame: Instant,
    keyframe_size: usize,
    /// Picture size read from the last keyframe.
    size: Option<(u32, u32)>,
    /// Frames of this layer forwarded so far (`Frame::index`).
    index: u64,
    /// Bytes and frames since the statistics were last published.
    bytes: u64,
    frames: u32,
}

#[derive(Default, Clone, Copy)]
struct KfThrottle {
    last: Option<Instant>,
    /// A request that arrived inside the throttle window, served when it
    /// ends unless a keyframe of the layer arrives first.
    pending: bool,
}

/// Whether a viewer runs str0m's bandwidth estimator (simulcast streams:
/// it drives the layer choice) and, if so, whether str0m's pacer holds the
/// viewer's video to the estimate ([`crate::SfuConfig::pace_viewers`]) or
/// the video is forwarded as it comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Estimation {
    Off,
    Unpaced,
    Paced,
}

impl Estimation {
    pub fn new(bwe: bool, paced: bool) -> Estimation {
        match (bwe, paced) {
            (false, _) => Estimation::Off,
            (true, false) => Estimation::Unpaced,
            (true, true) => Estimation::Paced,
        }
    }

    fn is_on(self) -> bool {
        self != Estimation::Off
    }
}

pub(crate) struct ViewerState {
    tracks: Vec<OutTrack>,
    last_keyframe_request: Option<Instant>,
    /// Which simulcast layer this viewer gets.
    pub select: LayerSelect,
    /// When the layer choice was last re-evaluated.
    last_eval: Option<Instant>,
    /// Whether bandwidth estimation runs for this viewer, and how.
    estimation: Estimation,
    /// The data channel the viewer opened (integrator events go there).
    channel: Option<ChannelId>,
    /// When its estimator pads toward the next layer up.
    probe: UpProbe,
}

struct OutTrack {
    mid: Mid,
    kind: MediaKind,
    awaiting_keyframe: bool,
    timeline: Timeline,
    pt_cache: Option<(Codec, str0m::media::Pt)>,
    /// `Frame::index` of the last frame seen for this track.
    last_index: Option<u64>,
    /// Sequence numbers for frames carrying shared RTP payloads. Frames
    /// str0m packetizes (VP8, VP9, AV1) use str0m's own counter; a track
    /// only changes between the two when a new publisher session brings
    /// another codec, which the viewer meets with a keyframe anyway.
    numbering: RtpNumbering,
    /// Retransmission history cap set on the track's stream (video).
    rtx_packets: usize,
    /// The rest of a frame's shared payloads, written after what was
    /// written so far has been sent (see [`WRITE_CHUNK`]).
    pending: Option<PendingWrite>,
}

/// Packets of a frame written to a viewer's `Rtc` before they are sent and
/// the rest written. str0m's send queue grows, never shrinking, to the
/// largest frame written at once (a 720p keyframe is ~38 packets of ~410
/// bytes of bookkeeping each); written in chunks it stays at this size.
pub(crate) const WRITE_CHUNK: usize = 16;

/// A frame partly written to a viewer track.
struct PendingWrite {
    frame: Arc<Frame>,
    /// Index of the next packet to write.
    next: usize,
    pt: str0m::media::Pt,
    time: MediaTime,
    wallclock: Instant,
}

/// Rebases publisher timestamps onto one continuous outgoing timeline, so a
/// publisher that leaves and comes back (or a layer switch) looks like one
/// track to the viewer. Sequence numbers are the packetizer's own and are
/// continuous by construction.
#[derive(Default)]
struct Timeline {
    epoch: Option<u64>,
    offset: u64,
    last_out: Option<(u64, Instant)>,
}

impl Timeline {
    fn map(&mut self, frame: &Frame) -> MediaTime {
        let rate = u64::from(frame.time.frequency().get());
        let input = frame.time.numer();
        if self.epoch != Some(frame.epoch) {
            self.epoch = Some(frame.epoch);
            self.offset = match self.last_out {
                None => 0,
                Some((last, at)) => {
                    let gap = frame.network_time.saturating_duration_since(at);
                    let ticks = (gap.as_micros() as u64).saturating_mul(rate) / 1_000_000;
                    // At least one 100 Hz tick so the new first frame is strictly later.
                    let next = last.wrapping_add(ticks.max(rate / 100));
                    next.wrapping_sub(input)
                }
            };
        }
        let out = input.wrapping_add(self.offset);
        self.last_out = Some((out, frame.network_time));
        MediaTime::new(out, frame.time.frequency())
    }
}

/// A GOP being written to a joining viewer.
#[derive(Clone, Copy)]
pub(crate) struct GopBurst {
    mid: Mid,
    pt: str0m::media::Pt,
    /// Output time of the newest GOP frame (live).
    live: MediaTime,
    frames: u64,
}

/// What handling an event asks of the worker.
#[derive(Default)]
pub(crate) struct Effects {
    /// Frames to fan out to viewers of the publisher's stream.
    pub frames: Vec<Arc<Frame>>,
    /// Ask the stream's publisher for a keyframe (of this layer, or of its
    /// main layer).
    pub keyframe_requests: Vec<(KeyframeOrigin, Option<u8>)>,
    /// A viewer with video just connected: give it the cached GOP, or ask
    /// the publisher for a keyframe when there is none.
    pub viewer_joined: bool,
    /// The stream went live (first frame of a publisher session) or resumed.
    pub stream_event: Option<crate::StreamEventKind>,
}

impl Peer {
    pub fn new_publisher(
        session: SessionId,
        hub: Arc<StreamHub>,
        rtc: Rtc,
        offer_sdp: String,
        epoch: u64,
        now: Instant,
    ) -> Peer {
        Peer {
            session,
            hub,
            rtc,
            offer_sdp,
            created: now,
            connected: false,
            next_timeout: now,
            kind: PeerKind::Publisher(PublisherState::new(epoch)),
            stats: Arc::default(),
        }
    }

    pub fn new_viewer(
        session: SessionId,
        hub: Arc<StreamHub>,
        rtc: Rtc,
        offer_sdp: String,
        now: Instant,
        cap: LayerCap,
        estimation: Estimation,
    ) -> Peer {
        Peer {
            session,
            hub,
            rtc,
            offer_sdp,
            created: now,
            connected: false,
            next_timeout: now,
            kind: PeerKind::Viewer(ViewerState {
                tracks: Vec::new(),
                last_keyframe_request: None,
                select: LayerSelect::new(cap),
                last_eval: None,
                estimation,
                channel: None,
                probe: UpProbe::default(),
            }),
            stats: Arc::default(),
        }
    }

    /// ICE restart (WHIP/WHEP PATCH with new credentials): re-applies the
    /// session's offer with the remote's new ufrag/pwd and without its old
    /// candidates, so str0m restarts its agent as for an SDP re-offer — new
    /// local credentials, old remote candidates and pairs dropped — and then
    /// nominates whatever pair the remote checks with the new credentials.
    /// (Only swapping the credentials keeps the old pair nominated: a new pair
    /// of equal priority never replaces it, so media keeps going to the old
    /// address until that pair times out, 15 s later.) Returns our new
    /// credentials.
    pub fn ice_restart(&mut self, remote: &IceCreds) -> Option<IceCreds> {
        let mut reoffer = String::with_capacity(self.offer_sdp.len());
        for line in self.offer_sdp.lines().map(str::trim_end) {
            if line.starts_with("a=ice-ufrag:") {
                reoffer.push_str(&format!("a=ice-ufrag:{}", remote.ufrag));
            } else if line.starts_with("a=ice-pwd:") {
                reoffer.push_str(&format!("a=ice-pwd:{}", remote.pass));
            } else if line.starts_with("a=candidate:") || line.starts_with("a=end-of-candidates") {
                continue;
            } else {
                reoffer.push_str(line);
            }
            reoffer.push_str("\r\n");
        }
        let offer = match SdpOffer::from_sdp_string(&reoffer) {
            Ok(offer) => offer,
            Err(e) => {
                tracing::debug!(session = %self.session, "ICE restart: re-offer does not parse: {e}");
                return None;
            }
        };
        if let Err(e) = self.rtc.sdp_api().accept_offer(offer) {
            tracing::debug!(session = %self.session, "ICE restart: re-offer refused: {e}");
            return None;
        }
        self.offer_sdp = reoffer;
        Some(self.rtc.direct_api().local_ice_credentials())
    }

    pub fn role(&self) -> Role {
        match self.kind {
            PeerKind::Publisher(_) => Role::Publisher,
            PeerKind::Viewer(_) => Role::Viewer,
        }
    }

    pub fn handle_event(&mut self, event: Event, now: Instant, fx: &mut Effects) {
        match event {
            Event::Connected => {
                self.connected = true;
                tracing::debug!(session = %self.session, role = ?self.role(), "connected");
                if let PeerKind::Viewer(v) = &mut self.kind {
                    if v.tracks.iter().any(|t| t.kind == MediaKind::Video) {
                        fx.viewer_joined = true;
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::debug!(session = %self.session, "ICE disconnected");
                self.rtc.disconnect();
            }
            Event::MediaAdded(added) => match &mut self.kind {
                PeerKind::Publisher(p) => {
                    if added.kind == MediaKind::Video && added.direction.is_receiving() {
                        p.video_mid.get_or_insert(added.mid);
                    }
                }
                PeerKind::Viewer(v) => {
                    if added.direction == Direction::SendOnly
                        || added.direction == Direction::SendRecv
                    {
                        v.tracks.push(OutTrack {
                            mid: added.mid,
                            kind: added.kind,
                            awaiting_keyframe: added.kind == MediaKind::Video,
                            timeline: Timeline::default(),
                            pt_cache: None,
                            last_index: None,
                            numbering: RtpNumbering::default(),
                            rtx_packets: RTX_CACHE_PACKETS,
                            pending: None,
                        });
                        if added.kind == MediaKind::Video {
                            // Retransmission history: what a NACK can still
                            // usefully repair for a sub-second viewer.
                            if let Some(tx) =
                                self.rtc.direct_api().stream_tx_by_mid(added.mid, None)
                            {
                                tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, RTX_RATIO_CAP);
                                if v.estimation == Estimation::Unpaced {
                                    // Forwarded as it comes; the estimator
                                    // still reads the feedback (layer choice).
                                    tx.set_unpaced(true);
                                }
                            }
                        }
                        // str0m may report the media after the session
                        // connected: the viewer joins when it has both.
                        if added.kind == MediaKind::Video && self.connected {
                            fx.viewer_joined = true;
                        }
                    }
                }
            },
            Event::MediaData(data) => {
                if let PeerKind::Publisher(p) = &mut self.kind {
                    if let Some(frame) = p.ingest(&self.hub, data, fx) {
                        fx.frames.push(Arc::new(frame));
                    }
                }
            }
            Event::EgressBitrateEstimate(estimate) => {
                if let PeerKind::Viewer(v) = &mut self.kind {
                    let bps = match estimate {
                        BweKind::Twcc { estimate, .. } => estimate.as_u64(),
                        BweKind::Remb { estimate, .. } => estimate.as_u64(),
                        _ => return,
                    };
                    v.select.estimate = Some(bps);
                    // Acted on with the next video frame.
                    v.last_eval = None;
                }
            }
            Event::ChannelOpen(id, label) => {
                if let PeerKind::Viewer(v) = &mut self.kind {
                    tracing::debug!(session = %self.session, label, "data channel open");
                    v.channel = Some(id);
                }
            }
            Event::ChannelClose(id) => {
                if let PeerKind::Viewer(v) = &mut self.kind {
                    if v.channel == Some(id) {
                        v.channel = None;
                    }
                }
            }
            Event::MediaEgressStats(s) => self.stats.egress(&s),
            Event::KeyframeRequest(_) => {
                if let PeerKind::Viewer(v) = &mut self.kind {
                    if v.throttle_request(now) {
                        fx.keyframe_requests
                            .push((KeyframeOrigin::ViewerFeedback, v.select.current));
                    }
                }
            }
            _ => {}
        }
    }

    /// Sends a keyframe request to this publisher, throttled.
    /// For a live publisher silent for [`crate::STALL_AFTER`]: reports the
    /// stall once.
    pub fn check_stall(&mut self, now: Instant) -> Option<crate::StreamEventKind> {
        let PeerKind::Publisher(p) = &mut self.kind else {
            return None;
        };
        let last = p.last_frame_at?;
        if p.stalled || now.saturating_duration_since(last) < crate::STALL_AFTER {
            return None;
        }
        if !self.hub.is_active_epoch(p.epoch) {
            return None;
        }
        p.stalled = true;
        Some(crate::StreamEventKind::Stalled)
    }

    /// Asks this publisher for a keyframe of `layer` (default: its main
    /// layer), at most once per [`KEYFRAME_REQUEST_INTERVAL`] per layer; a
    /// request inside the window is kept and served when it ends.
    pub fn request_keyframe(&mut self, now: Instant, metrics: &Metrics, layer: Option<u8>) {
        let PeerKind::Publisher(p) = &mut self.kind else {
            return;
        };
        let id = match layer {
            Some(id) if usize::from(id) < p.layers.len() => id,
            _ => p.default_request_layer(now),
        };
        let Some(slot) = p.kf.get_mut(usize::from(id)) else {
            return;
        };
        if slot
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            slot.pending = true;
            return;
        }
        let Some(mid) = p.video_mid else {
            return;
        };
        let rid = p.layers.get(usize::from(id)).and_then(|l| l.rid);
        let Some(mut writer) = self.rtc.writer(mid) else {
            return;
        };
        let kind = if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            KeyframeRequestKind::Pli
        } else {
            KeyframeRequestKind::Fir
        };
        match writer.request_keyframe(rid, kind) {
            Ok(()) => {
                metrics.keyframe_requests_sent.inc();
                slot.last = Some(now);
                slot.pending = false;
            }
            Err(e) => tracing::debug!(session = %self.session, "keyframe request not sent: {e}"),
        }
    }

    /// Serves keyframe requests deferred by the throttle, once they may go.
    pub fn serve_pending_keyframe_requests(&mut self, now: Instant, metrics: &Metrics) {
        let due: Vec<u8> = match &self.kind {
            PeerKind::Publisher(p) => {
                p.kf.iter()
                    .enumerate()
                    .filter(|(_, k)| {
                        k.pending
                            && k.last.is_none_or(|t| {
                                now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL
                            })
                    })
                    .filter_map(|(i, _)| u8::try_from(i).ok())
                    .collect()
            }
            PeerKind::Viewer(_) => return,
        };
        for id in due {
            self.request_keyframe(now, metrics, Some(id));
        }
    }

    /// Records that this viewer asked the publisher for a keyframe now.
    pub fn note_keyframe_request(&mut self, now: Instant) {
        if let PeerKind::Viewer(v) = &mut self.kind {
            v.last_keyframe_request = Some(now);
        }
    }

    /// The layer a joining viewer starts on (chosen now from the stream's
    /// layers, its cap and its initial bandwidth estimate).
    pub fn join_layer(&mut self, now: Instant) -> Option<u8> {
        let PeerKind::Viewer(v) = &mut self.kind else {
            return None;
        };
        let table = self.hub.layers();
        v.select.evaluate(&table, now);
        v.last_eval = Some(now);
        if v.estimation.is_on() {
            let (min, desired) = bwe_targets(&v.select, &table, &mut v.probe, now);
            self.rtc.bwe().set_bitrate(min, desired);
        }
        v.select.target
    }

    /// Changes this viewer's layer cap (takes effect with the next frame).
    pub fn set_layer_cap(&mut self, cap: LayerCap) {
        if let PeerKind::Viewer(v) = &mut self.kind {
            v.select.cap = cap;
            v.last_eval = None;
            v.probe.now();
        }
    }

    /// Starts sending a joining viewer the GOP so far (keyframe first),
    /// with RTP times squeezed into the millisecond ticks just before the
    /// newest frame's live time: the decoder gets every reference it needs,
    /// the player fast-forwards through them and is at live with the next
    /// frame. The caller then writes each frame with [`Peer::write_gop_frame`],
    /// draining output in between so the burst never overruns the send
    /// buffer. `None` when this viewer cannot take the GOP.
    pub fn begin_gop(&mut self, gop: &[Arc<Frame>]) -> Option<GopBurst> {
        let PeerKind::Viewer(v) = &mut self.kind else {
            return None;
        };
        let (first, last) = (gop.first()?, gop.last()?);
        if !self.connected || !first.keyframe || v.select.target != Some(first.layer) {
            return None;
        }
        let track = v
            .tracks
            .iter_mut()
            .find(|t| t.kind == MediaKind::Video && t.awaiting_keyframe)?;
        let pt = self.rtc.writer(track.mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == last.codec)
                .map(|p| p.pt())
        })?;
        track.pt_cache = Some((last.codec, pt));
        v.select.admit(first.layer, true);
        let live = track.timeline.map(last);
        track.awaiting_keyframe = false;
        track.last_index = Some(last.index);
        Some(GopBurst {
            mid: track.mid,
            pt,
            live,
            frames: gop.len() as u64,
        })
    }

    /// Writes frame `i` of a GOP burst begun with [`Peer::begin_gop`].
    pub fn write_gop_frame(
        &mut self,
        burst: &GopBurst,
        i: usize,
        frame: &Arc<Frame>,
        now: Instant,
        metrics: &Metrics,
    ) {
        let tick = u64::from(burst.live.frequency().get()) / 1000;
        let back = burst.frames.saturating_sub(1 + i as u64) * tick;
        let time = MediaTime::new(
            burst.live.numer().wrapping_sub(back),
            burst.live.frequency(),
        );
        let PeerKind::Viewer(v) = &mut self.kind else {
            return;
        };
        let Some(track) = v.tracks.iter_mut().find(|t| t.mid == burst.mid) else {
            return;
        };
        let out = Out {
            pt: burst.pt,
            time,
            wallclock: now,
        };
        if i == 0 {
            track.fit_rtx_history(&mut self.rtc, &self.hub);
        }
        write_to_track(&mut self.rtc, self.session, track, out, frame, metrics);
    }

    /// Writes a frame of the stream this viewer watches. True when it was
    /// handed to the viewer's `Rtc`.
    pub fn write_frame(
        &mut self,
        frame: &Arc<Frame>,
        now: Instant,
        metrics: &Metrics,
        fx: &mut Effects,
    ) -> bool {
        let PeerKind::Viewer(v) = &mut self.kind else {
            return false;
        };
        if !self.connected {
            return false;
        }
        let Some(track) = v.tracks.iter_mut().find(|t| t.kind == frame.kind) else {
            return false;
        };
        // Payload type first: a codec this viewer cannot take is skipped
        // without touching its keyframe state (nor asking for keyframes).
        let pt = match track.pt_cache {
            Some((codec, pt)) if codec == frame.codec => pt,
            _ => {
                let Some(pt) = self.rtc.writer(track.mid).and_then(|w| {
                    w.payload_params()
                        .find(|p| p.spec().codec == frame.codec)
                        .map(|p| p.pt())
                }) else {
                    return false;
                };
                track.pt_cache = Some((frame.codec, pt));
                pt
            }
        };
        let mid = track.mid;
        if frame.kind == MediaKind::Video {
            if track
                .timeline
                .epoch
                .is_some_and(|e| session_epoch(e) != session_epoch(frame.epoch))
                && v.select.current.is_some()
            {
                // A new publisher session numbers its layers anew.
                v.select.reset();
                v.last_eval = None;
            }
            if v.last_eval
                .is_none_or(|t| now.saturating_duration_since(t) >= STATS_INTERVAL)
            {
                v.last_eval = Some(now);
                let table = self.hub.layers();
                v.select.evaluate(&table, now);
                if v.estimation.is_on() {
                    let (min, desired) = bwe_targets(&v.select, &table, &mut v.probe, now);
                    self.rtc.bwe().set_bitrate(min, desired);
                }
            }
            let shown = v.select.current;
            if !v.select.admit(frame.layer, frame.keyframe) {
                // Another layer, or the target's delta frames before its
                // keyframe: ask for that keyframe (throttled).
                if v.select.waiting_for() == Some(frame.layer) && v.throttle_request(now) {
                    fx.keyframe_requests
                        .push((KeyframeOrigin::ViewerWaiting, Some(frame.layer)));
                }
                return false;
            }
            if shown != v.select.current {
                if let Some(l) = self
                    .hub
                    .layers()
                    .layers
                    .iter()
                    .find(|l| l.id == frame.layer)
                {
                    if !l.rid.is_empty() {
                        self.stats.shown_layer(&l.rid);
                    }
                }
            }
        }
        let Some(track) = v.tracks.iter_mut().find(|t| t.mid == mid) else {
            return false;
        };
        if frame.kind == MediaKind::Video {
            let new_source = track.timeline.epoch != Some(frame.epoch);
            // A frame lost on the way here (queue full) or at ingest: the
            // viewer's packetizer numbers packets contiguously, so its decoder
            // could not notice; wait for a keyframe instead of showing garbage.
            let gap = !new_source && track.last_index.is_some_and(|i| frame.index != i + 1);
            if new_source || gap || !frame.contiguous {
                track.awaiting_keyframe = true;
            }
        }
        track.last_index = Some(frame.index);
        if track.awaiting_keyframe {
            if !frame.keyframe {
                metrics.drop(DropReason::AwaitingKeyframe);
                if v.last_keyframe_request
                    .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL)
                {
                    v.last_keyframe_request = Some(now);
                    fx.keyframe_requests
                        .push((KeyframeOrigin::ViewerWaiting, Some(frame.layer)));
                }
                return false;
            }
            track.awaiting_keyframe = false;
        }
        let out = Out {
            pt,
            time: track.timeline.map(frame),
            wallclock: frame.network_time,
        };
        if frame.kind == MediaKind::Video && frame.keyframe {
            track.fit_rtx_history(&mut self.rtc, &self.hub);
        }
        write_to_track(&mut self.rtc, self.session, track, out, frame, metrics)
    }

    /// Writes the next [`WRITE_CHUNK`] packets of frames written in part.
    /// True when it wrote some: the caller sends them and calls again.
    pub fn write_next_chunk(&mut self) -> bool {
        let PeerKind::Viewer(v) = &mut self.kind else {
            return false;
        };
        let mut wrote = false;
        for track in &mut v.tracks {
            wrote |= track.write_pending(&mut self.rtc, WRITE_CHUNK);
        }
        wrote
    }
}

impl OutTrack {
    /// Writes up to `limit` more packets of the pending frame; true when
    /// it wrote some.
    fn write_pending(&mut self, rtc: &mut Rtc, limit: usize) -> bool {
        let Some(mut p) = self.pending.take() else {
            return false;
        };
        let packets = p.frame.packets.as_deref().unwrap_or_default();
        let end = packets.len().min(p.next.saturating_add(limit));
        let chunk = packets.get(p.next..end).unwrap_or_default();
        let video = self.kind == MediaKind::Video;
        let ends_frame = end == packets.len();
        let ok = self.numbering.write(
            rtc,
            self.mid,
            p.pt,
            p.time,
            p.wallclock,
            video,
            chunk,
            ends_frame,
        );
        let wrote = ok && !chunk.is_empty();
        if ok && !ends_frame {
            p.next = end;
            self.pending = Some(p);
        }
        wrote
    }

    /// Raises the retransmission history's cap, before a keyframe is
    /// written, when the stream's largest layer needs more than it holds
    /// (see [`RTX_CACHE_PACKETS`]); sized for the largest layer, layer
    /// switches need no change. Setting it drops the history, and a receiver
    /// still waiting for a repair of what was dropped stalls until it gives
    /// up on it (resets at layer switches doubled the freezes under
    /// `relaycast-load --drop-percent 5`): it only grows, at a keyframe, in
    /// practice the viewer's first, before any history exists.
    fn fit_rtx_history(&mut self, rtc: &mut Rtc, hub: &StreamHub) {
        let (bitrate, keyframe_bytes) = hub.largest_layer();
        let need = rtx_history_packets(bitrate, keyframe_bytes.div_ceil(PAYLOAD_MTU));
        if need <= self.rtx_packets {
            return;
        }
        if let Some(tx) = rtc.direct_api().stream_tx_by_mid(self.mid, None) {
            tx.set_rtx_cache(need, RTX_CACHE_AGE, RTX_RATIO_CAP);
            self.rtx_packets = need;
        }
    }
}

/// Retransmission entries a layer needs: the packets sent within
/// [`RTX_CACHE_AGE`] at `bitrate_bps` (delta frames fill packets to ~1000
/// bytes on average, less than the MTU) plus one keyframe of
/// `keyframe_packets`, a quarter on top, rounded up to a multiple of 32 so
/// small swings of the measured bitrate leave it alone; within
/// [`RTX_CACHE_PACKETS`] and [`RTX_CACHE_MAX`].
pub(crate) fn rtx_history_packets(bitrate_bps: u64, keyframe_packets: usize) -> usize {
    const AVG_PAYLOAD_BITS: u64 = 8 * 1000;
    let age_ms = u64::try_from(RTX_CACHE_AGE.as_millis()).unwrap_or(u64::MAX);
    let in_age = bitrate_bps.saturating_mul(age_ms) / 1000 / AVG_PAYLOAD_BITS;
    let need = usize::try_from(in_age)
        .unwrap_or(usize::MAX)
        .saturating_add(keyframe_packets)
        .saturating_mul(5)
        / 4;
    need.div_ceil(32)
        .saturating_mul(32)
        .clamp(RTX_CACHE_PACKETS, RTX_CACHE_MAX)
}

/// Payload type, (rebased) RTP time and wall clock a frame goes out with.
struct Out {
    pt: str0m::media::Pt,
    time: MediaTime,
    wallclock: Instant,
}

/// Writes a frame on a viewer track: its shared RTP payloads with the
/// track's numbering, or, for codecs without them, the frame for str0m to
/// packetize. A viewer whose `Rtc` refuses the frame is closed.
fn write_to_track(
    rtc: &mut Rtc,
    session: SessionId,
    track: &mut OutTrack,
    out: Out,
    frame: &Arc<Frame>,
    metrics: &Metrics,
) -> bool {
    // The worker sends every chunk of a frame before the next frame comes;
    // should one still be pending, it goes first, whole.
    track.write_pending(rtc, usize::MAX);
    let video = frame.kind == MediaKind::Video;
    if let Some(packets) = &frame.packets {
        let Out {
            pt,
            time,
            wallclock,
        } = out;
        let written = if packets.len() <= WRITE_CHUNK {
            track
                .numbering
                .write(rtc, track.mid, pt, time, wallclock, video, packets, true)
        } else {
            track.pending = Some(PendingWrite {
                frame: frame.clone(),
                next: 0,
                pt,
                time,
                wallclock,
            });
            track.write_pending(rtc, WRITE_CHUNK)
        };
        if written {
            metrics.frames_forwarded.inc();
        }
        return written;
    }
    let Some(writer) = rtc.writer(track.mid) else {
        return false;
    };
    match writer.write(out.pt, out.wallclock, out.time, frame.data.clone()) {
        Ok(()) => {
            metrics.frames_forwarded.inc();
            true
        }
        Err(e) => {
            tracing::warn!(%session, "write failed, closing viewer: {e}");
            rtc.disconnect();
            false
        }
    }
}

impl Peer {
    /// Writes a text message on the viewer's data channel, if it opened
    /// one and it is not backed up. True when written.
    pub fn send_data(&mut self, data: &[u8]) -> bool {
        let PeerKind::Viewer(v) = &self.kind else {
            return false;
        };
        let Some(id) = v.channel else {
            return false;
        };
        let Some(mut channel) = self.rtc.channel(id) else {
            return false;
        };
        if channel.buffered_amount() > CHANNEL_BACKLOG_LIMIT {
            return false;
        }
        match channel.write(false, data) {
            Ok(_) => {
                self.stats.data_message();
                true
            }
            Err(e) => {
                tracing::debug!(session = %self.session, "data channel write failed: {e}");
                false
            }
        }
    }
}

impl ViewerState {
    fn throttle_request(&mut self, now: Instant) -> bool {
        if self
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return false;
        }
        self.last_keyframe_request = Some(now);
        true
    }
}

impl PublisherState {
    fn new(epoch: u64) -> PublisherState {
        PublisherState {
            epoch,
            video_mid: None,
            layers: Vec::new(),
            top: None,
            top_switches: 0,
            audio_index: 0,
            kf: [KfThrottle::default(); MAX_LAYERS],
            stats_at: None,
            last_frame_at: None,
            stalled: false,
            packetizers: Packetizers::default(),
        }
    }

    fn ingest(&mut self, hub: &StreamHub, data: MediaData, fx: &mut Effects) -> Option<Frame> {
        if !hub.is_active_epoch(self.epoch) {
            // Replaced by a newer session of the same publisher.
            return None;
        }
        let spec = data.params.spec();
        let kind = spec.codec.kind();
        let keyframe = data.is_keyframe();
        let at = data.network_time;
        let (layer, top, index) = if kind == MediaKind::Video {
            let id = self.layer_id(data.rid, at, hub)?;
            let top = self.update_top(id, keyframe, data.data.len(), at);
            if !data.contiguous {
                fx.keyframe_requests
                    .push((KeyframeOrigin::PacketLoss, Some(id)));
            }
            if keyframe {
                if let Some(k) = self.kf.get_mut(usize::from(id)) {
                    k.pending = false;
                }
                if let Some(size) = crate::picture::keyframe_size(spec.codec, &data.data) {
                    self.layers[usize::from(id)].size = Some(size);
                }
                if top && spec.codec == Codec::H264 {
                    if let Some(p) = h264::sps_profile(&data.data) {
                        hub.set_h264_profile(p);
                    }
                }
            }
            let l = &mut self.layers[usize::from(id)];
            l.bytes += data.data.len() as u64;
            l.frames += 1;
            let index = l.index;
            l.index += 1;
            (id, top, index)
        } else {
            let index = self.audio_index;
            self.audio_index += 1;
            (0, true, index)
        };
        if self
            .stats_at
            .is_none_or(|t| at.saturating_duration_since(t) >= STATS_INTERVAL)
        {
            self.publish_stats(hub, at);
        }
        if self.last_frame_at.is_none() {
            fx.stream_event = Some(crate::StreamEventKind::Live);
        } else if self.stalled {
            fx.stream_event = Some(crate::StreamEventKind::Resumed);
        }
        self.last_frame_at = Some(at);
        self.stalled = false;
        let wallclock = data
            .last_sender_info
            .and_then(|sr| wallclock_of(data.time, sr.rtp_time, sr.ntp_time));
        let packets = self.packetizers.packetize(spec.codec, layer, &data.data);
        Some(Frame {
            kind,
            codec: spec.codec,
            time: data.time,
            network_time: at,
            ready_at: Instant::now(),
            keyframe,
            data: data.data,
            packets,
            index,
            contiguous: data.contiguous,
            epoch: self.epoch + u64::from(layer),
            layer,
            top,
            wallclock,
        })
    }

    /// The layer id of an encoding, registering it when new (the stream's
    /// layer table is republished at once so viewers can choose it).
    fn layer_id(&mut self, rid: Option<Rid>, at: Instant, hub: &StreamHub) -> Option<u8> {
        if let Some(i) = self.layers.iter().position(|l| l.rid == rid) {
            self.layers[i].last_frame = at;
            return u8::try_from(i).ok();
        }
        if self.layers.len() >= MAX_LAYERS {
            return None;
        }
        self.layers.push(LayerSeen {
            rid,
            last_frame: at,
            keyframe_size: 0,
            size: None,
            index: 0,
            bytes: 0,
            frames: 0,
        });
        let id = u8::try_from(self.layers.len() - 1).ok();
        self.publish_stats(hub, at);
        id
    }

    /// Keeps the main layer: the first seen, replaced on a keyframe of a
    /// layer with clearly larger keyframes, or of any layer when the main one
    /// fell silent. Returns whether `id` is the main layer.
    fn update_top(&mut self, id: u8, keyframe: bool, size: usize, at: Instant) -> bool {
        if keyframe {
            self.layers[usize::from(id)].keyframe_size = size;
        }
        let top = *self.top.get_or_insert(id);
        if keyframe && id != top {
            let current = self.layers.get(usize::from(top));
            let silent =
                current.is_none_or(|c| at.saturating_duration_since(c.last_frame) >= LAYER_SILENCE);
            let bigger = size > current.map_or(0, |c| c.keyframe_size).saturating_mul(3) / 2;
            if silent || bigger {
                self.top = Some(id);
                self.top_switches += 1;
            }
        }
        self.top == Some(id)
    }

    /// The layer a request that names none is for: the main layer, or while
    /// it is silent the most recently active one.
    fn default_request_layer(&self, now: Instant) -> u8 {
        let top = self.top.unwrap_or(0);
        let current = self.layers.get(usize::from(top));
        if current.is_some_and(|c| now.saturating_duration_since(c.last_frame) < LAYER_SILENCE) {
            return top;
        }
        self.layers
            .iter()
            .enumerate()
            .max_by_key(|(_, l)| l.last_frame)
            .and_then(|(i, _)| u8::try_from(i).ok())
            .unwrap_or(top)
    }

    /// Publishes each layer's bitrate, frame rate and activity to the hub.
    fn publish_stats(&mut self, hub: &StreamHub, at: Instant) {
        let elapsed = self
            .stats_at
            .map(|t| at.saturating_duration_since(t).as_secs_f64())
            .filter(|e| *e > 0.0);
        self.stats_at = Some(at);
        let mut table = LayerTable {
            layers: self
                .layers
                .iter_mut()
                .enumerate()
                .map(|(i, l)| {
                    let (bitrate_bps, fps) = match elapsed {
                        Some(e) => (
                            (l.bytes as f64 * 8.0 / e) as u64,
                            (f64::from(l.frames) / e) as f32,
                        ),
                        None => (0, 0.0),
                    };
                    l.bytes = 0;
                    l.frames = 0;
                    LayerInfo {
                        id: i as u8,
                        rid: l.rid.map(|r| r.to_string()).unwrap_or_default(),
                        bitrate_bps,
                        fps,
                        keyframe_bytes: l.keyframe_size,
                        width: l.size.map_or(0, |s| s.0),
                        height: l.size.map_or(0, |s| s.1),
                        active: at.saturating_duration_since(l.last_frame) < LAYER_SILENCE,
                    }
                })
                .collect(),
        };
        table.sort();
        hub.set_layers(table);
    }
}

/// What the bandwidth estimator of a simulcast viewer should aim for:
/// probing up to the highest layer allowed, and, while an [`UpProbe`]
/// window is open, traffic (padding fills the gap) at the next layer's
/// rate, so the estimate can grow to it. Outside the windows the minimum is
/// zero (str0m keeps its own small padding floor).
fn bwe_targets(
    select: &LayerSelect,
    table: &LayerTable,
    probe: &mut UpProbe,
    now: Instant,
) -> (Bitrate, Bitrate) {
    const HEADROOM: f64 = 1.3;
    let desired = select.desired_bps(table).unwrap_or(0) as f64 * HEADROOM;
    let desired = desired.max(300_000.0);
    let mut active = table.layers.iter().filter(|l| l.active);
    let rank = select
        .target
        .and_then(|t| active.clone().position(|l| l.id == t));
    let next_up = rank
        .and_then(|i| active.nth(i + 1))
        .map(|l| l.bitrate_bps as f64 * HEADROOM)
        .filter(|&bps| bps <= desired);
    let padding = probe.pad(now, rank, next_up.is_some());
    let min = next_up.filter(|_| padding).unwrap_or(0.0);
    (Bitrate::bps(min as u64), Bitrate::bps(desired as u64))
}

/// Capture wall clock of an RTP time, from a sender report's RTP/NTP pair.
/// RTP times compare modulo 2^32 (the report carries the 32-bit value).
fn wallclock_of(
    time: MediaTime,
    sr_rtp: MediaTime,
    sr_ntp: std::time::SystemTime,
) -> Option<std::time::SystemTime> {
    let rate = i64::from(time.frequency().get());
    if rate == 0 {
        return None;
    }
    let delta = i64::from((time.numer() as u32).wrapping_sub(sr_rtp.numer() as u32) as i32);
    let micros = delta.saturating_mul(1_000_000) / rate;
    let d = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        sr_ntp.checked_add(d)
    } else {
        sr_ntp.checked_sub(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::Frequency;

    fn frame(epoch: u64, ts: u64, at: Instant) -> Frame {
        Frame {
            kind: MediaKind::Video,
            codec: Codec::H264,
            time: MediaTime::new(ts, Frequency::NINETY_KHZ),
            network_time: at,
            ready_at: at,
            keyframe: false,
            data: Arc::from(&[][..]),
            packets: None,
            index: 0,
            contiguous: true,
            epoch,
            layer: 0,
            top: true,
            wallclock: None,
        }
    }

    #[test]
    fn retransmission_history_fits_the_layer() {
        // 6 Mbit/s, 120-packet keyframes: 450 packets in 600 ms + 120, a
        // quarter on top, rounded up to 32.
        assert_eq!(rtx_history_packets(6_000_000, 120), 736);
        // 1.5 Mbit/s (~188) and below, or not measured yet: the floor.
        assert_eq!(rtx_history_packets(1_500_000, 38), RTX_CACHE_PACKETS);
        assert_eq!(rtx_history_packets(0, 0), RTX_CACHE_PACKETS);
        // 20 Mbit/s is held at the ceiling.
        assert_eq!(rtx_history_packets(20_000_000, 400), RTX_CACHE_MAX);
        // Small swings of a measured bitrate give the same size.
        assert_eq!(
            rtx_history_packets(6_050_000, 120),
            rtx_history_packets(6_000_000, 120)
        );
    }

    #[test]
    fn timeline_is_continuous_across_publisher_sessions() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        // First session: timestamps pass through unchanged.
        let a = tl.map(&frame(1, 1_000_000, t0));
        let b = tl.map(&frame(1, 1_003_000, t0 + Duration::from_millis(33)));
        assert_eq!(a.numer(), 1_000_000);
        assert_eq!(b.numer(), 1_003_000);
        // A new session 2 s later starts at an unrelated (smaller) timestamp:
        // the output continues from the last one plus the wall-clock gap.
        let c = tl.map(&frame(2, 5, t0 + Duration::from_millis(2033)));
        assert_eq!(c.numer(), 1_003_000 + 180_000);
        let d = tl.map(&frame(2, 3005, t0 + Duration::from_millis(2066)));
        assert_eq!(
            d.numer() - c.numer(),
            3000,
            "spacing within a session is kept"
        );
    }

    #[test]
    fn timeline_moves_forward_even_without_a_wall_clock_gap() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        let a = tl.map(&frame(1, 90_000, t0));
        let b = tl.map(&frame(2, 0, t0));
        assert!(b.numer() > a.numer());
    }

    #[test]
    fn timeline_survives_rtp_wrap_around() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        tl.map(&frame(1, u64::from(u32::MAX) - 10, t0));
        let out = tl.map(&frame(2, 7, t0 + Duration::from_millis(10)));
        // Only the low 32 bits go on the wire; they advanced by 900 ticks.
        let wire = out.numer() as u32;
        assert_eq!(wire, (u32::MAX - 10).wrapping_add(900));
    }

    #[test]
    fn simulcast_forwards_every_layer_and_taps_the_largest_switching_on_its_keyframe() {
        let hub = StreamHub::new(1, "s".into(), 1);
        let mut p = PublisherState::new(1 << 20);
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let (q, h) = (Rid::from("q"), Rid::from("h"));
        let mut see = |rid: Rid, keyframe: bool, size: usize, at: Instant| {
            let id = p.layer_id(Some(rid), at, &hub).expect("layer id");
            (id, p.update_top(id, keyframe, size, at))
        };
        assert_eq!(
            see(q, true, 1_000, ms(0)),
            (0, true),
            "first layer is the main one"
        );
        assert_eq!(
            see(h, false, 5_000, ms(10)),
            (1, false),
            "no switch on a delta frame"
        );
        assert_eq!(
            hub.layers().layers.len(),
            2,
            "both layers are offered to viewers"
        );
        assert_eq!(see(q, false, 300, ms(20)), (0, true));
        assert_eq!(
            see(h, true, 9_000, ms(30)),
            (1, true),
            "switch on the bigger keyframe"
        );
        assert_eq!(see(q, true, 1_000, ms(40)), (0, false));
        // The main layer stops (congestion): keyframe requests go to the live
        // layer, and its next keyframe takes over.
        assert_eq!(see(q, false, 300, ms(1500)), (0, false));
        assert_eq!(p.default_request_layer(ms(1500)), 0);
        assert_eq!(p.top_switches, 1);
        let mut see = |rid: Rid, keyframe: bool, size: usize, at: Instant| {
            let id = p.layer_id(Some(rid), at, &hub).expect("layer id");
            (id, p.update_top(id, keyframe, size, at))
        };
        assert_eq!(
            see(q, true, 1_000, ms(1600)),
            (0, true),
            "silent layer abandoned"
        );
        assert_eq!(p.top_switches, 2);
    }

    #[test]
    fn wallclock_maps_rtp_through_the_sender_report() {
        use std::time::UNIX_EPOCH;
        let ntp = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let sr_rtp = MediaTime::new(u64::from(u32::MAX) - 45_000, Frequency::NINETY_KHZ);
        // 90,000 ticks later, across the 32-bit wrap, in extended form.
        let later = MediaTime::new(
            u64::from(u32::MAX) + 45_000 + (5u64 << 32),
            Frequency::NINETY_KHZ,
        );
        let at = wallclock_of(later, sr_rtp, ntp).expect("mapped");
        assert_eq!(at.duration_since(ntp).ok(), Some(Duration::from_secs(1)));
        let earlier = MediaTime::new(u64::from(u32::MAX) - 90_000, Frequency::NINETY_KHZ);
        let at = wallclock_of(earlier, sr_rtp, ntp).expect("mapped");
        assert_eq!(
            ntp.duration_since(at).ok(),
            Some(Duration::from_millis(500))
        );
    }
}
