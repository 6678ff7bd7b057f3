//! With a real WHIP publisher and real WHEP viewers: the live list shows
//! the stream with its viewer count, and the recorder writes a
//! `stream_sessions` row with start, peak viewers and end — on SQLite and
//! on PostgreSQL.

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use sfu::StreamEventKind;
use signaling::testing::TestDb;
use support::*;

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<sfu::StreamEvent>,
    stream: &str,
) -> Result<StreamEventKind> {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .context("no stream event")??;
        if ev.stream == stream {
            return Ok(ev.kind);
        }
    }
}

async fn get_json(url: &str, bearer: &str) -> Result<Value> {
    let r = http_client()?.get(url).bearer_auth(bearer).send().await?;
    ensure!(r.status() == 200, "{url}: {}", r.status());
    Ok(r.json().await?)
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn body(db_url: String) -> Result<()> {
    let frames = test_pattern_320x240(60).await?;
    let server = TestServer::start_with(|c| c.database_url = Some(db_url)).await?;
    let base = server.base_url().to_owned();
    let key = server.create_stream("recorded", false).await?;
    let admin = server.server().tokens().issue(
        "ops",
        None,
        signaling::Role::Admin,
        api::unix_now(),
        600,
    )?;
    let sfu = server.server().sfu().clone();
    let mut events = sfu.events();

    let publisher = whip_publish(&base, "recorded", &key, &PublishOptions::h264_and_opus()).await?;
    publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
    let video = spawn_sample_sender(
        publisher.media.video_track()?,
        Arc::new(frames),
        FRAME_DURATION_30FPS,
        true,
    );
    ensure!(next_event(&mut events, "recorded").await? == StreamEventKind::Live);

    let mut viewers = Vec::new();
    for _ in 0..2 {
        let v = whep_view(
            &base,
            "recorded",
            None,
            &ViewOptions::browser_like(VideoSink::None),
        )
        .await?;
        v.peer.wait_connected(CONNECT_TIMEOUT).await?;
        viewers.push(v);
    }

    let live_url = format!("{base}/api/streams/live");
    eventually(
        Duration::from_secs(30),
        "2 viewers in the live list",
        || async {
            let live = get_json(&live_url, &admin).await?;
            Ok(live["streams"][0]["name"] == "recorded" && live["streams"][0]["viewers"] == 2)
        },
    )
    .await?;

    let store = server.server().store().clone();
    eventually(Duration::from_secs(30), "peak of 2 recorded", || async {
        let s = store.stream_sessions("recorded", 1).await?;
        Ok(s.first().is_some_and(|s| s.peak_viewers == 2))
    })
    .await?;

    for v in viewers {
        v.close().await?;
    }
    video.stop().await?;
    publisher.close().await?;
    loop {
        if next_event(&mut events, "recorded").await? == StreamEventKind::Ended {
            break;
        }
    }
    eventually(Duration::from_secs(30), "the end recorded", || async {
        let s = store.stream_sessions("recorded", 1).await?;
        Ok(s.first().is_some_and(|s| s.ended_at_ms.is_some()))
    })
    .await?;

    let sessions = get_json(&format!("{base}/api/streams/recorded/sessions"), &admin).await?;
    let list = sessions["sessions"].as_array().context("sessions")?;
    ensure!(list.len() == 1, "{sessions}");
    let s = &list[0];
    ensure!(s["peak_viewers"] == 2, "{s}");
    let (start, end) = (
        s["started_at_ms"].as_i64().context("start")?,
        s["ended_at_ms"].as_i64().context("end")?,
    );
    ensure!(start > 1_600_000_000_000 && end >= start, "{s}");
    let live = get_json(&live_url, &admin).await?;
    ensure!(live["streams"] == serde_json::json!([]), "{live}");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_recorded_on_sqlite() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    let db = TestDb::sqlite();
    let url = db.url().to_string();
    with_timeout(Duration::from_secs(120), body(url)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_are_recorded_on_postgres() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    let Some(db) = TestDb::postgres().await else {
        return Ok(());
    };
    let url = db.url().to_string();
    let r = with_timeout(Duration::from_secs(120), body(url)).await;
    db.drop_database().await;
    r
}
