//! The current group of pictures of each stream a worker sees, so a viewer
//! that joins mid-GOP gets a picture at once instead of waiting for the
//! publisher's next keyframe (OBS and other libdatachannel publishers ignore
//! keyframe requests; 1–2 s GOPs are common).
//!
//! Each worker keeps its own copy from the frames handed to it (frames are
//! `Arc`s, so a copy costs pointers), which keeps the cache off any lock
//! shared between workers.

use std::sync::Arc;
use std::time::Duration;

use crate::frame::{Epoch, Frame};

/// A GOP longer than this is not kept (a viewer then asks for a keyframe):
/// a bigger burst to one viewer would do more harm than a short wait.
pub const MAX_GOP_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_GOP_FRAMES: usize = 600;
/// A joining viewer gets the cached GOP only while it spans at most this
/// long; past that the burst would cost more than asking the publisher for
/// a keyframe (a publisher that honours it answers within a round trip).
pub const MAX_BURST_SPAN: Duration = Duration::from_secs(3);

#[derive(Default)]
pub(crate) struct GopCache {
    frames: Vec<Arc<Frame>>,
    bytes: usize,
}

impl GopCache {
    /// Adds a video frame of the stream: a keyframe starts a new GOP; a frame
    /// that does not continue the current one (gap, new source) drops it.
    pub fn push(&mut self, frame: &Arc<Frame>) {
        if frame.keyframe {
            self.clear();
        } else {
            let continues = self
                .frames
                .last()
                .is_some_and(|last| last.epoch == frame.epoch && last.index + 1 == frame.index);
            if !continues || !frame.contiguous {
                self.clear();
                return;
            }
        }
        if self.frames.len() >= MAX_GOP_FRAMES || self.bytes + frame.data.len() > MAX_GOP_BYTES {
            self.clear();
            return;
        }
        self.bytes += frame.data.len();
        self.frames.push(frame.clone());
    }

    /// The GOP so far: a keyframe and the frames that followed it, or empty.
    pub fn frames(&self) -> &[Arc<Frame>] {
        &self.frames
    }

    /// Time between the first and the last cached frame's arrival.
    pub fn span(&self) -> Duration {
        match (self.frames.first(), self.frames.last()) {
            (Some(a), Some(b)) => b.network_time.saturating_duration_since(a.network_time),
            _ => Duration::ZERO,
        }
    }

    /// Session epoch of the cached GOP, if any.
    pub fn epoch(&self) -> Option<Epoch> {
        self.frames.first().map(|f| f.epoch)
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test's clock starts at one real instant
mod tests {
    use super::*;
    use std::time::Instant;
    use str0m::format::Codec;
    use str0m::media::{Frequency, MediaKind, MediaTime};

    fn frame(index: u64, keyframe: bool, epoch: u64) -> Arc<Frame> {
        let epoch = Epoch::from_bits(epoch);
        Arc::new(Frame {
            kind: MediaKind::Video,
            codec: Codec::H264,
            time: MediaTime::new(index * 3000, Frequency::NINETY_KHZ),
            network_time: Instant::now(),
            ready_at: Instant::now(),
            keyframe,
            data: Arc::from(&[0u8; 100][..]),
            packets: None,
            index,
            contiguous: true,
            epoch,
            layer: 0,
            top: true,
            wallclock: None,
        })
    }

    #[test]
    fn keeps_the_frames_since_the_last_keyframe() {
        let mut c = GopCache::default();
        c.push(&frame(0, false, 1));
        assert!(c.frames().is_empty(), "nothing before the first keyframe");
        c.push(&frame(1, true, 1));
        c.push(&frame(2, false, 1));
        c.push(&frame(3, false, 1));
        assert_eq!(c.frames().len(), 3);
        c.push(&frame(4, true, 1));
        assert_eq!(c.frames().len(), 1, "a keyframe starts a new GOP");
    }

    #[test]
    fn a_gap_or_a_new_source_drops_the_gop() {
        let mut c = GopCache::default();
        c.push(&frame(1, true, 1));
        c.push(&frame(3, false, 1));
        assert!(c.frames().is_empty(), "frame 2 missing: not decodable");
        c.push(&frame(4, true, 1));
        c.push(&frame(5, false, 2));
        assert!(c.frames().is_empty(), "another source");
    }
}
