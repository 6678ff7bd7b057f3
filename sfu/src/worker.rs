//! A media worker: the thin driver around one [`Engine`]. It owns the UDP
//! socket, reads the clock, waits on the socket, its command queue and the
//! engine's timer, and carries out what the engine outputs: datagrams out
//! (batched with GSO), commands to other workers, stream events and ended
//! sessions to the control side. Everything else is the engine's.
#![allow(clippy::disallowed_methods)] // the driver is where the clock is read

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::IceCredentials;

use crate::engine::{Command, Engine, Output};
use crate::tx_batch::TxBatch;
use crate::{SessionId, Shared};

/// What reaches a worker's queue: a command for its engine, or one for the
/// driver itself.
pub(crate) enum Inbox {
    Engine(Command),
    IceRestart {
        session: SessionId,
        remote: IceCredentials,
        reply: oneshot::Sender<Option<IceCredentials>>,
    },
    Shutdown,
}

pub(crate) struct Worker {
    engine: Engine,
    socket: UdpSocket,
    /// Outgoing datagrams (batched per destination with GSO).
    tx: TxBatch,
    rx: mpsc::Receiver<Inbox>,
    shared: Arc<Shared>,
    /// When the engine wants its next timeout input.
    timeout: Instant,
}

/// Datagrams read per loop turn after the one that woke it.
const RECV_BATCH: usize = 64;

/// Shortest sleep between two timeout inputs: a timer that keeps asking
/// for "now" must not spin the loop.
const MIN_SLEEP: Duration = Duration::from_micros(200);

impl Worker {
    pub fn new(
        engine: Engine,
        socket: UdpSocket,
        rx: mpsc::Receiver<Inbox>,
        shared: Arc<Shared>,
        udp_gso: bool,
    ) -> Worker {
        let tx = TxBatch::new(&socket, udp_gso);
        if udp_gso && !tx.batching() {
            tracing::info!(
                worker = engine.index(),
                "UDP GSO unavailable; sending datagrams one by one"
            );
        }
        Worker {
            engine,
            socket,
            tx,
            rx,
            shared,
            timeout: Instant::now(),
        }
    }

    pub async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            if now >= self.timeout {
                self.engine.handle_timeout(now);
                self.drain();
            }
            let next = self.timeout.max(now + MIN_SLEEP);
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(Inbox::Engine(cmd)) => {
                        self.engine.handle_command(Instant::now(), cmd);
                        self.drain();
                    }
                    Some(Inbox::IceRestart { session, remote, reply }) => {
                        let creds = self.engine.ice_restart(Instant::now(), session, &remote);
                        self.drain();
                        let _ = reply.send(creds);
                    }
                    Some(Inbox::Shutdown) | None => break,
                },
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => {
                        if let Some(data) = buf.get(..n) {
                            self.engine.handle_datagram(Instant::now(), source, data);
                            self.drain();
                        }
                        // Drain what else is queued before looking at timers
                        // and commands again: one loop turn per datagram
                        // would let the kernel queue overflow under load.
                        for _ in 0..RECV_BATCH {
                            let Ok((n, source)) = self.socket.try_recv_from(&mut buf) else {
                                break;
                            };
                            if let Some(data) = buf.get(..n) {
                                self.engine.handle_datagram(Instant::now(), source, data);
                                self.drain();
                            }
                        }
                    }
                    Err(e) => {
                        // ICMP errors surface here on some platforms; they are not fatal.
                        tracing::debug!(worker = self.engine.index(), "recv_from: {e}");
                    }
                },
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
        self.engine.shutdown();
        self.drain();
    }

    /// Carries out the engine's output until it asks for a timeout.
    fn drain(&mut self) {
        let metrics = &self.shared.metrics;
        loop {
            match self.engine.poll_output(Instant::now()) {
                Output::Transmit(t) => {
                    self.tx
                        .push(&self.socket, metrics, &t.contents, t.destination)
                }
                Output::ToWorker { worker, command } => {
                    self.shared.send_to_worker(worker, command);
                }
                Output::StreamEvent { stream, kind } => self.shared.emit(&stream, kind),
                Output::SessionEnded(session) => {
                    self.shared.control.forget(session);
                }
                Output::Timeout(t) => {
                    self.timeout = t;
                    break;
                }
            }
        }
        self.tx.flush(&self.socket, metrics);
    }
}
