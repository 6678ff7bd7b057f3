//! A WHEP viewer that may only use relay candidates plays a stream through
//! relaycast's own TURN server, with the credentials the WHEP answer's
//! `Link` headers carry; `/api/ice-servers` hands out the same shape.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LINK};
use reqwest::StatusCode;
use support::*;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;

const WIDTH: usize = 320;
const HEIGHT: usize = 240;

async fn start_with_turn() -> Result<TestServer> {
    TestServer::start_with(|c| {
        let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut turn = turn_server::TurnConfig::new("test-turn-secret");
        turn.udp = Some(lo);
        turn.tcp = Some(lo);
        turn.allow_loopback_peers = true;
        c.turn = Some(turn);
    })
    .await
}

/// One `turn:` Link header: (url, username, credential).
fn parse_turn_link(value: &str) -> Option<(String, String, String)> {
    let url = value.strip_prefix('<')?.split_once('>')?.0.to_string();
    if !url.starts_with("turn") {
        return None;
    }
    let param = |name: &str| {
        let key = format!("{name}=\"");
        let start = value.find(&key)? + key.len();
        Some(value[start..].split('"').next()?.to_string())
    };
    ensure_password(&param("credential-type")?)?;
    Some((url, param("username")?, param("credential")?))
}

fn ensure_password(t: &str) -> Option<()> {
    (t == "password").then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_only_viewer_plays_through_our_turn_with_link_header_credentials() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let frames = encode_h264_pattern(TestPattern::BRIGHT_TOP, WIDTH, HEIGHT, 4, 30).await?;
        let server = start_with_turn().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("cam", false).await?;
        let publisher = whip_publish(&base, "cam", &key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;

        // A plain WHEP POST: its answer carries turn: Links with credentials.
        let probe = ViewerPeer::new(&ViewOptions::browser_like(VideoSink::None)).await?;
        let offer = probe.peer.create_offer(false).await?;
        let resp = http_client()?
            .post(format!("{base}/whep/cam"))
            .header(CONTENT_TYPE, "application/sdp")
            .body(offer)
            .send()
            .await?;
        ensure!(
            resp.status() == StatusCode::CREATED,
            "WHEP POST: {}",
            resp.status()
        );
        let links: Vec<String> = resp
            .headers()
            .get_all(LINK)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let turn_links: Vec<_> = links.iter().filter_map(|l| parse_turn_link(l)).collect();
        ensure!(
            turn_links
                .iter()
                .any(|(u, _, _)| u.ends_with("?transport=udp"))
                && turn_links
                    .iter()
                    .any(|(u, _, _)| u.ends_with("?transport=tcp")),
            "no udp+tcp turn: Links with credentials in {links:?}"
        );
        if let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
            let _ = delete_session(&resolve_location(&base, loc)).await;
        }
        probe.peer.close().await?;

        // webrtc-rs 0.14 gathers relay candidates over UDP TURN only.
        let (url, username, credential) = turn_links
            .into_iter()
            .find(|(u, _, _)| u.ends_with("?transport=udp"))
            .context("udp turn link")?;
        let config = RTCConfiguration {
            ice_servers: vec![RTCIceServer {
                urls: vec![url],
                username,
                credential,
            }],
            ice_transport_policy: RTCIceTransportPolicy::Relay,
            ..Default::default()
        };
        let viewer = whep_view_with_config(
            &base,
            "cam",
            None,
            &ViewOptions::browser_like(VideoSink::DecodeH264),
            config,
        )
        .await?;
        ensure!(
            viewer.offer_sdp.contains("typ relay") && !viewer.offer_sdp.contains("typ host"),
            "the viewer offered non-relay candidates:\n{}",
            viewer.offer_sdp
        );
        viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::clone(&frames),
            FRAME_DURATION_30FPS,
            false,
        );
        viewer
            .media
            .wait_until(Duration::from_secs(15), "10 decoded frames", |s| {
                s.decoded.len() >= 10
            })
            .await?;
        video.join().await?;
        let stats = viewer.media.snapshot();
        assert_frames_show(
            &stats.decoded,
            TestPattern::BRIGHT_TOP,
            WIDTH,
            HEIGHT,
            "relayed viewer",
        )?;

        let turn = server.server().turn().context("TURN runs")?;
        ensure!(turn.allocation_count() >= 1, "no TURN allocation was used");
        let relayed = metric(&base, "relaycast_turn_relayed_bytes_total").await?;
        // Everything the viewer received came through the relay: at least
        // its RTP (a 12-byte header and the payload per packet).
        let received: usize = stats
            .video_rtp
            .iter()
            .chain(&stats.audio_rtp)
            .map(|p| p.payload_len + 12)
            .sum();
        ensure!(
            received > 0 && relayed >= received as f64,
            "only {relayed} bytes relayed by TURN, the viewer received {received} RTP bytes"
        );

        viewer.close().await?;
        publisher.close().await?;
        wait_for_no_sessions(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_endpoint_needs_a_token_and_returns_turn_credentials() -> Result<()> {
    let server = start_with_turn().await?;
    let base = server.base_url().to_owned();
    let client = http_client()?;
    let anon = client.get(format!("{base}/api/ice-servers")).send().await?;
    ensure!(
        anon.status() == StatusCode::UNAUTHORIZED,
        "anonymous: {}",
        anon.status()
    );
    let bad = client
        .get(format!("{base}/api/ice-servers"))
        .header(AUTHORIZATION, "Bearer not-a-jwt")
        .send()
        .await?;
    ensure!(
        bad.status() == StatusCode::UNAUTHORIZED,
        "bad token: {}",
        bad.status()
    );

    server.create_stream("cam", false).await?;
    let token = server.token("cam", "play", Duration::from_secs(60))?;
    let resp = client
        .get(format!("{base}/api/ice-servers"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "with token: {}",
        resp.status()
    );
    let body: serde_json::Value = resp.json().await?;
    let servers = body["iceServers"].as_array().context("iceServers array")?;
    let turn = servers
        .iter()
        .find(|s| s["username"].is_string())
        .context("a TURN entry with credentials")?;
    let urls: Vec<&str> = turn["urls"]
        .as_array()
        .context("urls")?
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    ensure!(
        urls.iter().all(|u| u.starts_with("turn:")) && urls.len() == 2,
        "{urls:?}"
    );
    let username = turn["username"].as_str().context("username")?;
    let (expiry, user) = username.split_once(':').context("expiry:user")?;
    ensure!(user == "test", "user part is the token subject: {username}");
    let expiry: u64 = expiry.parse()?;
    ensure!(
        expiry > api::unix_now() + 3600,
        "credentials expire too soon"
    );
    let credential = turn["credential"].as_str().context("credential")?;
    ensure!(credential == turn_server::rest_password(b"test-turn-secret", username));
    ensure!(
        servers.iter().any(|s| s["urls"][0]
            .as_str()
            .is_some_and(|u| u.starts_with("stun:"))),
        "the STUN entry is listed too: {body}"
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_host_names_the_server_in_ice_server_urls() -> Result<()> {
    let server = TestServer::start_with(|c| {
        let mut turn = turn_server::TurnConfig::new("test-turn-secret");
        turn.udp = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        turn.host = Some("turn.example.test".into());
        c.turn = Some(turn);
    })
    .await?;
    let base = server.base_url().to_owned();
    server.create_stream("cam", false).await?;
    let token = server.token("cam", "play", Duration::from_secs(60))?;
    let body: serde_json::Value = http_client()?
        .get(format!("{base}/api/ice-servers"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await?
        .json()
        .await?;
    let port = server
        .server()
        .turn()
        .and_then(|t| t.udp_addr())
        .context("TURN over UDP runs")?
        .port();
    let turn = body["iceServers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["username"].is_string()))
        .context("a TURN entry")?;
    ensure!(
        turn["urls"] == serde_json::json!([format!("turn:turn.example.test:{port}?transport=udp")]),
        "{body}"
    );
    server.shutdown().await;
    Ok(())
}
