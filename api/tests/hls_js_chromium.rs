//! hls.js in headless Chromium, `lowLatencyMode`, plays the LL-HLS of a
//! stream published over WHIP (webrtc-rs publisher: openh264 test pattern
//! and Opus): video time advances and an audio track is buffered. The
//! latency hls.js reports (`hls.latency`) is printed.
//!
//! The browser side is `tests/browser/hls_play.mjs`. Needs
//! `/usr/bin/chromium`, `node` and `tests/browser/node_modules` (`npm ci`);
//! without them the test is skipped with a loud message, except under CI
//! (env `CI` set), where it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use support::*;
use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("browser")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !v.is_empty() && v != "0" && v != "false"
    })
}

fn prerequisites_missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    let modules = browser_dir().join("node_modules");
    for m in ["playwright-core", "hls.js"] {
        if !modules.join(m).is_dir() {
            missing.push(format!("{m} (run `npm ci` in tests/browser)"));
        }
    }
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        missing.push("node (Node.js >= 20 on PATH)".into());
    }
    missing
}

/// Runs `tests/browser/{script}` with `args` under node (at most
/// `limit_s` seconds), printing its stderr; whether it exited 0, and its
/// `RESULT …` line.
async fn run_script(script: &str, args: &[&str], limit_s: u64) -> Result<(bool, String)> {
    let child = Command::new("node")
        .arg(browser_dir().join(script))
        .args(args)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning node")?;
    let out = tokio::time::timeout(Duration::from_secs(limit_s), child.wait_with_output())
        .await
        .with_context(|| format!("{script} did not finish in {limit_s} s"))?
        .with_context(|| format!("running {script}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "---- {script} stderr ----\n{}",
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("no RESULT line from {script}: {stdout}"))?;
    Ok((out.status.success(), result.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hls_js_plays_the_ll_hls_of_a_whip_stream_with_audio() -> Result<()> {
    init_logging();
    let missing = prerequisites_missing();
    if !missing.is_empty() {
        if in_ci() {
            bail!(
                "hls.js test prerequisites missing under CI: {}",
                missing.join(", ")
            );
        }
        eprintln!("\n************************************************************");
        eprintln!(
            "SKIPPED: hls.js LL-HLS test; missing {}",
            missing.join(", ")
        );
        eprintln!("************************************************************\n");
        return Ok(());
    }
    let _serial = serial().await;
    with_timeout(Duration::from_secs(150), async {
        let frames = test_pattern_320x240(120).await?;
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("hlsjs", false).await?;
        let live = LivePublisher::start(&base, "hlsjs", &key, frames).await?;

        // The LL-HLS player counts as a viewer (no WebRTC viewer exists here).
        let admin = server
            .server()
            .token_for("ops", None, "admin", Duration::from_secs(3600))?;
        let counted = tokio::spawn(hls_viewers_seen(base.clone(), admin.clone()));

        // 16 s of playing, of which the script requires half: hls.js at a
        // 1 s hold-back stalls at start in about one run in four here
        // (debug build, ladder encoding and Chromium on 2 cores; seen with
        // the previous build too) and within 8 s did not always recover.
        // Stalls are printed below with the other errors.
        let (ok, result) = run_script("hls_play.mjs", &[&base, "hlsjs", "16"], 90).await?;
        let result = result.as_str();
        let v: serde_json::Value = serde_json::from_str(result)?;
        eprintln!(
            "hls.js: advanced {:.2} s, startup {} ms, latency median {} s (target {}), audio tracks {}, buffers {}, errors {}",
            v["advanced"].as_f64().unwrap_or(0.0),
            v["startupMs"],
            v["latencyMedian"],
            v["targetLatency"],
            v["audioTracks"],
            v["buffers"],
            v["errors"],
        );
        ensure!(
            v["advanced"].as_f64().unwrap_or(0.0) > 4.0,
            "video time did not advance: {result}"
        );
        ensure!(v["audioTracks"].as_u64().unwrap_or(0) >= 1, "no audio track: {result}");
        ensure!(
            v["buffers"]
                .as_array()
                .is_some_and(|b| b.iter().any(|x| x.as_str().is_some_and(|s| s.starts_with("audio")))),
            "no audio buffer: {result}"
        );
        ensure!(ok, "hls_play.mjs failed: {result}");
        counted.abort();
        let peak = counted.await.unwrap_or(Ok(0)).unwrap_or(0);
        ensure!(
            peak >= 1,
            "the playing LL-HLS client was never counted as a viewer"
        );
        // Once it stopped reloading playlists, it is no longer counted.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while live_viewers(&base, &admin).await? > 0 {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the LL-HLS client stayed counted after it left"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        live.stop().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

/// Viewers `GET /api/streams/live` reports for the test stream.
async fn live_viewers(base: &str, token: &str) -> Result<u64> {
    let v: serde_json::Value = http_client()?
        .get(format!("{base}/api/streams/live"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(v["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == "hlsjs"))
        .and_then(|s| s["viewers"].as_u64())
        .unwrap_or(0))
}

/// Polls the live list until the stream has a viewer; the most seen.
async fn hls_viewers_seen(base: String, token: String) -> Result<u64> {
    let mut peak = 0;
    loop {
        peak = peak.max(live_viewers(&base, &token).await.unwrap_or(0));
        if peak >= 1 {
            return Ok(peak);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The web player on a paywalled (entitled) stream: with a play link it
/// plays over WebRTC and, forced to LL-HLS, through hls.js with every
/// media request carrying the media token (never the play token); without
/// one it says it is not allowed and never plays, on either path. The
/// browser side is `tests/browser/entitled_watch.mjs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_player_plays_a_paywalled_stream_only_with_a_play_link() -> Result<()> {
    init_logging();
    let missing = prerequisites_missing();
    if !missing.is_empty() {
        if in_ci() {
            bail!(
                "browser prerequisites missing under CI: {}",
                missing.join(", ")
            );
        }
        eprintln!(
            "SKIPPED: paywalled web player test; missing {}",
            missing.join(", ")
        );
        return Ok(());
    }
    let _serial = serial().await;
    with_timeout(Duration::from_secs(240), async {
        let frames = test_pattern_320x240(120).await?;
        // The source rendition only, to spare the CPU for Chromium.
        let server = TestServer::start_with(|c| c.hls.ladder = Vec::new()).await?;
        let base = server.base_url().to_owned();
        // `keys create NAME --private`: entitled.
        let key = server.create_stream("paywalled", true).await?;
        let play = server.token("paywalled", "play", Duration::from_secs(3600))?;
        let live = LivePublisher::start(&base, "paywalled", &key, frames).await?;
        let (ok, result) =
            run_script("entitled_watch.mjs", &[&base, "paywalled", &play], 200).await?;
        eprintln!("entitled_watch: {result}");
        ensure!(ok, "entitled_watch.mjs failed: {result}");
        live.stop().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}
