//! [`FailureLimiter`]: failures per key in a fixed window that starts with
//! the key's first failure; at the limit the key is refused until the
//! window ends. Sans-IO: `now` is passed in.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How many failures a key may have in `window`, and how many keys are
/// remembered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures within `window` after which the key is refused for the rest
    /// of the window; 0 turns the limiter off (nothing is ever refused).
    pub failures: u32,
    pub window: Duration,
    /// Keys tracked at once; beyond, the key whose window began first is
    /// forgotten.
    pub capacity: usize,
}

impl Limits {
    /// 20 failures a minute: a person who mistypes a key a few times never
    /// meets it; a script guessing keys gets 20 guesses a minute per address.
    pub const DEFAULT: Limits = Limits {
        failures: 20,
        window: Duration::from_secs(60),
        capacity: 65_536,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

#[derive(Debug)]
struct Entry {
    start: Instant,
    failures: u32,
    /// Matches the entry's item in `order`; items with another generation
    /// are left over from a reset or removal and skipped.
    generation: u64,
}

/// Failure counts per key; see the module documentation.
#[derive(Debug)]
pub struct FailureLimiter<K> {
    limits: Limits,
    entries: HashMap<K, Entry>,
    /// Keys in the order their current windows began (a reset re-queues).
    order: VecDeque<(K, u64)>,
    next_generation: u64,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub fn new(limits: Limits) -> FailureLimiter<K> {
        FailureLimiter {
            limits,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `Err(retry_after)` while `key` is refused: it reached the limit and
    /// its window has not ended. Call it before checking the credential, so
    /// a refused guess is never checked (and cannot be confirmed).
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.limits.failures == 0 {
            return Ok(());
        }
        let Some(e) = self.entries.get(key) else {
            return Ok(());
        };
        let end = e.start + self.limits.window;
        if now >= end {
            self.entries.remove(key);
            return Ok(());
        }
        if e.failures >= self.limits.failures {
            Err(end.duration_since(now))
        } else {
            Ok(())
        }
    }

    /// Counts a failure of `key`; returns the failures in its window so far.
    pub fn failed(&mut self, key: K, now: Instant) -> u32 {
        if self.limits.failures == 0 {
            return 0;
        }
        self.expire_front(now);
        let window = self.limits.window;
        let generation = self.next_generation;
        if let Some(e) = self.entries.get_mut(&key) {
            if now < e.start + window {
                e.failures = e.failures.saturating_add(1);
                return e.failures;
            }
            // The old window is over: a new one starts now.
            *e = Entry {
                start: now,
                failures: 1,
                generation,
            };
        } else {
            while self.entries.len() >= self.limits.capacity.max(1) {
                if !self.evict_oldest() {
                    break;
                }
            }
            self.entries.insert(
                key.clone(),
                Entry {
                    start: now,
                    failures: 1,
                    generation,
                },
            );
        }
        self.next_generation += 1;
        self.order.push_back((key, generation));
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
        1
    }

    /// Forgets `key`'s failures (a success that should clear them).
    pub fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries whose window ended, oldest first, stopping at the
    /// first live one (windows begin in `order`'s order).
    fn expire_front(&mut self, now: Instant) {
        while let Some((k, g)) = self.order.front() {
            match self.entries.get(k) {
                Some(e) if e.generation == *g => {
                    if now < e.start + self.limits.window {
                        return;
                    }
                    self.entries.remove(k);
                }
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// Removes the entry whose window began first; false if there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((k, g)) = self.order.pop_front() {
            if self.entries.get(&k).is_some_and(|e| e.generation == g) {
                self.entries.remove(&k);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(failures: u32, capacity: usize) -> Limits {
        Limits {
            failures,
            window: Duration::from_secs(60),
            capacity,
        }
    }

    #[test]
    fn a_key_at_the_limit_is_refused_for_the_rest_of_its_window() {
        let mut l = FailureLimiter::new(limits(3, 100));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check(&"a", t0).is_ok());
            l.failed("a", t0 + Duration::from_secs(i));
        }
        let wait = l
            .check(&"a", t0 + Duration::from_secs(20))
            .expect_err("at the limit");
        assert_eq!(wait, Duration::from_secs(40), "until the window ends");
        assert!(l.check(&"b", t0).is_ok(), "other keys are not refused");
        assert!(
            l.check(&"a", t0 + Duration::from_secs(60)).is_ok(),
            "the window ended"
        );
        assert_eq!(l.failed("a", t0 + Duration::from_secs(61)), 1, "new window");
    }

    #[test]
    fn failures_below_the_limit_are_forgotten_when_the_window_ends() {
        let mut l = FailureLimiter::new(limits(3, 100));
        let t0 = Instant::now();
        l.failed("a", t0);
        l.failed("a", t0 + Duration::from_secs(59));
        assert_eq!(l.failed("a", t0 + Duration::from_secs(60)), 1);
        assert_eq!(l.failed("a", t0 + Duration::from_secs(61)), 2);
        assert!(l.check(&"a", t0 + Duration::from_secs(61)).is_ok());
        l.clear(&"a");
        assert!(l.is_empty());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_capacity_and_evicts_the_oldest() {
        let mut l = FailureLimiter::new(limits(2, 1000));
        let t0 = Instant::now();
        l.failed(u32::MAX, t0);
        l.failed(u32::MAX, t0);
        for i in 0..100_000u32 {
            l.failed(i, t0 + Duration::from_millis(1));
            assert!(l.len() <= 1000);
        }
        assert!(l.order.len() <= 2 * 1000 + 64, "order is compacted");
        assert!(
            l.check(&u32::MAX, t0 + Duration::from_millis(2)).is_ok(),
            "the oldest entry was evicted"
        );
        assert!(l.check(&99_999, t0 + Duration::from_millis(2)).is_ok());
        l.failed(99_999, t0 + Duration::from_millis(3));
        assert!(l.check(&99_999, t0 + Duration::from_millis(3)).is_err());
    }

    #[test]
    fn expired_entries_are_dropped_as_new_failures_arrive() {
        let mut l = FailureLimiter::new(limits(5, 1000));
        let t0 = Instant::now();
        for i in 0..500u32 {
            l.failed(i, t0);
        }
        l.failed(1_000_000, t0 + Duration::from_secs(61));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn limit_zero_turns_it_off() {
        let mut l = FailureLimiter::new(limits(0, 10));
        let t0 = Instant::now();
        for _ in 0..100 {
            l.failed("a", t0);
        }
        assert!(l.check(&"a", t0).is_ok());
        assert!(l.is_empty());
    }
}
