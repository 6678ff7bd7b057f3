//! One stream's packager (sans-IO): frames from the SFU tap in, the source
//! video and the audio rendition out as [`Track`]s.
//!
//! Timestamps: each kind keeps an offset from the publisher's RTP time to
//! its track's decode time. A track starts at the arrival time of its first
//! frame relative to the stream's first frame, so audio and video start in
//! sync. A frame is held until the next one gives its duration. When the
//! timeline breaks (new publisher session or simulcast layer: epoch change;
//! RTP time going backwards; a gap longer than [`MAX_SAMPLE`]) the held
//! frame gets the previous frame's duration and the offset is moved so the
//! decode timeline stays continuous. After a lost video frame the track
//! waits for the next keyframe (and asks for one).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sfu::{Codec, Frame, MediaKind};

use crate::aac::OpusToAac;
use crate::daterange::{DateRange, MAX_LIVE_DATE_RANGES};
use crate::fmp4::{self, TrackCodec, TrackInfo};
use crate::h264_params::H264Params;
use crate::ladder::{LadderInput, Rung};
use crate::thumbnail::{with_parameter_sets, Keyframe};
use crate::track::{Timing, Track, TrackSample};

/// Longest duration a sample keeps; longer gaps are closed up.
pub const MAX_SAMPLE: Duration = Duration::from_millis(200);

pub const VIDEO_TIMESCALE: u32 = 90_000;
pub const AUDIO_TIMESCALE: u32 = 48_000;

/// What handling a frame asks of the driver.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// Ask the publisher for a keyframe.
    pub want_keyframe: bool,
    /// A gap in the frame indexes was seen (frames lost before us).
    pub gap: bool,
}

#[derive(Debug)]
struct Held {
    dts: u64,
    keyframe: bool,
    data: Bytes,
    wallclock: SystemTime,
    raw: Arc<[u8]>,
}

/// A sample with its duration now known, and the frame's original bytes
/// (Annex B for video, which the ladder decodes).
type Timed = (TrackSample, Arc<[u8]>);

/// Decode timeline of one kind.
#[derive(Debug)]
struct Timeline {
    timescale: u32,
    /// decode time = RTP time (rescaled) + offset.
    offset: i128,
    held: Option<Held>,
    last_duration: u32,
    epoch: Option<sfu::Epoch>,
    last_index: Option<u64>,
    /// Video: waiting for a keyframe after a gap.
    wait_key: bool,
    frames: u64,
    ticks: u64,
}

impl Timeline {
    fn new(timescale: u32, default_duration: u32) -> Timeline {
        Timeline {
            timescale,
            offset: 0,
            held: None,
            last_duration: default_duration,
            epoch: None,
            last_index: None,
            wait_key: true,
            frames: 0,
            ticks: 0,
        }
    }

    fn rtp_ticks(&self, frame: &Frame) -> i128 {
        let freq = u64::from(frame.time.frequency().get());
        let n = frame.time.numer();
        if freq == u64::from(self.timescale) {
            i128::from(n)
        } else {
            i128::from(n) * i128::from(self.timescale) / i128::from(freq.max(1))
        }
    }

    /// Takes a frame; returns the previously held one, now with its
    /// duration. `start_ticks`: where a fresh track starts.
    fn push(
        &mut self,
        frame: &Frame,
        data: Bytes,
        wallclock: SystemTime,
        start_ticks: u64,
        max_sample: u32,
    ) -> (Option<Timed>, bool) {
        let new_epoch = self.epoch != Some(frame.epoch);
        let gap = !new_epoch
            && (self.last_index.is_some_and(|i| frame.index != i + 1) || !frame.contiguous);
        self.epoch = Some(frame.epoch);
        self.last_index = Some(frame.index);
        let rtp = self.rtp_ticks(frame);
        let Some(held) = self.held.take() else {
            self.offset = i128::from(start_ticks) - rtp;
            self.held = Some(Held {
                dts: start_ticks,
                keyframe: frame.keyframe,
                data,
                wallclock,
                raw: frame.data.clone(),
            });
            return (None, gap);
        };
        let mut dts = rtp + self.offset;
        let d = dts - i128::from(held.dts);
        let duration = if new_epoch || d <= 0 || d > i128::from(max_sample) {
            let d = self.last_duration;
            dts = i128::from(held.dts) + i128::from(d);
            self.offset = dts - rtp;
            d
        } else {
            // In range by the check above.
            u32::try_from(d).unwrap_or(self.last_duration)
        };
        self.last_duration = duration;
        self.frames += 1;
        self.ticks += u64::from(duration);
        let out = TrackSample {
            dts: held.dts,
            duration,
            keyframe: held.keyframe,
            data: held.data,
            wallclock: held.wallclock,
        };
        self.held = Some(Held {
            dts: u64::try_from(dts).unwrap_or(0),
            keyframe: frame.keyframe,
            data,
            wallclock,
            raw: frame.data.clone(),
        });
        (Some((out, held.raw)), gap)
    }

