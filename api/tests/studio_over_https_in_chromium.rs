//! The studio over HTTPS in headless Chromium (`tests/browser/studio_https.mjs`):
//! relaycast serves HTTPS with a certificate made here for
//! `studio.relaycast.test`, Chromium maps that name to 127.0.0.1
//! (`--host-resolver-rules`), so the page's origin is not localhost and
//! the camera is only granted because the page is a secure context. The
//! page loads over HTTP/2, and the studio registers, creates a stream and
//! goes live from the fake camera with WHIP over the same HTTPS; the
//! stream's WebSocket opens over `wss://` (an HTTP/1.1 connection beside
//! the HTTP/2 one: WebSockets over HTTP/2 are not offered).
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`cd tests/browser && npm ci`); without them the test is skipped with a
//! loud message, except under CI (env `CI` set), where it fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::process::Command;

#[path = "support/browser.rs"]
mod browser;
use browser::{ready_to_run, workspace_root};

const HOST: &str = "studio.relaycast.test";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_goes_live_from_the_camera_over_https_on_a_named_origin() -> anyhow::Result<()> {
    let root = workspace_root();
    let browser_dir = root.join("tests").join("browser");
    if !ready_to_run(&browser_dir, "studio over HTTPS browser test").await? {
        return Ok(());
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "studio-https-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)?;
    let made = rcgen::generate_simple_self_signed(vec![HOST.to_string()])?;
    let files = turn_server::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, made.cert.pem())?;
    std::fs::write(&files.key, made.key_pair.serialize_pem())?;
    let mut config = api::Config::for_test(dir.join("data"));
    config.https = Some(api::HttpsConfig {
        files,
        watch_interval: None,
    });
    // Source rendition only, to spare the CPU for the browser.
    config.hls.ladder = Vec::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = api::start(config, listener)
        .await
        .context("starting relaycast")?;
    let base = format!("https://{HOST}:{}", server.http_addr().port());

    let run = Command::new("node")
        .arg(browser_dir.join("studio_https.mjs"))
        .arg(&base)
        .arg("127.0.0.1")
        .arg("secure-show")
        .current_dir(&root)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    browser::script_result("studio_https.mjs", output)
}
