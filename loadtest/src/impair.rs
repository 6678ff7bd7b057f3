//! Viewer-side network impairments, applied to SRTP/SRTCP datagrams before
//! str0m sees them (STUN and DTLS pass, so sessions still connect): random
//! loss, and a bandwidth cap as a token bucket that drops what exceeds it.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, Default)]
pub struct ImpairmentConfig {
    /// Percentage of incoming media datagrams dropped at random.
    pub drop_percent: f64,
    /// Incoming media above this rate is dropped.
    pub cap_kbps: Option<u64>,
}

pub struct Impairment {
    drop_probability: f64,
    cap: Option<TokenBucket>,
    rng: StdRng,
    pub dropped: u64,
}

impl Impairment {
    pub fn new(cfg: ImpairmentConfig, seed: u64, now: Instant) -> Impairment {
        Impairment {
            drop_probability: (cfg.drop_percent / 100.0).clamp(0.0, 1.0),
            cap: cfg.cap_kbps.map(|k| TokenBucket::new(k * 1000 / 8, now)),
            rng: StdRng::seed_from_u64(seed),
            dropped: 0,
        }
    }

    /// Whether the datagram gets through.
    pub fn admit(&mut self, now: Instant, data: &[u8]) -> bool {
        // RFC 7983: 128..=191 is RTP/RTCP; everything else is setup traffic.
        if !data.first().is_some_and(|b| (128..=191).contains(b)) {
            return true;
        }
        let pass = !(self.drop_probability > 0.0 && self.rng.gen_bool(self.drop_probability))
            && self.cap.as_mut().is_none_or(|c| c.take(now, data.len()));
        if !pass {
            self.dropped += 1;
        }
        pass
    }
}

/// Refills at `rate` bytes/s up to a burst of 100 ms worth (at least 16 kB,
/// so one full-size packet always fits).
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(bytes_per_sec: u64, now: Instant) -> TokenBucket {
        let rate = bytes_per_sec as f64;
        let burst = (rate / 10.0).max(16_000.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    pub fn take(&mut self, now: Instant, bytes: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_bucket_passes_the_cap_and_drops_the_rest() {
        let t0 = Instant::now();
        // 1 Mbit/s = 125 kB/s; offer 250 kB/s for 10 s in 1 kB packets.
        let mut b = TokenBucket::new(125_000, t0);
        let mut passed = 0usize;
        for i in 0..25_000u64 {
            if b.take(t0 + Duration::from_micros(i * 400), 1000) {
                passed += 1000;
            }
        }
        let expected = 125_000.0 * 10.0 + 16_000.0;
        assert!(
            (passed as f64 - expected).abs() < 5_000.0,
            "passed {passed}"
        );
    }

    #[test]
    fn drop_percent_spares_setup_traffic() {
        let now = Instant::now();
        let cfg = ImpairmentConfig {
            drop_percent: 100.0,
            cap_kbps: None,
        };
        let mut imp = Impairment::new(cfg, 1, now);
        assert!(imp.admit(now, &[0x00, 0x01]), "STUN passes");
        assert!(imp.admit(now, &[22, 254]), "DTLS passes");
        assert!(!imp.admit(now, &[0x80, 0x60]), "RTP dropped");
        let mut half = Impairment::new(
            ImpairmentConfig {
                drop_percent: 50.0,
                cap_kbps: None,
            },
            7,
            now,
        );
        let passed = (0..10_000).filter(|_| half.admit(now, &[0x80])).count();
        assert!((4_500..5_500).contains(&passed), "{passed}");
    }
}
