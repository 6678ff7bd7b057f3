//! Recording: a live stream's source video and audio renditions written to
//! disk segment by segment while live, closed with VOD playlists
//! (`EXT-X-PLAYLIST-TYPE:VOD`, each segment with its
//! `EXT-X-PROGRAM-DATE-TIME`, the stream's `EXT-X-DATERANGE`s at their
//! segments) when the stream ends, served at the stable URL
//! `/vod/{stream}/{run}/index.m3u8`, and deleted after the retention. Once
//! a recording is complete on disk a [`RecordingReady`] notice goes out
//! (see [`crate::Hls::recording_notices`]).
//!
//! Layout: `{dir}/{stream}/{run}/index.m3u8` (multivariant) and
//! `{dir}/{stream}/{run}/{video|audio}/{init.mp4, seg{n}.m4s, index.m3u8}`.
//! Writing happens on a task of its own fed through a bounded queue; a full
//! queue loses the segment from the recording (logged), never blocks the
//! packager.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use crate::daterange::DateRange;
use crate::track::FinishedSegment;

/// Date ranges a recording keeps (the first ones; later ones are left out
/// of the VOD playlists, logged).
pub const MAX_VOD_DATE_RANGES: usize = 256;

/// Where recordings go and how long they stay.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    pub dir: PathBuf,
    pub retention: Duration,
}

/// What the packager hands the recorder.
#[derive(Debug)]
pub enum RecordEvent {
    Init {
        rendition: &'static str,
        bytes: Bytes,
    },
    Segment {
        rendition: &'static str,
        segment: FinishedSegment,
    },
    /// A date range for the VOD playlists.
    DateRange(Arc<DateRange>),
    /// The stream ended; `multivariant` is the top-level VOD playlist,
    /// `poster` the stream's last keyframe (see [`crate::thumbnail`]),
    /// written as `poster.jpg` beside it.
    End {
        multivariant: String,
        poster: Option<Arc<[u8]>>,
    },
}

/// A recording is complete on disk and served at `url`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingReady {
    pub stream: String,
    pub run: String,
    /// `/vod/{stream}/{run}/index.m3u8` (multivariant).
    pub url: String,
    /// Recorded duration of the source video.
    pub duration: Duration,
    /// Segments of the source video.
    pub segments: usize,
    /// When the recording was closed.
    pub at: SystemTime,
}

/// The packager's end of one recording.
pub struct Recorder {
    tx: mpsc::Sender<RecordEvent>,
}

impl Recorder {
    /// Starts recording `stream`'s publisher run `run` into
    /// `{base}/{stream}/{run}`; `ready` hears when it is complete.
    pub fn start(
        base: &Path,
        stream: &str,
        run: &str,
        ready: broadcast::Sender<RecordingReady>,
    ) -> Recorder {
        let (tx, rx) = mpsc::channel(256);
        let id = RecordingId {
            dir: base.join(stream).join(run),
            stream: stream.to_string(),
            run: run.to_string(),
        };
        tokio::spawn(write_loop(id, rx, ready));
        Recorder { tx }
    }

    pub fn send(&self, ev: RecordEvent) {
        if let Err(e) = self.tx.try_send(ev) {
            tracing::warn!("recording falls behind, dropping: {e}");
        }
    }
}

struct RecordingId {
    dir: PathBuf,
    stream: String,
    run: String,
}

/// One recorded segment: (msn, seconds, program date-time).
pub type VodSegment = (u64, f64, SystemTime);

#[derive(Default)]
struct RenditionLog {
    segments: Vec<VodSegment>,
}

