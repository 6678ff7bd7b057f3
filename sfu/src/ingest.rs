//! A publisher that is not a WebRTC session: an encoder that reached the
//! server over RTMP or SRT (the `ingest` crate) and whose media arrives as
//! whole access units with a container clock, not as RTP.
//!
//! The core is [`IngestSession`], sans-IO like the engines:
//! [`crate::Control::claim_ingest`] claims the stream's publisher slot under
//! the same rules as a WHIP publisher (same credential replaces, another one
//! is refused with [`crate::SfuError::StreamBusy`]); each pushed access unit
//! becomes the same [`Frame`] a WebRTC publisher's worker builds —
//! packetized once, indexed, stamped with the session's epoch — is offered
//! to the stream's taps and comes out as one [`IngestOutput::ToWorker`] per
//! worker exactly as a publisher's worker fans out (video to every worker
//! for their GOP caches, audio to workers with viewers). Stream events are
//! the same as a WebRTC publisher's (`Live` on the first frame,
//! `Stalled`/`Resumed`, `Ended` when it ends unreplaced).
//!
//! [`Ingest`] is its driver-side handle ([`crate::Sfu::ingest`]): it
//! delivers the commands to the workers' queues (`try_send`; a full queue
//! drops and counts `queue_full`, as the workers do) and the events to
//! [`crate::Sfu::events`].
//!
//! There is no RTCP towards such a publisher: keyframe requests routed to
//! an ingest's slot find no session and are ignored; the GOP cache is what
//! makes a viewer's join fast.
//!
//! Time: every call takes `now`; the caller (the ingest driver) reads the
//! clock.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime};

use crate::engine::{Cmd, Command};
use crate::frame::{Epoch, Frame};
use crate::layers::{LayerInfo, LayerTable, STATS_INTERVAL};
use crate::metrics::{DropReason, Metrics};
use crate::rtp_out::Packetizers;
use crate::stream::StreamHub;
use crate::{SessionId, Shared, StreamEventKind};

/// What an ingest can carry to WebRTC viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestCodec {
    /// One H.264 access unit in Annex B (start codes), parameter sets
    /// before every IDR.
    H264,
    /// One Opus packet, 48 kHz clock.
    Opus,
}

/// One access unit from a non-WebRTC publisher.
#[derive(Debug, Clone)]
pub struct IngestFrame {
    pub codec: IngestCodec,
    /// Presentation time from the container (90 kHz for H.264, 48 kHz for
    /// Opus), continuous within the ingest.
    pub time: MediaTime,
    pub keyframe: bool,
    pub data: Arc<[u8]>,
    /// Capture wall clock of `time`, as the driver maps the container clock
    /// (what a WebRTC publisher's sender reports give).
    pub wallclock: Option<SystemTime>,
}

/// Why an ingest cannot go on.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// A newer publisher with the same credential took the stream over.
    #[error("replaced by a newer publisher of the same credential")]
    Replaced,
}

/// What an [`IngestSession`] asks of its driver.
pub enum IngestOutput {
    /// Hand `command` (a frame) to worker `worker`'s engine; a full queue
    /// drops it (`queue_full`).
    ToWorker { worker: usize, command: Command },
    /// The stream went live, stalled, resumed or ended.
    StreamEvent {
        stream: String,
        kind: StreamEventKind,
    },
}

/// A stream claimed by [`crate::Control::claim_ingest`]: the session and,
/// when it replaced a publisher of the same credential, that publisher's
/// worker and the command that closes it there.
pub struct IngestClaim {
    pub session: IngestSession,
    pub replaced: Option<(usize, Command)>,
}

/// A non-WebRTC publisher of one stream, sans-IO: time comes in with every
/// call, frames and events come out. Ending it frees the stream's publisher
/// slot unless a newer publisher took it over.
pub struct IngestSession {
    hub: Arc<StreamHub>,
    session: SessionId,
    epoch: Epoch,
    metrics: Metrics,
    packetizers: Packetizers,
    video_index: u64,
    audio_index: u64,
    last_frame_at: Option<Instant>,
    stalled: bool,
    ended: bool,
    stats: VideoStats,
}

