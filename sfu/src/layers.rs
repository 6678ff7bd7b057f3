//! Simulcast layers: what a publisher sends, and which layer each viewer
//! gets.
//!
//! A simulcast publisher's encodings (RTP stream ids, RFC 8853) are all
//! forwarded to the workers; each carries a small layer id (its position
//! among the rids the session has seen). The publisher's worker measures
//! each layer's bitrate and frame rate and publishes them in the stream's
//! [`LayerTable`] twice a second. A viewer picks from that table with
//! [`LayerSelect`], a pure state machine fed the viewer's bandwidth estimate
//! (str0m's TWCC estimator, or REMB) and an optional cap: it goes down as
//! soon as the estimate cannot carry the current layer and up one layer at a
//! time once the estimate has room for the next one for [`UP_HOLD`].
//! The switch itself happens on the target layer's next keyframe.

use std::time::{Duration, Instant};

/// A layer counts as active while it sent a frame within this.
pub const LAYER_SILENCE: Duration = Duration::from_secs(1);
/// The estimate must have room for the next layer up this long before a
/// viewer moves up (no flapping on a momentary estimate).
pub const UP_HOLD: Duration = Duration::from_secs(2);
/// Headroom asked of the estimate above a layer's bitrate before moving up
/// to it (the estimate covers audio and RTCP too).
const UP_HEADROOM: f64 = 1.25;
/// A viewer moves down when the estimate falls below this share of its
/// layer's bitrate.
const DOWN_THRESHOLD: f64 = 0.95;
/// How often the publisher's worker republishes layer statistics.
pub const STATS_INTERVAL: Duration = Duration::from_millis(500);

/// One encoding of a simulcast publisher, as last measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Layer id carried by frames ([`crate::Frame::layer`]).
    pub id: u8,
    /// The encoding's rid (empty when the publisher is not simulcast).
    pub rid: String,
    /// Bits per second over the last measurement interval.
    pub bitrate_bps: u64,
    /// Frames per second over the last measurement interval.
    pub fps: f32,
    /// Size of the last keyframe, bytes (a proxy for resolution when
    /// bitrates are close).
    pub keyframe_bytes: usize,
    /// Picture size from the last keyframe (H.264 SPS, VP8 header).
    pub width: u32,
    pub height: u32,
    pub active: bool,
}

/// A stream's layers, lowest bitrate first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerTable {
    pub layers: Vec<LayerInfo>,
}

impl LayerTable {
    pub fn is_simulcast(&self) -> bool {
        self.layers.len() > 1
    }

    /// Active layers, lowest first.
    fn active(&self) -> impl Iterator<Item = &LayerInfo> {
        self.layers.iter().filter(|l| l.active)
    }

    fn get(&self, id: u8) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.id == id)
    }

    /// Orders layers lowest first: by picture size when the bitstream told
    /// it (bitrates of neighbouring layers can cross on a still picture),
    /// then by bitrate, then by keyframe size.
    pub fn sort(&mut self) {
        self.layers.sort_by(|a, b| {
            (u64::from(a.width) * u64::from(a.height))
                .cmp(&(u64::from(b.width) * u64::from(b.height)))
                .then(a.bitrate_bps.cmp(&b.bitrate_bps))
                .then(a.keyframe_bytes.cmp(&b.keyframe_bytes))
        });
    }
}

/// A viewer's limit on the layer it receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LayerCap {
    /// Whatever the bandwidth estimate allows.
    #[default]
    Auto,
    /// The lowest layer.
    Low,
    /// The middle layer (of three; the lower middle of an even count).
    Mid,
    /// The highest layer (the estimate still applies below it).
    High,
    /// At most the layer with this rid.
    Rid(String),
}

impl LayerCap {
    /// Parses `auto`, `low`, `mid`, `high`, or a rid.
    pub fn parse(s: &str) -> Option<LayerCap> {
        let s = s.trim();
        match s {
            "" => None,
            "auto" => Some(LayerCap::Auto),
            "low" => Some(LayerCap::Low),
            "mid" | "medium" => Some(LayerCap::Mid),
            "high" => Some(LayerCap::High),
            // RFC 8851: rid-id is 1*(alpha-numeric / "-" / "_"), at most 16 here.
            rid if rid.len() <= 16
                && rid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Some(LayerCap::Rid(rid.to_string()))
            }
            _ => None,
        }
    }

    /// Highest layer id allowed, given the table (lowest first).
    fn ceiling<'a>(&self, active: &[&'a LayerInfo]) -> Option<&'a LayerInfo> {
        let last = active.len().checked_sub(1)?;
        match self {
            LayerCap::Auto | LayerCap::High => active.get(last).copied(),
            LayerCap::Low => active.first().copied(),
            LayerCap::Mid => active.get(last / 2).copied(),
            LayerCap::Rid(rid) => match active.iter().position(|l| &l.rid == rid) {
                Some(i) => active.get(i).copied(),
                // The rid is not (or no longer) sent: the lowest is the safe cap.
                None => active.first().copied(),
            },
        }
    }
}

