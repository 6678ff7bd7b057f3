//! A benchmark, not a test (ignored in test runs): one publisher and `VIEWERS` viewers of it
//! on the engines in virtual time, for `loadtest/sfu/engine_callgrind.sh`, which counts the
//! instructions the engines spend (callgrind, collecting only inside `Engine`'s entry points,
//! so the str0m clients of the simulation are left out) per datagram they send. Deterministic
//! for a given build and settings, and unmoved by whatever else the machine is doing.
//!
//! Settings (environment): `VIEWERS` (20), `WARMUP` seconds after the viewers joined, for their
//! estimates to settle (10), `FORWARD_SECONDS` of forwarding after that (10), `SIMULCAST` (1: three layers, viewers choosing by their estimate; 0: one layer),
//! `ESTIMATOR` (`twcc` or `remb`, as `relaycast serve --viewer-estimator`).

mod sim;

use std::time::Duration;

use sfu::{LayerCap, ViewerEstimator};
use sim::Sim;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a benchmark: loadtest/sfu/engine_callgrind.sh runs it under callgrind"]
fn forwarding_for_instruction_counts() {
    let viewers: usize = setting("VIEWERS", 20);
    let warmup: u64 = setting("WARMUP", 10);
    let seconds: u64 = setting("FORWARD_SECONDS", 10);
    let simulcast = setting("SIMULCAST", 1u8) == 1;
    let mut cfg = sim::config(2);
    cfg.viewer_estimator = match std::env::var("ESTIMATOR").as_deref() {
        Ok("remb") => ViewerEstimator::Remb,
        _ => ViewerEstimator::Twcc,
    };
    let mut sim = Sim::with_config(cfg);
    // Delta-frame bytes at 30 fps, keyframes three times as large every 2 s: about 0.2, 0.6
    // and 2 Mbit/s.
    let layers: &[(Option<&str>, usize)] = if simulcast {
        &[(Some("q"), 700), (Some("h"), 2_500), (Some("f"), 8_000)]
    } else {
        &[(None, 8_000)]
    };
    let publisher = sim.publish("s", "owner", 0, layers, 2 * sim::FPS, true);
    assert!(
        sim.run_until_cond(Duration::from_secs(2), |s| s.clients[publisher]
            .connected_at
            .is_some())
    );
    let clients: Vec<usize> = (0..viewers)
        .map(|_| sim.view("s", None, LayerCap::Auto))
        .collect();
    assert!(sim.run_until_cond(Duration::from_secs(5), |s| clients
        .iter()
        .all(|c| s.clients[*c].connected_at.is_some())));
    sim.run_for(Duration::from_secs(warmup));
    let warm = sim.datagrams_out;
    let counted: Vec<usize> = clients.iter().map(|c| sim.clients[*c].got.len()).collect();
    sim.run_for(Duration::from_secs(seconds));

    let mut frames = 0;
    let mut by_layer = [0usize; 3];
    for (c, from) in clients.iter().zip(counted) {
        for g in &sim.clients[*c].got[from..] {
            frames += 1;
            by_layer[usize::from(g.layer).min(2)] += 1;
        }
    }
    // Read by the script.
    println!(
        "datagrams out: {} (after the warm-up: {}); frames at the viewers after the warm-up: \
         {frames} (by layer, low to high: {by_layer:?})",
        sim.datagrams_out,
        sim.datagrams_out - warm
    );
    assert!(
        clients.iter().all(|c| !sim.clients[*c].got.is_empty()),
        "every viewer got frames"
    );
}
