//! Who is watching a stream over LL-HLS, as far as this node can tell: the
//! distinct clients (address and `User-Agent`) that asked for one of its
//! media playlists recently. An LL-HLS player reloads a playlist at least
//! once per part target while it plays, so a client silent for
//! [`AUDIENCE_WINDOW`] has left or paused. Behind a CDN or a shared NAT,
//! many viewers share one key and count once: this is a lower bound, and
//! CDN logs are the source of truth for mass audiences.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A client that has not reloaded a playlist for this long is not counted.
pub const AUDIENCE_WINDOW: Duration = Duration::from_secs(8);
/// Clients remembered per stream (beyond: the stalest are forgotten).
const MAX_CLIENTS: usize = 100_000;

#[derive(Default)]
pub struct Audience {
    seen: Mutex<HashMap<u64, Instant>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Audience {
    /// A media playlist request from `ip` with `user_agent`.
    pub fn note(&self, ip: IpAddr, user_agent: &[u8], now: Instant) {
        let mut h = self.hasher.build_hasher();
        ip.hash(&mut h);
        user_agent.hash(&mut h);
        let key = h.finish();
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_CLIENTS && !seen.contains_key(&key) {
            seen.retain(|_, at| now.saturating_duration_since(*at) < AUDIENCE_WINDOW);
            if seen.len() >= MAX_CLIENTS {
                return;
            }
        }
        seen.insert(key, now);
    }

    /// Clients seen within the window before `now` (forgets the others).
    pub fn count(&self, now: Instant) -> usize {
        let mut seen = self.seen.lock();
        seen.retain(|_, at| now.saturating_duration_since(*at) < AUDIENCE_WINDOW);
        seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_recent_clients_are_counted() {
        let a = Audience::default();
        let t0 = Instant::now();
        let ip1: IpAddr = "192.0.2.1".parse().expect("ip");
        let ip2: IpAddr = "192.0.2.2".parse().expect("ip");
        a.note(ip1, b"hls.js", t0);
        a.note(ip1, b"hls.js", t0 + Duration::from_secs(1));
        a.note(ip1, b"Safari", t0 + Duration::from_secs(1));
        a.note(ip2, b"hls.js", t0 + Duration::from_secs(2));
        assert_eq!(a.count(t0 + Duration::from_secs(3)), 3);
        // ip1/Safari and ip2 fall silent; ip1/hls.js keeps reloading.
        a.note(ip1, b"hls.js", t0 + Duration::from_secs(9));
        assert_eq!(a.count(t0 + Duration::from_secs(10)), 1);
        assert_eq!(a.count(t0 + Duration::from_secs(10) + AUDIENCE_WINDOW), 0);
    }
}
