//! A viewer joining a publisher that ignores keyframe requests (as OBS does)
//! in the middle of a long GOP gets a picture at once, from the server's
//! cached GOP, instead of waiting for the next natural keyframe.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use support::*;

const FPS: u32 = 30;
/// One IDR every 4 s: the next natural keyframe after the join is ~3 s away.
const GOP_FRAMES: u32 = 4 * FPS;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_joining_mid_gop_sees_a_picture_before_the_next_keyframe() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let frames = tokio::task::spawn_blocking(|| {
            encode_h264_test_pattern_with_gop(
                TestPattern::BRIGHT_TOP,
                320,
                240,
                6 * FPS as usize,
                FPS,
                GOP_FRAMES,
            )
        })
        .await
        .context("encoder task")??;
        let idrs: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| annexb_contains_idr(f))
            .map(|(i, _)| i)
            .collect();
        ensure!(idrs == vec![0, GOP_FRAMES as usize], "IDRs at {idrs:?}");

        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("gop", false).await?;
        // The test publisher never reacts to PLI/FIR, like OBS.
        let publisher = whip_publish(&base, "gop", &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let started = Instant::now();
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::new(frames),
            FRAME_DURATION_30FPS,
            false,
        );

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let joined = Instant::now();
        let viewer = whep_view(
            &base,
            "gop",
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
        )
        .await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;
        viewer
            .media
            .wait_until(Duration::from_secs(10), "a decoded frame", |s| {
                !s.decoded.is_empty()
            })
            .await?;
        let stats = viewer.media.snapshot();
        let first = stats.decoded[0].received_at;
        let next_idr_sent = started + FRAME_DURATION_30FPS * GOP_FRAMES;
        eprintln!(
            "join -> first decoded frame: {:?} (next natural keyframe {:?} after the join)",
            first.duration_since(joined),
            next_idr_sent.saturating_duration_since(joined)
        );
        ensure!(
            first < next_idr_sent,
            "the first picture waited for the next natural keyframe ({:?} after join)",
            first.duration_since(joined)
        );
        ensure!(
            metric(&base, "relaycast_gop_bursts_total").await? >= 1.0,
            "no GOP burst counted"
        );

        // Then it plays on, continuously, with the right picture.
        viewer
            .media
            .wait_until(
                Duration::from_secs(15),
                "frames after the next keyframe",
                |s| s.decoded.len() >= 100,
            )
            .await?;
        video.join().await?;
        let stats = viewer.media.snapshot();
        assert_frames_show(&stats.decoded, TestPattern::BRIGHT_TOP, 320, 240, "viewer")?;
        check_rtp_continuity(&stats.video_rtp)?;
        ensure!(
            stats.decode_errors == 0,
            "decoder errors: {}",
            stats.summary()
        );

        viewer.close().await?;
        publisher.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}
