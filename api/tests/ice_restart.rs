//! ICE restart of a WHEP viewer over PATCH (RFC 9725 §4.3.2) with a webrtc-rs peer.
//!
//! The viewer creates an ICE restart offer (webrtc-rs re-gathers: new credentials and a new
//! local port), PATCHes its new credentials and candidates as an
//! `application/trickle-ice-sdpfrag` with `If-Match: *`, and applies the server's new
//! credentials from the `200` body to its previous answer.
//!
//! `viewer_keeps_playing_across_an_ice_restart` guards against a restart that only swaps
//! credentials: the old candidate pair would stay nominated (the new one has the same
//! priority) and media would keep going to the viewer's old port until that pair times out,
//! 15 s later.
//!
//! Debugging: `RUST_LOG=debug` shows server and webrtc-rs logs (str0m logs its nominated pair
//! as "ICE nominated send from ... to ...").

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::StatusCode;
use support::*;
use webrtc::ice_transport::ice_connection_state::RTCIceConnectionState;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

const WIDTH: usize = 320;
const HEIGHT: usize = 240;
const FPS: u32 = 30;
/// How long to wait for media conditions once senders are running.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(15);
/// Frames that must decode after the restart.
const FRAMES_AFTER_RESTART: usize = 15;

/// A publisher sending the looping H.264 test pattern and a viewer that decoded some of it.
struct Playing {
    server: TestServer,
    publisher: Publisher,
    viewer: Viewer,
    video: MediaSender,
    audio: MediaSender,
    /// The viewer's ICE connection states from the moment it first connected.
    ice_states: Arc<Mutex<Vec<RTCIceConnectionState>>>,
}

impl Playing {
    async fn start(stream: &str) -> Result<Self> {
        let frames = encode_h264_pattern(TestPattern::BRIGHT_TOP, WIDTH, HEIGHT, 2, FPS).await?;
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream(stream, false).await?;

        let publisher = whip_publish(&base, stream, &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let viewer = whep_view(
            &base,
            stream,
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
        )
        .await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;

        let ice_states = Arc::new(Mutex::new(Vec::new()));
        let ice_states_handler = Arc::clone(&ice_states);
        viewer.peer.pc.on_ice_connection_state_change(Box::new(
            move |state: RTCIceConnectionState| {
                lock(&ice_states_handler).push(state);
                Box::pin(async {})
            },
        ));

        // Loop the 2 s clip (it starts with an IDR) for as long as the test needs.
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            frames,
            FRAME_DURATION_30FPS,
            true,
        );
        let audio = spawn_opus_sender(publisher.media.audio_track()?);
        viewer
            .media
            .wait_until(MEDIA_TIMEOUT, "10 decoded frames before the restart", |s| {
                s.decoded.len() >= 10
            })
            .await?;
        Ok(Self {
            server,
            publisher,
            viewer,
            video,
            audio,
            ice_states,
        })
    }

    /// Checks the viewer's peer connection never failed or closed and its ICE agent went
    /// checking -> connected after the restart (connectivity checks with the new credentials
    /// were answered: webrtc-rs verifies the responses with the server's new password).
    fn ensure_viewer_reconnected(&self) -> Result<()> {
        let states = self.viewer.peer.state_history();
        ensure!(
            !states.iter().any(|s| matches!(
                s,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
            )),
            "viewer peer connection states: {states:?}"
        );
        ensure!(
            self.viewer.peer.state() == RTCPeerConnectionState::Connected,
            "viewer is {} at the end, states: {states:?}",
            self.viewer.peer.state()
        );
        let ice_states = lock(&self.ice_states).clone();
        ensure!(
            ice_states.first() == Some(&RTCIceConnectionState::Checking)
                && ice_states.last() == Some(&RTCIceConnectionState::Connected),
            "the viewer's ICE agent did not go checking -> connected across the restart: \
             {ice_states:?}"
        );
        ensure!(
            !ice_states.iter().any(|s| matches!(
                s,
                RTCIceConnectionState::Failed
                    | RTCIceConnectionState::Disconnected
                    | RTCIceConnectionState::Closed
            )),
            "viewer ICE states since it first connected: {ice_states:?}"
        );
        Ok(())
    }

    async fn stop(self) -> Result<()> {
        self.video.stop().await?;
        self.audio.stop().await?;
        self.viewer.close().await?;
        self.publisher.close().await?;
        self.server.shutdown().await;
        Ok(())
    }
}

/// What [`restart_viewer_ice`] did.
struct Restart {
    old_etag: String,
    new_etag: String,
    /// A trickle fragment with the viewer's new credentials and candidates.
    trickle: String,
    /// When the viewer applied the server's new credentials.
    applied_at: Instant,
}

