//! End-to-end test with real browsers: headless Chromium publishes its fake
//! camera and microphone over WHIP, a second Chromium page plays the stream
//! over WHEP. The browser side lives in `tests/browser/whip_whep.mjs`
//! (playwright-core driving Debian's `/usr/bin/chromium`).
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules`
//! (`cd tests/browser && npm ci`). Without them the test is skipped with a
//! loud message, except under CI (env `CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
const STREAM: &str = "browser";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| {
            let v = v.trim().to_ascii_lowercase();
            !v.is_empty() && v != "0" && v != "false"
        })
        .unwrap_or(false)
}

/// Lists what is missing to run the browser test; empty when all is there.
async fn missing_prerequisites(browser_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    let node_ok = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !node_ok {
        missing.push("node (Node.js >= 20 on PATH)".to_string());
    }
    if !browser_dir
        .join("node_modules")
        .join("playwright-core")
        .is_dir()
    {
        missing.push(format!(
            "{} (run `npm ci` in {})",
            browser_dir.join("node_modules").display(),
            browser_dir.display()
        ));
    }
    missing
}

fn echo(label: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        eprintln!("---- whip_whep.mjs {label}: (empty)");
    } else {
        eprintln!("---- whip_whep.mjs {label} ----\n{}", text.trim_end());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_over_whip_and_another_chromium_plays_over_whep() -> anyhow::Result<()> {
    let root = workspace_root();
    let browser_dir = root.join("tests").join("browser");
    let script = browser_dir.join("whip_whep.mjs");

    let missing = missing_prerequisites(&browser_dir).await;
    if !missing.is_empty() {
        let list = missing.join(", ");
        if in_ci() {
            bail!(
                "browser test prerequisites missing under CI: {list}. \
                 .ci/run must install chromium and run `npm ci` in tests/browser."
            );
        }
        eprintln!();
        eprintln!("************************************************************************");
        eprintln!("SKIPPED: chromium_publishes_over_whip_and_another_chromium_plays_over_whep");
        eprintln!("SKIPPED: missing {list}");
        eprintln!("SKIPPED: install them to run the browser end-to-end test (CI requires it)");
        eprintln!("************************************************************************");
        eprintln!();
        return Ok(());
    }

    let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "browser-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let out_dir = root.join("target").join("browser-artifacts");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("creating artifacts dir {}", out_dir.display()))?;

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    let server = api::start(api::Config::for_test(data_dir.clone()), listener)
        .await
        .context("starting relaycast")?;
    let addr = server.http_addr();

    let result = run_browsers(&server, &root, &script, &out_dir, addr).await;

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn run_browsers(
    server: &api::Server,
    root: &Path,
    script: &Path,
    out_dir: &Path,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let key = server
        .create_stream(STREAM, false)
        .await
        .context("creating stream `browser`")?;

    let base_url = format!("http://{addr}");
    eprintln!(
        "running: node {} {base_url} {STREAM} <key> {}",
        script.display(),
        out_dir.display()
    );
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(script)
        .arg(&base_url)
        .arg(STREAM)
        .arg(&key)
        .arg(out_dir)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning node")?;

    // Read both pipes concurrently so nothing blocks and partial output
    // survives a timeout.
    let mut stdout = child.stdout.take().context("node stdout")?;
    let mut stderr = child.stderr.take().context("node stderr")?;
    let out_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });

    let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.context("waiting for node")?),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let elapsed = started.elapsed();
    let grace = Duration::from_secs(5);
    let out = tokio::time::timeout(grace, out_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let err = tokio::time::timeout(grace, err_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    echo("stdout", &out);
    echo("stderr", &err);
    eprintln!(
        "screenshots: {} and {}",
        out_dir.join("publisher.png").display(),
        out_dir.join("viewer.png").display()
    );

    match status {
        None => bail!(
            "whip_whep.mjs did not finish within {}s (killed)",
            SCRIPT_TIMEOUT.as_secs()
        ),
        Some(status) if !status.success() => bail!(
            "whip_whep.mjs failed with {status} after {:.1}s (see its stderr above)",
            elapsed.as_secs_f64()
        ),
        Some(_) => {
            println!("{}", String::from_utf8_lossy(&out).trim_end());
            Ok(())
        }
    }
}
