//! A viewing session's side of the forwarder: its outgoing tracks (payload
//! types, timeline, RTP numbering, retransmission history), the simulcast
//! layer it is shown and its bandwidth estimator's targets, GOP catch-up at
//! join, and its data channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::{Event, Rtc};

use super::timeline::Timeline;
use super::{Conn, Effects, KEYFRAME_REQUEST_INTERVAL};
use crate::frame::Frame;
use crate::layers::{LayerCap, LayerSelect, LayerTable, UpProbe, STATS_INTERVAL};
use crate::metrics::{DropReason, KeyframeOrigin, Metrics};
use crate::rtp_out::{RtpNumbering, PAYLOAD_MTU};
use crate::stream::StreamHub;
use crate::{SessionId, ViewerEstimator};

/// Video packets a viewer keeps for retransmission, and for how long.
/// Receivers repeat a NACK about every 100 ms (their round-trip guess) up
/// to five times, so a repair is asked for up to ~500 ms after the loss;
/// past ~600 ms it would come too late for a sub-second player anyway.
/// Each entry is 56 bytes of str0m bookkeeping (patch 3 in
/// `vendor/str0m/PATCHES.md`) and its payload (H.264: a reference to the one
/// shared copy; frames str0m packetizes per viewer: a copy of their own), and
/// str0m grows the buffer to hold whatever was sent within the age: a GOP
/// catch-up at join (2 s of video in ~120 ms) fills it to its cap, and it
/// shrinks back once that has aged out. The cap is
/// [`rtx_history_packets`] of the stream's largest layer, at least
/// [`RTX_CACHE_PACKETS`]: fitting it to a 1.5 Mbit/s layer (192) cost
/// repairs of the catch-up under loss (`relaycast-load --drop-percent 5`,
/// 40 viewers: 6-7 lost frames and freezes up to 0.8 s, against 2-4 and
/// 0.35 s at 256), while a 6 Mbit/s layer needs ~700 for the age.
pub const RTX_CACHE_PACKETS: usize = 256;
/// Ceiling of the fitted cap (~43 KB of entries per viewer).
pub const RTX_CACHE_MAX: usize = 768;
pub const RTX_CACHE_AGE: Duration = Duration::from_millis(600);
/// str0m drops queued retransmissions while they would exceed this share
/// of what a stream sends (a viewer losing much is not flooded with resends).
const RTX_RATIO_CAP: Option<f32> = Some(0.15);
/// A viewer whose data channel holds this much unsent data skips further
/// messages until it drains (a stalled viewer must not grow without bound).
pub const CHANNEL_BACKLOG_LIMIT: usize = 256 * 1024;

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

    /// Whether an estimate from `source` drives the layer choice: str0m's own (TWCC) where
    /// it estimates, the viewer's report (REMB) where it does not.
    pub fn chooses_by(self, source: ViewerEstimator) -> bool {
        match source {
            ViewerEstimator::Twcc => true,
            ViewerEstimator::Remb => !self.is_on(),
        }
    }

    pub fn is_on(self) -> bool {
        self != Estimation::Off
    }
}

pub(crate) struct Viewer {
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

/// A GOP being written to a joining viewer.
#[derive(Clone, Copy)]
pub(crate) struct GopBurst {
    mid: Mid,
    pt: str0m::media::Pt,
    /// Output time of the newest GOP frame (live).
    live: MediaTime,
    frames: u64,
}

impl Viewer {
    pub fn new(cap: LayerCap, estimation: Estimation) -> Viewer {
        Viewer {
            tracks: Vec::new(),
            last_keyframe_request: None,
            select: LayerSelect::new(cap),
            last_eval: None,
            estimation,
            channel: None,
            probe: UpProbe::default(),
        }
    }

    /// Whether the viewer takes video (its join waits for a keyframe).
    pub fn has_video(&self) -> bool {
        self.tracks.iter().any(|t| t.kind == MediaKind::Video)
    }

