//! An offer that gives one payload type to two codecs (here an audio m-section carrying the
//! video section's `a=rtpmap` lines, outside its own format list) made str0m claim the PT
//! twice and panic while building the answer: remote input reached an `assert!`. Found by
//! the `sdp_offer` fuzz target (docs/fuzzing.md); fixed in vendor/str0m (PATCHES.md, patch 9).
//! Publishing and viewing with it now answer or refuse, and never panic.

#![allow(clippy::disallowed_methods)] // one real instant starts the test's clock

mod sim;

use std::time::Instant;

use sfu::{Control, LayerCap};

const OFFER: &str = include_str!("../../fuzz/corpus/sdp_offer/regression-one-pt-two-codecs.sdp");

fn control() -> Control {
    sim::control(1)
}

#[test]
fn an_offer_with_one_payload_type_for_two_codecs_is_answered_or_refused() {
    let now = Instant::now();
    let control = control();
    let offer = sfu::Offer::parse(OFFER).expect("the offer parses");
    let _ = control.publish(now, 0, "show", offer, "owner");
    let offer = sfu::Offer::parse(OFFER).expect("the offer parses");
    let _ = control.subscribe(now, 0, "show", offer, LayerCap::Auto);
}
