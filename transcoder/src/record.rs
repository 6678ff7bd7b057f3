//! Recording: a live stream's source video and audio renditions written to
//! disk segment by segment while live, closed with VOD playlists
//! (`EXT-X-PLAYLIST-TYPE:VOD`) when the stream ends, served at the stable
//! URL `/vod/{stream}/{run}/index.m3u8`, and deleted after the retention.
//!
//! Layout: `{dir}/{stream}/{run}/index.m3u8` (multivariant) and
//! `{dir}/{stream}/{run}/{video|audio}/{init.mp4, seg{n}.m4s, index.m3u8}`.
//! Writing happens on a task of its own fed through a bounded queue; a full
//! queue loses the segment from the recording (logged), never blocks the
//! packager.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::track::FinishedSegment;

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
    /// The stream ended; `multivariant` is the top-level VOD playlist.
    End { multivariant: String },
}

/// The packager's end of one recording.
pub struct Recorder {
    tx: mpsc::Sender<RecordEvent>,
}

impl Recorder {
    /// Starts recording into `dir` (`{base}/{stream}/{run}`).
    pub fn start(dir: PathBuf) -> Recorder {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(write_loop(dir, rx));
        Recorder { tx }
    }

    pub fn send(&self, ev: RecordEvent) {
        if let Err(e) = self.tx.try_send(ev) {
            tracing::warn!("recording falls behind, dropping: {e}");
        }
    }
}

#[derive(Default)]
struct RenditionLog {
    segments: Vec<(u64, f64)>,
}

async fn write_loop(dir: PathBuf, mut rx: mpsc::Receiver<RecordEvent>) {
    let mut logs: Vec<(&'static str, RenditionLog)> = Vec::new();
    while let Some(ev) = rx.recv().await {
        let result = match ev {
            RecordEvent::Init { rendition, bytes } => {
                logs.push((rendition, RenditionLog::default()));
                write(&dir.join(rendition), "init.mp4", &bytes).await
            }
            RecordEvent::Segment { rendition, segment } => {
                if let Some((_, log)) = logs.iter_mut().find(|(r, _)| *r == rendition) {
                    log.segments
                        .push((segment.msn, segment.duration.as_secs_f64()));
                }
                write(
                    &dir.join(rendition),
                    &format!("seg{}.m4s", segment.msn),
                    &segment.bytes,
                )
                .await
            }
            RecordEvent::End { multivariant } => {
                let mut r = Ok(());
                for (rendition, log) in &logs {
                    if log.segments.is_empty() {
                        continue;
                    }
                    let text = vod_playlist(&log.segments);
                    r = r.and(write(&dir.join(rendition), "index.m3u8", text.as_bytes()).await);
                }
                // Written last: its presence marks a complete recording.
                r.and(write(&dir, "index.m3u8", multivariant.as_bytes()).await)
            }
        };
        if let Err(e) = result {
            tracing::error!(dir = %dir.display(), "recording: {e}");
        }
    }
}

async fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, dir.join(name)).await
}

/// A VOD media playlist over `(msn, seconds)` segments.
pub fn vod_playlist(segments: &[(u64, f64)]) -> String {
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
    let mut prev: Option<u64> = None;
    for (msn, d) in segments {
        // A segment lost on the way (queue full) is a discontinuity.
        if prev.is_some_and(|p| *msn != p + 1) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        prev = Some(*msn);
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

    #[test]
    fn vod_playlists_list_every_segment_and_end() {
        let p = vod_playlist(&[(3, 2.0), (4, 1.5), (6, 2.0)]);
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(p.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
        assert!(p.contains(
            "#EXTINF:1.50000,\nseg4.m4s\n#EXT-X-DISCONTINUITY\n#EXTINF:2.00000,\nseg6.m4s\n"
        ));
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn path_components_are_checked() {
        assert!(safe_component("show-1_a.b"));
        for bad in ["", "..", ".hidden", "a/b", "a\\\\b", "é"] {
            assert!(!safe_component(bad), "{bad}");
        }
    }
}
