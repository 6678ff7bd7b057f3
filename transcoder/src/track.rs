//! One rendition's LL-HLS state (sans-IO): samples in, CMAF chunks, parts
//! and segments out, and the media playlist that lists them.
//!
//! A sample is written once its duration is known (when the next sample
//! arrives). Each write appends a CMAF chunk (`moof` + `mdat`) to the open
//! part, so a player that asked for the preload-hinted part gets bytes as
//! they are produced. A part closes when the next sample would take it past
//! the part target; a segment closes at a keyframe once it reached the
//! segment target (video), or when it reached it (audio), and at the latest
//! before it would exceed the target duration. Finished segments keep their
//! bytes for the playlist window; the parts of the last three target
//! durations are listed.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::daterange::DateRange;
use crate::fmp4::{self, Sample, TrackInfo};

/// Timing of the playlists; shared by every rendition of a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Segments are cut at the first keyframe at or after this duration.
    pub segment_target: Duration,
    /// `PART-TARGET`: no part is longer.
    pub part_target: Duration,
    /// How much finished media the playlist keeps.
    pub window: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            segment_target: Duration::from_secs(2),
            part_target: Duration::from_millis(334),
            window: Duration::from_secs(40),
        }
    }
}

impl Timing {
    /// `EXT-X-TARGETDURATION`: room for a keyframe arriving late (1.5 ×
    /// the segment target, rounded up to whole seconds); never changes.
    pub fn target_duration_secs(&self) -> u64 {
        let ms = self.segment_target.as_millis() as u64 * 3 / 2;
        ms.div_ceil(1000).max(1)
    }

    /// `PART-HOLD-BACK`, three part targets (the RFC's minimum).
    pub fn part_hold_back(&self) -> f64 {
        3.0 * self.part_target.as_secs_f64()
    }

    /// `CAN-SKIP-UNTIL`, six target durations (the RFC's minimum).
    pub fn can_skip_until(&self) -> f64 {
        6.0 * self.target_duration_secs() as f64
    }

    /// How long a blocking playlist or part request may wait (3 × target).
    pub fn block_limit(&self) -> Duration {
        Duration::from_secs(3 * self.target_duration_secs())
    }

    /// The `EXT-X-SERVER-CONTROL` line, the same in every media playlist.
    pub fn server_control(&self) -> String {
        format!(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.3}",
            self.can_skip_until(),
            self.part_hold_back()
        )
    }
}

/// Where a (segment, part) pair stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartLookup {
    /// Complete: served whole and immutable.
    Complete(Bytes),
    /// The open part: bytes so far; more follow.
    Open(Bytes),
    /// Not (or no longer) there.
    Missing,
}

/// Answer to a blocking playlist request's `_HLS_msn` / `_HLS_part`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Wait,
    /// More than two segments ahead of the playlist.
    TooFarAhead,
}

#[derive(Debug)]
struct Part {
    duration: u64,
    independent: bool,
    bytes: Bytes,
}

#[derive(Debug)]
struct Segment {
    msn: u64,
    start: u64,
    duration: u64,
    pdt: SystemTime,
    parts: Vec<Part>,
    bytes: Bytes,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    start: u64,
    duration: u64,
    pdt: SystemTime,
    parts: Vec<Part>,
    open: Option<OpenPart>,
}

#[derive(Debug)]
struct OpenPart {
    duration: u64,
    independent: bool,
    data: Vec<u8>,
}

/// A finished segment handed out for recording.
#[derive(Debug, Clone)]
pub struct FinishedSegment {
    pub msn: u64,
    pub duration: Duration,
    pub pdt: SystemTime,
    pub bytes: Bytes,
}

/// A sample ready to be written (time in the track's timescale).
#[derive(Debug, Clone)]
pub struct TrackSample {
    pub dts: u64,
    pub duration: u32,
    pub keyframe: bool,
    pub data: Bytes,
    /// Capture time of the sample.
    pub wallclock: SystemTime,
}

/// One rendition: its init segment, its segments and parts, its playlist.
#[derive(Debug)]
pub struct Track {
    info: TrackInfo,
    init: Bytes,
    is_video: bool,
    timing: Timing,
    fragment_seq: u32,
    /// Audio samples are grouped into chunks of about this many ticks
    /// (one `moof` per 20 ms Opus packet would be mostly overhead).
    chunk_ticks: u64,
    chunk: Vec<TrackSample>,
    segments: VecDeque<Segment>,
    current: Option<OpenSegment>,
    next_msn: u64,
    ended: bool,
    finished: Vec<FinishedSegment>,
    /// Whether finished segments are handed out (recording).
    recording: bool,
    /// A keyframe is wanted to close the current segment on time.
    want_keyframe: bool,
}

