//! What a receiving socket has taken in so far, readable while it runs: a
//! run reads it at both edges of its steady window to count packets where
//! they arrive (viewers of a server without relaycast's `/metrics`, the
//! floor benchmark's draining sockets). Only the owning task writes it, so
//! plain stores suffice and the hot path takes no lock-prefixed add.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Received {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl Received {
    /// Publishes the owner's running totals.
    pub fn store(&self, packets: u64, bytes: u64) {
        self.packets.store(packets, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    /// (packets, bytes) so far.
    pub fn read(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Sum of (packets, bytes) over many receivers.
pub fn total<'a>(all: impl IntoIterator<Item = &'a std::sync::Arc<Received>>) -> (u64, u64) {
    all.into_iter().fold((0, 0), |(p, b), r| {
        let (rp, rb) = r.read();
        (p + rp, b + rb)
    })
}
