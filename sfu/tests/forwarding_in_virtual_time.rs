//! The forwarder's hardest behaviours, tested on its sans-IO engines with
//! str0m peers over a simulated network and a virtual clock (see `sim`).

mod sim;

use std::time::Duration;

use sfu::{LayerCap, StreamEventKind};
use sim::Sim;

/// A 30 fps single-layer publisher with 2 s GOPs.
const ONE_LAYER: &[(Option<&str>, usize)] = &[(None, 3_000)];

fn connected(sim: &Sim, c: usize) -> bool {
    sim.clients[c].connected_at.is_some()
}

#[test]
fn a_viewer_joining_a_live_stream_starts_on_a_keyframe_after_asking_for_one() {
    let mut sim = Sim::new(1);
    let publisher = sim.publish("s", "owner", 0, ONE_LAYER, 10 * sim::FPS, true);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, publisher)));
    // Past the span a catch-up may have (3 s), the cached GOP is not used.
    sim.run_for(Duration::from_secs(4));
    let requests_before = sim.clients[publisher].requests.len();

    let viewer = sim.view("s", None, LayerCap::Auto);
    assert!(
        sim.run_until_cond(Duration::from_secs(2), |s| !s.clients[viewer]
            .got
            .is_empty())
    );
    let got = &sim.clients[viewer].got;
    assert!(got[0].keyframe, "the first frame shown is a keyframe");
    // GOPs are 10 s long: the keyframe came because the join asked for it.
    assert!(
        sim.clients[publisher].requests.len() > requests_before,
        "the join asked the publisher for a keyframe"
    );
    let joined = sim.clients[viewer].connected_at.expect("connected");
    let first = got[0].at;
    assert!(
        first - joined < Duration::from_millis(200),
        "first frame {:?} after connecting",
        first - joined
    );
    sim.run_for(Duration::from_secs(1));
    let got = &sim.clients[viewer].got;
    assert!(got.len() >= 25, "frames keep coming: {}", got.len());
    assert!(got.windows(2).all(|w| w[1].number == w[0].number + 1));
}

#[test]
fn a_viewer_of_a_publisher_that_ignores_keyframe_requests_starts_from_the_cached_gop() {
    let mut sim = Sim::new(1);
    // 2 s GOP, PLI ignored (OBS).
    let publisher = sim.publish("s", "owner", 0, ONE_LAYER, 2 * sim::FPS, false);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, publisher)));
    // Mid-GOP: the publisher's keyframes come at 0, 2 and 4 s of its
    // frames; join 1.2 s into the second GOP.
    sim.run_for(Duration::from_millis(3200));

    let viewer = sim.view("s", None, LayerCap::Auto);
    assert!(sim.run_until_cond(Duration::from_secs(3), |s| s.clients[viewer].got.len() > 40));
    let joined = sim.clients[viewer].connected_at.expect("connected");
    let got = &sim.clients[viewer].got;
    assert!(got[0].keyframe, "starts on the GOP's keyframe");
    assert!(
        got[0].at - joined < Duration::from_millis(100),
        "the cached keyframe goes out at once ({:?}), not at the next GOP",
        got[0].at - joined
    );
    // Every frame of the GOP, then live ones, in order and none missing.
    assert!(
        got.windows(2).all(|w| w[1].number == w[0].number + 1),
        "frames in order: {:?}",
        got.iter().map(|g| g.number).collect::<Vec<_>>()
    );
    // The catch-up's RTP times end at the live frame and stay increasing.
    assert!(got.windows(2).all(|w| w[1].rtp_time > w[0].rtp_time));
    // Caught up: the viewer is within two frames of the publisher.
    let latest = got.last().map_or(0, |g| g.number);
    let sent = sim.publisher_mut(publisher).frame_no;
    assert!(
        sent - latest <= 2,
        "viewer at frame {latest}, publisher at {sent}"
    );
    assert_eq!(sim.metrics().gop_bursts.get(), 1);
}

