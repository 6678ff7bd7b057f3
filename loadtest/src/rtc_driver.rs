//! The client side of one WebRTC session: an `str0m::Rtc` and its own UDP
//! socket on loopback. The owner task feeds it datagrams and timeouts and
//! calls [`RtcDriver::drain`] after every input, as str0m wants.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
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
