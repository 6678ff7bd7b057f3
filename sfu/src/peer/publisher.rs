//! A publishing session's side of the forwarder: its encodings (simulcast
//! layers), the main layer taps get, keyframe requests to it (throttled per
//! layer), stall detection, and the frames it hands over for fan-out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, MediaTime, Mid, Rid};
use str0m::Event;

use super::{Conn, Effects, KEYFRAME_REQUEST_INTERVAL};
use crate::frame::{Epoch, Frame};
use crate::h264;
use crate::layers::{LayerInfo, LayerTable, LAYER_SILENCE, STATS_INTERVAL};
use crate::metrics::{KeyframeOrigin, Metrics};
use crate::rtp_out::Packetizers;
use crate::stream::StreamHub;

pub(crate) struct Publisher {
    /// Base epoch of this session; a frame's layer id is added to it.
    pub epoch: Epoch,
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

impl Publisher {
    pub fn new(epoch: Epoch) -> Publisher {
        Publisher {
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

    /// Acts on an event of the publisher's `Rtc` (the rest went to [`Conn`]).
    pub fn handle_event(&mut self, conn: &mut Conn, event: Event, now: Instant, fx: &mut Effects) {
        match event {
            Event::MediaAdded(added)
                if added.kind == MediaKind::Video && added.direction.is_receiving() =>
            {
                self.video_mid.get_or_insert(added.mid);
            }
            Event::MediaData(data) => {
                if let Some(frame) = self.ingest(&conn.hub, data, now, fx) {
                    fx.frames.push(Arc::new(frame));
                }
            }
            _ => {}
        }
    }

    /// For a live publisher silent for [`crate::STALL_AFTER`]: reports the
    /// stall once.
    pub fn check_stall(&mut self, hub: &StreamHub, now: Instant) -> Option<crate::StreamEventKind> {
        let last = self.last_frame_at?;
        if self.stalled || now.saturating_duration_since(last) < crate::STALL_AFTER {
            return None;
        }
        if !hub.is_active_epoch(self.epoch) {
            return None;
        }
        self.stalled = true;
        Some(crate::StreamEventKind::Stalled)
    }

    /// Asks this publisher for a keyframe of `layer` (default: its main
    /// layer), at most once per [`KEYFRAME_REQUEST_INTERVAL`] per layer; a
    /// request inside the window is kept and served when it ends.
    pub fn request_keyframe(
        &mut self,
        conn: &mut Conn,
        now: Instant,
        metrics: &Metrics,
        layer: Option<u8>,
    ) {
        let id = match layer {
            Some(id) if usize::from(id) < self.layers.len() => id,
            _ => self.default_request_layer(now),
        };
        let Some(slot) = self.kf.get_mut(usize::from(id)) else {
            return;
        };
        if slot
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            slot.pending = true;
            return;
        }
        let Some(mid) = self.video_mid else {
            return;
        };
        let rid = self.layers.get(usize::from(id)).and_then(|l| l.rid);
        let Some(mut writer) = conn.rtc.writer(mid) else {
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
            Err(e) => tracing::debug!(session = %conn.session, "keyframe request not sent: {e}"),
        }
    }

    /// Serves keyframe requests deferred by the throttle, once they may go.
    pub fn serve_pending_keyframe_requests(
        &mut self,
        conn: &mut Conn,
        now: Instant,
        metrics: &Metrics,
    ) {
        let due: Vec<u8> = self
            .kf
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                k.pending
                    && k.last.is_none_or(|t| {
                        now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL
                    })
            })
            .filter_map(|(i, _)| u8::try_from(i).ok())
            .collect();
        for id in due {
            self.request_keyframe(conn, now, metrics, Some(id));
        }
    }

    fn ingest(
        &mut self,
        hub: &StreamHub,
        data: MediaData,
        now: Instant,
        fx: &mut Effects,
    ) -> Option<Frame> {
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
            ready_at: now,
            keyframe,
            data: data.data,
            packets,
            index,
            contiguous: data.contiguous,
            epoch: self.epoch.of_layer(layer),
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
#[allow(clippy::disallowed_methods)] // a test's clock starts at one real instant
mod tests {
    use super::*;
    use str0m::media::Frequency;

    #[test]
    fn simulcast_forwards_every_layer_and_taps_the_largest_switching_on_its_keyframe() {
        let hub = StreamHub::new(crate::frame::StreamId(1), "s".into(), 1);
        let mut p = Publisher::new(Epoch::of_session(1));
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