    /// The held frame with the last duration (end of stream).
    fn flush(&mut self) -> Option<TrackSample> {
        let held = self.held.take()?;
        Some(TrackSample {
            dts: held.dts,
            duration: self.last_duration,
            keyframe: held.keyframe,
            data: held.data,
            wallclock: held.wallclock,
        })
    }

    fn frame_rate(&self) -> Option<f64> {
        (self.frames >= 2 && self.ticks > 0)
            .then(|| self.frames as f64 * f64::from(self.timescale) / self.ticks as f64)
    }
}

/// What the audio rendition carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioOut {
    /// AAC-LC transcoded from the publisher's Opus (plays everywhere,
    /// Apple's native players included).
    Aac { bitrate: u32 },
    /// The publisher's Opus passed through in fMP4 (hls.js/MSE players;
    /// not Apple's native HLS).
    Opus,
}

impl Default for AudioOut {
    fn default() -> Self {
        AudioOut::Aac { bitrate: 128_000 }
    }
}

/// The packager of one stream: source video and audio renditions.
#[derive(Debug)]
pub struct StreamPackager {
    /// Opus → AAC when the audio rendition is AAC.
    aac: Option<OpusToAac>,
    /// Ladder rungs configured; their tracks once the source size is known.
    ladder: Vec<Rung>,
    rungs: Vec<RungTrack>,
    ladder_inputs: Vec<LadderInput>,
    aac_out: Vec<TrackSample>,
    timing: Timing,
    origin: Option<Instant>,
    video_tl: Timeline,
    audio_tl: Timeline,
    video: Option<Track>,
    audio: Option<Track>,
    params: Option<H264Params>,
    /// Set when the stream's video cannot go to LL-HLS (not H.264).
    unsupported: Option<String>,
    ended: bool,
    avcc: Vec<u8>,
    /// `EXT-X-DATERANGE`s of every rendition, oldest first.
    date_ranges: Vec<Arc<DateRange>>,
    /// The last source keyframe, for thumbnails.
    latest_keyframe: Option<Keyframe>,
    keyframes: u64,
}

