//! WHIP and WHEP with aiortc (Python) peers: an aiortc publisher watched by a webrtc-rs
//! viewer, and a webrtc-rs publisher watched by aiortc viewers, every one checked on decoded
//! pictures (size and the test pattern's bright and dark halves), not on connection state.
//!
//! aiortc keeps the ICE candidates of the *last* m-section that shares a bundled transport
//! (`docs/aiortc-bundle-candidates.md`): these tests fail if the answer lists its candidates
//! in the first m-section only.
//!
//! The peer is `tests/aiortc/whip_whep_peer.py`, run with `RELAYCAST_PYTHON` (default
//! `python3`), which needs aiortc 1.16 (`.ci/run` installs it). Without aiortc the tests skip
//! with a message, and fail when `CI=true`.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
/// Decoded frames an aiortc viewer must show.
const VIEWER_FRAMES: usize = 30;
/// Decoded 20 ms Opus frames an aiortc viewer must get, besides the pictures.
const VIEWER_AUDIO_FRAMES: u64 = 10;
/// A whole aiortc run (start-up, connection, media) may take this long.
const PEER_TIMEOUT: Duration = Duration::from_secs(45);

fn python() -> String {
    std::env::var("RELAYCAST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aiortc/whip_whep_peer.py")
}

/// Whether aiortc can be imported; `Err` under CI when it cannot.
async fn aiortc_available() -> Result<bool> {
    let probe = Command::new(python())
        .args(["-c", "import aiortc; print(aiortc.__version__)"])
        .output()
        .await;
    let found = match &probe {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            eprintln!("aiortc {version}");
            true
        }
        _ => false,
    };
    if !found {
        let why = "aiortc is not importable (pip install 'aiortc==1.16.*' 'aioice==0.13.*', \
                   or set RELAYCAST_PYTHON)";
        ensure!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipping: {why}");
    }
    Ok(found)
}