/// What the stream's layer table says about the one video layer.
#[derive(Default)]
struct VideoStats {
    at: Option<Instant>,
    bytes: u64,
    frames: u32,
    keyframe_bytes: usize,
    size: Option<(u32, u32)>,
}

impl IngestSession {
    pub(crate) fn new(
        hub: Arc<StreamHub>,
        session: SessionId,
        epoch: Epoch,
        metrics: Metrics,
    ) -> IngestSession {
        IngestSession {
            hub,
            session,
            epoch,
            metrics,
            packetizers: Packetizers::default(),
            video_index: 0,
            audio_index: 0,
            last_frame_at: None,
            stalled: false,
            ended: false,
            stats: VideoStats::default(),
        }
    }

    /// The stream this ingest publishes.
    pub fn stream(&self) -> &str {
        &self.hub.name
    }

    /// Whether a newer publisher took the stream over.
    pub fn is_replaced(&self) -> bool {
        !self.hub.is_active_epoch(self.epoch)
    }

    /// Turns one access unit into a [`Frame`], offers it to the stream's
    /// taps (a full tap drops and counts `tap_full`) and appends one
    /// command per worker that must get it to `out`, and `Live`/`Resumed`
    /// when the stream (re)starts.
    pub fn push(
        &mut self,
        now: Instant,
        input: IngestFrame,
        out: &mut Vec<IngestOutput>,
    ) -> Result<(), IngestError> {
        if self.is_replaced() {
            return Err(IngestError::Replaced);
        }
        let (kind, codec, index) = match input.codec {
            IngestCodec::H264 => {
                let i = self.video_index;
                self.video_index += 1;
                (MediaKind::Video, Codec::H264, i)
            }
            IngestCodec::Opus => {
                let i = self.audio_index;
                self.audio_index += 1;
                (MediaKind::Audio, Codec::Opus, i)
            }
        };
        if kind == MediaKind::Video {
            self.video_stats(now, &input);
        }
        let event = match self.last_frame_at {
            None => Some(StreamEventKind::Live),
            Some(_) if self.stalled => Some(StreamEventKind::Resumed),
            Some(_) => None,
        };
        if let Some(kind) = event {
            out.push(IngestOutput::StreamEvent {
                stream: self.hub.name.clone(),
                kind,
            });
        }
        self.last_frame_at = Some(now);
        self.stalled = false;
        let packets = self.packetizers.packetize(codec, 0, &input.data);
        let frame = Arc::new(Frame {
            kind,
            codec,
            time: input.time,
            network_time: now,
            ready_at: now,
            keyframe: input.keyframe,
            data: input.data,
            packets,
            index,
            contiguous: true,
            epoch: self.epoch.of_layer(0),
            layer: 0,
            top: true,
            wallclock: input.wallclock,
        });
        for _ in 0..self.hub.offer_to_taps(&frame) {
            self.metrics.drop(DropReason::TapFull);
        }
        let video = kind == MediaKind::Video;
        for worker in 0..self.hub.workers() {
            // Video reaches every worker (their GOP caches serve joins);
            // audio only those with viewers, as a publisher's worker does.
            if !video && self.hub.viewers_on(worker) == 0 {
                continue;
            }
            out.push(IngestOutput::ToWorker {
                worker,
                command: Command(Cmd::Frame {
                    hub: self.hub.clone(),
                    frame: frame.clone(),
                }),
            });
        }
        Ok(())
    }

    /// `Stalled`, once, when nothing was pushed for [`crate::STALL_AFTER`];
    /// call it every few hundred milliseconds.
    pub fn tick(&mut self, now: Instant) -> Option<StreamEventKind> {
        let last = self.last_frame_at?;
        if self.stalled
            || now.saturating_duration_since(last) < crate::STALL_AFTER
            || self.is_replaced()
        {
            return None;
        }
        self.stalled = true;
        Some(StreamEventKind::Stalled)
    }