#[test]
fn keyframe_requests_to_the_publisher_are_throttled_to_one_a_second() {
    let mut sim = Sim::new(2);
    let publisher = sim.publish("s", "owner", 0, ONE_LAYER, 100 * sim::FPS, true);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, publisher)));
    // Past the span a catch-up may have: joins ask for keyframes.
    sim.run_for(Duration::from_secs(4));
    let before = sim.clients[publisher].requests.len();
    // Twenty viewers join within 400 ms, on both workers.
    let mut viewers = Vec::new();
    for _ in 0..20 {
        viewers.push(sim.view("s", None, LayerCap::Auto));
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_secs(2));
    let requests: Vec<_> = sim.clients[publisher].requests[before..]
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert!(!requests.is_empty(), "the joins asked for a keyframe");
    for w in requests.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(990),
            "requests {:?} apart",
            w[1] - w[0]
        );
    }
    for v in viewers {
        let got = &sim.clients[v].got;
        assert!(
            got.first().is_some_and(|g| g.keyframe),
            "every viewer starts on a keyframe"
        );
        assert!(got.len() > 30, "every viewer plays: {}", got.len());
    }
}

#[test]
fn a_viewer_on_another_worker_gets_the_stream_and_its_keyframe_request_crosses_over() {
    let mut sim = Sim::new(2);
    let publisher = sim.publish("s", "owner", 0, ONE_LAYER, 100 * sim::FPS, true);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, publisher)));
    // Past the span a catch-up may have: joins ask for keyframes.
    sim.run_for(Duration::from_secs(4));
    let before = sim.clients[publisher].requests.len();
    let crossed = sim.cross_worker;

    let viewer = sim.view("s", Some(1), LayerCap::Auto);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| s.clients[viewer].got.len() > 30));
    let got = &sim.clients[viewer].got;
    assert!(got[0].keyframe);
    assert!(got.windows(2).all(|w| w[1].number == w[0].number + 1));
    assert!(
        sim.clients[publisher].requests.len() > before,
        "the request reached the publisher's worker"
    );
    assert!(sim.cross_worker > crossed + 30, "frames crossed workers");
}

#[test]
fn a_replacing_publisher_keeps_the_viewers_timeline_continuous() {
    let mut sim = Sim::new(1);
    let first = sim.publish("s", "owner", 0, ONE_LAYER, 2 * sim::FPS, true);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, first)));
    let viewer = sim.view("s", None, LayerCap::Auto);
    sim.run_for(Duration::from_secs(2));
    let before = sim.clients[viewer].got.len();
    assert!(before > 30);

    // OBS reconnects with the same key: a new session replaces the old,
    // whose RTP clock and sequence numbers start somewhere else.
    sim.silence(first);
    let second = sim.publish("s", "owner", 0, ONE_LAYER, 2 * sim::FPS, true);
    sim.publisher_mut(second).rtp_base = 7_777_777;
    assert!(
        sim.run_until_cond(Duration::from_secs(3), |s| s.clients[viewer].got.len()
            > before + 30)
    );

    let got = &sim.clients[viewer].got;
    let switch = &got[before];
    assert!(switch.keyframe, "the new session starts on a keyframe");
    assert!(
        switch.first_seq == got[before - 1].last_seq + 1,
        "sequence numbers continue: {} then {}",
        got[before - 1].last_seq,
        switch.first_seq
    );
    let gap = switch.rtp_time - got[before - 1].rtp_time;
    let wall = switch.at - got[before - 1].at;
    let wall_ticks = wall.as_micros() as u64 * 90 / 1000;
    assert!(
        gap > 0 && gap <= wall_ticks + 9000,
        "RTP time moves on by about the wall-clock gap: {gap} ticks over {wall:?}"
    );
    assert!(got.windows(2).all(|w| w[1].rtp_time > w[0].rtp_time));
    // The stream never ended: the replacement took the slot.
    assert!(!sim
        .events
        .iter()
        .any(|(_, _, k)| *k == StreamEventKind::Ended));
    assert_eq!(sim.metrics().publishers.get(), 1);
}

#[test]
fn under_five_percent_loss_retransmissions_repair_almost_every_frame() {
    let mut sim = Sim::new(1);
    let publisher = sim.publish("s", "owner", 0, &[(None, 6_000)], 2 * sim::FPS, true);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, publisher)));
    let viewer = sim.view("s", None, LayerCap::Auto);
    sim.clients[viewer].down.loss = 0.05;
    sim.clients[viewer].down.delay = Duration::from_millis(30);
    sim.run_for(Duration::from_secs(20));
    let client = &sim.clients[viewer];
    let got = &client.got;
    let first = got.first().map_or(0, |g| g.number);
    let last = got.last().map_or(0, |g| g.number);
    let expected = (last - first + 1) as f64;
    let complete = got.len() as f64;
    eprintln!(
        "lost {} datagrams; {} of {} frames complete",
        client.lost, complete, expected
    );
    assert!(client.lost > 100, "the link did lose packets");
    assert!(
        complete / expected >= 0.995,
        "{complete} of {expected} frames complete"
    );
}