/// One running `whip_whep_peer.py`.
struct AiortcPeer {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl AiortcPeer {
    fn spawn(args: &[&str]) -> Result<Self> {
        let mut child = Command::new(python())
            .arg(peer_script())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the aiortc peer")?;
        let stdout = child.stdout.take().context("aiortc stdout")?;
        let mut stderr = child.stderr.take().context("aiortc stderr")?;
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
            stderr,
        })
    }

    /// The next JSON event the peer printed; an error with its stderr if it ended instead.
    async fn next_event(&mut self) -> Result<Value> {
        match self.lines.next_line().await.context("reading aiortc")? {
            Some(line) => serde_json::from_str(&line)
                .with_context(|| format!("aiortc printed something else than JSON: {line}")),
            None => {
                let status = self.child.wait().await.context("waiting for aiortc")?;
                let stderr = (&mut self.stderr).await.unwrap_or_default();
                bail!("aiortc peer ended ({status}): {}", stderr.trim())
            }
        }
    }

    /// Events until one of type `event` (returned).
    async fn wait_for(&mut self, event: &str) -> Result<Value> {
        loop {
            let next = self.next_event().await?;
            if next["event"] == event {
                return Ok(next);
            }
        }
    }

    /// Waits for the process to exit successfully.
    async fn finish(mut self) -> Result<()> {
        let status = self.child.wait().await.context("waiting for aiortc")?;
        let stderr = self.stderr.await.unwrap_or_default();
        ensure!(
            status.success(),
            "aiortc peer failed ({status}): {}",
            stderr.trim()
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aiortc_publisher_reaches_a_webrtc_rs_viewer_with_the_picture_intact() -> Result<()> {
    init_logging();
    if !aiortc_available().await? {
        return Ok(());
    }
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("py", false).await?;

        let url = format!("{base}/whip/py");
        let mut publisher = AiortcPeer::spawn(&[
            "publish",
            &url,
            "--token",
            &key,
            "--seconds",
            "20",
            "--pattern",
            "bright-top",
            // One transport from the start, as WHIP clients do: the case aiortc fails on
            // when the answer has its candidates in the first m-section only.
            "--bundle-policy",
            "max-bundle",
        ])?;
        let answered = tokio::time::timeout(PEER_TIMEOUT, publisher.wait_for("answered"))
            .await
            .context("aiortc publisher: no answer")??;
        tokio::time::timeout(CONNECT_TIMEOUT, publisher.wait_for("connected"))
            .await
            .with_context(|| format!("aiortc publisher did not connect ({answered})"))??;

        let viewer = whep_view(
            &base,
            "py",
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
        )
        .await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;
        viewer
            .media
            .wait_until(
                Duration::from_secs(15),
                "20 decoded frames and 20 Opus packets from aiortc",
                |s| s.decoded.len() >= 20 && s.audio_rtp.len() >= 20,
            )
            .await?;
        let stats = viewer.media.snapshot();
        support::assert_frames_show(
            &stats.decoded,
            TestPattern::BRIGHT_TOP,
            WIDTH,
            HEIGHT,
            "webrtc-rs viewer of aiortc",
        )?;
        viewer.close().await?;

        tokio::time::timeout(PEER_TIMEOUT, publisher.wait_for("done"))
            .await
            .context("aiortc publisher did not finish")??;
        publisher.finish().await?;
        wait_for_no_sessions(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

/// A webrtc-rs publisher (H.264 bright-bottom pattern and Opus) and one aiortc viewer per
/// bundle policy, each decoding [`VIEWER_FRAMES`] pictures and [`VIEWER_AUDIO_FRAMES`] of
/// audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aiortc_viewers_decode_a_webrtc_rs_publisher() -> Result<()> {
    init_logging();
    if !aiortc_available().await? {
        return Ok(());
    }
    let _serial = serial().await;
    with_timeout(Duration::from_secs(120), async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("rs", false).await?;
        let frames = encode_h264_pattern(TestPattern::BRIGHT_BOTTOM, WIDTH, HEIGHT, 2, 30).await?;
        let publisher = LivePublisher::start(&base, "rs", &key, frames.to_vec()).await?;

        let url = format!("{base}/whep/rs");
        // aiortc's default (balanced: one transport per kind until the answer bundles them)
        // and max-bundle (one transport from the start) take different paths through its
        // answer handling.
        for policy in ["balanced", "max-bundle"] {
            let count = VIEWER_FRAMES.to_string();
            let audio = VIEWER_AUDIO_FRAMES.to_string();
            let mut viewer = AiortcPeer::spawn(&[
                "view",
                &url,
                "--frames",
                &count,
                "--audio-frames",
                &audio,
                "--bundle-policy",
                policy,
            ])?;
            let label = format!("aiortc viewer ({policy})");
            let mut decoded = 0;
            let done = tokio::time::timeout(PEER_TIMEOUT, async {
                loop {
                    let event = viewer.next_event().await?;
                    match event["event"].as_str() {
                        Some("frame") => {
                            check_frame(&event, decoded, &label)?;
                            decoded += 1;
                        }
                        Some("done") => return Ok::<_, anyhow::Error>(event),
                        _ => {}
                    }
                }
            })
            .await
            .with_context(|| format!("{label}: did not finish"))??;
            ensure!(
                decoded == VIEWER_FRAMES,
                "{label}: {decoded} decoded frames"
            );
            ensure!(
                done["audio_frames"].as_u64().unwrap_or(0) >= VIEWER_AUDIO_FRAMES,
                "{label}: too little audio decoded: {done}"
            );
            viewer.finish().await?;
        }

        publisher.stop().await?;
        wait_for_no_sessions(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

/// A decoded frame from aiortc is 320x240 and shows the bright-bottom pattern.
fn check_frame(event: &Value, index: usize, label: &str) -> Result<()> {
    let width = event["width"].as_u64().unwrap_or(0) as usize;
    let height = event["height"].as_u64().unwrap_or(0) as usize;
    let top = event["top_luma"].as_f64().unwrap_or(f64::NAN);
    let bottom = event["bottom_luma"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        width == WIDTH && height == HEIGHT,
        "{label}: frame {index} is {width}x{height}"
    );
    // The thresholds of `TestPattern::matches`.
    ensure!(
        top < 90.0 && bottom > 150.0,
        "{label}: frame {index} has top luma {top:.1} / bottom luma {bottom:.1}, \
         expected dark top and bright bottom"
    );
    Ok(())
}
