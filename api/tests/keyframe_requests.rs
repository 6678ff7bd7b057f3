//! A joining viewer gets the publisher asked for a keyframe; viewers'
//! keyframe requests reach the publisher, but throttled, never as a flood.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use support::*;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

/// Keyframe requests viewers raised, as the server counts them by origin.
async fn viewer_requests(base: &str) -> f64 {
    let mut sum = 0.0;
    for origin in ["viewer_join", "viewer_waiting", "viewer_feedback"] {
        let name = format!("relaycast_keyframe_requests_total{{origin=\"{origin}\"}}");
        // A label never raised is not exported yet.
        sum += metric(base, &name).await.unwrap_or(0.0);
    }
    sum
}

fn requests_since(log: &std::sync::Mutex<Vec<Instant>>, since: Instant) -> usize {
    lock(log).iter().filter(|t| **t >= since).count()
}

/// A server with one WHIP publisher looping an H.264 test pattern on
/// `stream`, with one IDR per 5 s loop: once the GOP spans more than the
/// server will burst to a joining viewer, joins fall back to asking the
/// publisher for a keyframe.
async fn streaming_publisher(stream: &str) -> Result<(TestServer, String, Publisher, MediaSender)> {
    let frames = tokio::task::spawn_blocking(|| {
        encode_h264_test_pattern_with_gop(TestPattern::BRIGHT_TOP, 320, 240, 150, 30, 150)
    })
    .await
    .context("encoder task")??;
    let server = TestServer::start().await?;
    let base = server.base_url().to_owned();
    let key = server.create_stream(stream, false).await?;
    let publisher = whip_publish(&base, stream, &key, &PublishOptions::h264_and_opus()).await?;
    publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
    let video = spawn_sample_sender(
        publisher.media.video_track()?,
        Arc::new(frames),
        FRAME_DURATION_30FPS,
        true,
    );
    Ok((server, base, publisher, video))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_get_a_keyframe_request_on_join_and_their_plis_are_throttled() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let (server, base, publisher, video) = streaming_publisher("kf").await?;
        let log = Arc::clone(&publisher.media.keyframe_requests);
        // Past the 3 s a cached GOP may span for a joining viewer.
        tokio::time::sleep(Duration::from_millis(3500)).await;

        // 1. A viewer joins mid-GOP with no usable cached GOP: the publisher is
        // asked for a keyframe right away.
        let joined = Instant::now();
        let first = whep_view(
            &base,
            "kf",
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
        )
        .await?;
        first.peer.wait_connected(CONNECT_TIMEOUT).await?;
        let deadline = Instant::now() + Duration::from_secs(3);
        while requests_since(&log, joined) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ensure!(
            requests_since(&log, joined) >= 1,
            "no keyframe request reached the publisher after a viewer joined"
        );
        let join_to_request = lock(&log)
            .iter()
            .find(|t| **t >= joined)
            .map(|t| t.duration_since(joined));
        eprintln!("viewer POST -> PLI at publisher: {join_to_request:?}");

        // 2. Four viewers hammer PLIs (every 20 ms each, 3 s): the publisher sees
        // at most one per second (plus one at each window edge).
        let mut viewers = vec![first];
        for _ in 0..3 {
            let v = whep_view(
                &base,
                "kf",
                None,
                &ViewOptions::browser_like(VideoSink::DecodeH264),
            )
            .await?;
            v.peer.wait_connected(CONNECT_TIMEOUT).await?;
            viewers.push(v);
        }
        for v in &viewers {
            v.media
                .wait_until(MEDIA_TIMEOUT_SECS, "a video track", |s| {
                    !s.video_tracks.is_empty()
                })
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let storm_start = Instant::now();
        let storm = Duration::from_secs(3);
        let mut sent = 0usize;
        while storm_start.elapsed() < storm {
            for v in &viewers {
                let ssrc = v.media.snapshot().video_tracks[0].ssrc;
                v.peer
                    .pc
                    .write_rtcp(&[Box::new(PictureLossIndication {
                        sender_ssrc: 1,
                        media_ssrc: ssrc,
                    })])
                    .await
                    .context("write PLI")?;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let received = requests_since(&log, storm_start);
        eprintln!("viewers sent {sent} PLIs in 3 s; publisher received {received}");
        ensure!(
            sent >= 100,
            "the storm was too small to prove anything ({sent})"
        );
        ensure!(
            received >= 2,
            "viewer PLIs must reach the publisher (got {received})"
        );
        ensure!(
            received <= 5,
            "publisher flooded: {received} keyframe requests in 3 s"
        );

        // Media still flows to everyone.
        for v in &viewers {
            let before = v.media.snapshot().decoded.len();
            v.media
                .wait_until(MEDIA_TIMEOUT_SECS, "more decoded frames", |s| {
                    s.decoded.len() >= before + 10
                })
                .await?;
        }
        video.stop().await?;
        for v in viewers {
            v.close().await?;
        }
        publisher.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

const MEDIA_TIMEOUT_SECS: Duration = Duration::from_secs(15);

/// A viewer that cannot decode the stream's codec (VP8-only offer, H.264
/// stream) must not keep asking the publisher for keyframes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_without_the_streams_codec_does_not_keep_requesting_keyframes() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let (server, base, publisher, video) = streaming_publisher("mismatch").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Counted at the server by origin: the LL-HLS packager also asks
        // this publisher (which ignores PLI, 5 s GOP) for keyframes until
        // it has one, and those are not the viewer's doing.
        let before = viewer_requests(&base).await;

        let mut options = ViewOptions::browser_like(VideoSink::DecodeH264);
        options.video_codecs = vec![ivf_codec(IvfCodec::Vp8, 96)];
        let viewer = whep_view(&base, "mismatch", None, &options).await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let requests = viewer_requests(&base).await - before;
        ensure!(
            requests <= 1.0,
            "{requests} keyframe requests caused by a viewer that cannot decode the stream"
        );

        video.stop().await?;
        viewer.close().await?;
        publisher.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}
