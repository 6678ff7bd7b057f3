//! What the side consumers of a stream (transcoder, webhooks) see: a tap
//! gets the publisher's frames with wall-clock capture times once sender
//! reports arrive, and stream events report live, stalled, resumed, ended.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use sfu::{MediaKind, StreamEventKind};
use support::*;

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<sfu::StreamEvent>,
    stream: &str,
) -> Result<StreamEventKind> {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .context("no stream event")??;
        if ev.stream == stream {
            return Ok(ev.kind);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tap_sees_frames_with_wallclock_and_events_follow_the_publisher() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let frames = test_pattern_320x240(60).await?;
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("tapped", false).await?;
        let sfu = server.server().sfu().clone();
        // Attached before the stream exists: taps outlive publisher sessions.
        let mut tap = sfu.tap("tapped", 256);
        let mut events = sfu.events();

        let publisher =
            whip_publish(&base, "tapped", &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::new(frames),
            FRAME_DURATION_30FPS,
            true,
        );
        ensure!(next_event(&mut events, "tapped").await? == StreamEventKind::Live);
        ensure!(sfu.live_streams().contains(&"tapped".to_string()));

        // Frames arrive in order per kind; the first video frame the tap
        // gets may be a delta frame, but keyframes follow every second.
        let mut keyframes = 0;
        let mut last_index = None;
        let mut with_wallclock = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while keyframes < 2 || with_wallclock == 0 {
            let frame = tokio::time::timeout_at(deadline, tap.recv())
                .await
                .context("tap starved")?
                .context("tap closed")?;
            if frame.kind != MediaKind::Video {
                continue;
            }
            if let Some(prev) = last_index {
                ensure!(frame.index > prev, "video frame indexes go forward");
            }
            last_index = Some(frame.index);
            keyframes += usize::from(frame.keyframe);
            if let Some(at) = frame.wallclock {
                // The publisher's clock is this machine's: a capture time
                // within a few seconds of now.
                let skew = match SystemTime::now().duration_since(at) {
                    Ok(d) => d,
                    Err(e) => e.duration(),
                };
                ensure!(
                    skew < Duration::from_secs(5),
                    "wallclock {at:?} is off by {skew:?}"
                );
                with_wallclock += 1;
            }
        }
        ensure!(tap.dropped() == 0, "an idle consumer's tap dropped frames");

        // Media stops while the session stays up: stalled, then resumed.
        video.stop().await?;
        ensure!(next_event(&mut events, "tapped").await? == StreamEventKind::Stalled);
        let frames = test_pattern_320x240(30).await?;
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::new(frames),
            FRAME_DURATION_30FPS,
            true,
        );
        ensure!(next_event(&mut events, "tapped").await? == StreamEventKind::Resumed);
        video.stop().await?;
        publisher.close().await?;
        ensure!(next_event(&mut events, "tapped").await? == StreamEventKind::Ended);
        ensure!(!sfu.live_streams().contains(&"tapped".to_string()));
        server.shutdown().await;
        Ok(())
    })
    .await
}
