//! A viewer track's outgoing RTP clock: publisher timestamps rebased so a
//! publisher that leaves and comes back (or a layer switch) looks like one
//! continuous track to the viewer.

use std::time::Instant;

use str0m::media::MediaTime;

use crate::frame::{Epoch, Frame};

/// Rebases publisher timestamps onto one continuous outgoing timeline, so a
/// publisher that leaves and comes back (or a layer switch) looks like one
/// track to the viewer. Sequence numbers are the packetizer's own and are
/// continuous by construction.
#[derive(Default)]
pub(crate) struct Timeline {
    pub epoch: Option<Epoch>,
    offset: u64,
    last_out: Option<(u64, Instant)>,
}

impl Timeline {
    pub fn map(&mut self, frame: &Frame) -> MediaTime {
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test's clock starts at one real instant
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use str0m::format::Codec;
    use str0m::media::{Frequency, MediaKind};

    fn frame(epoch: u64, ts: u64, at: Instant) -> Frame {
        let epoch = Epoch::of_session(epoch);
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
}
