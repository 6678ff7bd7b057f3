//! Outgoing datagrams of a worker, batched with UDP generic segmentation
//! offload (GSO) where it pays: str0m emits a viewer's packets of one
//! frame back to back, all to the same address and, but for the last, of
//! the same size, so such a run goes to the kernel as one `sendmsg` with
//! `UDP_SEGMENT` (through `quinn-udp`) instead of one `sendto` each. Runs
//! to different viewers cannot share a call (GSO carries one destination),
//! which is why this is not `sendmmsg`.
//!
//! Order is kept: a datagram that cannot join the pending run sends the run
//! first. The engine hands out one viewer's datagrams at a time and the
//! worker flushes when it has drained the engine, so a datagram waits for
//! the rest of its own burst and at most the writing of the next viewer's.

use std::net::SocketAddr;

use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};
use tokio::net::UdpSocket;

use crate::metrics::{DropReason, Metrics};

/// Most segments one call carries (the kernel allows 64).
const MAX_SEGMENTS: usize = 64;
/// Most bytes one call carries (a UDP datagram's payload limit).
const MAX_BYTES: usize = 65_000;

pub(crate) struct TxBatch {
    /// `None`: GSO off (configured, or the socket does not support it).
    gso: Option<(UdpSocketState, usize)>,
    dest: Option<SocketAddr>,
    segment: usize,
    count: usize,
    buf: Vec<u8>,
}

impl TxBatch {
    pub fn new(socket: &UdpSocket, enabled: bool) -> TxBatch {
        let gso = enabled
            .then(|| UdpSocketState::new(UdpSockRef::from(socket)).ok())
            .flatten()
            .map(|state| {
                let max = state.max_gso_segments().min(MAX_SEGMENTS);
                (state, max)
            })
            .filter(|(_, max)| *max > 1);
        TxBatch {
            gso,
            dest: None,
            segment: 0,
            count: 0,
            buf: Vec::with_capacity(if enabled { MAX_BYTES } else { 0 }),
        }
    }

    /// Whether datagrams are batched (GSO available and on).
    pub fn batching(&self) -> bool {
        self.gso.is_some()
    }

    /// Sends `bytes` to `dest`, now or as part of the pending run.
    pub fn push(&mut self, socket: &UdpSocket, metrics: &Metrics, bytes: &[u8], dest: SocketAddr) {
        let Some((_, max)) = &self.gso else {
            send_one(socket, metrics, bytes, dest);
            return;
        };
        let joins = self.dest == Some(dest)
            && bytes.len() <= self.segment
            && self.count < *max
            && self.buf.len() + bytes.len() <= MAX_BYTES;
        if !joins {
            self.flush(socket, metrics);
            if bytes.is_empty() || bytes.len() > MAX_BYTES {
                send_one(socket, metrics, bytes, dest);
                return;
            }
            self.dest = Some(dest);
            self.segment = bytes.len();
        }
        self.buf.extend_from_slice(bytes);
        self.count += 1;
        // A shorter segment can only be the last of a run.
        if bytes.len() < self.segment {
            self.flush(socket, metrics);
        }
    }

    /// Sends the pending run.
    pub fn flush(&mut self, socket: &UdpSocket, metrics: &Metrics) {
        let Some(dest) = self.dest.take() else {
            return;
        };
        let count = std::mem::take(&mut self.count);
        if count == 1 {
            send_one(socket, metrics, &self.buf, dest);
        } else if let Some((state, _)) = &self.gso {
            let transmit = Transmit {
                destination: dest,
                ecn: None,
                contents: &self.buf,
                segment_size: Some(self.segment),
                src_ip: None,
            };
            match state.try_send(UdpSockRef::from(socket), &transmit) {
                Ok(()) => {
                    metrics.packets_out.inc_by(count as u64);
                    metrics.bytes_out.inc_by(self.buf.len() as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    for _ in 0..count {
                        metrics.drop(DropReason::SendFailed);
                    }
                    tracing::trace!("GSO send would block: {e}");
                }
                Err(e) => {
                    // A device without GSO answers EIO/EINVAL (quinn-udp then
                    // stops offering it): send the run one by one.
                    tracing::debug!("GSO send failed ({e}); sending {count} datagrams singly");
                    if state.max_gso_segments() <= 1 {
                        self.gso = None;
                    }
                    for chunk in self.buf.chunks(self.segment) {
                        send_one(socket, metrics, chunk, dest);
                    }
                }
            }
        }
        self.buf.clear();
    }
}

pub(crate) fn send_one(socket: &UdpSocket, metrics: &Metrics, bytes: &[u8], dest: SocketAddr) {
    match socket.try_send_to(bytes, dest) {
        Ok(n) => {
            metrics.packets_out.inc();
            metrics.bytes_out.inc_by(n as u64);
        }
        Err(e) => {
            metrics.drop(DropReason::SendFailed);
            tracing::trace!("send_to failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of equal datagrams to one address arrive intact and in order,
    /// whether batched or not, interleaved with other destinations and a
    /// shorter last segment.
    #[tokio::test]
    async fn datagrams_arrive_in_order_with_and_without_gso() {
        for enabled in [true, false] {
            let registry = prometheus::Registry::new();
            let metrics = Metrics::new(&registry).expect("metrics");
            let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let (aa, ba) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
            // Plain sends go through tokio's readiness (as in the worker,
            // whose reactor has run by the time it sends).
            tx.writable().await.expect("writable");
            let mut batch = TxBatch::new(&tx, enabled);
            // Linux loopback supports UDP GSO (kernel ≥ 4.18).
            assert_eq!(batch.batching(), enabled);
            let mut sent_a = Vec::new();
            let mut sent_b = Vec::new();
            for i in 0..10u8 {
                let len = if i == 9 { 300 } else { 1100 };
                let d = vec![i; len];
                batch.push(&tx, &metrics, &d, aa);
                sent_a.push(d);
            }
            for i in 0..3u8 {
                let d = vec![100 + i; 500];
                batch.push(&tx, &metrics, &d, ba);
                sent_b.push(d);
            }
            let d = vec![200; 1100];
            batch.push(&tx, &metrics, &d, aa);
            sent_a.push(d);
            batch.flush(&tx, &metrics);
            assert_eq!(metrics.packets_out.get(), 14, "gso {enabled}");
            for (sock, sent) in [(&a, &sent_a), (&b, &sent_b)] {
                let mut buf = vec![0u8; 2048];
                for want in sent {
                    let n = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        sock.recv(&mut buf),
                    )
                    .await
                    .expect("datagram in time")
                    .expect("recv");
                    assert_eq!(&buf[..n], &want[..], "gso {enabled}");
                }
            }
        }
    }
}
