//! What a session was sent, for analytics: UDP bytes and datagrams
//! (media, retransmissions, RTCP, DTLS/SCTP), packets the viewer reported
//! lost (RTCP receiver reports, via str0m's egress statistics), the
//! simulcast layers it was shown, and messages sent on its data channel.
//!
//! The owning worker adds each datagram with two relaxed atomic adds (no
//! lock on the packet path); the rest is written about once a second and
//! on layer switches. Readers take a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// A snapshot of one session's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// UDP payload bytes sent to the session.
    pub bytes: u64,
    /// Datagrams sent to the session.
    pub packets: u64,
    /// Packets the viewer reported lost (cumulative, from its receiver
    /// reports; `0` until it sent one).
    pub packets_lost: u64,
    /// Simulcast layers shown, by rid, in the order first shown (empty for
    /// a stream without simulcast).
    pub layers: Vec<String>,
    /// Messages sent on the session's data channel.
    pub data_messages: u64,
}

/// Shared between the owning worker and the session's readers.
#[derive(Debug, Default)]
pub struct StatsCell {
    bytes: AtomicU64,
    packets: AtomicU64,
    /// The rest, and cumulative loss per media section.
    inner: Mutex<(SessionStats, Vec<(str0m::media::Mid, u64)>)>,
}

impl StatsCell {
    pub fn snapshot(&self) -> SessionStats {
        let mut s = self.inner.lock().0.clone();
        s.bytes = self.bytes.load(Ordering::Relaxed);
        s.packets = self.packets.load(Ordering::Relaxed);
        s
    }

    /// One datagram of `len` bytes sent to the session.
    pub(crate) fn sent(&self, len: usize) {
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.packets.fetch_add(1, Ordering::Relaxed);
    }

    /// Folds in str0m's egress statistics of one media section: the
    /// cumulative loss the viewer reported for it.
    pub(crate) fn egress(&self, s: &str0m::stats::MediaEgressStats) {
        let Some(lost) = s.remote.as_ref().map(|r| r.packets_lost) else {
            return;
        };
        let mut g = self.inner.lock();
        let (stats, per_mid) = &mut *g;
        match per_mid.iter_mut().find(|(m, _)| *m == s.mid) {
            // Reports can arrive out of order; the count never goes back.
            Some((_, l)) => *l = (*l).max(lost),
            None => per_mid.push((s.mid, lost)),
        }
        stats.packets_lost = per_mid.iter().map(|(_, l)| l).sum();
    }

    pub(crate) fn shown_layer(&self, rid: &str) {
        let mut g = self.inner.lock();
        if !g.0.layers.iter().any(|l| l == rid) {
            g.0.layers.push(rid.to_string());
        }
    }

    pub(crate) fn data_message(&self) {
        self.inner.lock().0.data_messages += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_listed_once_in_order_first_shown() {
        let c = StatsCell::default();
        for rid in ["q", "h", "q", "f", "h"] {
            c.shown_layer(rid);
        }
        assert_eq!(c.snapshot().layers, vec!["q", "h", "f"]);
    }

    #[test]
    fn datagrams_add_up() {
        let c = StatsCell::default();
        c.sent(1200);
        c.sent(80);
        let s = c.snapshot();
        assert_eq!((s.bytes, s.packets), (1280, 2));
    }
}
