//! What one viewer saw, and the arithmetic that turns many viewers into a
//! report: percentiles, loss from stamp sequence numbers, freezes.
//!
//! Time is passed in (`now`), so the trackers are tested without a clock.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sei::Stamp;

/// Two frames further apart than this are a freeze (a viewer would see the
/// picture stop).
pub const FREEZE_GAP: Duration = Duration::from_millis(200);

/// Per-viewer record of received frames.
#[derive(Debug, Default)]
pub struct FrameTracker {
    /// WHEP POST sent.
    pub started: Option<Instant>,
    /// First keyframe received (the viewer could start decoding).
    pub joined: Option<Instant>,
    pub frames: u64,
    pub keyframes: u64,
    /// Frames without our stamp (should be none).
    pub unstamped: u64,
    /// Frames before the first keyframe (not decodable, not counted as media).
    pub before_keyframe: u64,
    /// Forwarding delay of each stamped live frame after joining, µs.
    pub delays_us: Vec<u32>,
    /// Frames sent before this viewer's WHEP POST: the server's GOP replay
    /// at join (old on purpose, so not forwarding delay).
    pub catch_up: u64,
    /// Frames missing from the stamp sequence.
    pub lost: u64,
    pub freezes: u64,
    pub frozen: Duration,
    pub longest_gap: Duration,
    /// The forwarded layer changed (simulcast switch).
    pub layer_switches: u64,
    /// Stamped frames per layer index.
    pub frames_by_layer: [u64; 4],
    last: Option<(u8, u64)>,
    last_frame_at: Option<Instant>,
}

impl FrameTracker {
    pub fn new(started: Instant) -> FrameTracker {
        FrameTracker {
            started: Some(started),
            ..FrameTracker::default()
        }
    }

    /// A complete frame arrived at `now`; `delay` is now minus the stamp's
    /// send time.
    pub fn on_frame(
        &mut self,
        now: Instant,
        keyframe: bool,
        stamp: Option<Stamp>,
        delay: Option<Duration>,
        catch_up: bool,
    ) {
        if self.joined.is_none() {
            if !keyframe {
                self.before_keyframe += 1;
                return;
            }
            self.joined = Some(now);
        }
        self.frames += 1;
        if keyframe {
            self.keyframes += 1;
        }
        if let Some(prev) = self.last_frame_at {
            let gap = now.saturating_duration_since(prev);
            self.longest_gap = self.longest_gap.max(gap);
            if gap > FREEZE_GAP {
                self.freezes += 1;
                self.frozen += gap;
            }
        }
        self.last_frame_at = Some(now);
        let Some(stamp) = stamp else {
            self.unstamped += 1;
            return;
        };
        self.frames_by_layer[usize::from(stamp.layer.min(3))] += 1;
        if catch_up {
            self.catch_up += 1;
        } else if let Some(d) = delay {
            self.delays_us
                .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        }
        match self.last {
            Some((layer, seq)) if layer == stamp.layer => {
                if stamp.seq > seq {
                    self.lost += stamp.seq - seq - 1;
                    self.last = Some((layer, stamp.seq));
                }
                // Older or repeated frame: neither loss nor progress.
            }
            Some(_) => {
                self.layer_switches += 1;
                self.last = Some((stamp.layer, stamp.seq));
            }
            None => self.last = Some((stamp.layer, stamp.seq)),
        }
    }

    /// Time from the WHEP POST to the first keyframe.
    pub fn join_time(&self) -> Option<Duration> {
        Some(self.joined?.saturating_duration_since(self.started?))
    }

    /// When the last frame arrived.
    pub fn last_frame_at(&self) -> Option<Instant> {
        self.last_frame_at
    }