/// Per-viewer layer choice.
#[derive(Debug, Default)]
pub struct LayerSelect {
    /// Layer being written to the viewer.
    pub current: Option<u8>,
    /// Layer to switch to on its next keyframe (equal to `current` when settled).
    pub target: Option<u8>,
    pub cap: LayerCap,
    /// Latest bandwidth estimate, bits per second.
    pub estimate: Option<u64>,
    /// Since when the estimate had room for the next layer up.
    up_since: Option<Instant>,
    /// Layers in the table at the last evaluation: a new layer appearing
    /// (a publisher's encodings start one after another) re-picks at once.
    seen_layers: usize,
    pub switches: u64,
}

impl LayerSelect {
    pub fn new(cap: LayerCap) -> LayerSelect {
        LayerSelect {
            cap,
            ..LayerSelect::default()
        }
    }

    /// Forgets the layer choice (a new publisher session numbers its layers
    /// anew); keeps the cap and the estimate.
    pub fn reset(&mut self) {
        self.current = None;
        self.target = None;
        self.up_since = None;
        self.seen_layers = 0;
    }

    /// Re-decides the target layer. Returns the new target when it changed.
    pub fn evaluate(&mut self, table: &LayerTable, now: Instant) -> Option<u8> {
        let fresh = table.layers.len() != self.seen_layers;
        self.seen_layers = table.layers.len();
        let active: Vec<&LayerInfo> = table.active().collect();
        let ceiling = self.cap.ceiling(&active)?;
        let allowed: Vec<&LayerInfo> = active
            .iter()
            .copied()
            .filter(|l| l.bitrate_bps <= ceiling.bitrate_bps)
            .collect();
        let lowest = allowed.first()?;
        let base = self
            .target
            .filter(|_| !fresh)
            .and_then(|t| allowed.iter().position(|l| l.id == t));
        let next = match (base, self.estimate) {
            // Not watching yet, or the layer went away / above the cap: the
            // highest layer the estimate carries (the highest allowed when
            // nothing is known about the viewer's bandwidth).
            (None, estimate) => {
                self.up_since = None;
                let fits = |l: &&&LayerInfo| {
                    estimate.is_none_or(|e| l.bitrate_bps as f64 * UP_HEADROOM <= e as f64)
                };
                allowed
                    .iter()
                    .rev()
                    .find(fits)
                    .copied()
                    .unwrap_or(lowest)
                    .id
            }
            // Nothing known about the viewer's bandwidth: the highest allowed.
            (Some(_), None) => allowed.last().copied().unwrap_or(lowest).id,
            (Some(i), Some(estimate)) => {
                let cur = allowed.get(i).copied().unwrap_or(lowest);
                let e = estimate as f64;
                if i > 0 && e < cur.bitrate_bps as f64 * DOWN_THRESHOLD {
                    self.up_since = None;
                    // Down at once, as far as needed.
                    allowed[..i]
                        .iter()
                        .rev()
                        .find(|l| l.bitrate_bps as f64 * DOWN_THRESHOLD <= e)
                        .copied()
                        .unwrap_or(lowest)
                        .id
                } else if let Some(up) = allowed.get(i + 1) {
                    if up.bitrate_bps as f64 * UP_HEADROOM <= e {
                        let since = *self.up_since.get_or_insert(now);
                        if now.saturating_duration_since(since) >= UP_HOLD {
                            self.up_since = None;
                            up.id
                        } else {
                            cur.id
                        }
                    } else {
                        self.up_since = None;
                        cur.id
                    }
                } else {
                    self.up_since = None;
                    cur.id
                }
            }
        };
        if self.target == Some(next) {
            return None;
        }
        self.target = Some(next);
        Some(next)
    }

    /// Whether a frame of `layer` should be written (and whether it makes
    /// the switch): frames of the current layer are, and the target's first
    /// keyframe switches over.
    pub fn admit(&mut self, layer: u8, keyframe: bool) -> bool {
        if self.current == Some(layer) && self.target == Some(layer) {
            return true;
        }
        if self.target == Some(layer) && keyframe {
            if self.current.is_some() {
                self.switches += 1;
            }
            self.current = Some(layer);
            return true;
        }
        // Keep showing the current layer until the target's keyframe.
        self.current == Some(layer)
    }

