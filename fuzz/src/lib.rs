//! Shared set-up of relaycast's fuzz targets (`fuzz_targets/`): an SFU
//! control and engine as the server builds them, on a clock the target
//! moves. See docs/fuzzing.md for the route (libFuzzer on stable) and the
//! commands.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use sfu::engine::{Engine, Output};
use sfu::{Admitted, Control, SessionId, SfuConfig};
use str0m::config::DtlsCert;
use str0m::RtcConfig;

/// The worker's media address, as answers name it.
pub const WORKER_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    5000,
);

/// One clock origin for the process: `Instant::now` once, then offsets.
#[allow(clippy::disallowed_methods)] // the virtual clock starts at one real instant
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Metrics registered once: a registry per input would dominate the run.
pub fn metrics() -> sfu::Metrics {
    static METRICS: OnceLock<sfu::Metrics> = OnceLock::new();
    METRICS
        .get_or_init(|| sfu::Metrics::new(&prometheus::Registry::new()).expect("metrics register"))
        .clone()
}

pub fn sfu_config() -> SfuConfig {
    SfuConfig {
        bind_ip: [127, 0, 0, 1].into(),
        public_ip: [10, 0, 0, 1].into(),
        first_port: 5000,
        workers: 1,
        max_sessions: 16,
        udp_gso: false,
        pace_viewers: false,
        twcc_send_history: sfu::DEFAULT_TWCC_SEND_HISTORY,
        viewer_estimator: sfu::ViewerEstimator::Twcc,
    }
}

thread_local! {
    static CONTROL: Control = Control::new(&sfu_config(), vec![WORKER_ADDR], metrics());
}

/// Runs `f` with the thread's control of one worker, as `Sfu::start`
/// builds it. One for all inputs: a control generates its DTLS
/// certificate when built, which would be most of a run's time. Targets
/// close the sessions they admit (see [`Sessions`]), so each input starts
/// from a control without sessions, as a fresh one would.
pub fn with_control<R>(f: impl FnOnce(&Control) -> R) -> R {
    CONTROL.with(f)
}

/// Sessions an input admitted, closed when it is dropped (also when the
/// target returns early).
pub struct Sessions<'a> {
    control: &'a Control,
    ids: Vec<SessionId>,
}

impl<'a> Sessions<'a> {
    pub fn new(control: &'a Control) -> Sessions<'a> {
        Sessions {
            control,
            ids: Vec::new(),
        }
    }

    pub fn admitted(&mut self, admitted: &Admitted) {
        self.ids.push(admitted.answer.session);
    }
}

impl Drop for Sessions<'_> {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            let _ = self.control.close(id);
        }
    }
}

/// An `RtcConfig` for the targets' str0m clients, with one DTLS
/// certificate for all of them (generating one per client would dominate).
pub fn client_config() -> RtcConfig {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    let cert = CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("a DTLS certificate")
    });
    RtcConfig::new().set_dtls_cert(cert.clone())
}

pub fn engine(now: Instant) -> Engine {
    Engine::new(0, WORKER_ADDR, metrics(), now)
}

/// Drains the engine's output until it asks for a timeout, as the worker
/// loop does after every input; commands for other workers are dropped
/// (there is one). Returns the timeout.
pub fn drain(engine: &mut Engine, now: Instant) -> Instant {
    // A bound, so a livelock shows as a crash rather than a hang.
    for _ in 0..100_000 {
        match engine.poll_output(now) {
            Output::Timeout(t) => return t,
            _ => continue,
        }
    }
    panic!("the engine produced 100000 outputs without asking for a timeout");
}

/// Drains the engine like [`drain`], keeping its datagrams.
pub fn drain_transmits(engine: &mut Engine, now: Instant, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
    for _ in 0..100_000 {
        match engine.poll_output(now) {
            Output::Timeout(_) => return,
            Output::Transmit(t) => out.push((t.destination, t.contents)),
            _ => continue,
        }
    }
    panic!("the engine produced 100000 outputs without asking for a timeout");
}

/// Splits an input into records, `[tag: u8][length: u16 BE][bytes]`…, the
/// last one cut short where the input ends. A framing this plain lets the
/// committed seeds be real messages (a STUN Allocate, a DTLS ClientHello)
/// written by a few lines of script, and lets the fuzzer splice records.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        let len = match rest {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => rest.len(),
        };
        let rest = rest.get(2..).unwrap_or_default();
        let (record, after) = rest.split_at(len.min(rest.len()));
        data = after;
        Some((tag, record))
    })
}
