//! End-to-end WHIP → relaycast → WHEP tests with webrtc-rs peers.
//!
//! Every test starts its own server on `127.0.0.1:0` with a fresh temp data dir. Media is
//! checked for real: H.264 is decoded with openh264 and the picture content verified, files
//! written by viewers are decoded with ffprobe (needs the `ffmpeg` package).
//!
//! Debugging: `RUST_LOG=debug` shows server and webrtc-rs logs, `RELAYCAST_KEEP_TEST_FILES=1`
//! keeps generated/received media files.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::StatusCode;
use support::*;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
const FPS: u32 = 30;
/// How long to wait for media conditions once senders are running.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(15);

/// Encodes `seconds` of the test pattern off the async runtime.
async fn encode_pattern(pattern: TestPattern, seconds: usize) -> Result<Arc<Vec<bytes::Bytes>>> {
    encode_h264_pattern(pattern, WIDTH, HEIGHT, seconds, FPS).await
}

fn assert_frames_show(frames: &[DecodedFrame], pattern: TestPattern, label: &str) -> Result<()> {
    support::assert_frames_show(frames, pattern, WIDTH, HEIGHT, label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h264_and_opus_reach_a_whep_viewer_with_the_picture_intact() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let frames = encode_pattern(TestPattern::BRIGHT_TOP, 3).await?;
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("cam", false).await?;

        let publisher = whip_publish(&base, "cam", &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;

        let viewer = whep_view(
            &base,
            "cam",
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
        )
        .await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;

        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::clone(&frames),
            FRAME_DURATION_30FPS,
            false,
        );
        let audio = spawn_opus_sender(publisher.media.audio_track()?);

        viewer
            .media
            .wait_until(
                MEDIA_TIMEOUT,
                "10 decoded frames and 20 Opus packets",
                |s| s.decoded.len() >= 10 && s.audio_rtp.len() >= 20,
            )
            .await?;
        let sent = video.join().await?;
        ensure!(
            sent == frames.len(),
            "sent {sent} of {} frames",
            frames.len()
        );
        audio.stop().await?;

        let stats = viewer.media.snapshot();
        ensure!(
            stats
                .video_tracks
                .iter()
                .all(|t| t.mime_type.eq_ignore_ascii_case("video/H264")),
            "viewer video track is not H.264: {:?}",
            stats.video_tracks
        );
        ensure!(
            stats
                .audio_tracks
                .iter()
                .all(|t| t.mime_type.eq_ignore_ascii_case("audio/opus")),
            "viewer audio track is not Opus: {:?}",
            stats.audio_tracks
        );
        ensure!(
            stats.audio_rtp.iter().all(|p| p.payload_len > 0),
            "empty Opus payloads arrived"
        );
        assert_frames_show(&stats.decoded, TestPattern::BRIGHT_TOP, "viewer")?;

        viewer.close().await?;
        publisher.close().await?;
        // Closed sessions free their resources: the gauges return to zero.
        wait_for_no_sessions(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vp8_reaches_a_whep_viewer() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let source = server.scratch_path("source.ivf");
        let received = server.scratch_path("received.ivf");
        generate_ivf(IvfCodec::Vp8, &source).await?;
        let (_, frames) = read_ivf_frames(&source)?;
        ensure!(
            frames.len() >= 80,
            "ffmpeg produced only {} frames",
            frames.len()
        );

        let key = server.create_stream("vp8", false).await?;
        let publisher = whip_publish(
            &base,
            "vp8",
            &key,
            &PublishOptions::video_only(IvfCodec::Vp8),
        )
        .await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;

        let viewer = whep_view(
            &base,
            "vp8",
            None,
            &ViewOptions::browser_like(VideoSink::Ivf(received.clone(), IvfCodec::Vp8)),
        )
        .await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;

        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::new(frames),
            FRAME_DURATION_30FPS,
            false,
        );
        video.join().await?;
        viewer
            .media
            .wait_until(MEDIA_TIMEOUT, "30 VP8 frames", |s| {
                s.video_frames_marked() >= 30
            })
            .await?;
        // Let the last packets in flight land in the file.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let stats = viewer.media.snapshot();
        ensure!(
            stats
                .video_tracks
                .iter()
                .all(|t| t.mime_type.eq_ignore_ascii_case("video/VP8")),
            "viewer video track is not VP8: {:?}",
            stats.video_tracks
        );
        ensure!(
            stats.sink_errors == 0,
            "IVF writer errors: {}",
            stats.summary()
        );
        viewer.close().await?;

        let probe = ffprobe_video(&received, None).await?;
        ensure!(probe.codec_name == "vp8", "received codec {probe:?}");
        ensure!(
            probe.width == WIDTH as u64 && probe.height == HEIGHT as u64,
            "received VP8 is {}x{}, expected {WIDTH}x{HEIGHT}",
            probe.width,
            probe.height
        );
        ensure!(
            probe.decoded_frames >= 10,
            "ffprobe decoded only {} frames from the received IVF",
            probe.decoded_frames
        );

        publisher.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn obs_shaped_publish_high_profile_advertised_as_42e01f() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let source = server.scratch_path("source.h264");
        generate_h264_high_annexb(&source).await?;
        let access_units = read_h264_access_units(&source)?;
        ensure!(
            access_units.len() >= 80,
            "ffmpeg produced only {} pictures",
            access_units.len()
        );

        // OBS 30.2+: no candidates in the offer, H.264 advertised as constrained baseline
        // whatever the encoder really produces, stereo Opus.
        let options = PublishOptions {
            video: Some(h264_codec(
                102,
                "profile-level-id=42e01f;packetization-mode=1",
            )),
            audio: Some(opus_codec(
                111,
                "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1",
            )),
            strip_candidates: true,
        };
        let key = server.create_stream("obs", false).await?;
        let publisher = whip_publish(&base, "obs", &key, &options).await?;
        ensure!(
            !publisher.offer_sdp.contains("a=candidate"),
            "the OBS-shaped offer still carries candidates"
        );
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;

        // Media must flow before the viewers arrive: only the SPS tells the server that the
        // stream really is High profile.
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::new(access_units),
            FRAME_DURATION_30FPS,
            true,
        );
        let audio = spawn_opus_sender(publisher.media.audio_track()?);
        tokio::time::sleep(Duration::from_millis(700)).await;

        // Viewer A can decode High profile (Chrome-like list including 640c1f / 64001f).
        let file_a = server.scratch_path("viewer-a.h264");
        let mut codecs_a = browser_video_codecs();
        codecs_a.push(h264_codec(
            114,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
        ));
        let viewer_a = whep_view(
            &base,
            "obs",
            None,
            &ViewOptions {
                video_codecs: codecs_a,
                audio_codecs: browser_audio_codecs(),
                sink: VideoSink::AnnexB(file_a.clone()),
            },
        )
        .await?;
        // Viewer B only offers constrained baseline and main.
        let file_b = server.scratch_path("viewer-b.h264");
        let viewer_b = whep_view(
            &base,
            "obs",
            None,
            &ViewOptions {
                video_codecs: vec![
                    h264_codec(102, H264_CONSTRAINED_BASELINE_FMTP),
                    h264_codec(
                        106,
                        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
                    ),
                ],
                audio_codecs: browser_audio_codecs(),
                sink: VideoSink::AnnexB(file_b.clone()),
            },
        )
        .await?;

        let h264_a = first_sdp_codec(&viewer_a.answer_sdp, "video", "H264").with_context(|| {
            format!(
                "no H264 in the answer to viewer A:\n{}",
                viewer_a.answer_sdp
            )
        })?;
        ensure!(
            h264_a.h264_profile_idc() == Some(0x64),
            "viewer A (offers High) was answered with H264 fmtp `{}`, expected \
             profile-level-id=64....; answer:\n{}",
            h264_a.fmtp,
            viewer_a.answer_sdp
        );
        let opus_a = first_sdp_codec(&viewer_a.answer_sdp, "audio", "opus").with_context(|| {
            format!(
                "no Opus in the answer to viewer A:\n{}",
                viewer_a.answer_sdp
            )
        })?;
        ensure!(
            opus_a.fmtp_param("stereo") == Some("1"),
            "viewer A's Opus fmtp `{}` lacks stereo=1 (publisher is stereo)",
            opus_a.fmtp
        );
        let h264_b = first_sdp_codec(&viewer_b.answer_sdp, "video", "H264").with_context(|| {
            format!(
                "no H264 in the answer to viewer B:\n{}",
                viewer_b.answer_sdp
            )
        })?;
        ensure!(
            h264_b.h264_profile_idc() == Some(0x4d),
            "viewer B (offers 42e01f/4d001f only) was answered with H264 fmtp `{}`, expected \
             profile-level-id=4d....; answer:\n{}",
            h264_b.fmtp,
            viewer_b.answer_sdp
        );

        viewer_a.peer.wait_connected(CONNECT_TIMEOUT).await?;
        viewer_b.peer.wait_connected(CONNECT_TIMEOUT).await?;
        for (name, viewer) in [("A", &viewer_a), ("B", &viewer_b)] {
            viewer
                .media
                .wait_until(
                    MEDIA_TIMEOUT,
                    &format!("60 pictures at viewer {name}"),
                    |s| s.video_frames_marked() >= 60,
                )
                .await?;
        }
        video.stop().await?;
        audio.stop().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;

        for (name, viewer, file) in [("A", viewer_a, file_a), ("B", viewer_b, file_b)] {
            let stats = viewer.media.snapshot();
            ensure!(
                stats.sink_errors == 0,
                "viewer {name}: H264 writer errors: {}",
                stats.summary()
            );
            ensure!(
                !stats.audio_rtp.is_empty(),
                "viewer {name} received no audio: {}",
                stats.summary()
            );
            viewer.close().await?;
            let probe = ffprobe_video(&file, Some("h264")).await?;
            ensure!(
                probe.width == WIDTH as u64 && probe.height == HEIGHT as u64,
                "viewer {name}: received H.264 is {}x{}, expected {WIDTH}x{HEIGHT}",
                probe.width,
                probe.height
            );
            ensure!(
                probe.profile.as_deref() == Some("High"),
                "viewer {name}: received H.264 profile is {:?}, expected High",
                probe.profile
            );
            ensure!(
                probe.decoded_frames >= 10,
                "viewer {name}: ffprobe decoded only {} frames",
                probe.decoded_frames
            );
        }

        publisher.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_survives_publisher_drop_and_return() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        // The second publisher sends the inverted picture, so the viewer can tell them apart.
        let first_frames = encode_pattern(TestPattern::BRIGHT_TOP, 2).await?;
        let second_frames = encode_pattern(TestPattern::BRIGHT_BOTTOM, 2).await?;
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("flaky", false).await?;
        let options = PublishOptions::h264_and_opus();

        let first = whip_publish(&base, "flaky", &key, &options).await?;
        first.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let viewer = whep_view(
            &base,
            "flaky",
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
        )
        .await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;

        let video = spawn_sample_sender(
            first.media.video_track()?,
            first_frames,
            FRAME_DURATION_30FPS,
            false,
        );
        let audio = spawn_opus_sender(first.media.audio_track()?);
        video.join().await?;
        audio.stop().await?;
        viewer
            .media
            .wait_until(MEDIA_TIMEOUT, "10 frames from the first publisher", |s| {
                s.decoded.len() >= 10
            })
            .await?;

        let status = first.unpublish().await?;
        ensure!(
            status == StatusCode::OK,
            "DELETE of the WHIP session returned {status}"
        );
        let dropped_at = Instant::now();
        first.peer().close().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let second = whip_publish(&base, "flaky", &key, &options).await?;
        second.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let returned_at = Instant::now();
        let video = spawn_sample_sender(
            second.media.video_track()?,
            second_frames,
            FRAME_DURATION_30FPS,
            false,
        );
        let audio = spawn_opus_sender(second.media.audio_track()?);
        video.join().await?;
        audio.stop().await?;
        viewer
            .media
            .wait_until(MEDIA_TIMEOUT, "10 frames from the second publisher", |s| {
                s.decoded
                    .iter()
                    .filter(|f| f.received_at >= returned_at)
                    .count()
                    >= 10
            })
            .await?;

        let stats = viewer.media.snapshot();
        let before: Vec<_> = stats
            .decoded
            .iter()
            .copied()
            .filter(|f| f.received_at < dropped_at)
            .collect();
        let after: Vec<_> = stats
            .decoded
            .iter()
            .copied()
            .filter(|f| f.received_at >= returned_at)
            .collect();
        ensure!(
            before.len() >= 10,
            "only {} frames decoded before the drop",
            before.len()
        );
        assert_frames_show(&before, TestPattern::BRIGHT_TOP, "before the drop")?;
        assert_frames_show(&after, TestPattern::BRIGHT_BOTTOM, "after the return")?;
        ensure!(
            stats.video_rtp.iter().any(|p| p.received_at >= returned_at),
            "no video RTP after the publisher returned"
        );
        check_rtp_continuity(&stats.video_rtp).context("viewer video RTP across the switch")?;

        let states = viewer.peer.state_history();
        ensure!(
            !states.iter().any(|s| matches!(
                s,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            )),
            "viewer peer connection states: {states:?}"
        );
        ensure!(
            viewer.peer.state() == RTCPeerConnectionState::Connected,
            "viewer is {} at the end, states: {states:?}",
            viewer.peer.state()
        );

        viewer.close().await?;
        second.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_before_publisher_starts_receiving_when_it_starts() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let frames = encode_pattern(TestPattern::BRIGHT_TOP, 3).await?;
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("early", false).await?;

        // The viewer arrives first: the server must accept it (201) and connect it.
        let viewer = whep_view(
            &base,
            "early",
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
        )
        .await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;

        let publisher =
            whip_publish(&base, "early", &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::clone(&frames),
            FRAME_DURATION_30FPS,
            false,
        );
        let audio = spawn_opus_sender(publisher.media.audio_track()?);

        viewer
            .media
            .wait_until(MEDIA_TIMEOUT, "10 decoded frames", |s| {
                s.decoded.len() >= 10
            })
            .await?;
        video.join().await?;
        audio.stop().await?;
        assert_frames_show(
            &viewer.media.snapshot().decoded,
            TestPattern::BRIGHT_TOP,
            "late publisher",
        )?;

        viewer.close().await?;
        publisher.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}