/// The RFC 9725 §4.3.2 dance, checking every response on the way: a restart fragment without
/// `If-Match` is refused (428); the viewer's ICE restart offer PATCHed with `If-Match: *`
/// gets 200, a new ETag, new server credentials and candidates; the previous answer with
/// those credentials becomes the viewer's remote description.
async fn restart_viewer_ice(viewer: &Viewer) -> Result<Restart> {
    let old_etag = viewer.etag.clone().context("the WHEP answer has no ETag")?;
    let old_viewer_creds =
        ice_credentials(&viewer.offer_sdp).context("no ICE credentials in the offer")?;
    let old_server_creds =
        ice_credentials(&viewer.answer_sdp).context("no ICE credentials in the answer")?;

    // Without If-Match a restart is refused and changes nothing.
    let bogus = IceCredentials {
        ufrag: "bogusufrag".to_owned(),
        pwd: "boguspasswordboguspassword".to_owned(),
    };
    let refused = patch_sdpfrag(
        &viewer.session_url,
        None,
        &ice_sdpfrag(&viewer.offer_sdp, &bogus, &[]),
    )
    .await?;
    ensure!(
        refused.status == StatusCode::PRECONDITION_REQUIRED,
        "restart PATCH without If-Match returned {} (expected 428): {}",
        refused.status,
        refused.body
    );

    let offer = viewer.peer.create_ice_restart_offer().await?;
    let new_viewer_creds =
        ice_credentials(&offer).context("no ICE credentials in the restart offer")?;
    ensure!(
        new_viewer_creds.ufrag != old_viewer_creds.ufrag
            && new_viewer_creds.pwd != old_viewer_creds.pwd,
        "webrtc-rs kept its ICE credentials across create_offer(ice_restart): \
         {old_viewer_creds:?} -> {new_viewer_creds:?}"
    );
    let candidates = candidate_lines(&offer);
    ensure!(
        !candidates.is_empty(),
        "the restart offer has no candidates:\n{offer}"
    );
    let fragment = ice_sdpfrag(&offer, &new_viewer_creds, &candidates);

    let restarted = patch_sdpfrag(&viewer.session_url, Some("*"), &fragment).await?;
    ensure!(
        restarted.status == StatusCode::OK,
        "restart PATCH returned {} (expected 200): {}\nfragment:\n{fragment}",
        restarted.status,
        restarted.body
    );
    ensure!(
        restarted
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/trickle-ice-sdpfrag")),
        "restart answer Content-Type is {:?}",
        restarted.content_type
    );
    let new_etag = restarted
        .etag
        .clone()
        .context("the restart answer has no ETag")?;
    ensure!(
        new_etag != old_etag,
        "the ETag did not change across the restart: {old_etag}"
    );
    let new_server_creds = ice_credentials(&restarted.body).with_context(|| {
        format!(
            "no ICE credentials in the restart answer:\n{}",
            restarted.body
        )
    })?;
    ensure!(
        new_server_creds.ufrag != old_server_creds.ufrag
            && new_server_creds.pwd != old_server_creds.pwd,
        "the server kept its ICE credentials: {old_server_creds:?} -> {new_server_creds:?}"
    );
    ensure!(
        !candidate_lines(&restarted.body).is_empty(),
        "the restart answer has no candidates:\n{}",
        restarted.body
    );

    let answer = replace_ice_credentials(&viewer.answer_sdp, &new_server_creds);
    viewer.peer.apply_answer(&answer).await?;
    Ok(Restart {
        old_etag,
        new_etag,
        trickle: fragment,
        applied_at: Instant::now(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ice_restart_over_patch_follows_rfc_9725() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let playing = Playing::start("restart-signalling").await?;
        let viewer = &playing.viewer;
        let restart = restart_viewer_ice(viewer).await?;
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;

        // The pre-restart ETag is stale now: 412, even for a plain trickle.
        let stale = patch_sdpfrag(
            &viewer.session_url,
            Some(&restart.old_etag),
            &restart.trickle,
        )
        .await?;
        ensure!(
            stale.status == StatusCode::PRECONDITION_FAILED,
            "PATCH with the pre-restart ETag returned {} (expected 412): {}",
            stale.status,
            stale.body
        );
        // With the current ETag the same fragment (same credentials) is a trickle: 204.
        let trickle = patch_sdpfrag(
            &viewer.session_url,
            Some(&restart.new_etag),
            &restart.trickle,
        )
        .await?;
        ensure!(
            trickle.status == StatusCode::NO_CONTENT,
            "trickle PATCH with the current ETag returned {} (expected 204): {}",
            trickle.status,
            trickle.body
        );

        playing.ensure_viewer_reconnected()?;
        playing.stop().await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_keeps_playing_across_an_ice_restart() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let playing = Playing::start("restart").await?;
        let restart = restart_viewer_ice(&playing.viewer).await?;
        let restarted_at = restart.applied_at;

        playing
            .viewer
            .media
            .wait_until(
                MEDIA_TIMEOUT,
                &format!("{FRAMES_AFTER_RESTART} decoded frames after the restart"),
                |s| {
                    s.decoded
                        .iter()
                        .filter(|f| f.received_at >= restarted_at)
                        .count()
                        >= FRAMES_AFTER_RESTART
                },
            )
            .await?;

        let stats = playing.viewer.media.snapshot();
        let after: Vec<_> = stats
            .decoded
            .iter()
            .copied()
            .filter(|f| f.received_at >= restarted_at)
            .collect();
        assert_frames_show(
            &after,
            TestPattern::BRIGHT_TOP,
            WIDTH,
            HEIGHT,
            "after the restart",
        )?;
        ensure!(
            stats.decoder_failure.is_none(),
            "viewer: {}",
            stats.summary()
        );
        playing.ensure_viewer_reconnected()?;
        playing.stop().await
    })
    .await
}
