//! WHIP/WHEP PATCH bodies (`application/trickle-ice-sdpfrag`, RFC 8840):
//! `sfu::fragment::parse`, then what the server does with a fragment that
//! parsed: its candidates go to a live session's engine (which starts ICE
//! checks towards them, timers running), its credentials restart ICE.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sfu::IceCredentials;
use str0m::media::{Direction, MediaKind};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(fragment) = sfu::fragment::parse(body) else {
        return;
    };
    relaycast_fuzz::with_control(|control| run(control, fragment));
});

fn run(control: &sfu::Control, fragment: sfu::fragment::Fragment) {
    let now = relaycast_fuzz::epoch();
    let mut sessions = relaycast_fuzz::Sessions::new(control);
    let mut engine = relaycast_fuzz::engine(now);
    let mut client = relaycast_fuzz::client_config().build(now);
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("a str0m client offers");
    let offer = sfu::Offer::parse(&offer.to_sdp_string()).expect("str0m's offer parses");
    let admitted = control
        .publish(now, 0, "show", offer, "owner")
        .expect("publisher admitted");
    sessions.admitted(&admitted);
    let session = admitted.answer.session;
    engine.handle_command(now, admitted.command);
    relaycast_fuzz::drain(&mut engine, now);

    if let (Some(ufrag), Some(pwd)) = (fragment.ufrag, fragment.pwd) {
        let _ = engine.ice_restart(now, session, &IceCredentials { ufrag, pwd });
        relaycast_fuzz::drain(&mut engine, now);
    }
    if let Ok((_, command)) = control.add_candidates(session, fragment.candidates) {
        engine.handle_command(now, command);
    }
    let mut at = now;
    for _ in 0..4 {
        at = relaycast_fuzz::drain(&mut engine, at).max(at + Duration::from_millis(50));
        engine.handle_timeout(at);
    }
    relaycast_fuzz::drain(&mut engine, at);
}
