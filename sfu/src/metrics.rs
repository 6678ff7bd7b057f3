//! Prometheus instruments of the forwarder. Counters are atomics: cheap enough
//! for the per-packet path, and never a lock.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::ViewerEstimator;

/// Why a datagram or frame was dropped instead of forwarded.
#[derive(Debug, Clone, Copy)]
pub enum DropReason {
    /// Not parseable as STUN, DTLS, RTP or RTCP.
    Malformed,
    /// Well formed, but no session on this worker owns the source address.
    UnknownPeer,
    /// A worker's inbound queue was full; the frame was not handed over.
    QueueFull,
    /// The socket refused the send (buffer full).
    SendFailed,
    /// A video frame that a viewer could not decode yet (waiting for a keyframe).
    AwaitingKeyframe,
    /// A tap (the transcoder) did not keep up; the frame was not queued to it.
    TapFull,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::QueueFull => "queue_full",
            DropReason::SendFailed => "send_failed",
            DropReason::AwaitingKeyframe => "awaiting_keyframe",
            DropReason::TapFull => "tap_full",
        }
    }
}

/// Who caused a keyframe request to the publisher.
#[derive(Debug, Clone, Copy)]
pub enum KeyframeOrigin {
    ViewerJoin,
    /// A viewer holding back delta frames until a keyframe (after a gap,
    /// a new source or layer).
    ViewerWaiting,
    ViewerFeedback,
    PacketLoss,
}

impl KeyframeOrigin {
    fn label(self) -> &'static str {
        match self {
            KeyframeOrigin::ViewerJoin => "viewer_join",
            KeyframeOrigin::ViewerWaiting => "viewer_waiting",
            KeyframeOrigin::ViewerFeedback => "viewer_feedback",
            KeyframeOrigin::PacketLoss => "packet_loss",
        }
    }
}

fn estimator_label(source: ViewerEstimator) -> &'static str {
    match source {
        ViewerEstimator::Twcc => "twcc",
        ViewerEstimator::Remb => "remb",
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub publishers: IntGauge,
    pub viewers: IntGauge,
    pub packets_in: IntCounter,
    pub bytes_in: IntCounter,
    pub packets_out: IntCounter,
    pub bytes_out: IntCounter,
    pub frames_forwarded: IntCounter,
    drops: IntCounterVec,
    keyframe_requests: IntCounterVec,
    /// Requests actually sent to a publisher after throttling.
    pub keyframe_requests_sent: IntCounter,
    /// Joining viewers started from a cached GOP.
    pub gop_bursts: IntCounter,
    /// Text messages written on viewers' data channels.
    pub data_messages: IntCounter,
    /// Viewers' bandwidth estimates received, by source (`twcc`: computed
    /// here from the viewer's feedback; `remb`: reported by the viewer).
    estimates: IntCounterVec,
    /// Per viewer and live frame: from the frame complete at ingest to the
    /// end of the send pass after its write (the delay the SFU adds; for a
    /// viewer paced by its bandwidth estimator, packets the pacer still
    /// holds leave later and are not in it).
    pub forward_delay: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let m = Metrics {
            publishers: IntGauge::new(
                "relaycast_publishers",
                "Streams with a publisher session (a replaced session leaves at once)",
            )?,
            viewers: IntGauge::new("relaycast_viewers", "Viewing sessions")?,
            packets_in: IntCounter::new("relaycast_udp_packets_in_total", "Datagrams received")?,
            bytes_in: IntCounter::new("relaycast_udp_bytes_in_total", "Bytes received")?,
            packets_out: IntCounter::new("relaycast_udp_packets_out_total", "Datagrams sent")?,
            bytes_out: IntCounter::new("relaycast_udp_bytes_out_total", "Bytes sent")?,
            frames_forwarded: IntCounter::new(
                "relaycast_frames_forwarded_total",
                "Media frames written to viewers",
            )?,
            drops: IntCounterVec::new(
                Opts::new(
                    "relaycast_drops_total",
                    "Datagrams or frames dropped, by reason",
                ),
                &["reason"],
            )?,
            keyframe_requests: IntCounterVec::new(
                Opts::new(
                    "relaycast_keyframe_requests_total",
                    "Keyframe requests raised, by origin (before throttling)",
                ),
                &["origin"],
            )?,
            keyframe_requests_sent: IntCounter::new(
                "relaycast_keyframe_requests_sent_total",
                "Keyframe requests (PLI/FIR) sent to publishers after throttling",
            )?,
            gop_bursts: IntCounter::new(
                "relaycast_gop_bursts_total",
                "Joining viewers started from the cached group of pictures",
            )?,
            data_messages: IntCounter::new(
                "relaycast_data_channel_messages_total",
                "Messages (integrator events) written on viewers' data channels",
            )?,
            estimates: IntCounterVec::new(
                Opts::new(
                    "relaycast_viewer_bandwidth_estimates_total",
                    "Viewers' bandwidth estimates, by source (twcc: computed from their feedback; remb: reported by them, used only for viewers without TWCC)",
                ),
                &["source"],
            )?,
            forward_delay: Histogram::with_opts(
                HistogramOpts::new(
                    "relaycast_forward_delay_seconds",
                    "Per viewer and live frame: frame complete at ingest to the end of the send pass after its write",
                )
                .buckets(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1,
                    0.25, 1.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.publishers.clone()))?;
        registry.register(Box::new(m.viewers.clone()))?;
        registry.register(Box::new(m.packets_in.clone()))?;
        registry.register(Box::new(m.bytes_in.clone()))?;
        registry.register(Box::new(m.packets_out.clone()))?;
        registry.register(Box::new(m.bytes_out.clone()))?;
        registry.register(Box::new(m.frames_forwarded.clone()))?;
        registry.register(Box::new(m.drops.clone()))?;
        registry.register(Box::new(m.keyframe_requests.clone()))?;
        registry.register(Box::new(m.keyframe_requests_sent.clone()))?;
        registry.register(Box::new(m.gop_bursts.clone()))?;
        registry.register(Box::new(m.data_messages.clone()))?;
        registry.register(Box::new(m.estimates.clone()))?;
        registry.register(Box::new(m.forward_delay.clone()))?;
        // Make every label visible at zero from the start.
        for r in [
            DropReason::Malformed,
            DropReason::UnknownPeer,
            DropReason::QueueFull,
            DropReason::SendFailed,
            DropReason::AwaitingKeyframe,
        ] {
            m.drops.with_label_values(&[r.label()]);
        }
        for o in [
            KeyframeOrigin::ViewerJoin,
            KeyframeOrigin::ViewerWaiting,
            KeyframeOrigin::ViewerFeedback,
            KeyframeOrigin::PacketLoss,
        ] {
            m.keyframe_requests.with_label_values(&[o.label()]);
        }
        for s in [ViewerEstimator::Twcc, ViewerEstimator::Remb] {
            m.estimates.with_label_values(&[estimator_label(s)]);
        }
        Ok(m)
    }

    pub fn estimate(&self, source: ViewerEstimator) {
        self.estimates
            .with_label_values(&[estimator_label(source)])
            .inc();
    }

    pub fn drop(&self, reason: DropReason) {
        self.drops.with_label_values(&[reason.label()]).inc();
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.with_label_values(&[reason.label()]).get()
    }

    pub fn keyframe_request(&self, origin: KeyframeOrigin) {
        self.keyframe_requests
            .with_label_values(&[origin.label()])
            .inc();
    }
}
