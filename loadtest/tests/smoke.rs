//! Smoke test: `relaycast-load --spawn-server` against the workspace's own
//! `relaycast` binary, 20 viewers for 10 s. It proves the tool and the server
//! work end to end under a little load; it does not assert speed (speed is
//! measured, see docs/benchmarks.md, not asserted).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// `relaycast` sits next to `relaycast-load` in the target directory:
/// `cargo test --workspace` builds every binary of the workspace first.
fn relaycast_binary() -> Result<PathBuf> {
    let load = PathBuf::from(env!("CARGO_BIN_EXE_relaycast-load"));
    let dir = load
        .parent()
        .context("relaycast-load has no parent directory")?;
    let server = dir.join(format!("relaycast{}", std::env::consts::EXE_SUFFIX));
    if !server.exists() {
        bail!(
            "{} not found: build the server first (`cargo build -p api`, or run \
             `cargo test --workspace`, which builds all binaries)",
            server.display()
        );
    }
    Ok(server)
}

fn number(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

#[test]
fn twenty_viewers_join_and_receive_stamped_frames() -> Result<()> {
    let server = relaycast_binary()?;
    let out = Command::new(env!("CARGO_BIN_EXE_relaycast-load"))
        .arg("--spawn-server")
        .arg(&server)
        .args([
            "--viewers",
            "20",
            "--ramp-per-sec",
            "20",
            "--duration",
            "10s",
            "--json",
            "--per-viewer",
            "--load-threads",
            "1",
        ])
        .output()
        .context("running relaycast-load")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    ensure!(
        out.status.success(),
        "relaycast-load failed: {}",
        out.status
    );
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "stdout is not JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;

    let viewers = &report["viewers"];
    ensure!(
        number(viewers, &["lost_viewers"]) == Some(0.0),
        "lost viewers: {viewers}"
    );
    ensure!(
        number(viewers, &["joined"]) == Some(20.0),
        "joined: {viewers}"
    );
    let per_viewer = report["per_viewer"]
        .as_array()
        .context("per_viewer missing")?;
    ensure!(
        per_viewer.len() == 20,
        "{} per-viewer entries",
        per_viewer.len()
    );
    for v in per_viewer {
        ensure!(
            number(v, &["frames"]).is_some_and(|f| f > 0.0),
            "a viewer received no frames: {v}"
        );
        ensure!(v["delay_p50_ms"].is_number(), "no delay for {v}");
    }
    for key in ["p50_ms", "p95_ms", "p99_ms"] {
        ensure!(
            number(&report, &["delay_ms", key]).is_some(),
            "delay_ms.{key} missing"
        );
        ensure!(
            number(&report, &["join_ms", key]).is_some(),
            "join_ms.{key} missing"
        );
    }
    ensure!(
        number(viewers, &["unstamped_frames"]) == Some(0.0),
        "frames arrived without the SEI stamp: the server must forward them untouched"
    );
    // The server was measured (spawned, so its PID is known).
    ensure!(
        number(&report, &["server", "steady", "cpu_s"]).is_some(),
        "no server CPU figure"
    );
    ensure!(
        number(&report, &["server", "steady", "packets_out"]).is_some_and(|p| p > 0.0),
        "no packets counted from /metrics"
    );
    Ok(())
}