async fn write_loop(
    id: RecordingId,
    mut rx: mpsc::Receiver<RecordEvent>,
    ready: broadcast::Sender<RecordingReady>,
) {
    let dir = &id.dir;
    let mut logs: Vec<(&'static str, RenditionLog)> = Vec::new();
    let mut ranges: Vec<Arc<DateRange>> = Vec::new();
    while let Some(ev) = rx.recv().await {
        let result = match ev {
            RecordEvent::Init { rendition, bytes } => {
                logs.push((rendition, RenditionLog::default()));
                write(&dir.join(rendition), "init.mp4", &bytes).await
            }
            RecordEvent::Segment { rendition, segment } => {
                if let Some((_, log)) = logs.iter_mut().find(|(r, _)| *r == rendition) {
                    log.segments
                        .push((segment.msn, segment.duration.as_secs_f64(), segment.pdt));
                }
                write(
                    &dir.join(rendition),
                    &format!("seg{}.m4s", segment.msn),
                    &segment.bytes,
                )
                .await
            }
            RecordEvent::DateRange(range) => {
                if ranges.len() < MAX_VOD_DATE_RANGES {
                    ranges.push(range);
                } else {
                    tracing::warn!(
                        dir = %dir.display(),
                        "recording keeps {MAX_VOD_DATE_RANGES} date ranges; event {} left out",
                        range.id()
                    );
                }
                Ok(())
            }
            RecordEvent::End {
                multivariant,
                poster,
            } => {
                if let Some(keyframe) = poster {
                    write_poster(dir, keyframe).await;
                }
                let mut r = Ok(());
                for (rendition, log) in &logs {
                    if log.segments.is_empty() {
                        continue;
                    }
                    let text = vod_playlist(&log.segments, &ranges);
                    r = r.and(write(&dir.join(rendition), "index.m3u8", text.as_bytes()).await);
                }
                // Written last: its presence marks a complete recording.
                let r = r.and(write(dir, "index.m3u8", multivariant.as_bytes()).await);
                if r.is_ok() {
                    let main = logs
                        .iter()
                        .find(|(name, _)| *name == "video")
                        .or(logs.first())
                        .map(|(_, log)| log.segments.as_slice())
                        .unwrap_or_default();
                    // No receiver is fine: nobody wants to know.
                    let _ = ready.send(RecordingReady {
                        stream: id.stream.clone(),
                        run: id.run.clone(),
                        url: format!("/vod/{}/{}/index.m3u8", id.stream, id.run),
                        duration: Duration::from_secs_f64(main.iter().map(|s| s.1).sum()),
                        segments: main.len(),
                        at: SystemTime::now(),
                    });
                }
                r
            }
        };
        if let Err(e) = result {
            tracing::error!(dir = %dir.display(), "recording: {e}");
        }
    }
}

/// The recording's poster: a JPEG of `keyframe`, before the recording is
/// marked complete; a recording without one is still a recording.
async fn write_poster(dir: &Path, keyframe: Arc<[u8]>) {
    let jpeg = tokio::task::spawn_blocking(move || {
        crate::thumbnail::jpeg_of_keyframe(&keyframe, crate::thumbnail::WIDTH)
    })
    .await;
    match jpeg {
        Ok(Ok(jpeg)) => {
            if let Err(e) = write(dir, POSTER, &jpeg).await {
                tracing::warn!(dir = %dir.display(), "recording poster: {e}");
            }
        }
        Ok(Err(e)) => tracing::debug!(dir = %dir.display(), "no recording poster: {e}"),
        Err(_) => tracing::warn!(dir = %dir.display(), "recording poster: the decode panicked"),
    }
}

/// File name of a recording's poster (a JPEG of its last keyframe).
pub const POSTER: &str = "poster.jpg";

async fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, dir.join(name)).await
}