impl Track {
    pub fn new(info: TrackInfo, timing: Timing) -> Track {
        let is_video = info.codec.is_video();
        let init = Bytes::from(fmp4::init_segment(&info));
        let chunk_ticks = if is_video {
            0
        } else {
            u64::from(info.timescale) / 10
        };
        Track {
            info,
            init,
            is_video,
            timing,
            fragment_seq: 0,
            chunk_ticks,
            chunk: Vec::new(),
            segments: VecDeque::new(),
            current: None,
            next_msn: 0,
            ended: false,
            finished: Vec::new(),
            recording: false,
            want_keyframe: false,
        }
    }

    pub fn info(&self) -> &TrackInfo {
        &self.info
    }

    pub fn init(&self) -> Bytes {
        self.init.clone()
    }

    pub fn is_video(&self) -> bool {
        self.is_video
    }

    /// RFC 6381 codec of this rendition's audio (`None` for video).
    pub fn audio_codec(&self) -> Option<&'static str> {
        match self.info.codec {
            fmp4::TrackCodec::Opus { .. } => Some("opus"),
            fmp4::TrackCodec::Aac { .. } => Some("mp4a.40.2"),
            fmp4::TrackCodec::H264 { .. } => None,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn ticks(&self, d: Duration) -> u64 {
        (d.as_secs_f64() * f64::from(self.info.timescale)).round() as u64
    }

    fn secs(&self, ticks: u64) -> f64 {
        ticks as f64 / f64::from(self.info.timescale)
    }

    /// Whether the packager should ask the publisher for a keyframe (reset
    /// by reading it).
    pub fn take_keyframe_wish(&mut self) -> bool {
        std::mem::take(&mut self.want_keyframe)
    }

    /// Hands out finished segments through [`Track::take_finished`].
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    /// Segments finished since the last call (for recording).
    pub fn take_finished(&mut self) -> Vec<FinishedSegment> {
        std::mem::take(&mut self.finished)
    }

    /// Writes one sample. Video segments only start at a keyframe; delta
    /// frames before the first keyframe are dropped (returns false).
    pub fn push(&mut self, s: TrackSample) -> bool {
        if self.ended {
            return false;
        }
        let seg_target = self.ticks(self.timing.segment_target);
        let max_seg = self.timing.target_duration_secs() * u64::from(self.info.timescale);
        let part_target = self.ticks(self.timing.part_target);
        let dur = u64::from(s.duration);

        if let Some(cur) = &self.current {
            let pending: u64 = self.chunk.iter().map(|c| u64::from(c.duration)).sum();
            let seg_dur = cur.duration + pending;
            let cut = if self.is_video {
                (s.keyframe && seg_dur + self.ticks(Duration::from_millis(100)) >= seg_target)
                    || seg_dur + dur > max_seg
            } else {
                seg_dur + dur > seg_target
            };
            if cut {
                self.close_segment();
            } else if self.is_video
                && !s.keyframe
                && seg_dur + self.ticks(Duration::from_millis(300)) >= seg_target
                && seg_dur < seg_target + self.ticks(Duration::from_millis(34))
            {
                // Ask once around the point a keyframe is due; the SFU
                // throttles repeated asks.
                self.want_keyframe = true;
            }
        }
        // Only the first segment must start at a keyframe; after a forced
        // cut the next one starts with a non-independent part.
        if self.current.is_none() {
            if self.is_video && !s.keyframe && self.next_msn == 0 {
                self.want_keyframe = true;
                return false;
            }
            let msn = self.next_msn;
            self.next_msn += 1;
            self.current = Some(OpenSegment {
                msn,
                start: s.dts,
                duration: 0,
                pdt: s.wallclock,
                parts: Vec::new(),
                open: None,
            });
        }
        // Close the open part if this sample would overrun the part target.
        let part_full = self
            .current
            .as_ref()
            .and_then(|c| c.open.as_ref())
            .map(|p| {
                let pending: u64 = self.chunk.iter().map(|c| u64::from(c.duration)).sum();
                p.duration + pending + dur > part_target
            })
            .unwrap_or(false);
        if part_full {
            self.close_part();
        }
        if let Some(cur) = self.current.as_mut() {
            if cur.open.is_none() {
                cur.open = Some(OpenPart {
                    duration: 0,
                    independent: !self.is_video || s.keyframe,
                    data: Vec::new(),
                });
            }
        }
        self.chunk.push(s);
        let chunk_dur: u64 = self.chunk.iter().map(|c| u64::from(c.duration)).sum();
        if chunk_dur >= self.chunk_ticks {
            self.flush_chunk();
        }
        true
    }

    fn flush_chunk(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let Some(cur) = self.current.as_mut() else {
            self.chunk.clear();
            return;
        };
        let Some(part) = cur.open.as_mut() else {
            self.chunk.clear();
            return;
        };
        self.fragment_seq = self.fragment_seq.wrapping_add(1);
        let samples: Vec<Sample> = self
            .chunk
            .iter()
            .map(|c| Sample {
                duration: c.duration,
                keyframe: !self.is_video || c.keyframe,
                data: &c.data,
            })
            .collect();
        let bytes = fmp4::fragment(
            self.fragment_seq,
            self.info.track_id,
            self.chunk[0].dts,
            &samples,
        );
        let dur: u64 = self.chunk.iter().map(|c| u64::from(c.duration)).sum();
        part.data.extend_from_slice(&bytes);
        part.duration += dur;
        cur.duration += dur;
        self.chunk.clear();
    }

    fn close_part(&mut self) {
        self.flush_chunk();
        if let Some(cur) = self.current.as_mut() {
            if let Some(p) = cur.open.take() {
                if p.duration > 0 {
                    cur.parts.push(Part {
                        duration: p.duration,
                        independent: p.independent,
                        bytes: Bytes::from(p.data),
                    });
                }
            }
        }
    }

    fn close_segment(&mut self) {
        self.close_part();
        let Some(cur) = self.current.take() else {
            return;
        };
        if cur.parts.is_empty() {
            return;
        }
        let mut all = Vec::with_capacity(cur.parts.iter().map(|p| p.bytes.len()).sum());
        for p in &cur.parts {
            all.extend_from_slice(&p.bytes);
        }
        let bytes = Bytes::from(all);
        // Parts become views into the segment's bytes: one copy kept.
        let mut at = 0;
        let parts = cur
            .parts
            .into_iter()
            .map(|p| {
                let len = p.bytes.len();
                let part = Part {
                    duration: p.duration,
                    independent: p.independent,
                    bytes: bytes.slice(at..at + len),
                };
                at += len;
                part
            })
            .collect();
        let seg = Segment {
            msn: cur.msn,
            start: cur.start,
            duration: cur.duration,
            pdt: cur.pdt,
            parts,
            bytes,
        };
        if self.recording {
            self.finished.push(FinishedSegment {
                msn: seg.msn,
                duration: Duration::from_secs_f64(self.secs(seg.duration)),
                pdt: seg.pdt,
                bytes: seg.bytes.clone(),
            });
        }
        self.segments.push_back(seg);
        let window = self.ticks(self.timing.window);
        while self.segments.len() > 1 {
            let total: u64 = self.segments.iter().map(|s| s.duration).sum();
            if total <= window {
                break;
            }
            self.segments.pop_front();
        }
    }

    /// The stream ended: the open segment is finished and the playlist
    /// gets `EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        if !self.ended {
            self.close_segment();
            self.ended = true;
        }
    }

    /// Whether anything can be listed yet (a first part exists).
    /// Whether a whole segment is listed (players such as hls.js give up
    /// on a live playlist that lists parts only).
    pub fn has_segment(&self) -> bool {
        !self.segments.is_empty()
    }

    pub fn has_media(&self) -> bool {
        !self.segments.is_empty() || self.current.as_ref().is_some_and(|c| !c.parts.is_empty())
    }

    /// (last msn, last part index) as `EXT-X-RENDITION-REPORT` states them:
    /// the last listed part, or the last segment when no part is listed.
    pub fn last_msn_part(&self) -> Option<(u64, Option<usize>)> {
        if let Some(cur) = &self.current {
            if !cur.parts.is_empty() {
                return Some((cur.msn, Some(cur.parts.len() - 1)));
            }
        }
        self.segments
            .back()
            .map(|s| (s.msn, Some(s.parts.len().saturating_sub(1))))
    }

    /// Program date-time of the first listed segment once earlier ones
    /// have left the window (`None` while the first segment is listed).
    pub fn window_start(&self) -> Option<SystemTime> {
        self.segments.front().filter(|s| s.msn > 0).map(|s| s.pdt)
    }

    /// Media sequence number of the segment in progress (or the next one).
    fn live_msn(&self) -> u64 {
        self.current.as_ref().map_or(self.next_msn, |c| c.msn)
    }

    /// Whether a playlist satisfying `_HLS_msn=msn[&_HLS_part=part]` can be
    /// served now.
    pub fn readiness(&self, msn: u64, part: Option<u64>) -> Readiness {
        if self.ended {
            return Readiness::Ready;
        }
        let live = self.live_msn();
        // The last full segment in the playlist is live - 1.
        if msn > live + 1 {
            return Readiness::TooFarAhead;
        }
        if !self.has_media() {
            return Readiness::Wait;
        }
        self.ready_at(msn, part)
    }

    fn ready_at(&self, msn: u64, part: Option<u64>) -> Readiness {
        let live = self.live_msn();
        if msn < live {
            let Some(p) = part else {
                return Readiness::Ready;
            };
            let parts = self
                .segments
                .iter()
                .find(|s| s.msn == msn)
                .map(|s| s.parts.len() as u64);
            return match parts {
                // A part index past the segment's last part means part 0
                // of the next segment (RFC 8216bis 6.2.5.2).
                Some(n) if p >= n => self.ready_at(msn + 1, Some(0)),
                _ => Readiness::Ready,
            };
        }
        if msn > live {
            return Readiness::Wait;
        }
        match (part, &self.current) {
            (Some(p), Some(cur)) if (p as usize) < cur.parts.len() => Readiness::Ready,
            _ => Readiness::Wait,
        }
    }

    /// A finished segment's bytes.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.segments
            .iter()
            .find(|s| s.msn == msn)
            .map(|s| s.bytes.clone())
    }

    /// A part from byte `from` on: complete, open (being written) or
    /// missing.
    pub fn part(&self, msn: u64, index: usize, from: usize) -> PartLookup {
        let tail = |b: &Bytes| b.slice(from.min(b.len())..);
        if let Some(s) = self.segments.iter().find(|s| s.msn == msn) {
            return s.parts.get(index).map_or(PartLookup::Missing, |p| {
                PartLookup::Complete(tail(&p.bytes))
            });
        }
        if let Some(cur) = &self.current {
            if cur.msn == msn {
                if let Some(p) = cur.parts.get(index) {
                    return PartLookup::Complete(tail(&p.bytes));
                }
                if index == cur.parts.len() {
                    if let Some(open) = &cur.open {
                        let from = from.min(open.data.len());
                        return PartLookup::Open(Bytes::copy_from_slice(&open.data[from..]));
                    }
                }
            }
        }
        PartLookup::Missing
    }

    /// The part a preload hint names: the one being written.
    pub fn hinted_part(&self) -> Option<(u64, usize)> {
        if self.ended {
            return None;
        }
        let cur = self.current.as_ref()?;
        cur.open.as_ref()?;
        Some((cur.msn, cur.parts.len()))
    }

    /// The media playlist. `skip`: a delta update (`_HLS_skip=YES`).
    /// `reports`: (relative URI, last msn, last part) of the other
    /// renditions. `date_ranges`: listed with the segment they start in
    /// (see [`crate::daterange`]); all of them, in delta updates too.
    pub fn playlist(
        &self,
        skip: bool,
        reports: &[(String, u64, Option<usize>)],
        date_ranges: &[Arc<DateRange>],
    ) -> String {
        let t = &self.timing;
        let td = t.target_duration_secs();
        let mut out = String::with_capacity(4096);
        out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{td}");
        let _ = writeln!(
            out,
            "#EXT-X-PART-INF:PART-TARGET={:.3}",
            t.part_target.as_secs_f64()
        );
        let _ = writeln!(out, "{}", t.server_control());
        let first_msn = self
            .segments
            .front()
            .map(|s| s.msn)
            .unwrap_or_else(|| self.live_msn());
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
        out.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");

        let open_dur = self.current.as_ref().map_or(0, |c| c.duration);
        let total: u64 = self.segments.iter().map(|s| s.duration).sum::<u64>() + open_dur;
        let skip_until = self.ticks(Duration::from_secs_f64(t.can_skip_until()));
        let parts_from = total.saturating_sub(3 * td * u64::from(self.info.timescale));

        // Listed segments' program date-times: the finished ones, then the
        // one in progress once it has a part (open or closed).
        let current_listed = self
            .current
            .as_ref()
            .is_some_and(|c| !c.parts.is_empty() || c.open.is_some());
        let pdts: Vec<SystemTime> = self
            .segments
            .iter()
            .map(|s| s.pdt)
            .chain(
                self.current
                    .as_ref()
                    .filter(|_| current_listed)
                    .map(|c| c.pdt),
            )
            .collect();
        let first_kept = self.segments.front().is_none_or(|s| s.msn == 0);
        let ranges = crate::daterange::by_segment(&pdts, date_ranges, first_kept);

        let mut skipped = 0;
        if skip && !self.ended {
            let mut end = 0;
            for s in &self.segments {
                end += s.duration;
                if end + skip_until <= total {
                    skipped += 1;
                } else {
                    break;
                }
            }
            if skipped > 0 {
                let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
                // Date ranges are not skipped (no CAN-SKIP-DATERANGES).
                for line in ranges.iter().take(skipped).flatten() {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let mut end = 0;
        for (i, s) in self.segments.iter().enumerate() {
            end += s.duration;
            if i < skipped {
                continue;
            }
            write_pdt(&mut out, s.pdt);
            for line in &ranges[i] {
                let _ = writeln!(out, "{line}");
            }
            if end > parts_from {
                for (k, p) in s.parts.iter().enumerate() {
                    self.write_part(&mut out, s.msn, k, p.duration, p.independent);
                }
            }
            let _ = writeln!(
                out,
                "#EXTINF:{:.5},\nseg{}.m4s",
                self.secs(s.duration),
                s.msn
            );
        }
        if let Some(cur) = &self.current {
            if current_listed {
                write_pdt(&mut out, cur.pdt);
                for line in ranges.last().into_iter().flatten() {
                    let _ = writeln!(out, "{line}");
                }
            }
            for (k, p) in cur.parts.iter().enumerate() {
                self.write_part(&mut out, cur.msn, k, p.duration, p.independent);
            }
        }
        if let Some((msn, part)) = self.hinted_part() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{msn}.{part}.m4s\""
            );
        }
        for (uri, msn, part) in reports {
            let _ = write!(out, "#EXT-X-RENDITION-REPORT:URI=\"{uri}\",LAST-MSN={msn}");
            if let Some(p) = part {
                let _ = write!(out, ",LAST-PART={p}");
            }
            out.push('\n');
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    fn write_part(&self, out: &mut String, msn: u64, k: usize, duration: u64, independent: bool) {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"part{msn}.{k}.m4s\"",
            self.secs(duration)
        );
        if independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }

    /// Bits per second of the richest finished segment; before the first
    /// one, of the parts so far.
    pub fn peak_bitrate(&self) -> Option<f64> {
        let rate =
            |bytes: usize, ticks: u64| (ticks > 0).then(|| bytes as f64 * 8.0 / self.secs(ticks));
        let peak = self
            .segments
            .iter()
            .filter_map(|s| rate(s.bytes.len(), s.duration))
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        peak.or_else(|| {
            let cur = self.current.as_ref()?;
            let bytes = cur.parts.iter().map(|p| p.bytes.len()).sum();
            rate(bytes, cur.parts.iter().map(|p| p.duration).sum())
        })
    }

    /// The finished segments still held, for a VOD playlist or tests.
    pub fn segment_list(&self) -> Vec<(u64, f64)> {
        self.segments
            .iter()
            .map(|s| (s.msn, self.secs(s.duration)))
            .collect()
    }

    /// Decode time where the segment `msn` starts (tests).
    pub fn segment_start(&self, msn: u64) -> Option<u64> {
        self.segments.iter().find(|s| s.msn == msn).map(|s| s.start)
    }
}

fn write_pdt(out: &mut String, t: SystemTime) {
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_millis(t));
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` (UTC) without a date-time crate: the civil
/// date from days since the epoch (H. Hinnant's algorithm).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
#[path = "track_tests.rs"]
mod tests;