impl StreamPackager {
    pub fn new(timing: Timing, audio: AudioOut, ladder: Vec<Rung>) -> StreamPackager {
        let aac = match audio {
            AudioOut::Aac { bitrate } => match OpusToAac::new(bitrate) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!("AAC unavailable, audio stays Opus: {e}");
                    None
                }
            },
            AudioOut::Opus => None,
        };
        StreamPackager {
            aac,
            ladder,
            rungs: Vec::new(),
            ladder_inputs: Vec::new(),
            aac_out: Vec::new(),
            timing,
            origin: None,
            video_tl: Timeline::new(VIDEO_TIMESCALE, 3000),
            audio_tl: Timeline::new(AUDIO_TIMESCALE, 960),
            video: None,
            audio: None,
            params: None,
            unsupported: None,
            ended: false,
            avcc: Vec::new(),
            date_ranges: Vec::new(),
            latest_keyframe: None,
            keyframes: 0,
        }
    }

    /// Adds a date range to every rendition's playlist (the newest
    /// [`MAX_LIVE_DATE_RANGES`] are kept).
    pub fn add_date_range(&mut self, range: Arc<DateRange>) {
        if self.date_ranges.len() >= MAX_LIVE_DATE_RANGES {
            self.date_ranges.remove(0);
        }
        self.date_ranges.push(range);
        self.prune_date_ranges();
    }

    /// The date ranges the playlists may list.
    pub fn date_ranges(&self) -> &[Arc<DateRange>] {
        &self.date_ranges
    }

    /// Drops date ranges whose segment has left every rendition's window.
    fn prune_date_ranges(&mut self) {
        if self.date_ranges.is_empty() {
            return;
        }
        let tracks = self
            .video
            .iter()
            .chain(self.audio.iter())
            .chain(self.rungs.iter().filter_map(|r| r.track.as_ref()));
        let mut horizon: Option<SystemTime> = None;
        for t in tracks {
            // A rendition still listing its first segment keeps them all.
            let Some(w) = t.window_start() else { return };
            horizon = Some(horizon.map_or(w, |h| h.min(w)));
        }
        if let Some(h) = horizon {
            self.date_ranges.retain(|r| r.start() >= h);
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn video(&self) -> Option<&Track> {
        self.video.as_ref()
    }

    pub fn video_mut(&mut self) -> Option<&mut Track> {
        self.video.as_mut()
    }

    pub fn audio_mut(&mut self) -> Option<&mut Track> {
        self.audio.as_mut()
    }

    pub fn audio(&self) -> Option<&Track> {
        self.audio.as_ref()
    }

    pub fn params(&self) -> Option<&H264Params> {
        self.params.as_ref()
    }

    pub fn unsupported(&self) -> Option<&str> {
        self.unsupported.as_deref()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn frame_rate(&self) -> Option<f64> {
        self.video_tl.frame_rate()
    }

    /// Takes one frame from the tap. `arrival_wall`: the wall-clock time
    /// of its arrival, used when the frame has no sender-report time.
    pub fn handle_frame(&mut self, frame: &Frame, arrival_wall: SystemTime) -> Handled {
        if self.ended {
            return Handled::default();
        }
        self.prune_date_ranges();
        let origin = *self.origin.get_or_insert(frame.network_time);
        let since = frame.network_time.saturating_duration_since(origin);
        let wallclock = frame.wallclock.unwrap_or(arrival_wall);
        match frame.kind {
            MediaKind::Video => self.handle_video(frame, since, wallclock),
            MediaKind::Audio => self.handle_audio(frame, since, wallclock),
        }
    }

    fn handle_video(&mut self, frame: &Frame, since: Duration, wallclock: SystemTime) -> Handled {
        if frame.codec != Codec::H264 {
            if self.unsupported.is_none() {
                self.unsupported = Some(format!("{:?}", frame.codec));
            }
            return Handled::default();
        }
        let mut handled = Handled::default();
        let tl = &mut self.video_tl;
        let new_epoch = tl.epoch.is_some_and(|e| e != frame.epoch);
        let gap = tl.last_index.is_some_and(|i| frame.index != i + 1) || !frame.contiguous;
        if (gap || new_epoch) && tl.epoch.is_some() {
            tl.wait_key = true;
            handled.gap = gap && !new_epoch;
        }
        if tl.wait_key && !frame.keyframe {
            // Keep indexes current so the gap is reported once.
            tl.last_index = Some(frame.index);
            tl.epoch = Some(frame.epoch);
            handled.want_keyframe = true;
            return handled;
        }
        tl.wait_key = false;
        if frame.keyframe {
            if let Some(p) = H264Params::from_access_unit(&frame.data) {
                if self.params.is_none() {
                    self.video = Some(Track::new(
                        TrackInfo {
                            track_id: 1,
                            timescale: VIDEO_TIMESCALE,
                            codec: p.track_codec(),
                        },
                        self.timing,
                    ));
                    self.rungs = crate::ladder::rungs_for((p.width, p.height), &self.ladder)
                        .into_iter()
                        .map(|(rung, width, height)| RungTrack {
                            rung,
                            width,
                            height,
                            track: None,
                            params: None,
                        })
                        .collect();
                    self.params = Some(p);
                } else if self.params.as_ref() != Some(&p) {
                    tracing::warn!(
                        "H.264 parameter sets changed mid-stream; they stay in-band (init segment unchanged)"
                    );
                }
            }
        }
        let Some(params) = &self.params else {
            handled.want_keyframe = true;
            return handled;
        };
        if frame.keyframe {
            self.keyframes += 1;
            self.latest_keyframe = Some(Keyframe {
                annex_b: with_parameter_sets(&params.sps, &params.pps, &frame.data),
                serial: self.keyframes,
            });
        }
        let keep_in_band = H264Params::from_access_unit(&frame.data)
            .is_some_and(|p| p.sps != params.sps || p.pps != params.pps);
        self.avcc.clear();
        fmp4::annex_b_to_avcc(&frame.data, !keep_in_band, &mut self.avcc);
        let data = Bytes::copy_from_slice(&self.avcc);
        let start = ticks(since, VIDEO_TIMESCALE);
        let max = ticks(MAX_SAMPLE, VIDEO_TIMESCALE) as u32;
        let (sample, _) = self.video_tl.push(frame, data, wallclock, start, max);
        if let (Some((s, raw)), Some(track)) = (sample, self.video.as_mut()) {
            if !self.rungs.is_empty() {
                self.ladder_inputs.push(LadderInput {
                    dts: s.dts,
                    duration: s.duration,
                    keyframe: s.keyframe,
                    wallclock: s.wallclock,
                    annex_b: raw,
                });
            }
            track.push(s);
            handled.want_keyframe |= track.take_keyframe_wish();
        }
        handled
    }

    fn handle_audio(&mut self, frame: &Frame, since: Duration, wallclock: SystemTime) -> Handled {
        if frame.codec != Codec::Opus {
            return Handled::default();
        }
        let codec = match &self.aac {
            Some(t) => TrackCodec::Aac {
                channels: 2,
                sample_rate: AUDIO_TIMESCALE,
                asc: t.audio_specific_config().to_vec(),
            },
            None => TrackCodec::Opus {
                channels: 2,
                pre_skip: 0,
            },
        };
        let timing = self.timing;
        let track = self.audio.get_or_insert_with(|| {
            Track::new(
                TrackInfo {
                    track_id: 1,
                    timescale: AUDIO_TIMESCALE,
                    codec,
                },
                timing,
            )
        });
        let start = ticks(since, AUDIO_TIMESCALE);
        let max = ticks(MAX_SAMPLE, AUDIO_TIMESCALE) as u32;
        let data = Bytes::copy_from_slice(&frame.data);
        let (sample, gap) = self.audio_tl.push(frame, data, wallclock, start, max);
        if let Some((s, _)) = sample {
            match self.aac.as_mut() {
                Some(aac) => {
                    aac.push(&s, &mut self.aac_out);
                    for a in self.aac_out.drain(..) {
                        track.push(a);
                    }
                }
                None => {
                    track.push(s);
                }
            }
        }
        Handled {
            want_keyframe: false,
            gap,
        }
    }

    /// The publisher left: held frames are written, playlists end.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        if let (Some(s), Some(t)) = (self.video_tl.flush(), self.video.as_mut()) {
            t.push(s);
        }
        if let (Some(s), Some(t)) = (self.audio_tl.flush(), self.audio.as_mut()) {
            match self.aac.as_mut() {
                Some(aac) => {
                    aac.push(&s, &mut self.aac_out);
                    for a in self.aac_out.drain(..) {
                        t.push(a);
                    }
                }
                None => {
                    t.push(s);
                }
            }
        }
        if let Some(t) = self.video.as_mut() {
            t.end();
        }
        for r in &mut self.rungs {
            if let Some(t) = r.track.as_mut() {
                t.end();
            }
        }
        if let Some(t) = self.audio.as_mut() {
            t.end();
        }
        self.ended = true;
    }
}

