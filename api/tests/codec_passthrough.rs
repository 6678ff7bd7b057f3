//! VP9 (and AV1) published over WHIP reach a browser-like WHEP viewer unchanged.
//!
//! The publisher (webrtc-rs) offers only the one codec; the viewer offers a browser-like list
//! (VP8, VP9, H.264, ...). The SFU does not transcode, so the viewer must be answered with the
//! publisher's codec, and what it writes to an IVF file must decode (ffprobe).
//!
//! Debugging: `RUST_LOG=debug` shows server and webrtc-rs logs, `RELAYCAST_KEEP_TEST_FILES=1`
//! keeps generated/received media files.

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use support::*;

const WIDTH: u64 = 320;
const HEIGHT: u64 = 240;
/// How long to wait for media conditions once senders are running.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(15);

/// Publishes 3 s of ffmpeg-encoded `codec` offering only that codec, views it with a
/// browser-like viewer writing an IVF file, and checks the file with ffprobe.
async fn passes_through(codec: IvfCodec) -> Result<()> {
    let name = codec.ffprobe_name();
    let server = TestServer::start().await?;
    let base = server.base_url().to_owned();
    let source = server.scratch_path("source.ivf");
    let received = server.scratch_path("received.ivf");
    generate_ivf(codec, &source).await?;
    let (_, frames) = read_ivf_frames(&source)?;
    let frames = Arc::new(frames);
    ensure!(
        frames.len() >= 80,
        "ffmpeg produced only {} {name} frames",
        frames.len()
    );

    let key = server.create_stream(name, false).await?;
    let publisher = whip_publish(&base, name, &key, &PublishOptions::video_only(codec)).await?;
    let offered = sdp_codecs(&publisher.offer_sdp, "video");
    ensure!(
        offered.len() == 1 && offered[0].name.eq_ignore_ascii_case(name),
        "the publisher should offer only {name}, offered {offered:?}"
    );
    publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;

    let viewer = whep_view(
        &base,
        name,
        None,
        &ViewOptions::browser_like(VideoSink::Ivf(received.clone(), codec)),
    )
    .await?;
    ensure!(
        first_sdp_codec(&viewer.offer_sdp, "video", "VP8").is_some()
            && first_sdp_codec(&viewer.offer_sdp, "video", "H264").is_some()
            && first_sdp_codec(&viewer.offer_sdp, "video", name).is_some(),
        "the viewer should offer VP8, H264 and {name}:\n{}",
        viewer.offer_sdp
    );
    ensure!(
        first_sdp_codec(&viewer.answer_sdp, "video", name).is_some(),
        "the answer to the viewer has no {name}:\n{}",
        viewer.answer_sdp
    );
    viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;

    let video = spawn_sample_sender(
        publisher.media.video_track()?,
        Arc::clone(&frames),
        FRAME_DURATION_30FPS,
        false,
    );
    let sent = video.join().await?;
    viewer
        .media
        .wait_until(MEDIA_TIMEOUT, &format!("30 {name} frames"), |s| {
            s.video_frames_marked() >= 30
        })
        .await?;
    // Let the last packets in flight land in the file.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stats = viewer.media.snapshot();
    ensure!(
        !stats.video_tracks.is_empty()
            && stats
                .video_tracks
                .iter()
                .all(|t| t.mime_type.eq_ignore_ascii_case(codec.mime_type())),
        "viewer video track is not {}: {:?}",
        codec.mime_type(),
        stats.video_tracks
    );
    ensure!(
        stats.sink_errors == 0,
        "IVF writer errors: {}",
        stats.summary()
    );
    viewer.close().await?;

    let probe = ffprobe_video(&received, None)
        .await
        .with_context(|| format!("probing the received {name} ({sent} frames sent)"))?;
    ensure!(probe.codec_name == name, "received codec {probe:?}");
    ensure!(
        probe.width == WIDTH && probe.height == HEIGHT,
        "received {name} is {}x{}, expected {WIDTH}x{HEIGHT}",
        probe.width,
        probe.height
    );
    ensure!(
        probe.decoded_frames >= 10,
        "ffprobe decoded only {} frames from the received {name} IVF ({sent} sent)",
        probe.decoded_frames
    );
    // No transcoding: every frame the viewer wrote is byte-for-byte one the publisher sent
    // (ffmpeg's IVF and our writers use the same framing), in the same order.
    let (_, received_frames) = read_ivf_frames(&received)?;
    ensure_in_order_subsequence(&received_frames, &frames)
        .with_context(|| format!("comparing the received {name} frames with the sent ones"))?;

    publisher.close().await?;
    server.shutdown().await;
    Ok(())
}

/// Every frame of `received` equals a frame of `sent`, in `sent`'s order (frames may be lost).
fn ensure_in_order_subsequence(received: &[bytes::Bytes], sent: &[bytes::Bytes]) -> Result<()> {
    let mut next = 0;
    for (index, frame) in received.iter().enumerate() {
        let found = sent[next..]
            .iter()
            .position(|s| s == frame)
            .with_context(|| {
                format!(
                    "received frame {index} ({} bytes) is not one of the sent frames {next}.., \
                     {} received in all",
                    frame.len(),
                    received.len()
                )
            })?;
        next += found + 1;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vp9_passes_through_when_both_sides_offer_it() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, passes_through(IvfCodec::Vp9)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn av1_passes_through_when_both_sides_offer_it() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, passes_through(IvfCodec::Av1)).await
}
