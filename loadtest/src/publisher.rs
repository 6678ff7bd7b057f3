//! The synthetic WHIP publisher: loops the pre-encoded layers at 30 fps, each
//! frame stamped (SEI) with its send time and sequence number, rid-based
//! simulcast (RFC 8853) or one layer. A keyframe request restarts the
//! requested layer's loop at its IDR, as a real encoder would answer it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::SimulcastLayer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt, Rid, Simulcast};
use str0m::{Event, IceConnectionState, RtcConfig};
use tokio::sync::{oneshot, watch};

use crate::rtc_driver::RtcDriver;
use crate::sei::{stamp_access_unit, Stamp};
use crate::source::{EncodedLayer, FRAME_INTERVAL, TICKS_PER_FRAME};
use crate::whip;

pub struct PublisherConfig {
    /// The WHIP endpoint to POST the offer to.
    pub whip_url: String,
    /// Sent as the bearer token; `None` for servers that take no credential.
    pub key: Option<String>,
    pub simulcast: bool,
    pub layers: Arc<Vec<EncodedLayer>>,
    /// Stamps are µs since this instant.
    pub epoch: Instant,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PublisherReport {
    pub connected_ms: Option<f64>,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub keyframe_requests: u64,
    pub send_errors: u64,
    pub disconnected: bool,
}

struct LayerState {
    rid: Option<Rid>,
    index: u8,
    /// Next position in the loop.
    pos: usize,
    seq: u64,
}

/// Runs until `stop` flips (or the session dies). `connected` fires once
/// ICE+DTLS are up.
pub async fn run(
    cfg: PublisherConfig,
    connected: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Result<PublisherReport> {
    let started = Instant::now();
    let rtc = RtcConfig::new()
        .clear_codecs()
        .enable_h264(true)
        .build(started);
    let mut peer = RtcDriver::bind(rtc).await?;
    let layers: Vec<&EncodedLayer> = if cfg.simulcast {
        cfg.layers.iter().collect()
    } else {
        cfg.layers
            .iter()
            .max_by_key(|l| l.spec.width)
            .into_iter()
            .collect()
    };
    let simulcast = cfg.simulcast.then(|| {
        let mut s = Simulcast::new();
        for l in &layers {
            s.add_send_layer(SimulcastLayer::new(l.spec.rid));
        }
        s
    });
    let mut sdp = peer.rtc.sdp_api();
    let mid = sdp.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("relaycast-load".into()),
        Some("video".into()),
        simulcast,
    );
    let (offer, pending) = sdp.apply().context("no offer to make")?;
    let http = whip::client()?;
    let session = whip::post_offer(
        &http,
        &cfg.whip_url,
        cfg.key.as_deref(),
        offer.to_sdp_string(),
    )
    .await
    .context("WHIP publish")?;
    let answer = SdpAnswer::from_sdp_string(&session.answer_sdp).context("WHIP answer SDP")?;
    peer.rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .context("applying the WHIP answer")?;

    let mut state: Vec<LayerState> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerState {
            rid: cfg.simulcast.then(|| Rid::from(l.spec.rid)),
            index: i as u8,
            pos: 0,
            seq: 0,
        })
        .collect();
    let mut report = PublisherReport::default();
    let mut connected = Some(connected);
    let mut is_connected = false;
    let mut pt: Option<Pt> = None;
    let mut frame_no: u64 = 0;
    let mut tick = tokio::time::interval(FRAME_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut buf = vec![0u8; 2048];
    let mut keyframe_for: Vec<Option<Rid>> = Vec::new();
    loop {
        let mut disconnected = false;
        let timeout = peer.drain(|e| match e {
            Event::Connected => is_connected = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                disconnected = true
            }
            Event::KeyframeRequest(r) => keyframe_for.push(r.rid),
            _ => {}
        });
        if is_connected {
            if let Some(tx) = connected.take() {
                report.connected_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                let _ = tx.send(());
            }
        }
        for rid in keyframe_for.drain(..) {
            report.keyframe_requests += 1;
            for l in state.iter_mut().filter(|l| rid.is_none() || l.rid == rid) {
                l.pos = 0;
            }
        }
        if disconnected || !peer.rtc.is_alive() {
            report.disconnected = true;
            break;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = peer.socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    if let Some(data) = buf.get(..n) {
                        peer.receive(Instant::now(), source, data);
                    }
                }
            }
            _ = tick.tick(), if is_connected => {
                let pt = match pt {
                    Some(pt) => pt,
                    None => {
                        let found = h264_pt(&mut peer, mid)?;
                        pt = Some(found);
                        found
                    }
                };
                for (l, layer) in state.iter_mut().zip(&layers) {
                    let now = Instant::now();
                    let stamp = Stamp {
                        send_us: now.saturating_duration_since(cfg.epoch).as_micros() as u64,
                        seq: l.seq,
                        layer: l.index,
                    };
                    let au = &layer.frames[l.pos];
                    let data = stamp_access_unit(au, &stamp);
                    report.bytes_sent += data.len() as u64;
                    let Some(mut writer) = peer.rtc.writer(mid) else {
                        bail!("publisher media vanished");
                    };
                    if let Some(rid) = l.rid {
                        writer = writer.rid(rid);
                    }
                    let time = MediaTime::new(frame_no * TICKS_PER_FRAME, Frequency::NINETY_KHZ);
                    writer
                        .write(pt, now, time, data)
                        .map_err(|e| anyhow!("writing a frame: {e}"))?;
                    report.frames_sent += 1;
                    l.seq += 1;
                    l.pos = (l.pos + 1) % layer.frames.len();
                }
                frame_no += 1;
            }
            _ = tokio::time::sleep_until(timeout.into()) => peer.timeout(Instant::now()),
        }
    }
    report.send_errors = peer.send_errors;
    if let Some(url) = session.url {
        let _ = whip::delete(&http, &url).await;
    }
    if connected.is_some() {
        bail!("publisher never connected");
    }
    Ok(report)
}

/// The negotiated H.264 payload type (packetization-mode 1 preferred).
fn h264_pt(peer: &mut RtcDriver, mid: Mid) -> Result<Pt> {
    let writer = peer
        .rtc
        .writer(mid)
        .context("publisher media not negotiated")?;
    let mut h264: Vec<_> = writer
        .payload_params()
        .filter(|p| p.spec().codec == Codec::H264)
        .map(|p| (p.spec().format.packetization_mode == Some(1), p.pt()))
        .collect();
    h264.sort_by_key(|(mode1, _)| !*mode1);
    h264.first()
        .map(|(_, pt)| *pt)
        .context("the server accepted no H.264 payload type")
}

/// How long to wait for the publisher to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
