//! Webhooks end to end: a real WHIP publisher (webrtc-rs) drives
//! stream.started / stream.stalled / stream.ended; a real HTTP receiver
//! (axum on port 0) checks every signature and fails the first two
//! requests, so the retry with backoff and the delivery log are exercised.
//! A WHEP viewer crosses a registered viewer threshold. The stream's
//! WebSocket shows the same status changes, and integrator
//! events posted while live carry the stream's media time. When the
//! publisher has left and its recording is complete, `recording.ready`
//! names the VOD, which is served (`EXT-X-ENDLIST`).

mod realtime_client;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use realtime_client::{Auth, WsClient};
use serde_json::{json, Value};
use sha2::Sha256;
use support::*;
use tokio::sync::mpsc;

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Clone)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    fail_first: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    bad_signatures: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<(Instant, Value)>,
}

fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(ts) = t.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now.abs_diff(ts) > 300 {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    r.requests.fetch_add(1, Ordering::SeqCst);
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let sig = headers
        .get("relaycast-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let secret = support::lock(&r.secret).clone();
    if !verify(&secret, sig, &body) {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::BAD_REQUEST;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => {
            let _ = r.tx.send((at, v));
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn next_hook(rx: &mut mpsc::UnboundedReceiver<(Instant, Value)>) -> Result<(Instant, Value)> {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .context("no webhook arrived")?
        .context("receiver gone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_lifecycle_webhooks_are_signed_retried_and_logged() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT * 2, async {
        let frames = test_pattern_320x240(60).await?;

        // The receiver.
        let (tx, mut hooks) = mpsc::unbounded_channel();
        let receiver = Receiver {
            secret: Arc::default(),
            fail_first: Arc::new(AtomicUsize::new(2)),
            requests: Arc::default(),
            bad_signatures: Arc::default(),
            tx,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hook_url = format!("http://{}/hooks", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(receiver.clone());
        let receiver_task = tokio::spawn(async move { axum::serve(listener, app).await });

        // The receiver is on 127.0.0.1: an on-premises setup.
        let server = TestServer::start_with(|c| c.webhooks.allow_private = true).await?;
        let base = server.base_url().to_owned();
        let s = server.server();
        let http = http_client()?;
        // The stream belongs to a broadcaster account, which registers the
        // webhook; another broadcaster and a play token of the stream may not.
        let account = |name: &'static str| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let v: Value = http
                    .post(format!("{base}/api/auth/register"))
                    .json(&json!({"username": name, "password": "a good password",
                        "role": "broadcaster"}))
                    .send()
                    .await?
                    .json()
                    .await?;
                v["token"]
                    .as_str()
                    .map(str::to_owned)
                    .context("session token")
            }
        };
        let owner = account("owner").await?;
        let stranger = account("stranger").await?;
        let r = http
            .post(format!("{base}/api/streams"))
            .bearer_auth(&owner)
            .json(&json!({"name": "hooked"}))
            .send()
            .await?;
        ensure!(r.status() == 201, "{}", r.status());
        let made: Value = http
            .post(format!("{base}/api/streams/hooked/keys"))
            .bearer_auth(&owner)
            .send()
            .await?
            .json()
            .await?;
        let key = made["secret"].as_str().context("stream key")?.to_owned();
        let play = s.token_for("fan", Some("hooked"), "play", HOUR)?;

        // Registration and its validation.
        let new_hook = json!({"url": hook_url, "stream": "hooked",
            "events": ["stream.started", "stream.stalled", "stream.ended", "viewers.threshold",
                "recording.ready"],
            "viewer_thresholds": [1, 50]});
        let post = |token: Option<String>, body: Value| {
            let mut req = http.post(format!("{base}/api/webhooks")).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        let r = post(None, new_hook.clone()).await?;
        ensure!(r.status() == 401, "{}", r.status());
        let r = post(Some(play.clone()), new_hook.clone()).await?;
        ensure!(r.status() == 403, "{}", r.status());
        let r = post(Some(stranger.clone()), new_hook.clone()).await?;
        ensure!(r.status() == 403, "{}", r.status());
        for bad in [
            json!({"url": "ftp://x/", "stream": "hooked", "events": ["stream.started"]}),
            json!({"url": hook_url, "stream": "hooked", "events": ["stream.exploded"]}),
            json!({"url": hook_url, "stream": "hooked", "events": []}),
            json!({"url": hook_url, "stream": "bad name", "events": ["stream.started"]}),
            json!({"url": hook_url}),
        ] {
            let r = post(Some(owner.clone()), bad.clone()).await?;
            let st = r.status();
            let v: Value = r.json().await?;
            ensure!(st == 400 && v["error"].is_string(), "{bad}: {st} {v}");
        }
        let r = post(Some(owner.clone()), new_hook).await?;
        ensure!(r.status() == 201, "{}", r.status());
        let created: Value = r.json().await?;
        let hook_id = created["id"].as_str().context("id")?.to_owned();
        let secret = created["secret"].as_str().context("secret")?.to_owned();
        *support::lock(&receiver.secret) = secret;

        let mut ws = WsClient::connect(&base, "hooked", Auth::None).await?;

        // Live: stream.started arrives after two refused attempts.
        let publisher =
            whip_publish(&base, "hooked", &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::new(frames),
            FRAME_DURATION_30FPS,
            true,
        );
        let (_, started) = next_hook(&mut hooks).await?;
        ensure!(
            started["type"] == "stream.started" && started["stream"] == "hooked",
            "{started}"
        );
        ensure!(
            receiver.requests.load(Ordering::SeqCst) >= 3,
            "two failures, then success"
        );
        ws.wait_for("status live", |v| {
            v["type"] == "status" && v["status"] == "live"
        })
        .await?;

        // A first viewer crosses the threshold of 1 (not 50).
        let viewer = whep_view(
            &base,
            "hooked",
            None,
            &ViewOptions::browser_like(VideoSink::None),
        )
        .await?;
        let (_, crossed) = next_hook(&mut hooks).await?;
        ensure!(
            crossed["type"] == "viewers.threshold" && crossed["data"]["threshold"] == 1,
            "{crossed}"
        );
        ensure!(crossed["data"]["viewers"].as_u64() >= Some(1), "{crossed}");
        viewer.close().await?;

        // An integrator event while live carries the media time.
        let integrator = s.token_for("bookmaker", Some("hooked"), "integrator", HOUR)?;
        let mut media = Value::Null;
        for _ in 0..50 {
            let ev: Value = http
                .post(format!("{base}/api/streams/hooked/events"))
                .bearer_auth(&integrator)
                .json(&json!({"bet": "open"}))
                .send()
                .await?
                .json()
                .await?;
            if !ev["media"].is_null() {
                media = ev["media"].clone();
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(
            media["clock_rate"] == 90000 && media["rtp_time"].as_u64().is_some(),
            "media {media}"
        );

        // Media stops: stream.stalled within a few seconds of the last frame.
        video.stop().await?;
        let stopped = Instant::now();
        let (at, stalled) = next_hook(&mut hooks).await?;
        ensure!(stalled["type"] == "stream.stalled", "{stalled}");
        let delay = at.saturating_duration_since(stopped);
        eprintln!(
            "stream.stalled webhook {} ms after the last frame",
            delay.as_millis()
        );
        ensure!(
            delay < Duration::from_secs(5),
            "stalled webhook took {delay:?}"
        );
        ws.wait_for("status stalled", |v| {
            v["type"] == "status" && v["status"] == "stalled"
        })
        .await?;

        publisher.close().await?;
        // stream.ended, and recording.ready once the VOD is on disk (their
        // deliveries may cross).
        let (mut ended, mut ready) = (None, None);
        while ended.is_none() || ready.is_none() {
            let (_, hook) = next_hook(&mut hooks).await?;
            match hook["type"].as_str() {
                Some("stream.ended") => ended = Some(hook),
                Some("recording.ready") => ready = Some(hook),
                _ => bail!("unexpected webhook after the publisher left: {hook}"),
            }
        }
        let ready = ready.context("recording.ready")?;
        ensure!(ready["stream"] == "hooked", "{ready}");
        let run = ready["data"]["run"].as_str().context("run")?;
        let url = ready["data"]["url"].as_str().context("url")?;
        ensure!(url == format!("/vod/hooked/{run}/index.m3u8"), "{ready}");
        let segments = ready["data"]["segments"].as_u64().context("segments")?;
        let duration = ready["data"]["duration_s"].as_f64().context("duration_s")?;
        ensure!(segments >= 1 && duration > 0.5, "{ready}");
        // The URL serves the recording: its video playlist is a finished VOD.
        let mv = http.get(format!("{base}{url}")).send().await?;
        ensure!(mv.status() == 200, "{url}: {}", mv.status());
        let mv = mv.text().await?;
        ensure!(
            mv.lines().any(|l| l == "video/index.m3u8"),
            "multivariant:\n{mv}"
        );
        let vod = http
            .get(format!("{base}/vod/hooked/{run}/video/index.m3u8"))
            .send()
            .await?;
        ensure!(vod.status() == 200, "VOD playlist: {}", vod.status());
        let vod = vod.text().await?;
        ensure!(
            vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && vod.ends_with("#EXT-X-ENDLIST\n"),
            "{vod}"
        );
        ensure!(
            vod.matches("#EXTINF:").count() as u64 == segments,
            "{segments} segments announced:\n{vod}"
        );
        // The integrator event posted while live is in it as a date range.
        ensure!(
            vod.lines().any(|l| l.starts_with("#EXT-X-DATERANGE:")
                && l.contains("CLASS=\"com.relaycast.event\"")),
            "no date range in the VOD:\n{vod}"
        );
        ws.wait_for("status ended", |v| {
            v["type"] == "status" && v["status"] == "ended"
        })
        .await?;
        ensure!(receiver.bad_signatures.load(Ordering::SeqCst) == 0);

        // The delivery log, for the owner only.
        let log: Value = http
            .get(format!("{base}/api/webhooks/{hook_id}/deliveries"))
            .bearer_auth(&owner)
            .send()
            .await?
            .json()
            .await?;
        let log = log["deliveries"].as_array().context("deliveries")?.clone();
        let started_attempts: Vec<(i64, Option<i64>, &str)> = log
            .iter()
            .filter(|d| d["event_type"] == "stream.started")
            .map(|d| {
                (
                    d["attempt"].as_i64().unwrap_or(0),
                    d["status_code"].as_i64(),
                    d["outcome"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        ensure!(
            started_attempts
                == [
                    (3, Some(204), "delivered"),
                    (2, Some(503), "failed"),
                    (1, Some(503), "failed")
                ],
            "started attempts {started_attempts:?}"
        );
        ensure!(
            log.iter()
                .all(|d| d.get("duration_ms").is_none() && d["error"].is_null()),
            "answered attempts carry their status only: {log:?}"
        );
        for kind in ["stream.stalled", "stream.ended", "recording.ready"] {
            ensure!(
                log.iter()
                    .any(|d| d["event_type"] == kind && d["status_code"] == 204),
                "{kind} delivered: {log:?}"
            );
        }
        let r = http
            .get(format!("{base}/api/webhooks/{hook_id}/deliveries"))
            .bearer_auth(&stranger)
            .send()
            .await?;
        ensure!(r.status() == 404, "{}", r.status());
        let mine: Value = http
            .get(format!("{base}/api/webhooks"))
            .bearer_auth(&owner)
            .send()
            .await?
            .json()
            .await?;
        let mine = mine["webhooks"].as_array().context("webhooks")?.clone();
        ensure!(
            mine.len() == 1 && mine[0]["id"] == hook_id.as_str() && mine[0].get("secret").is_none(),
            "{mine:?}"
        );
        let r = http
            .delete(format!("{base}/api/webhooks/{hook_id}"))
            .bearer_auth(&stranger)
            .send()
            .await?;
        ensure!(r.status() == 404, "{}", r.status());
        let r = http
            .delete(format!("{base}/api/webhooks/{hook_id}"))
            .bearer_auth(&owner)
            .send()
            .await?;
        ensure!(r.status() == 204, "{}", r.status());
        let r = http
            .get(format!("{base}/api/webhooks/{hook_id}"))
            .bearer_auth(&owner)
            .send()
            .await?;
        ensure!(r.status() == 404, "{}", r.status());

        server.shutdown().await;
        receiver_task.abort();
        Ok(())
    })
    .await
}