    /// The layer a keyframe should be asked for: the target, while the
    /// viewer waits to switch to it.
    pub fn waiting_for(&self) -> Option<u8> {
        match (self.current, self.target) {
            (c, Some(t)) if c != Some(t) => Some(t),
            _ => None,
        }
    }

    /// Bitrate the viewer would like to reach (for the estimator's probing):
    /// the highest allowed layer's.
    pub fn desired_bps(&self, table: &LayerTable) -> Option<u64> {
        let active: Vec<&LayerInfo> = table.active().collect();
        self.cap.ceiling(&active).map(|l| l.bitrate_bps)
    }

    pub fn bitrate_of(table: &LayerTable, id: u8) -> Option<u64> {
        table.get(id).map(|l| l.bitrate_bps)
    }
}

/// How long a viewer pads its traffic up to the next layer's rate, so its
/// estimate can show whether that layer fits (it has to hold [`UP_HOLD`]).
pub const PROBE_WINDOW: Duration = Duration::from_secs(4);
/// Wait before probing again after a probe that did not lead up, or after
/// moving down; doubled each time up to [`PROBE_BACKOFF_MAX`], and back to
/// this after a move up.
pub const PROBE_BACKOFF_MIN: Duration = Duration::from_secs(2);
pub const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(16);

/// When a viewer below the best layer it may have pads up to the next one.
///
/// A delay-based estimate only grows with what is sent, so a viewer on a
/// lower layer never learns that the next fits unless it sends more: padding
/// toward the next layer's rate does that. Padding all the time would cost
/// such a viewer up to the next layer's bandwidth for good (and the server a
/// packet per padding packet), and on a link that cannot take it would keep
/// it congested; so padding happens in windows of [`PROBE_WINDOW`], the
/// first at once, then after a back-off that grows while probes fail.
#[derive(Debug)]
pub struct UpProbe {
    /// End of the probe under way.
    window_end: Option<Instant>,
    /// No probe before this.
    next_at: Option<Instant>,
    backoff: Duration,
    /// Position of the viewer's target layer (lowest first) when last seen.
    rank: Option<usize>,
}

impl Default for UpProbe {
    fn default() -> UpProbe {
        UpProbe {
            window_end: None,
            next_at: None,
            backoff: PROBE_BACKOFF_MIN,
            rank: None,
        }
    }
}

impl UpProbe {
    /// Whether to pad toward the next layer now. `rank` is the position of
    /// the viewer's target layer among the allowed ones, lowest first;
    /// `has_next` whether one above it is allowed.
    pub fn pad(&mut self, now: Instant, rank: Option<usize>, has_next: bool) -> bool {
        match (self.rank, rank) {
            (Some(before), Some(after)) if after > before => {
                // Moved up: done; the next layer (if any) may be tried soon.
                self.window_end = None;
                self.backoff = PROBE_BACKOFF_MIN;
                self.next_at = Some(now + PROBE_BACKOFF_MIN);
            }
            (Some(before), Some(after)) if after < before => {
                // Moved down: the link is short; try again later.
                self.window_end = None;
                self.back_off(now);
            }
            _ => {}
        }
        self.rank = rank;
        if !has_next {
            self.window_end = None;
            return false;
        }
        if let Some(end) = self.window_end {
            if now < end {
                return true;
            }
            // The window passed without the viewer going up.
            self.window_end = None;
            self.back_off(now);
            return false;
        }
        if self.next_at.is_none_or(|t| now >= t) {
            self.window_end = Some(now + PROBE_WINDOW);
            return true;
        }
        false
    }

    /// Probe at the next evaluation (the viewer's cap changed).
    pub fn now(&mut self) {
        self.window_end = None;
        self.next_at = None;
        self.backoff = PROBE_BACKOFF_MIN;
    }

