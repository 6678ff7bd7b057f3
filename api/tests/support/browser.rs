//! What the headless-Chromium tests share: where the workspace is, whether this is a CI run, and
//! whether Chromium, Node.js and the browser scripts' npm packages are here. Outside CI a test
//! without them is skipped with a loud line; under CI (env `CI` set) it fails.
//!
//! Included by path (`#[path = "support/browser.rs"] mod browser;`) by tests that need only this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !v.is_empty() && v != "0" && v != "false"
    })
}

/// True when Chromium, `node` and `browser_dir`'s playwright-core are here; false (the test
/// is skipped, saying what `what` lacks) outside CI; an error under CI.
pub async fn ready_to_run(browser_dir: &Path, what: &str) -> anyhow::Result<bool> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !node {
        missing.push("node (Node.js >= 20)".into());
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        missing.push(format!("npm ci in {}", browser_dir.display()));
    }
    if missing.is_empty() {
        return Ok(true);
    }
    anyhow::ensure!(
        !in_ci(),
        "browser test prerequisites missing under CI: {missing:?}"
    );
    eprintln!("SKIPPED: {what}: missing {missing:?}");
    Ok(false)
}

/// What a browser script run under `tokio::time::timeout` came to: its stderr and stdout
/// printed, and an error unless it ran in time and exited 0.
pub fn script_result(
    script: &str,
    output: Result<std::io::Result<std::process::Output>, tokio::time::error::Elapsed>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let output = output
        .with_context(|| format!("{script} timed out"))?
        .context("running node")?;
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    anyhow::ensure!(
        output.status.success(),
        "{script} failed ({}): {stdout}",
        output.status
    );
    Ok(())
}
