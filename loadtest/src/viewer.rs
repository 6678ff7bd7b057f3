//! A lean WHEP viewer: its own `Rtc` and socket, video only, no decoding.
//! str0m decrypts and depacketizes; the viewer only reads the keyframe flag
//! and the SEI stamp of each frame.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::{Event, IceConnectionState, RtcConfig};
use tokio::sync::watch;

use crate::impair::{Impairment, ImpairmentConfig};
use crate::rtc_driver::RtcDriver;
use crate::sei::read_stamp;
use crate::stats::FrameTracker;
use crate::whip;

#[derive(Clone)]
pub struct ViewerConfig {
    pub id: usize,
    pub base: String,
    pub stream: String,
    pub token: Option<String>,
    pub epoch: Instant,
    pub impairment: ImpairmentConfig,
    pub http: reqwest::Client,
}

pub struct ViewerResult {
    pub id: usize,
    pub tracker: FrameTracker,
    /// Why the viewer could not start (POST refused, bad answer…).
    pub error: Option<String>,
    /// ICE/DTLS up, relative to the POST.
    pub connected_after: Option<Duration>,
    /// The session died before the end of the run.
    pub disconnected: bool,
    pub datagrams: u64,
    pub impairment_drops: u64,
}

/// Runs one viewer until `stop` flips.
pub async fn run(cfg: ViewerConfig, stop: watch::Receiver<bool>) -> ViewerResult {
    let started = Instant::now();
    let mut result = ViewerResult {
        id: cfg.id,
        tracker: FrameTracker::new(started),
        error: None,
        connected_after: None,
        disconnected: false,
        datagrams: 0,
        impairment_drops: 0,
    };
    let session_url = match play(&cfg, stop, &mut result, started).await {
        Ok(url) => url,
        Err(e) => {
            result.error = Some(format!("{e:#}"));
            None
        }
    };
    result.tracker.close(Instant::now());
    if let Some(url) = session_url {
        let _ = whip::delete(&cfg.http, &url).await;
    }
    result
}

async fn play(
    cfg: &ViewerConfig,
    mut stop: watch::Receiver<bool>,
    result: &mut ViewerResult,
    started: Instant,
) -> Result<Option<String>> {
    let rtc = RtcConfig::new()
        .clear_codecs()
        .enable_h264(true)
        .build(started);
    let mut peer = RtcDriver::bind(rtc).await?;
    let mut sdp = peer.rtc.sdp_api();
    sdp.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = sdp.apply().context("no offer to make")?;
    let url = format!("{}/whep/{}", cfg.base, cfg.stream);
    let session = whip::post_offer(
        &cfg.http,
        &cfg.base,
        &url,
        cfg.token.as_deref(),
        offer.to_sdp_string(),
    )
    .await?;
    let answer = SdpAnswer::from_sdp_string(&session.answer_sdp).context("WHEP answer SDP")?;
    peer.rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .context("applying the WHEP answer")?;

    let mut impairment = Impairment::new(cfg.impairment, cfg.id as u64, started);
    let mut buf = vec![0u8; 2048];
    // The Input::Receive that completed a frame: its time is the frame's arrival.
    let mut last_input = started;
    let tracker = &mut result.tracker;
    let mut connected_after = None;
    loop {
        let mut disconnected = false;
        let timeout = peer.drain(|e| match e {
            Event::Connected => connected_after = Some(last_input.duration_since(started)),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                disconnected = true
            }
            Event::MediaData(d) => {
                let stamp = read_stamp(&d.data);
                let sent = stamp.map(|s| cfg.epoch + Duration::from_micros(s.send_us));
                let delay = sent.map(|sent| last_input.saturating_duration_since(sent));
                // Sent before we even asked: replayed from the server's GOP cache.
                let catch_up = sent.is_some_and(|sent| sent < started);
                tracker.on_frame(last_input, d.is_keyframe(), stamp, delay, catch_up);
            }
            _ => {}
        });
        if disconnected || !peer.rtc.is_alive() {
            result.disconnected = true;
            break;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = peer.socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    let now = Instant::now();
                    last_input = now;
                    result.datagrams += 1;
                    if let Some(data) = buf.get(..n) {
                        if impairment.admit(now, data) {
                            peer.receive(now, source, data);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(timeout.into()) => {
                last_input = Instant::now();
                peer.timeout(last_input);
            }
        }
    }
    result.connected_after = connected_after;
    result.impairment_drops = impairment.dropped;
    Ok(session.url)
}