    /// Ends the session: frees the slot if it still holds it and returns
    /// `Ended` then (`None` when replaced, or already ended).
    pub fn end(&mut self) -> Option<StreamEventKind> {
        if std::mem::replace(&mut self.ended, true) {
            return None;
        }
        tracing::info!(stream = %self.hub.name, session = %self.session, "ingest ended");
        if self.hub.clear_publisher(self.session) {
            self.metrics.publishers.dec();
            Some(StreamEventKind::Ended)
        } else {
            None
        }
    }

    /// Keeps the stream's layer table (one layer, no rid) up to date: a
    /// viewer chooses the layer it watches from it.
    fn video_stats(&mut self, now: Instant, input: &IngestFrame) {
        let s = &mut self.stats;
        s.bytes += input.data.len() as u64;
        s.frames += 1;
        if input.keyframe {
            s.keyframe_bytes = input.data.len();
            if let Some(size) = crate::picture::keyframe_size(Codec::H264, &input.data) {
                s.size = Some(size);
            }
            if let Some(p) = crate::h264::sps_profile(&input.data) {
                self.hub.set_h264_profile(p);
            }
        }
        let elapsed = match s.at {
            Some(t) if now.saturating_duration_since(t) < STATS_INTERVAL => return,
            Some(t) => now.saturating_duration_since(t).as_secs_f64(),
            None => 0.0,
        };
        let (bitrate_bps, fps) = if elapsed > 0.0 {
            (
                (s.bytes as f64 * 8.0 / elapsed) as u64,
                (f64::from(s.frames) / elapsed) as f32,
            )
        } else {
            (0, 0.0)
        };
        s.at = Some(now);
        s.bytes = 0;
        s.frames = 0;
        self.hub.set_layers(LayerTable {
            layers: vec![LayerInfo {
                id: 0,
                rid: String::new(),
                bitrate_bps,
                fps,
                keyframe_bytes: s.keyframe_bytes,
                width: s.size.map_or(0, |v| v.0),
                height: s.size.map_or(0, |v| v.1),
                // Published on a frame, so sending now; a stall is told by
                // `tick`, and the next publisher replaces the table.
                active: true,
            }],
        });
    }
}

/// An [`IngestSession`] with its delivery: frames to the workers' queues,
/// events to [`crate::Sfu::events`]. Ending (or dropping) it ends the
/// session.
pub struct Ingest {
    core: IngestSession,
    shared: Arc<Shared>,
    out: Vec<IngestOutput>,
}

impl Ingest {
    pub(crate) fn new(shared: Arc<Shared>, core: IngestSession) -> Ingest {
        Ingest {
            core,
            shared,
            out: Vec::new(),
        }
    }

    /// The stream this ingest publishes.
    pub fn stream(&self) -> &str {
        self.core.stream()
    }

    /// Whether a newer publisher took the stream over.
    pub fn is_replaced(&self) -> bool {
        self.core.is_replaced()
    }

    /// Hands one access unit to the stream's viewers and taps. Never waits.
    pub fn push(&mut self, now: Instant, input: IngestFrame) -> Result<(), IngestError> {
        let result = self.core.push(now, input, &mut self.out);
        for o in self.out.drain(..) {
            match o {
                IngestOutput::ToWorker { worker, command } => {
                    self.shared.send_to_worker(worker, command);
                }
                IngestOutput::StreamEvent { stream, kind } => self.shared.emit(&stream, kind),
            }
        }
        result
    }

    /// Reports a stall (see [`IngestSession::tick`]).
    pub fn tick(&mut self, now: Instant) {
        if let Some(kind) = self.core.tick(now) {
            self.shared.emit(self.core.stream(), kind);
        }
    }

    /// Ends the ingest (also done on drop).
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(kind) = self.core.end() {
            self.shared.emit(self.core.stream(), kind);
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.finish();
    }
}