/// A VOD media playlist over `(msn, seconds, program date-time)`
/// segments, with `date_ranges` at the segments they start in (those
/// before the first at the first).
pub fn vod_playlist(segments: &[VodSegment], date_ranges: &[Arc<DateRange>]) -> String {
    let td = segments
        .iter()
        .map(|s| s.1.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-PLAYLIST-TYPE:VOD\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{td}");
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        segments.first().map_or(0, |s| s.0)
    );
    out.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
    let pdts: Vec<SystemTime> = segments.iter().map(|s| s.2).collect();
    let ranges = crate::daterange::by_segment(&pdts, date_ranges, true);
    let mut prev: Option<u64> = None;
    for (i, (msn, d, pdt)) in segments.iter().enumerate() {
        // A segment lost on the way (queue full) is a discontinuity.
        if prev.is_some_and(|p| *msn != p + 1) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        prev = Some(*msn);
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            crate::track::rfc3339_millis(*pdt)
        );
        for line in &ranges[i] {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "#EXTINF:{d:.5},\nseg{msn}.m4s");
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A name usable as one path component: letters, digits, `-`, `_`, `.`,
/// not starting with a dot.
pub fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The complete recordings of `stream` under `base` (run names, each a
/// directory with its `index.m3u8`), oldest first: a run is the start of
/// its publisher session in Unix milliseconds, in hex.
pub async fn recorded_runs(base: &Path, stream: &str) -> Vec<String> {
    let mut runs = Vec::new();
    if !safe_component(stream) {
        return runs;
    }
    if let Ok(mut dir) = tokio::fs::read_dir(base.join(stream)).await {
        while let Ok(Some(e)) = dir.next_entry().await {
            let run = e.file_name().to_string_lossy().into_owned();
            if safe_component(&run)
                && tokio::fs::metadata(e.path().join("index.m3u8"))
                    .await
                    .is_ok()
            {
                runs.push(run);
            }
        }
    }
    // Hex of the same width sorts as numbers; a longer one is later.
    runs.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    runs
}

/// Deletes recordings (run directories) older than `retention`.
pub async fn sweep(base: &Path, retention: Duration, now: SystemTime) {
    let Ok(mut streams) = tokio::fs::read_dir(base).await else {
        return;
    };
    while let Ok(Some(stream)) = streams.next_entry().await {
        let Ok(mut runs) = tokio::fs::read_dir(stream.path()).await else {
            continue;
        };
        while let Ok(Some(run)) = runs.next_entry().await {
            let old = run
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > retention);
            if old {
                if let Err(e) = tokio::fs::remove_dir_all(run.path()).await {
                    tracing::warn!("removing old recording {}: {e}", run.path().display());
                } else {
                    tracing::info!("removed recording {}", run.path().display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn vod_playlists_list_every_segment_and_end() {
        let p = vod_playlist(
            &[(3, 2.0, at(0)), (4, 1.5, at(2000)), (6, 2.0, at(5500))],
            &[],
        );
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(p.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
        assert!(p.contains(
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z\n#EXTINF:1.50000,\nseg4.m4s\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:25.500Z\n\
             #EXTINF:2.00000,\nseg6.m4s\n"
        ));
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn vod_playlists_carry_the_date_ranges_at_their_segments() {
        let early = Arc::new(DateRange::event(
            "early",
            at(0) - Duration::from_secs(1),
            1,
            "{}",
        ));
        let mid = Arc::new(DateRange::event("mid", at(3000), 2, "{\"a\":1}"));
        let segs = [(0, 2.0, at(0)), (1, 2.0, at(2000)), (2, 2.0, at(4000))];
        let p = vod_playlist(&segs, &[early.clone(), mid.clone()]);
        let lines: Vec<&str> = p.lines().collect();
        let pos = |l: &str| lines.iter().position(|x| *x == l).expect(l);
        // Before the first segment: with the first one.
        assert_eq!(
            pos(early.line()),
            pos("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z") + 1
        );
        assert_eq!(
            pos(mid.line()),
            pos("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z") + 1
        );
        assert_eq!(lines[pos(mid.line()) + 2], "seg1.m4s");
    }

    #[test]
    fn path_components_are_checked() {
        assert!(safe_component("show-1_a.b"));
        for bad in ["", "..", ".hidden", "a/b", "a\\\\b", "é"] {
            assert!(!safe_component(bad), "{bad}");
        }
    }
}
