//! The SDP offer path of WHIP and WHEP up to the answer: `Offer::parse`,
//! then `Control::publish` and `Control::subscribe` with what parsed (each
//! refuses offers it cannot serve; neither may panic), then the answer
//! through str0m's parser, as the client will read it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sfu::LayerCap;
use str0m::change::SdpAnswer;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = sfu::Offer::parse(sdp) else {
        return;
    };
    let _ = (
        offer.ice_ufrag(),
        offer.is_simulcast(),
        offer.h264_profiles(),
    );
    let now = relaycast_fuzz::epoch();
    relaycast_fuzz::with_control(|control| {
        let mut sessions = relaycast_fuzz::Sessions::new(control);
        if let Ok(admitted) = control.publish(now, 0, "show", offer, "owner") {
            sessions.admitted(&admitted);
            answer_parses(&admitted.answer.sdp);
        }
        let Ok(offer) = sfu::Offer::parse(sdp) else {
            panic!("an offer that parsed once did not parse twice");
        };
        if let Ok(admitted) = control.subscribe(now, 0, "show", offer, LayerCap::Auto) {
            sessions.admitted(&admitted);
            answer_parses(&admitted.answer.sdp);
        }
    });
});

fn answer_parses(sdp: &str) {
    if let Err(e) = SdpAnswer::from_sdp_string(sdp) {
        panic!("our answer does not parse: {e}\n{sdp}");
    }
}
