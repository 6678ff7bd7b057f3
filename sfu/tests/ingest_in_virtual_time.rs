//! A publisher that is not a WebRTC session (RTMP/SRT ingest) on the real
//! control and engines, with str0m viewers over the simulated network and
//! a virtual clock: its frames reach viewers on every worker, a late
//! viewer starts from the GOP cache (an ingest cannot be asked for a
//! keyframe), the publish rules are WHIP's (another credential is refused,
//! the same one replaces), and the stream's events are a publisher's.

mod sim;

use std::time::Duration;

use sfu::{
    Frequency, IngestCodec, IngestFrame, IngestSession, LayerCap, MediaTime, StreamEventKind,
};
use sim::Sim;

/// Pushes `frames` H.264 frames at 30 fps (keyframe every 60), numbered
/// from `first`, running the simulation between them.
fn push_frames(sim: &mut Sim, ingest: &mut IngestSession, first: u64, frames: u64) {
    for n in first..first + frames {
        let keyframe = n % 60 == 0;
        let data = sim::frame_bytes(0, keyframe, n, if keyframe { 6_000 } else { 1_500 });
        sim.ingest_push(
            ingest,
            IngestFrame {
                codec: IngestCodec::H264,
                time: MediaTime::new(90_000 + n * 3_000, Frequency::NINETY_KHZ),
                keyframe,
                data: data.into(),
                wallclock: None,
            },
        )
        .expect("the ingest holds the stream");
        sim.run_for(Duration::from_micros(33_333));
    }
}

fn events_of(sim: &Sim, stream: &str) -> Vec<StreamEventKind> {
    sim.events
        .iter()
        .filter(|(_, s, _)| s == stream)
        .map(|(_, _, k)| k.clone())
        .collect()
}

#[test]
fn ingest_frames_reach_viewers_on_every_worker_and_a_late_viewer_starts_from_the_gop() {
    let mut sim = Sim::new(2);
    let early = sim.view("s", Some(0), LayerCap::Auto);
    let mut ingest = sim.ingest("s", "key:a").expect("claimed");
    sim.run_for(Duration::from_millis(500));
    push_frames(&mut sim, &mut ingest, 0, 90);
    // Joins 1 s into the second GOP, on the other worker: no keyframe
    // request can reach an ingest, so the cached GOP must do.
    let late = sim.view("s", Some(1), LayerCap::Auto);
    push_frames(&mut sim, &mut ingest, 90, 60);

    let got = &sim.clients[early].got;
    assert!(
        got.len() >= 140,
        "the early viewer got {} frames",
        got.len()
    );
    assert!(got[0].keyframe);
    assert!(got.windows(2).all(|w| w[1].number == w[0].number + 1));
    let got = &sim.clients[late].got;
    assert!(!got.is_empty(), "the late viewer got nothing");
    assert!(got[0].keyframe && got[0].number == 60, "first {:?}", got[0]);
    assert!(got.windows(2).all(|w| w[1].number == w[0].number + 1));
    assert_eq!(got.last().map(|g| g.number), Some(149));

    sim.ingest_end(&mut ingest);
    assert_eq!(
        events_of(&sim, "s"),
        [StreamEventKind::Live, StreamEventKind::Ended]
    );
    assert!(!sim.control.is_live("s"));
    assert_eq!(sim.metrics().publishers.get(), 0);
}

#[test]
fn publish_rules_are_whips_another_credential_is_refused_the_same_one_replaces() {
    let mut sim = Sim::new(1);
    let viewer = sim.view("s", None, LayerCap::Auto);
    let mut first = sim.ingest("s", "key:a").expect("claimed");
    sim.run_for(Duration::from_millis(500));
    push_frames(&mut sim, &mut first, 0, 30);

    assert!(matches!(
        sim.ingest("s", "key:b"),
        Err(sfu::SfuError::StreamBusy)
    ));
    // The encoder reconnects with the same key: the new session takes over,
    // the old one learns it on its next push and ends without `Ended`.
    let mut second = sim.ingest("s", "key:a").expect("replaced");
    assert!(first.is_replaced());
    let stale = IngestFrame {
        codec: IngestCodec::H264,
        time: MediaTime::new(0, Frequency::NINETY_KHZ),
        keyframe: false,
        data: sim::frame_bytes(0, false, 999, 100).into(),
        wallclock: None,
    };
    assert_eq!(
        sim.ingest_push(&mut first, stale),
        Err(sfu::IngestError::Replaced)
    );
    sim.ingest_end(&mut first);
    assert!(sim.control.is_live("s"));
    // A new encoder session restarts its clock and frame numbers.
    push_frames(&mut sim, &mut second, 0, 30);
    let got = &sim.clients[viewer].got;
    assert!(got.len() >= 55, "the viewer got {} frames", got.len());
    let restart = got
        .iter()
        .skip(1)
        .position(|g| g.number == 0)
        .map(|i| i + 1);
    let restart = restart.expect("the second session's frames arrived");
    assert!(got[restart].keyframe);
    // One continuous track for the viewer across the two sessions.
    assert!(got.windows(2).all(|w| w[1].first_seq == w[0].last_seq + 1));
    assert!(got.windows(2).all(|w| w[1].rtp_time > w[0].rtp_time));

    sim.ingest_end(&mut second);
    assert_eq!(
        events_of(&sim, "s"),
        [
            StreamEventKind::Live,
            StreamEventKind::Live,
            StreamEventKind::Ended
        ]
    );
    assert_eq!(sim.metrics().publishers.get(), 0);
}
