//! The web front end end to end in headless Chromium
//! (`tests/browser/web_ui.mjs`, playwright-core driving Debian's
//! `/usr/bin/chromium`): the studio registers a broadcaster, creates a
//! stream and goes live from the fake camera (H.264 simulcast); an
//! anonymous player and a chatter play over WHEP and the viewer count
//! pushed over the WebSocket reaches 2; a player forced to LL-HLS plays
//! through hls.js; a player whose WHEP answer's candidates are unreachable
//! falls back to LL-HLS and plays; chat, slow mode and its refusal, and an
//! integrator event (held on LL-HLS until its media time plays) reach the
//! pages; a QoE beacon is counted; on a second server started with one
//! session (`max_sessions`, the CLI's `--max-sessions`), a watcher's WHEP
//! POST gets 503 and the player plays LL-HLS. Screenshots land in
//! `target/web-artifacts/`.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`cd tests/browser && npm ci`); without them the test is skipped with a
//! loud message, except under CI (env `CI` set), where it fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context};
use tokio::net::TcpListener;
use tokio::process::Command;

#[path = "support/browser.rs"]
mod browser;
use browser::{ready_to_run, workspace_root};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_goes_live_and_players_play_over_whep_and_every_ll_hls_fallback(
) -> anyhow::Result<()> {
    let root = workspace_root();
    let browser_dir = root.join("tests").join("browser");
    if !ready_to_run(&browser_dir, "web front end browser test").await? {
        return Ok(());
    }
    let data_dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("web-ui-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = api::start(api::Config::for_test(data_dir.clone()), listener)
        .await
        .context("starting relaycast")?;
    let base = format!("http://{}", server.http_addr());
    const STREAM: &str = "webui";
    let hour = Duration::from_secs(3600);
    let integrator = server.token_for("oddsfeed", Some(STREAM), "integrator", hour)?;
    let chatter = server.token_for("chatter", Some(STREAM), "play", hour)?;

    // A second server with room for one session (the publisher): watchers
    // get 503 from WHEP. Source rendition only, to spare the CPU.
    let full_dir = data_dir.join("full");
    std::fs::create_dir_all(&full_dir)?;
    let mut full_config = api::Config::for_test(full_dir);
    full_config.max_sessions = 1;
    full_config.hls.ladder = Vec::new();
    let full_listener = TcpListener::bind("127.0.0.1:0").await?;
    let full = api::start(full_config, full_listener)
        .await
        .context("starting the full relaycast")?;
    let full_key = full.create_stream("full-house", false).await?;
    let full_base = format!("http://{}", full.http_addr());

    // The pages and their assets are served from the binary.
    let client = reqwest::Client::new();
    for path in [
        "/watch/x",
        "/embed/x",
        "/studio",
        "/dashboard",
        "/web/player.js",
        "/web/vendor/hls.min.js",
    ] {
        let res = client.get(format!("{base}{path}")).send().await?;
        ensure!(res.status() == 200, "GET {path}: {}", res.status());
    }

    let out_dir = root.join("target").join("web-artifacts");
    std::fs::create_dir_all(&out_dir)?;
    let run = Command::new("node")
        .arg(browser_dir.join("web_ui.mjs"))
        .arg(&base)
        .arg(STREAM)
        .arg(&out_dir)
        .env("WEBUI_INTEGRATOR_TOKEN", &integrator)
        .env("WEBUI_CHAT_TOKEN", &chatter)
        .env("WEBUI_FULL_BASE", &full_base)
        .env("WEBUI_FULL_STREAM", "full-house")
        .env("WEBUI_FULL_KEY", &full_key)
        .current_dir(&root)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run).await;
    server.shutdown().await;
    full.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let result = browser::script_result("web_ui.mjs", output);
    eprintln!("screenshots in {}", out_dir.display());
    result
}
