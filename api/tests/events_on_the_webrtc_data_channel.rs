//! Integrator events reach WebRTC viewers on their data channel, stamped
//! with the stream's media time; and the viewer's session is recorded with
//! the bytes the SFU sent it. The viewer is webrtc-rs (not our code).

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use support::*;
use tokio::sync::mpsc;
use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::peer_connection::configuration::RTCConfiguration;

const HOUR: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn integrator_events_arrive_on_the_viewers_data_channel_with_media_time() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let frames = encode_h264_pattern(TestPattern::BRIGHT_TOP, 320, 240, 2, 30).await?;
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("match", false).await?;
        let s = server.server();
        let integrator = s.token_for("bookmaker", Some("match"), "integrator", HOUR)?;
        let admin = s.token_for("ops", None, "admin", HOUR)?;
        let http = http_client()?;

        let publisher =
            whip_publish(&base, "match", &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::clone(&frames),
            FRAME_DURATION_30FPS,
            true,
        );

        // A viewer that opens a data channel before its offer, as a browser
        // player does.
        let ViewerPeer { peer, media } = ViewerPeer::with_config(
            &ViewOptions::browser_like(VideoSink::DecodeH264),
            RTCConfiguration::default(),
        )
        .await?;
        let channel = peer.pc.create_data_channel("events", None).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        channel.on_message(Box::new(move |m: DataChannelMessage| {
            let _ = tx.send(String::from_utf8_lossy(&m.data).into_owned());
            Box::pin(async {})
        }));
        let (open_tx, mut open_rx) = mpsc::unbounded_channel::<()>();
        channel.on_open(Box::new(move || {
            let _ = open_tx.send(());
            Box::pin(async {})
        }));
        let offer = peer.create_offer(false).await?;
        ensure!(
            offer.contains("m=application"),
            "the offer has no data channel section"
        );
        let exchange = post_offer(&base, "/whep/match", None, &offer).await?;
        ensure!(
            exchange.answer_sdp.contains("m=application"),
            "the answer rejected the data channel:\n{}",
            exchange.answer_sdp
        );
        // Without simulcast nothing reads transport-wide feedback, so it is
        // not negotiated (the server would keep a send record per packet).
        ensure!(
            offer.contains("transport-wide-cc"),
            "the viewer offered no TWCC"
        );
        ensure!(
            !exchange.answer_sdp.contains("transport-wide-cc"),
            "TWCC negotiated for a viewer without bandwidth estimation"
        );
        peer.apply_answer(&exchange.answer_sdp).await?;
        peer.wait_connected(CONNECT_TIMEOUT).await?;
        tokio::time::timeout(WAIT, open_rx.recv())
            .await
            .context("the data channel never opened")?;
        media
            .wait_until(WAIT, "5 decoded frames", |s| s.decoded.len() >= 5)
            .await?;

        // Posted events arrive, in order, carrying the media stamp the API
        // answered with.
        let mut posted = Vec::new();
        for (i, market) in ["suspend", "reopen"].into_iter().enumerate() {
            let r = http
                .post(format!("{base}/api/streams/match/events"))
                .bearer_auth(&integrator)
                .json(&json!({ "market": market, "n": i }))
                .send()
                .await?;
            ensure!(r.status() == 201, "event post: {}", r.status());
            let body: Value = r.json().await?;
            ensure!(
                body["media"]["rtp_time"].is_u64() && body["media"]["clock_rate"] == 90000,
                "event not stamped with video media time: {body}"
            );
            posted.push(body);
        }
        for want in &posted {
            let got = tokio::time::timeout(WAIT, rx.recv())
                .await
                .context("no event on the data channel")?
                .context("data channel closed")?;
            let got: Value = serde_json::from_str(&got).context("event is not JSON")?;
            ensure!(
                got["seq"] == want["seq"]
                    && got["payload"] == want["payload"]
                    && got["media"] == want["media"]
                    && got["at_ms"] == want["at_ms"],
                "data channel event {got} differs from the posted {want}"
            );
        }
        let sent = metric(&base, "relaycast_data_channel_messages_total").await?;
        ensure!(sent >= 2.0, "data channel messages counted: {sent}");

        // The session is recorded with what the SFU sent it: at least the
        // RTP the viewer received (headers ≥ 12 bytes each, plus payload).
        let got = media.snapshot();
        let received: usize = got
            .video_rtp
            .iter()
            .chain(&got.audio_rtp)
            .map(|p| p.payload_len + 12)
            .sum();
        let _ = delete_session(&exchange.session_url).await?;
        peer.close().await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v: Value = http
                .get(format!("{base}/api/streams/match/stats"))
                .bearer_auth(&admin)
                .send()
                .await?
                .json()
                .await?;
            let st = &v["stats"];
            if st["sessions"] == 1 {
                let bytes = st["bytes_total"].as_u64().context("bytes_total")?;
                ensure!(
                    received > 0 && bytes >= received as u64,
                    "session bytes {bytes} < the {received} RTP bytes the viewer got: {v}"
                );
                ensure!(st["packets_lost_total"].is_u64(), "{v}");
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "session never summarised: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        video.stop().await?;
        publisher.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}
