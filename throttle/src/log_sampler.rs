//! [`LogSampler`]: at most N lines per kind per period; the rest are
//! counted so a summary ("suppressed K similar messages") can say so.
//! Sans-IO: `now` is passed in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Slot {
    start: Instant,
    admitted: u32,
    /// Suppressed since the last [`LogSampler::take_suppressed`].
    suppressed: u64,
}

/// Per-kind line budget. Kinds are a closed, small set (log call sites,
/// error kinds), so the table is not capped.
#[derive(Debug)]
pub struct LogSampler<K> {
    per_period: u32,
    period: Duration,
    slots: HashMap<K, Slot>,
}

impl<K: Hash + Eq + Clone> LogSampler<K> {
    /// `per_period` lines of each kind per `period`.
    pub fn new(per_period: u32, period: Duration) -> LogSampler<K> {
        LogSampler {
            per_period,
            period,
            slots: HashMap::new(),
        }
    }

    /// Whether a line of `kind` may be written now; a refused line is
    /// counted as suppressed.
    pub fn admit(&mut self, kind: &K, now: Instant) -> bool {
        let period = self.period;
        let slot = match self.slots.get_mut(kind) {
            Some(s) => s,
            None => self.slots.entry(kind.clone()).or_insert(Slot {
                start: now,
                admitted: 0,
                suppressed: 0,
            }),
        };
        if now.duration_since(slot.start) >= period {
            slot.start = now;
            slot.admitted = 0;
        }
        if slot.admitted < self.per_period {
            slot.admitted += 1;
            true
        } else {
            slot.suppressed += 1;
            false
        }
    }

    /// The kinds with lines suppressed since the last call, and how many.
    pub fn take_suppressed(&mut self) -> Vec<(K, u64)> {
        self.slots
            .iter_mut()
            .filter(|(_, s)| s.suppressed > 0)
            .map(|(k, s)| (k.clone(), std::mem::take(&mut s.suppressed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_gets_its_budget_per_period_and_the_rest_is_counted() {
        let mut s = LogSampler::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        let admitted = (0..1000).filter(|_| s.admit(&"bad_offer", t0)).count();
        assert_eq!(admitted, 3);
        assert!(s.admit(&"bad_token", t0), "another kind has its own budget");
        assert_eq!(s.take_suppressed(), vec![("bad_offer", 997)]);
        assert!(s.take_suppressed().is_empty(), "taken once");
        assert!(!s.admit(&"bad_offer", t0 + Duration::from_millis(999)));
        assert!(s.admit(&"bad_offer", t0 + Duration::from_secs(1)));
    }
}