    /// Acts on an event of the viewer's `Rtc` (the rest went to [`Conn`]).
    pub fn handle_event(&mut self, conn: &mut Conn, event: Event, now: Instant, fx: &mut Effects) {
        match event {
            Event::Connected if self.has_video() => fx.viewer_joined = true,
            Event::MediaAdded(added) => {
                if added.direction != Direction::SendOnly && added.direction != Direction::SendRecv
                {
                    return;
                }
                self.tracks.push(OutTrack {
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
                    if let Some(tx) = conn.rtc.direct_api().stream_tx_by_mid(added.mid, None) {
                        tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, RTX_RATIO_CAP);
                        if self.estimation == Estimation::Unpaced {
                            // Forwarded as it comes; the estimator still
                            // reads the feedback (layer choice).
                            tx.set_unpaced(true);
                        }
                    }
                    // str0m may report the media after the session
                    // connected: the viewer joins when it has both.
                    if conn.connected {
                        fx.viewer_joined = true;
                    }
                }
            }
            Event::EgressBitrateEstimate(estimate) => {
                let (bps, source) = match estimate {
                    BweKind::Twcc { estimate, .. } => (estimate.as_u64(), ViewerEstimator::Twcc),
                    BweKind::Remb { estimate, .. } => (estimate.as_u64(), ViewerEstimator::Remb),
                    _ => return,
                };
                fx.estimate = Some(source);
                // Where str0m estimates from the viewer's transport-wide feedback, that
                // estimate is the one that counts: a browser may report REMB as well (seen:
                // Chromium 156 with TWCC negotiated, 54 REMB against 5 TWCC estimates in one
                // run), from its own receive-side view, which would pull the layer choice
                // back and forth between the two.
                if !self.estimation.chooses_by(source) {
                    return;
                }
                self.select.estimate = Some(bps);
                // Acted on with the next video frame.
                self.last_eval = None;
            }
            Event::ChannelOpen(id, label) => {
                tracing::debug!(session = %conn.session, label, "data channel open");
                self.channel = Some(id);
            }
            Event::ChannelClose(id) if self.channel == Some(id) => self.channel = None,
            Event::KeyframeRequest(_) if self.throttle_request(now) => {
                fx.keyframe_requests
                    .push((KeyframeOrigin::ViewerFeedback, self.select.current));
            }
            _ => {}
        }
    }

    /// Records that this viewer asked the publisher for a keyframe now.
    pub fn note_keyframe_request(&mut self, now: Instant) {
        self.last_keyframe_request = Some(now);
    }

    /// The layer a joining viewer starts on (chosen now from the stream's
    /// layers, its cap and its initial bandwidth estimate).
    pub fn join_layer(&mut self, conn: &mut Conn, now: Instant) -> Option<u8> {
        let table = conn.hub.layers();
        self.select.evaluate(&table, now);
        self.last_eval = Some(now);
        if self.estimation.is_on() {
            let (min, desired) = bwe_targets(&self.select, &table, &mut self.probe, now);
            conn.rtc.bwe().set_bitrate(min, desired);
        }
        self.select.target
    }

    /// Changes this viewer's layer cap (takes effect with the next frame).
    pub fn set_layer_cap(&mut self, cap: LayerCap) {
        self.select.cap = cap;
        self.last_eval = None;
        self.probe.now();
    }

