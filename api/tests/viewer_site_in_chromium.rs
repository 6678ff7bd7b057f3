//! The viewer site end to end in headless Chromium
//! (`tests/browser/viewer_site.mjs`, playwright-core driving Debian's
//! `/usr/bin/chromium`): the home page lists a live stream with its viewer
//! count and thumbnail, and clicking it plays; a stream scheduled in the
//! studio is listed as upcoming; a paywalled stream shows a
//! signed-in viewer the buy button, the checkout hand-off opens the
//! configured checkout URL, the signed payment webhook grants the ticket
//! and the same page then plays; after the stream ends its recording
//! appears on the stream page and the home page and plays; the account
//! page lists the purchase; a missing page is the HTML 404. No page may
//! log a console error or see a failed request. Screenshots (desktop and
//! 390 px phone) land in `target/web-artifacts/site-*.png`.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`cd tests/browser && npm ci`); without them the test is skipped with a
//! loud message, except under CI (env `CI` set), where it fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::process::Command;

#[path = "support/browser.rs"]
mod browser;
use browser::{ready_to_run, workspace_root};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
const WEBHOOK_SECRET: &str = "whsec_viewer_site";

/// POSTs JSON with an optional bearer; the answer's JSON, which must have
/// status `want`.
async fn call(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Value,
    want: u16,
) -> anyhow::Result<Value> {
    let mut req = http.post(url).json(&body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    ensure!(status == want, "POST {url}: {status} {body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_finds_the_live_stream_buys_a_ticket_and_comes_back_for_the_recording(
) -> anyhow::Result<()> {
    let root = workspace_root();
    let browser_dir = root.join("tests").join("browser");
    if !ready_to_run(&browser_dir, "viewer site browser test").await? {
        return Ok(());
    }
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("viewer-site-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut config = api::Config::for_test(data_dir.clone());
    // Source rendition only, to spare the CPU of a 2-core machine.
    config.hls.ladder = Vec::new();
    config.rest.payment_webhook_secret = Some(WEBHOOK_SECRET.into());
    // The payment provider's checkout page; any page of ours stands in.
    config.rest.checkout_url = Some(format!("{base}/healthz").parse()?);
    let server = api::start(config, listener)
        .await
        .context("starting relaycast")?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let anna = call(
        &http,
        &format!("{base}/api/auth/register"),
        None,
        json!({ "username": "anna", "password": "a good password", "role": "broadcaster" }),
        201,
    )
    .await?;
    let anna_session = anna.to_string();
    let anna = anna["token"].as_str().context("token")?.to_string();
    let mut keys = Vec::new();
    for (name, title, visibility) in [
        ("cupfinal", "Cup final", "public"),
        ("ringside", "Ringside: title fight", "entitled"),
    ] {
        call(
            &http,
            &format!("{base}/api/streams"),
            Some(&anna),
            json!({ "name": name, "title": title, "visibility": visibility }),
            201,
        )
        .await?;
        let key = call(
            &http,
            &format!("{base}/api/streams/{name}/keys"),
            Some(&anna),
            json!({}),
            201,
        )
        .await?;
        keys.push(key["secret"].as_str().context("secret")?.to_string());
    }
    // The studio schedules it: upcoming on the home page.
    call(
        &http,
        &format!("{base}/api/streams"),
        Some(&anna),
        json!({ "name": "nextweek" }),
        201,
    )
    .await?;
    let viewer = call(
        &http,
        &format!("{base}/api/auth/register"),
        None,
        json!({ "username": "vera", "password": "a good password" }),
        201,
    )
    .await?;

    let out_dir = root.join("target").join("web-artifacts");
    std::fs::create_dir_all(&out_dir)?;
    let run = Command::new("node")
        .arg(browser_dir.join("viewer_site.mjs"))
        .arg(&base)
        .arg(&out_dir)
        .env("SITE_OPEN", "cupfinal")
        .env("SITE_OPEN_KEY", &keys[0])
        .env("SITE_PAID", "ringside")
        .env("SITE_PAID_KEY", &keys[1])
        .env("SITE_SESSION", viewer.to_string())
        .env("SITE_BROADCASTER_SESSION", &anna_session)
        .env("SITE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .current_dir(&root)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let result = browser::script_result("viewer_site.mjs", output);
    eprintln!("screenshots in {}", out_dir.display());
    result
}
