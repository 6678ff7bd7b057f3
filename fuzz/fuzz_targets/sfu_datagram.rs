//! Datagrams into the SFU's sans-IO engine (`Engine::handle_datagram`),
//! the worker socket's only input from the network. Each run sets up a
//! publisher and a viewer session (real offers, real answers) whose str0m
//! clients complete ICE with the engine, so the engine knows their
//! addresses; the DTLS handshakes are left pending (they would cost
//! milliseconds per run). Then the input's datagrams arrive from the
//! publisher, the viewer or strangers, with the clock moving between them:
//! STUN, DTLS records, SRTP/SRTCP-looking bytes and garbage reach str0m's
//! demultiplexer, its STUN and DTLS parsers, the engine's own STUN binding
//! answers and its session lookup.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sfu::engine::Engine;
use sfu::LayerCap;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

const PUBLISHER: SocketAddr = addr(1);
const VIEWER: SocketAddr = addr(2);

const fn addr(host: u8) -> SocketAddr {
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, host)),
        6000,
    )
}

// The input is records (`relaycast_fuzz::records`), one datagram each; the
// tag's low two bits say who sends it (0: the publisher, 1: the viewer,
// 2 and 3: strangers), its upper six how many milliseconds (times 4) the
// clock moves before it arrives.
fuzz_target!(|data: &[u8]| {
    relaycast_fuzz::with_control(|control| run(control, data));
});

fn run(control: &sfu::Control, data: &[u8]) {
    let mut now = relaycast_fuzz::epoch();
    let mut sessions = relaycast_fuzz::Sessions::new(control);
    let mut engine = relaycast_fuzz::engine(now);
    let mut publisher = client(now, PUBLISHER);
    let mut viewer = client(now, VIEWER);
    admit(
        control,
        &mut sessions,
        &mut engine,
        now,
        &mut publisher,
        true,
    );
    admit(control, &mut sessions, &mut engine, now, &mut viewer, false);
    for (rtc, at) in [(&mut publisher, PUBLISHER), (&mut viewer, VIEWER)] {
        now = ice_connect(&mut engine, rtc, at, now);
    }
    for (tag, bytes) in relaycast_fuzz::records(data).take(64) {
        now += Duration::from_millis(u64::from(tag >> 2) * 4);
        let from = match tag & 3 {
            0 => PUBLISHER,
            1 => VIEWER,
            n => addr(n + 1),
        };
        engine.handle_timeout(now);
        relaycast_fuzz::drain(&mut engine, now);
        engine.handle_datagram(now, from, bytes);
        relaycast_fuzz::drain(&mut engine, now);
    }
    engine.shutdown();
    relaycast_fuzz::drain(&mut engine, now);
}

fn client(now: Instant, at: SocketAddr) -> Rtc {
    let mut rtc = relaycast_fuzz::client_config().build(now);
    let c = Candidate::host(at, "udp").expect("a host candidate");
    rtc.add_local_candidate(c);
    rtc
}

/// Offers from `rtc` (audio and video, both ways the role needs), admits the
/// offer and hands the engine its session.
fn admit(
    control: &sfu::Control,
    sessions: &mut relaycast_fuzz::Sessions,
    engine: &mut Engine,
    now: Instant,
    rtc: &mut Rtc,
    publish: bool,
) {
    let dir = if publish {
        Direction::SendOnly
    } else {
        Direction::RecvOnly
    };
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, dir, None, None, None);
    api.add_media(MediaKind::Video, dir, None, None, None);
    let (offer, pending) = api.apply().expect("a str0m client offers");
    let offer = sfu::Offer::parse(&offer.to_sdp_string()).expect("str0m's offer parses");
    let admitted = if publish {
        control.publish(now, 0, "show", offer, "owner")
    } else {
        control.subscribe(now, 0, "show", offer, LayerCap::Auto)
    }
    .expect("admitted");
    sessions.admitted(&admitted);
    let answer = SdpAnswer::from_sdp_string(&admitted.answer.sdp).expect("our answer parses");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("the client accepts our answer");
    engine.handle_command(now, admitted.command);
    relaycast_fuzz::drain(engine, now);
}

/// Carries STUN between the client and the engine until the client's ICE
/// connects (a few rounds, the clock moving as the client asks); DTLS
/// records are not carried. Returns the clock's time when it did.
fn ice_connect(engine: &mut Engine, rtc: &mut Rtc, at: SocketAddr, mut now: Instant) -> Instant {
    let mut replies = Vec::new();
    let mut connected = false;
    for _ in 0..16 {
        let _ = rtc.handle_input(Input::Timeout(now));
        while let Ok(out) = rtc.poll_output() {
            match out {
                Output::Transmit(t) if t.contents.first().is_some_and(|b| *b < 4) => {
                    engine.handle_datagram(now, at, &t.contents);
                    relaycast_fuzz::drain_transmits(engine, now, &mut replies);
                }
                Output::Timeout(t) => {
                    now = now.max(t);
                    break;
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Connected | IceConnectionState::Completed,
                )) => connected = true,
                _ => {}
            }
        }
        for (to, bytes) in replies.drain(..) {
            if to != at || bytes.first().is_none_or(|b| *b >= 4) {
                continue;
            }
            if let Ok(r) = Receive::new(Protocol::Udp, relaycast_fuzz::WORKER_ADDR, at, &bytes) {
                let input = Input::Receive(now, r);
                if rtc.accepts(&input) {
                    let _ = rtc.handle_input(input);
                }
            }
        }
        if connected {
            return now;
        }
    }
    panic!("the harness's client did not connect ICE with the engine");
}
