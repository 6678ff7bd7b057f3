//! An offer that gives one payload type to two codecs (here an audio m-section carrying the
//! video section's `a=rtpmap` lines, outside its own format list) made str0m claim the PT
//! twice and panic while building the answer: remote input reached an `assert!`. Found by
//! the `sdp_offer` fuzz target (docs/fuzzing.md); fixed in vendor/str0m (PATCHES.md, patch 9).
//! Publishing and viewing with it now answer or refuse, and never panic.

#![allow(clippy::disallowed_methods)] // one real instant starts the test's clock

use std::net::SocketAddr;
use std::time::Instant;

use sfu::{Control, LayerCap, SfuConfig};

const OFFER: &str = include_str!("../../fuzz/corpus/sdp_offer/regression-one-pt-two-codecs.sdp");

fn control() -> Control {
    let cfg = SfuConfig {
        bind_ip: [127, 0, 0, 1].into(),
        public_ip: [10, 0, 0, 1].into(),
        first_port: 5000,
        workers: 1,
        max_sessions: 10,
        udp_gso: false,
        pace_viewers: false,
        twcc_send_history: sfu::DEFAULT_TWCC_SEND_HISTORY,
        viewer_estimator: sfu::ViewerEstimator::Twcc,
    };
    let metrics = sfu::Metrics::new(&prometheus::Registry::new()).expect("metrics");
    let addr: SocketAddr = "10.0.0.1:5000".parse().expect("address");
    Control::new(&cfg, vec![addr], metrics)
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