#[test]
fn a_stalled_publisher_is_reported_and_its_end_forgets_its_sessions() {
    let mut sim = Sim::new(1);
    let publisher = sim.publish("s", "owner", 0, ONE_LAYER, 2 * sim::FPS, true);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, publisher)));
    let viewer = sim.view("s", None, LayerCap::Auto);
    sim.run_for(Duration::from_secs(1));
    assert!(sim
        .events
        .iter()
        .any(|(_, _, k)| *k == StreamEventKind::Live));
    sim.silence(publisher);
    sim.run_for(sfu::STALL_AFTER + Duration::from_secs(1));
    assert!(sim
        .events
        .iter()
        .any(|(_, _, k)| *k == StreamEventKind::Stalled));
    let session = sim.clients[publisher].session.expect("session");
    sim.close(session);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.ended.contains(&session));
    assert!(sim.control.session(session).is_none());
    assert_eq!(sim.metrics().publishers.get(), 0);
    assert!(sim
        .control
        .session(sim.clients[viewer].session.expect("viewer"))
        .is_some());
}

#[test]
fn a_simulcast_viewer_moves_down_when_its_link_narrows_and_back_up_when_it_widens() {
    let mut sim = Sim::new(1);
    // q, h, f at ~150 kbit/s, 500 kbit/s and 1.5 Mbit/s; tags 0, 1, 2.
    let layers = [(Some("q"), 625), (Some("h"), 2_083), (Some("f"), 6_250)];
    let publisher = sim.publish("s", "owner", 0, &layers, 2 * sim::FPS, true);
    assert!(sim.run_until_cond(Duration::from_secs(2), |s| connected(s, publisher)));
    sim.run_for(Duration::from_secs(2));
    let viewer = sim.view("s", None, LayerCap::Auto);
    sim.clients[viewer].down.capacity_bps = Some(5_000_000);
    sim.run_for(Duration::from_secs(12));
    let narrowed = sim.now;
    sim.clients[viewer].down.capacity_bps = Some(700_000);
    sim.run_for(Duration::from_secs(20));
    let widened = sim.now;
    sim.clients[viewer].down.capacity_bps = Some(5_000_000);
    sim.run_for(Duration::from_secs(30));

    let got = &sim.clients[viewer].got;
    // Layer runs as the viewer saw them.
    let mut runs: Vec<(std::time::Instant, u8)> = Vec::new();
    for (i, g) in got.iter().enumerate() {
        if runs.last().is_some_and(|(_, l)| *l == g.layer) {
            continue;
        }
        assert!(
            g.keyframe || !g.contiguous,
            "layer {} starts on a keyframe at {:?}",
            g.layer,
            sim.at(g.at)
        );
        if let Some(prev) = i.checked_sub(1).map(|p| &got[p]) {
            assert!(
                !g.contiguous || g.first_seq == prev.last_seq + 1,
                "sequence numbers continue into layer {}",
                g.layer
            );
            assert!(
                g.rtp_time > prev.rtp_time,
                "RTP time moves on at the switch"
            );
        }
        runs.push((g.at, g.layer));
    }
    let summary: Vec<String> = runs
        .iter()
        .map(|(t, l)| format!("{:.1}s→{l}", sim.at(*t).as_secs_f64()))
        .collect();
    eprintln!("layers: {}", summary.join(" "));
    let layer_at =
        |t: std::time::Instant| runs.iter().rev().find(|(at, _)| *at <= t).map(|(_, l)| *l);
    assert_eq!(
        layer_at(narrowed),
        Some(2),
        "on the top layer at 5 Mbit/s: {summary:?}"
    );
    assert!(
        layer_at(widened).is_some_and(|l| l < 2),
        "below the top layer at 700 kbit/s: {summary:?}"
    );
    assert_eq!(layer_at(sim.now), Some(2), "back on top after: {summary:?}");
    assert!(got
        .last()
        .is_some_and(|g| sim.now - g.at < Duration::from_secs(1)));
}
