//! Outgoing datagrams batched with UDP generic segmentation offload, the
//! floor benchmark's own sender (the same rule as the server's worker:
//! back-to-back datagrams to one address, all but the last of one size, go
//! to the kernel as one `sendmsg` with `UDP_SEGMENT`, through `quinn-udp`).
//!
//! Datagrams are written in place into the pending run (`push_with`), so a
//! packet is encrypted straight into the buffer the kernel reads: no copy
//! but the cipher's own.

use std::net::{SocketAddr, UdpSocket};

use anyhow::{Context, Result};
use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};

/// Most segments one call carries (the kernel allows 64).
const MAX_SEGMENTS: usize = 64;
/// Most bytes one call carries (a UDP datagram's payload limit).
const MAX_BYTES: usize = 65_000;

/// What the sender did, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendCounts {
    pub packets: u64,
    pub bytes: u64,
    /// `sendmsg` calls (one per run, batched or not).
    pub calls: u64,
    /// Datagrams not sent: the socket's send buffer was full (loopback
    /// keeps a datagram charged to its sender until the receiver reads it)
    /// or another error.
    pub failed: u64,
}

pub struct GsoSender {
    socket: UdpSocket,
    state: UdpSocketState,
    max_segments: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` in the pending run.
    len: usize,
    dest: Option<SocketAddr>,
    segment: usize,
    count: usize,
    pub counts: SendCounts,
}

impl GsoSender {
    /// Takes the socket over (quinn-udp makes it non-blocking). Without GSO
    /// (old kernel) every datagram is its own call.
    pub fn new(socket: UdpSocket) -> Result<GsoSender> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))
            .context("setting the socket up for quinn-udp")?;
        let max_segments = state.max_gso_segments().clamp(1, MAX_SEGMENTS);
        Ok(GsoSender {
            socket,
            state,
            max_segments,
            buf: vec![0; MAX_BYTES],
            len: 0,
            dest: None,
            segment: 0,
            count: 0,
            counts: SendCounts::default(),
        })
    }

    /// Whether runs go out as one call.
    pub fn batching(&self) -> bool {
        self.max_segments > 1
    }

    /// Appends a datagram of `size` bytes for `dest`, written by `fill`
    /// into its place in the pending run (sending the run first when this
    /// datagram cannot join it). A datagram `fill` fails on is not sent.
    pub fn push_with(
        &mut self,
        dest: SocketAddr,
        size: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        if size == 0 || size > MAX_BYTES {
            anyhow::bail!("a datagram of {size} bytes");
        }
        let joins = self.dest == Some(dest)
            && size <= self.segment
            && self.count < self.max_segments
            && self.len + size <= MAX_BYTES;
        if !joins {
            self.flush();
            self.dest = Some(dest);
            self.segment = size;
        }
        let start = self.len;
        if let Err(e) = fill(&mut self.buf[start..start + size]) {
            if self.count == 0 {
                self.dest = None;
            }
            return Err(e);
        }
        self.len += size;
        self.count += 1;
        // A shorter datagram can only be the last of a run; without GSO
        // every datagram is a run.
        if size < self.segment || !self.batching() {
            self.flush();
        }
        Ok(())
    }

    /// Sends the pending run.
    pub fn flush(&mut self) {
        let Some(dest) = self.dest.take() else {
            return;
        };
        let count = std::mem::take(&mut self.count);
        let len = std::mem::take(&mut self.len);
        let transmit = Transmit {
            destination: dest,
            ecn: None,
            contents: &self.buf[..len],
            segment_size: (count > 1).then_some(self.segment),
            src_ip: None,
        };
        self.counts.calls += 1;
        match self
            .state
            .try_send(UdpSockRef::from(&self.socket), &transmit)
        {
            Ok(()) => {
                self.counts.packets += count as u64;
                self.counts.bytes += len as u64;
            }
            Err(_) => self.counts.failed += count as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of equal datagrams to one address arrive intact and in order,
    /// interleaved with another destination and with a shorter last one.
    #[test]
    fn datagrams_arrive_in_order_in_as_few_calls_as_gso_allows() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
        }
        let (aa, ba) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let mut sender = GsoSender::new(tx).expect("sender");
        let mut sent_a = Vec::new();
        let mut sent_b = Vec::new();
        for i in 0..10u8 {
            let d = vec![i; if i == 9 { 300 } else { 1100 }];
            sender
                .push_with(aa, d.len(), |out| {
                    out.copy_from_slice(&d);
                    Ok(())
                })
                .expect("push");
            sent_a.push(d);
        }
        for i in 0..3u8 {
            let d = vec![100 + i; 500];
            sender
                .push_with(ba, d.len(), |out| {
                    out.copy_from_slice(&d);
                    Ok(())
                })
                .expect("push");
            sent_b.push(d);
        }
        sender.flush();
        assert_eq!(sender.counts.packets, 13);
        assert_eq!(sender.counts.failed, 0);
        if sender.batching() {
            assert_eq!(sender.counts.calls, 2, "one run per destination");
        }
        let mut buf = vec![0u8; 2048];
        for (sock, sent) in [(&a, &sent_a), (&b, &sent_b)] {
            for want in sent {
                let n = sock.recv(&mut buf).expect("datagram in time");
                assert_eq!(&buf[..n], &want[..]);
            }
        }
    }
}
