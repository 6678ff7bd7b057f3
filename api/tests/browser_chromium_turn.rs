//! Real-browser TURN: headless Chromium publishes over WHIP, and a Chromium
//! viewer restricted to relay candidates (`iceTransportPolicy: "relay"`)
//! plays over WHEP through relaycast's own TURN server, with credentials
//! from `GET /api/ice-servers`. Uses `tests/browser/whip_whep.mjs` (its
//! `WHEP_ICE_SERVERS` / `WHEP_ICE_TRANSPORT_POLICY` options).
//!
//! Same prerequisites as `browser_chromium.rs` (Chromium, node, `npm ci` in
//! tests/browser): skipped without them, except under CI.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::Command;

const STREAM: &str = "browser-turn";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn prerequisites_present(browser_dir: &Path) -> bool {
    let ok = Path::new("/usr/bin/chromium").exists()
        && browser_dir
            .join("node_modules")
            .join("playwright-core")
            .is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        ok || !in_ci,
        "browser prerequisites missing under CI (chromium, node, npm ci in tests/browser)"
    );
    if !ok {
        eprintln!("SKIPPED: chromium, node or tests/browser/node_modules missing");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_viewer_forced_to_relay_plays_through_our_turn() -> anyhow::Result<()> {
    let root = workspace_root();
    let browser_dir = root.join("tests").join("browser");
    if !prerequisites_present(&browser_dir) {
        return Ok(());
    }
    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "browser-turn-{}-{}",
        std::process::id(),
        api::unix_now()
    ));
    std::fs::create_dir_all(&data_dir)?;
    let out_dir = root.join("target").join("browser-artifacts-turn");
    std::fs::create_dir_all(&out_dir)?;

    let mut config = api::Config::for_test(data_dir.clone());
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut turn = turn_server::TurnConfig::new("browser-turn-secret");
    turn.udp = Some(lo);
    turn.allow_loopback_peers = true;
    config.turn = Some(turn);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = api::start(config, listener).await?;
    let result = run(&server, &root, &browser_dir, &out_dir).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn run(
    server: &api::Server,
    root: &Path,
    browser_dir: &Path,
    out_dir: &Path,
) -> anyhow::Result<()> {
    let key = server.create_stream(STREAM, false).await?;
    let base_url = format!("http://{}", server.http_addr());
    let token = server.token(STREAM, "play", Duration::from_secs(300))?;
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{base_url}/api/ice-servers"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let turn: Vec<serde_json::Value> = body["iceServers"]
        .as_array()
        .context("iceServers")?
        .iter()
        .filter(|s| s["username"].is_string())
        .cloned()
        .collect();
    ensure!(!turn.is_empty(), "no TURN entry in {body}");

    let mut child = Command::new("node")
        .arg(browser_dir.join("whip_whep.mjs"))
        .arg(&base_url)
        .arg(STREAM)
        .arg(&key)
        .arg(out_dir)
        .env("WHEP_ICE_SERVERS", serde_json::to_string(&turn)?)
        .env("WHEP_ICE_TRANSPORT_POLICY", "relay")
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning node")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out_task = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b).await;
        b
    });
    let err_task = tokio::spawn(async move {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b).await;
        b
    });
    let status = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let out = String::from_utf8_lossy(&out_task.await.unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err_task.await.unwrap_or_default()).into_owned();
    eprintln!("---- whip_whep.mjs stderr ----\n{err}\n---- stdout ----\n{out}");
    match status {
        Err(_) => bail!("whip_whep.mjs did not finish in {SCRIPT_TIMEOUT:?}"),
        Ok(s) => ensure!(s?.success(), "whip_whep.mjs failed (see stderr above)"),
    }
    ensure!(
        out.contains(r#""local_candidate_type":"relay""#),
        "the viewer did not play over a relay candidate: {out}"
    );
    let allocations = server.turn().context("TURN runs")?.allocation_count();
    ensure!(allocations >= 1, "no TURN allocation held during playback");
    Ok(())
}
