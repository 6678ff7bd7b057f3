//! The client side of one WebRTC session: an `str0m::Rtc` and its own UDP
//! socket on loopback. The owner task feeds it datagrams and timeouts and
//! calls [`RtcDriver::drain`] after every input, as str0m wants.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::Interest;
use tokio::net::UdpSocket;

pub struct RtcDriver {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub send_errors: u64,
}

impl RtcDriver {
    /// Binds a socket on 127.0.0.1 and offers it as our only candidate.
    pub async fn bind(mut rtc: Rtc) -> Result<RtcDriver> {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .context("binding a UDP socket")?;
        let local = socket.local_addr().context("local address")?;
        let candidate = Candidate::host(local, "udp").context("host candidate")?;
        rtc.add_local_candidate(candidate);
        Ok(RtcDriver {
            rtc,
            socket,
            local,
            send_errors: 0,
        })
    }

    /// Polls output until str0m asks for a timeout: transmits go to the
    /// socket, events to `on_event`. Returns when the next timeout is due.
    pub fn drain(&mut self, mut on_event: impl FnMut(Event)) -> Instant {
        loop {
            if !self.rtc.is_alive() {
                return Instant::now();
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => {
                    if self.socket.try_send_to(&t.contents, t.destination).is_err() {
                        self.send_errors += 1;
                    }
                }
                Ok(Output::Event(e)) => on_event(e),
                Err(_) => {
                    self.rtc.disconnect();
                    return Instant::now();
                }
            }
        }
    }

    /// Hands one datagram to the `Rtc`. Unparseable datagrams are ignored.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = DatagramRecv::try_from(data) else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.handle_input(input).is_err() {
            self.rtc.disconnect();
        }
    }

    pub fn timeout(&mut self, now: Instant) {
        if self.rtc.handle_input(Input::Timeout(now)).is_err() {
            self.rtc.disconnect();
        }
    }
}

/// Most bytes one read takes: a whole GRO batch (the kernel coalesces at
/// most 64 KiB).
const GRO_BUFFER: usize = 65_536;
/// Buffer for one datagram when the kernel has no GRO.
const DATAGRAM_BUFFER: usize = 2048;

/// Reads a socket's datagrams with UDP generic receive offload where the
/// kernel has it (through `quinn-udp`): a run the server sent as one GSO
/// call arrives as one read, split at its stride, instead of one read and
/// one wake-up per datagram. Without GRO it reads one datagram at a time.
pub struct BatchRecv {
    state: Option<UdpSocketState>,
}

/// One read: `len` bytes from `source`, datagrams every `stride` bytes.
pub struct Batch {
    pub source: SocketAddr,
    len: usize,
    stride: usize,
}

impl Batch {
    /// The datagrams of this read, in order.
    pub fn datagrams<'b>(&self, buf: &'b [u8]) -> impl Iterator<Item = &'b [u8]> {
        let filled = buf.get(..self.len).unwrap_or(buf);
        filled.chunks(self.stride.max(1))
    }
}

impl BatchRecv {
    /// Turns GRO on for `socket` when the kernel supports it.
    pub fn new(socket: &UdpSocket) -> BatchRecv {
        let state = UdpSocketState::new(UdpSockRef::from(socket))
            .ok()
            .filter(|s| s.gro_segments() > 1);
        BatchRecv { state }
    }

    /// How big the caller's read buffer must be.
    pub fn buffer_len(&self) -> usize {
        if self.state.is_some() {
            GRO_BUFFER
        } else {
            DATAGRAM_BUFFER
        }
    }

    /// One read without waiting; `None` when nothing is queued (or the read
    /// failed, e.g. an ICMP error surfaced on the socket).
    pub fn try_recv(&self, socket: &UdpSocket, buf: &mut [u8]) -> Option<Batch> {
        match &self.state {
            Some(state) => {
                let mut meta = [RecvMeta::default()];
                let n = socket
                    .try_io(Interest::READABLE, || {
                        state.recv(
                            UdpSockRef::from(socket),
                            &mut [IoSliceMut::new(buf)],
                            &mut meta,
                        )
                    })
                    .ok()?;
                let [meta] = meta;
                (n > 0).then_some(Batch {
                    source: meta.addr,
                    len: meta.len,
                    stride: meta.stride,
                })
            }
            None => {
                let (len, source) = socket.try_recv_from(buf).ok()?;
                Some(Batch {
                    source,
                    len,
                    stride: len,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_udp::Transmit;

    /// A run sent as one GSO call comes back as its datagrams, in order and
    /// intact (coalesced by GRO where the kernel does it, one by one
    /// otherwise), and a datagram of another size after it is read on its own.
    #[tokio::test]
    async fn a_gso_run_is_read_back_as_its_datagrams() {
        let rx_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let tx_socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let dest = rx_socket.local_addr().expect("addr");
        let rx = BatchRecv::new(&rx_socket);

        let sent: Vec<Vec<u8>> = (0u8..5)
            .map(|i| {
                let len = if i == 4 { 300 } else { 1200 };
                vec![i; len]
            })
            .collect();
        let state = UdpSocketState::new(UdpSockRef::from(&tx_socket)).expect("state");
        let run = sent.concat();
        let gso = state.max_gso_segments() > 1;
        if gso {
            let transmit = Transmit {
                destination: dest,
                ecn: None,
                contents: &run,
                segment_size: Some(1200),
                src_ip: None,
            };
            state
                .send(UdpSockRef::from(&tx_socket), &transmit)
                .expect("GSO send");
        } else {
            for d in &sent {
                tx_socket.send_to(d, dest).await.expect("send");
            }
        }
        tx_socket.send_to(&[9; 40], dest).await.expect("send");

        let mut buf = vec![0u8; rx.buffer_len()];
        let mut got: Vec<Vec<u8>> = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < sent.len() + 1 && Instant::now() < deadline {
            rx_socket.readable().await.expect("readable");
            while let Some(batch) = rx.try_recv(&rx_socket, &mut buf) {
                assert_eq!(batch.source, tx_socket.local_addr().expect("addr"));
                got.extend(batch.datagrams(&buf).map(<[u8]>::to_vec));
            }
        }
        let mut expected = sent;
        expected.push(vec![9; 40]);
        assert_eq!(got, expected);
    }
}
