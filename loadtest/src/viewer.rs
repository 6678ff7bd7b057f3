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
use crate::rtc_driver::{BatchRecv, RtcDriver};
use crate::sei::read_stamp;
use crate::stats::FrameTracker;
use crate::whip;

/// Reads per socket wake-up before timeouts and the stop signal get a turn.
const MAX_READS_PER_WAKE: usize = 16;

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
    let rx = BatchRecv::new(&peer.socket);
    let mut buf = vec![0u8; rx.buffer_len()];
    let mut seen = Seen {
        cfg,
        started,
        last_input: started,
        connected_after: None,
        disconnected: false,
        tracker: &mut result.tracker,
    };
    let sleep = tokio::time::sleep_until(started.into());
    tokio::pin!(sleep);
    loop {
        let timeout = peer.drain(|e| seen.on_event(e));
        if seen.disconnected || !peer.rtc.is_alive() {
            result.disconnected = true;
            break;
        }
        if sleep.deadline() != timeout.into() {
            sleep.as_mut().reset(timeout.into());
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = peer.socket.readable() => {
                if r.is_err() {
                    // The runtime's I/O driver is gone: nothing more will
                    // arrive, and waiting again would spin.
                    result.disconnected = true;
                    break;
                }
                // Everything queued, in a bounded number of reads so that
                // timeouts and the stop signal still get their turn.
                for _ in 0..MAX_READS_PER_WAKE {
                    let Some(batch) = rx.try_recv(&peer.socket, &mut buf) else {
                        break;
                    };
                    let now = Instant::now();
                    for data in batch.datagrams(&buf) {
                        seen.last_input = now;
                        result.datagrams += 1;
                        if impairment.admit(now, data) {
                            peer.receive(now, batch.source, data);
                            peer.drain(|e| seen.on_event(e));
                        }
                    }
                }
            }
            _ = &mut sleep => {
                seen.last_input = Instant::now();
                peer.timeout(seen.last_input);
            }
        }
    }
    let connected_after = seen.connected_after;
    result.connected_after = connected_after;
    result.impairment_drops = impairment.dropped;
    Ok(session.url)
}

/// What the viewer makes of str0m's events.
struct Seen<'a> {
    cfg: &'a ViewerConfig,
    started: Instant,
    /// Time of the input that completed a frame: the frame's arrival.
    last_input: Instant,
    connected_after: Option<Duration>,
    disconnected: bool,
    tracker: &'a mut FrameTracker,
}

impl Seen<'_> {
    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.connected_after = Some(self.last_input.duration_since(self.started))
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.disconnected = true
            }
            Event::MediaData(d) => {
                let stamp = read_stamp(&d.data);
                let sent = stamp.map(|s| self.cfg.epoch + Duration::from_micros(s.send_us));
                let delay = sent.map(|sent| self.last_input.saturating_duration_since(sent));
                // Sent before we even asked: replayed from the server's GOP cache.
                let catch_up = sent.is_some_and(|sent| sent < self.started);
                self.tracker
                    .on_frame(self.last_input, d.is_keyframe(), stamp, delay, catch_up);
            }
            _ => {}
        }
    }
}