/// One ladder rendition: its encoder's output becomes a track once the
/// first IDR (with its SPS/PPS) arrives.
#[derive(Debug)]
pub struct RungTrack {
    pub rung: Rung,
    pub width: u32,
    pub height: u32,
    pub track: Option<Track>,
    pub params: Option<H264Params>,
}

impl StreamPackager {
    /// The ladder's renditions (empty when the source is no larger than
    /// any rung, or before its first keyframe).
    pub fn rungs(&self) -> &[RungTrack] {
        &self.rungs
    }

    /// Picture sizes of the rungs, for starting the ladder thread.
    pub fn rung_sizes(&self) -> Vec<(Rung, u32, u32)> {
        self.rungs
            .iter()
            .map(|r| (r.rung.clone(), r.width, r.height))
            .collect()
    }

    /// The stream's latest keyframe with its parameter sets (thumbnails).
    pub fn latest_keyframe(&self) -> Option<&Keyframe> {
        self.latest_keyframe.as_ref()
    }

    /// Source samples for the ladder since the last call.
    pub fn take_ladder_inputs(&mut self) -> Vec<LadderInput> {
        std::mem::take(&mut self.ladder_inputs)
    }

    /// Encoded samples from the ladder, one slot per rung (Annex B).
    pub fn push_rungs(&mut self, samples: Vec<Option<TrackSample>>) {
        let timing = self.timing;
        for (r, s) in self.rungs.iter_mut().zip(samples) {
            let Some(mut s) = s else { continue };
            if r.track.is_none() {
                let Some(p) = H264Params::from_access_unit(&s.data) else {
                    continue;
                };
                r.track = Some(Track::new(
                    TrackInfo {
                        track_id: 1,
                        timescale: VIDEO_TIMESCALE,
                        codec: p.track_codec(),
                    },
                    timing,
                ));
                r.params = Some(p);
            }
            let mut avcc = Vec::with_capacity(s.data.len());
            fmp4::annex_b_to_avcc(&s.data, true, &mut avcc);
            s.data = Bytes::from(avcc);
            if let Some(t) = r.track.as_mut() {
                t.push(s);
            }
        }
    }
}

fn ticks(d: Duration, timescale: u32) -> u64 {
    (d.as_secs_f64() * f64::from(timescale)).round() as u64
}