    /// Starts sending a joining viewer the GOP so far (keyframe first),
    /// with RTP times squeezed into the millisecond ticks just before the
    /// newest frame's live time: the decoder gets every reference it needs,
    /// the player fast-forwards through them and is at live with the next
    /// frame. The caller then writes each frame with [`Viewer::write_gop_frame`],
    /// draining output in between so the burst never overruns the send
    /// buffer. `None` when this viewer cannot take the GOP.
    pub fn begin_gop(&mut self, conn: &mut Conn, gop: &[Arc<Frame>]) -> Option<GopBurst> {
        let (first, last) = (gop.first()?, gop.last()?);
        if !conn.connected || !first.keyframe || self.select.target != Some(first.layer) {
            return None;
        }
        let track = self
            .tracks
            .iter_mut()
            .find(|t| t.kind == MediaKind::Video && t.awaiting_keyframe)?;
        let pt = conn.rtc.writer(track.mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == last.codec)
                .map(|p| p.pt())
        })?;
        track.pt_cache = Some((last.codec, pt));
        self.select.admit(first.layer, true);
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
        conn: &mut Conn,
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
        let Some(track) = self.tracks.iter_mut().find(|t| t.mid == burst.mid) else {
            return;
        };
        let out = Out {
            pt: burst.pt,
            time,
            wallclock: now,
        };
        if i == 0 {
            track.fit_rtx_history(&mut conn.rtc, &conn.hub);
        }
        write_to_track(&mut conn.rtc, conn.session, track, out, frame, metrics);
    }

    /// Writes a frame of the stream this viewer watches. True when it was
    /// handed to the viewer's `Rtc`.
    pub fn write_frame(
        &mut self,
        conn: &mut Conn,
        frame: &Arc<Frame>,
        now: Instant,
        metrics: &Metrics,
        fx: &mut Effects,
    ) -> bool {
        if !conn.connected {
            return false;
        }
        let Some(track) = self.tracks.iter_mut().find(|t| t.kind == frame.kind) else {
            return false;
        };
        // Payload type first: a codec this viewer cannot take is skipped
        // without touching its keyframe state (nor asking for keyframes).
        let pt = match track.pt_cache {
            Some((codec, pt)) if codec == frame.codec => pt,
            _ => {
                let Some(pt) = conn.rtc.writer(track.mid).and_then(|w| {
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
                .is_some_and(|e| e.session() != frame.epoch.session())
                && self.select.current.is_some()
            {
                // A new publisher session numbers its layers anew.
                self.select.reset();
                self.last_eval = None;
            }
            // A viewer not watching any layer yet (it joined before the
            // stream had one) looks at every frame until it can: the
            // stream's first keyframe is then the one it starts on, which
            // matters for a publisher that cannot be asked for another
            // (an RTMP/SRT ingest).
            if self.select.target.is_none()
                || self
                    .last_eval
                    .is_none_or(|t| now.saturating_duration_since(t) >= STATS_INTERVAL)
            {
                self.last_eval = Some(now);
                let table = conn.hub.layers();
                self.select.evaluate(&table, now);
                if self.estimation.is_on() {
                    let (min, desired) = bwe_targets(&self.select, &table, &mut self.probe, now);
                    conn.rtc.bwe().set_bitrate(min, desired);
                }
            }
            let shown = self.select.current;
            if !self.select.admit(frame.layer, frame.keyframe) {
                // Another layer, or the target's delta frames before its
                // keyframe: ask for that keyframe (throttled).
                if self.select.waiting_for() == Some(frame.layer) && self.throttle_request(now) {
                    fx.keyframe_requests
                        .push((KeyframeOrigin::ViewerWaiting, Some(frame.layer)));
                }
                return false;
            }
            if shown != self.select.current {
                if let Some(l) = conn
                    .hub
                    .layers()
                    .layers
                    .iter()
                    .find(|l| l.id == frame.layer)
                {
                    if !l.rid.is_empty() {
                        conn.stats.shown_layer(&l.rid);
                    }
                }
            }
        }
        let Some(track) = self.tracks.iter_mut().find(|t| t.mid == mid) else {
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
                if self
                    .last_keyframe_request
                    .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL)
                {
                    self.last_keyframe_request = Some(now);
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
            track.fit_rtx_history(&mut conn.rtc, &conn.hub);
        }
        write_to_track(&mut conn.rtc, conn.session, track, out, frame, metrics)
    }

    /// Writes the next [`WRITE_CHUNK`] packets of frames written in part.
    /// True when it wrote some: the caller sends them and calls again.
    pub fn write_next_chunk(&mut self, conn: &mut Conn) -> bool {
        let mut wrote = false;
        for track in &mut self.tracks {
            wrote |= track.write_pending(&mut conn.rtc, WRITE_CHUNK);
        }
        wrote
    }

    /// Writes a text message on the viewer's data channel, if it opened
    /// one and it is not backed up. True when written.
    pub fn send_data(&mut self, conn: &mut Conn, data: &[u8]) -> bool {
        let Some(id) = self.channel else {
            return false;
        };
        let Some(mut channel) = conn.rtc.channel(id) else {
            return false;
        };
        if channel.buffered_amount() > CHANNEL_BACKLOG_LIMIT {
            return false;
        }
        match channel.write(false, data) {
            Ok(_) => {
                conn.stats.data_message();
                true
            }
            Err(e) => {
                tracing::debug!(session = %conn.session, "data channel write failed: {e}");
                false
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_reporting_remb_alongside_twcc_is_chosen_for_by_twcc() {
        for e in [Estimation::Unpaced, Estimation::Paced] {
            assert!(e.chooses_by(ViewerEstimator::Twcc));
            assert!(!e.chooses_by(ViewerEstimator::Remb), "{e:?}");
        }
        assert!(Estimation::Off.chooses_by(ViewerEstimator::Remb));
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
}