    fn back_off(&mut self, now: Instant) {
        self.next_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(PROBE_BACKOFF_MAX);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test's clock starts at one real instant
mod tests {
    use super::*;

    fn table() -> LayerTable {
        let l = |id: u8, rid: &str, kbps: u64| LayerInfo {
            id,
            rid: rid.into(),
            bitrate_bps: kbps * 1000,
            fps: 30.0,
            keyframe_bytes: 0,
            width: 0,
            height: 0,
            active: true,
        };
        LayerTable {
            layers: vec![l(2, "q", 150), l(1, "h", 500), l(0, "f", 1500)],
        }
    }

    #[test]
    fn starts_at_what_the_estimate_carries_and_respects_caps() {
        let t = Instant::now();
        let mut s = LayerSelect::new(LayerCap::Auto);
        s.estimate = Some(1_000_000);
        assert_eq!(s.evaluate(&table(), t), Some(1), "h fits 1 Mbit/s");
        let mut s = LayerSelect::new(LayerCap::Auto);
        assert_eq!(s.evaluate(&table(), t), Some(0), "unknown bandwidth: top");
        let mut s = LayerSelect::new(LayerCap::Low);
        s.estimate = Some(10_000_000);
        assert_eq!(s.evaluate(&table(), t), Some(2));
        let mut s = LayerSelect::new(LayerCap::Rid("h".into()));
        s.estimate = Some(10_000_000);
        assert_eq!(s.evaluate(&table(), t), Some(1));
        let mut s = LayerSelect::new(LayerCap::Mid);
        assert_eq!(s.evaluate(&table(), t), Some(1));
    }

    #[test]
    fn down_at_once_up_after_a_hold_one_layer_at_a_time() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let mut s = LayerSelect::new(LayerCap::Auto);
        s.estimate = Some(3_000_000);
        assert_eq!(s.evaluate(&table(), ms(0)), Some(0));
        assert!(s.admit(0, true));
        s.estimate = Some(300_000);
        assert_eq!(s.evaluate(&table(), ms(100)), Some(2), "straight to q");
        assert!(s.admit(0, false), "f shown until q's keyframe");
        assert!(!s.admit(2, false));
        assert_eq!(s.waiting_for(), Some(2));
        assert!(s.admit(2, true));
        assert!(!s.admit(0, false));
        assert_eq!(s.switches, 1);
        s.estimate = Some(3_000_000);
        assert_eq!(s.evaluate(&table(), ms(200)), None, "held");
        assert_eq!(s.evaluate(&table(), ms(1900)), None, "still held");
        assert_eq!(s.evaluate(&table(), ms(2200)), Some(1), "one step up");
        assert!(s.admit(1, true));
        assert_eq!(s.evaluate(&table(), ms(2300)), None);
        // A dip below the next layer's headroom restarts the hold.
        s.estimate = Some(1_500_000);
        assert_eq!(s.evaluate(&table(), ms(3000)), None);
        s.estimate = Some(3_000_000);
        assert_eq!(s.evaluate(&table(), ms(3100)), None);
        assert_eq!(s.evaluate(&table(), ms(5200)), Some(0));
    }

    #[test]
    fn a_layer_that_goes_silent_is_left() {
        let t = Instant::now();
        let mut s = LayerSelect::new(LayerCap::Auto);
        assert_eq!(s.evaluate(&table(), t), Some(0));
        assert!(s.admit(0, true));
        let mut congested = table();
        congested.layers[2].active = false;
        assert_eq!(s.evaluate(&congested, t), Some(1));
    }

    #[test]
    fn caps_parse() {
        assert_eq!(LayerCap::parse("low"), Some(LayerCap::Low));
        assert_eq!(LayerCap::parse("f"), Some(LayerCap::Rid("f".into())));
        assert_eq!(LayerCap::parse("a b"), None);
        assert_eq!(LayerCap::parse(""), None);
    }

    #[test]
    fn probes_for_the_next_layer_in_windows_backing_off_while_it_does_not_fit() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = UpProbe::default();
        // On the middle layer with one above: probe at once, for the window.
        assert!(p.pad(at(0), Some(1), true));
        assert!(p.pad(at(3), Some(1), true));
        // The window ends without a move up: quiet for 2 s, then again.
        assert!(!p.pad(at(4), Some(1), true));
        assert!(!p.pad(at(5), Some(1), true));
        assert!(p.pad(at(6), Some(1), true));
        // Fails again: the back-off doubles (4 s).
        assert!(!p.pad(at(10), Some(1), true));
        assert!(!p.pad(at(13), Some(1), true));
        assert!(p.pad(at(14), Some(1), true));
        // It moves up while probing: the window ends; on the top layer
        // nothing is padded.
        assert!(!p.pad(at(15), Some(2), false));
        assert!(!p.pad(at(30), Some(2), false));
        // Down again: the next probe waits out the back-off (reset to 2 s
        // by the move up, then doubled).
        assert!(!p.pad(at(31), Some(1), true));
        assert!(!p.pad(at(32), Some(1), true));
        assert!(p.pad(at(33), Some(1), true));
        // A new cap probes at once.
        assert!(!p.pad(at(37), Some(1), true));
        p.now();
        assert!(p.pad(at(38), Some(1), true));
        // The back-off stops growing at its ceiling.
        let mut p = UpProbe::default();
        let mut t = at(100);
        for _ in 0..10 {
            while !p.pad(t, Some(0), true) {
                t += Duration::from_millis(500);
            }
            t += PROBE_WINDOW;
            assert!(!p.pad(t, Some(0), true));
        }
        assert_eq!(p.backoff, PROBE_BACKOFF_MAX);
    }
}
