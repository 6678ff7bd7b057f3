//! `--spawn-server`: runs `relaycast serve` on a fresh data directory with
//! OS-chosen ports on loopback, creates the stream key first, and knows the
//! server's PID. Used by CI's smoke test and for quick local runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct SpawnedServer {
    child: Child,
    dir: PathBuf,
    pub base_url: String,
    pub key: String,
    pub pid: u32,
}

impl SpawnedServer {
    pub fn start(binary: &Path, stream: &str) -> Result<SpawnedServer> {
        let dir = std::env::temp_dir().join(format!(
            "relaycast-load-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let out = Command::new(binary)
            .args(["keys", "create", stream, "--data-dir"])
            .arg(&data)
            .output()
            .with_context(|| format!("running {} keys create", binary.display()))?;
        if !out.status.success() {
            bail!(
                "{} keys create failed: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if key.is_empty() {
            bail!("keys create printed no key");
        }
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).context("creating the server log")?;
        let child = Command::new(binary)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--media-port",
                "0",
                "--public-ip",
                "127.0.0.1",
                "--bind-ip",
                "127.0.0.1",
                "--data-dir",
            ])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        let pid = child.id();
        let mut server = SpawnedServer {
            child,
            dir,
            base_url: String::new(),
            key,
            pid,
        };
        server.base_url = server.wait_for_address(&log_path)?;
        Ok(server)
    }

    /// The server prints `relaycast listening on http://ADDR` once it serves.
    fn wait_for_address(&mut self, log_path: &Path) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            if let Some(url) = log.lines().find_map(|l| {
                l.split_once("relaycast listening on ")
                    .map(|(_, u)| u.trim().to_string())
            }) {
                return Ok(url);
            }
            if let Some(status) = self.child.try_wait().context("checking the server")? {
                bail!(
                    "relaycast exited ({status}) before listening:\n{}",
                    tail(&log)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "relaycast did not report its address in 20 s:\n{}",
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Last lines of the server's log, for error reports.
    pub fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default())
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("RELAYCAST_LOAD_KEEP").is_some() {
            eprintln!("server files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