    /// Freeze accounting stops at `end`: a stream that stopped before the end
    /// of the run is frozen until then.
    pub fn close(&mut self, end: Instant) {
        if let Some(prev) = self.last_frame_at {
            let gap = end.saturating_duration_since(prev);
            if gap > FREEZE_GAP {
                self.freezes += 1;
                self.frozen += gap;
                self.longest_gap = self.longest_gap.max(gap);
            }
        }
    }
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50/p95/p99/max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// From microsecond samples (sorted here).
    pub fn from_us(mut samples: Vec<u32>) -> Option<Summary> {
        samples.sort_unstable();
        let ms = |v: u32| f64::from(v) / 1000.0;
        let sum: u64 = samples.iter().map(|&v| u64::from(v)).sum();
        Some(Summary {
            n: samples.len(),
            p50_ms: ms(percentile(&samples, 50.0)?),
            p95_ms: ms(percentile(&samples, 95.0)?),
            p99_ms: ms(percentile(&samples, 99.0)?),
            max_ms: ms(*samples.last()?),
            mean_ms: sum as f64 / samples.len() as f64 / 1000.0,
        })
    }

    pub fn from_durations(samples: impl IntoIterator<Item = Duration>) -> Option<Summary> {
        Summary::from_us(
            samples
                .into_iter()
                .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(layer: u8, seq: u64) -> Option<Stamp> {
        Some(Stamp {
            send_us: 0,
            seq,
            layer,
        })
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7u32], 99.0), Some(7));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        let s = Summary::from_us(vec![3000, 1000, 2000, 4000]).expect("summary");
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.p99_ms, 4.0);
        assert_eq!(s.max_ms, 4.0);
        assert_eq!(s.mean_ms, 2.5);
        assert_eq!(Summary::from_us(vec![]), None);
    }

    #[test]
    fn join_waits_for_a_keyframe_and_loss_counts_missing_sequence_numbers() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = FrameTracker::new(t0);
        t.on_frame(ms(10), false, stamp(2, 0), None, false);
        assert_eq!(t.joined, None, "a delta frame is not a join");
        t.on_frame(
            ms(40),
            true,
            stamp(2, 1),
            Some(Duration::from_millis(3)),
            false,
        );
        assert_eq!(t.join_time(), Some(Duration::from_millis(40)));
        t.on_frame(
            ms(73),
            false,
            stamp(2, 2),
            Some(Duration::from_millis(4)),
            false,
        );
        t.on_frame(
            ms(140),
            false,
            stamp(2, 5),
            Some(Duration::from_millis(4)),
            false,
        );
        assert_eq!(t.lost, 2, "3 and 4 missing");
        t.on_frame(ms(150), false, stamp(2, 4), None, false);
        assert_eq!(t.lost, 2, "a late frame is not more loss");
        // Layer switch: the new layer's numbering starts fresh.
        t.on_frame(ms(170), true, stamp(1, 900), None, false);
        t.on_frame(ms(200), false, stamp(1, 901), None, false);
        assert_eq!(t.lost, 2);
        assert_eq!(t.layer_switches, 1);
        assert_eq!(t.frames, 6);
        assert_eq!(t.before_keyframe, 1);
        assert_eq!(t.delays_us, vec![3000, 4000, 4000]);
    }

    #[test]
    fn gaps_over_200ms_are_freezes_including_a_stop_before_the_end() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = FrameTracker::new(t0);
        for (i, at) in [0u64, 33, 66, 266, 300, 600, 633].into_iter().enumerate() {
            t.on_frame(ms(at), i == 0, stamp(0, i as u64), None, false);
        }
        // 66→266 is exactly 200 ms: not a freeze; 300→600 is.
        assert_eq!(t.freezes, 1);
        assert_eq!(t.frozen, Duration::from_millis(300));
        assert_eq!(t.longest_gap, Duration::from_millis(300));
        t.close(ms(700));
        assert_eq!(t.freezes, 1, "67 ms before the end is no freeze");
        t.close(ms(1000));
        assert_eq!(t.freezes, 2);
        assert_eq!(t.longest_gap, Duration::from_millis(367));
    }
}
