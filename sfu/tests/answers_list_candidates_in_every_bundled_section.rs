//! The SDP answers of the control: the worker's host candidate is in every accepted m-section
//! of the BUNDLE group, not only the first (aiortc reads another one), rejected m-sections
//! (port 0) carry none, and the offerer's str0m accepts the answer.

#![allow(clippy::disallowed_methods)] // one real instant starts each test's clock

mod sim;

use std::time::Instant;

use sfu::{Control, LayerCap};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Rtc, RtcConfig};

fn control() -> Control {
    sim::control(1)
}

/// The m-sections of `sdp`: (m-line, the section's lines).
fn sections(sdp: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            out.push((m.to_owned(), Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line.to_owned());
        }
    }
    out
}

fn candidates(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect()
}

/// An offer from a str0m client with `kinds` (audio/video send or receive) and a data
/// channel, as browsers send.
fn offer(mut rtc: Rtc, kinds: &[(MediaKind, Direction)]) -> (Rtc, String, SdpPendingOffer) {
    let mut api = rtc.sdp_api();
    for (kind, dir) in kinds {
        api.add_media(*kind, *dir, None, None, None);
    }
    api.add_channel("events".into());
    let (offer, pending) = api.apply().expect("offer");
    (rtc, offer.to_sdp_string(), pending)
}

fn accept(mut rtc: Rtc, pending: SdpPendingOffer, answer: &str) {
    let answer = SdpAnswer::from_sdp_string(answer).expect("answer parses");
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .expect("the offerer accepts the answer");
}

fn assert_candidate_in_every_section(answer: &str) {
    let all = sections(answer);
    assert_eq!(all.len(), 3, "audio, video, data channel:\n{answer}");
    for (m, lines) in &all {
        let found = candidates(lines);
        assert_eq!(found.len(), 1, "m={m}: {found:?}\n{answer}");
        assert!(
            found[0].contains("10.0.0.1 5000 typ host"),
            "m={m}: {found:?}"
        );
    }
}

#[test]
fn a_publisher_answer_has_the_candidate_in_audio_video_and_data_sections() {
    let now = Instant::now();
    let control = control();
    let client = RtcConfig::new().build(now);
    let (client, sdp, pending) = offer(
        client,
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
    );
    let offer = sfu::Offer::parse(&sdp).expect("offer parses");
    let admitted = control
        .publish(now, 0, "show", offer, "owner")
        .expect("publisher admitted");
    assert_candidate_in_every_section(&admitted.answer.sdp);
    accept(client, pending, &admitted.answer.sdp);
}

#[test]
fn a_viewer_answer_has_the_candidate_in_audio_video_and_data_sections() {
    let now = Instant::now();
    let control = control();
    let (_, sdp, _) = offer(
        RtcConfig::new().build(now),
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
    );
    control
        .publish(
            now,
            0,
            "show",
            sfu::Offer::parse(&sdp).expect("offer"),
            "owner",
        )
        .expect("publisher admitted");

    let (client, sdp, pending) = offer(
        RtcConfig::new().build(now),
        &[
            (MediaKind::Audio, Direction::RecvOnly),
            (MediaKind::Video, Direction::RecvOnly),
        ],
    );
    let admitted = control
        .subscribe(
            now,
            0,
            "show",
            sfu::Offer::parse(&sdp).expect("offer"),
            LayerCap::Auto,
        )
        .expect("viewer admitted");
    assert_candidate_in_every_section(&admitted.answer.sdp);
    accept(client, pending, &admitted.answer.sdp);
}

#[test]
fn a_rejected_section_carries_no_candidate() {
    let now = Instant::now();
    let control = control();
    // H.265 only: relaycast takes no H.265 from publishers, so the video section is refused.
    let client = RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_h265(true)
        .build(now);
    let (client, sdp, pending) = offer(
        client,
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
    );
    let admitted = control
        .publish(
            now,
            0,
            "show",
            sfu::Offer::parse(&sdp).expect("offer"),
            "owner",
        )
        .expect("publisher admitted with audio");
    let answer = &admitted.answer.sdp;
    let all = sections(answer);
    let video = all
        .iter()
        .find(|(m, _)| m.starts_with("video"))
        .expect("video section");
    assert!(video.0.starts_with("video 0 "), "video refused:\n{answer}");
    assert!(candidates(&video.1).is_empty(), "{answer}");
    for (m, lines) in all.iter().filter(|(m, _)| !m.starts_with("video")) {
        assert_eq!(candidates(lines).len(), 1, "m={m}:\n{answer}");
    }
    accept(client, pending, answer);
}
