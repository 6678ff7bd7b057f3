//! What every ingest protocol does with its media once the container is
//! unwrapped: H.264 access units (Annex B) and AAC frames with container
//! times in milliseconds become [`sfu::IngestFrame`]s — AAC through
//! [`AacToOpus`] — with the container clock mapped to the wall clock at the
//! first media, and go to the publisher's [`sfu::Ingest`].

use std::time::{Duration, Instant, SystemTime};

use sfu::{Frequency, Ingest, IngestCodec, IngestFrame, MediaTime};

use crate::aac_to_opus::{AacToOpus, OpusPacket};

/// Why media could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Media that does not parse or decode.
    #[error("bad media: {0}")]
    Bad(String),
    /// A newer publisher with the same credential took the stream.
    #[error("replaced by a newer publisher of the same credential")]
    Replaced,
}

/// One publisher's media path into the SFU.
pub struct MediaIn {
    ingest: Ingest,
    audio: Option<AacToOpus>,
    opus: Vec<OpusPacket>,
    /// Container time (ms) ↔ wall clock, from the first media.
    origin: Option<(i64, SystemTime)>,
    told_b_frames: bool,
}

impl MediaIn {
    pub fn new(ingest: Ingest) -> MediaIn {
        MediaIn {
            ingest,
            audio: None,
            opus: Vec::new(),
            origin: None,
            told_b_frames: false,
        }
    }

    pub fn stream(&self) -> &str {
        self.ingest.stream()
    }

    /// Stall reporting and takeover check, every few hundred ms.
    pub fn tick(&mut self, now: Instant) -> Result<(), MediaError> {
        if self.ingest.is_replaced() {
            return Err(MediaError::Replaced);
        }
        self.ingest.tick(now);
        Ok(())
    }

    pub fn end(self) {
        self.ingest.end();
    }

    fn wallclock(&mut self, ms: i64) -> Option<SystemTime> {
        let (t0, w0) = *self.origin.get_or_insert_with(|| (ms, SystemTime::now()));
        let d = Duration::from_millis(ms.abs_diff(t0));
        if ms >= t0 {
            w0.checked_add(d)
        } else {
            w0.checked_sub(d)
        }
    }

    /// One H.264 access unit in Annex B, its decode and presentation times
    /// in container milliseconds (≥ 0).
    pub fn video(
        &mut self,
        dts_ms: i64,
        pts_ms: i64,
        annexb: Vec<u8>,
        keyframe: bool,
    ) -> Result<(), MediaError> {
        if pts_ms != dts_ms && !self.told_b_frames {
            self.told_b_frames = true;
            tracing::warn!(
                stream = self.stream(),
                "the encoder sends B-frames: WebRTC viewers may stutter; \
                 turn B-frames off for low latency"
            );
        }
        let pts = pts_ms.max(0);
        let wallclock = self.wallclock(pts);
        self.push(IngestFrame {
            codec: IngestCodec::H264,
            time: MediaTime::new(pts as u64 * 90, Frequency::NINETY_KHZ),
            keyframe,
            data: annexb.into(),
            wallclock,
        })
    }

    /// An AudioSpecificConfig (before the first AAC frame, or a change).
    pub fn aac_config(&mut self, asc: &[u8]) -> Result<(), MediaError> {
        let bad = |e: crate::aac_to_opus::AudioError| MediaError::Bad(e.to_string());
        let audio = match self.audio.as_mut() {
            Some(a) => a,
            None => self.audio.insert(AacToOpus::new().map_err(bad)?),
        };
        audio.configure(asc).map_err(bad)
    }

    /// Whether an AudioSpecificConfig was given.
    pub fn has_aac_config(&self) -> bool {
        self.audio.is_some()
    }

    /// One raw AAC frame starting at container time `ms` (≥ 0).
    pub fn aac_frame(&mut self, ms: i64, frame: &[u8]) -> Result<(), MediaError> {
        let Some(audio) = self.audio.as_mut() else {
            return Err(MediaError::Bad(
                "an AAC frame before its AudioSpecificConfig".into(),
            ));
        };
        let mut packets = std::mem::take(&mut self.opus);
        packets.clear();
        audio
            .push(ms, frame, &mut packets)
            .map_err(|e| MediaError::Bad(e.to_string()))?;
        let mut result = Ok(());
        for p in packets.drain(..) {
            let wallclock = self.wallclock((p.time_48k / 48) as i64);
            result = self.push(IngestFrame {
                codec: IngestCodec::Opus,
                time: MediaTime::new(p.time_48k, Frequency::FORTY_EIGHT_KHZ),
                keyframe: false,
                data: p.data.into(),
                wallclock,
            });
            if result.is_err() {
                break;
            }
        }
        self.opus = packets;
        result
    }

    fn push(&mut self, frame: IngestFrame) -> Result<(), MediaError> {
        self.ingest
            .push(Instant::now(), frame)
            .map_err(|_| MediaError::Replaced)
    }
}
