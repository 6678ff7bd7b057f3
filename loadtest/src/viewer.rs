//! A lean WHEP viewer: its own `Rtc` and socket, video only, no decoding.
//! str0m decrypts and depacketizes; the viewer only reads the keyframe flag
//! and the SEI stamp of each frame. Its offer has one recvonly video
//! m-line and no data channel (SRS refuses offers with one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::{Event, IceConnectionState, RtcConfig};
use tokio::sync::watch;

use crate::impair::{Impairment, ImpairmentConfig};
use crate::received::Received;
use crate::rtc_driver::{BatchRecv, RtcDriver};
use crate::sei::read_stamp;
use crate::stats::FrameTracker;
use crate::whip;

/// Reads per socket wake-up before timeouts and the stop signal get a turn.
const MAX_READS_PER_WAKE: usize = 16;

/// RTP rather than RTCP, STUN or DTLS on a muxed port: first byte 128..=191
/// (RFC 7983 §7), and a second byte outside RTCP's packet types 192..=223
/// (RFC 5761 §4).
pub fn is_rtp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(192..=223).contains(second),
        _ => false,
    }
}

#[derive(Clone)]
pub struct ViewerConfig {
    pub id: usize,
    /// The WHEP endpoint to POST the offer to.
    pub whep_url: String,
    pub token: Option<String>,
    pub epoch: Instant,
    pub impairment: ImpairmentConfig,
    pub http: reqwest::Client,
    /// RTP datagrams from the server (media, retransmissions and padding
    /// probes alike: each one a packet the server protected and sent);
    /// STUN, DTLS and RTCP are not counted.
    pub received: Arc<Received>,
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
    let session = whip::post_offer(
        &cfg.http,
        &cfg.whep_url,
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
    let (mut rtp_packets, mut rtp_bytes) = (0u64, 0u64);
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
                        if is_rtp(data) {
                            rtp_packets += 1;
                            rtp_bytes += data.len() as u64;
                        }
                        if impairment.admit(now, data) {
                            peer.receive(now, batch.source, data);
                            peer.drain(|e| seen.on_event(e));
                        }
                    }
                }
                cfg.received.store(rtp_packets, rtp_bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rtp_is_counted_on_a_muxed_port() {
        // RTP, PT 96 with and without the marker bit.
        assert!(is_rtp(&[0x80, 96, 0, 1]));
        assert!(is_rtp(&[0x80, 0x80 | 96, 0, 1]));
        // RTCP: SR 200, RR 201, transport feedback 205, PSFB 206.
        for pt in [200u8, 201, 205, 206] {
            assert!(!is_rtp(&[0x80, pt, 0, 1]), "RTCP {pt}");
        }
        // STUN (first byte 0..=3), DTLS (20..=63), too short.
        assert!(!is_rtp(&[0x00, 0x01, 0, 0]));
        assert!(!is_rtp(&[22, 0xfe, 0xfd]));
        assert!(!is_rtp(&[0x80]));
    }
}
