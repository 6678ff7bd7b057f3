//! Prometheus instruments of the ingest listeners.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Ingest protocols, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rtmp,
    Srt,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Srt => "srt",
        }
    }
}

#[derive(Clone)]
pub struct IngestMetrics {
    connections: IntCounterVec,
    drops: IntCounterVec,
    publishers: IntGaugeVec,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> Result<IngestMetrics, prometheus::Error> {
        let m = IngestMetrics::unregistered()?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.drops.clone()))?;
        registry.register(Box::new(m.publishers.clone()))?;
        Ok(m)
    }

    /// Instruments registered nowhere (tests, tools).
    pub fn unregistered() -> Result<IngestMetrics, prometheus::Error> {
        Ok(IngestMetrics {
            connections: IntCounterVec::new(
                Opts::new(
                    "relaycast_ingest_connections_total",
                    "Connections accepted by an ingest listener",
                ),
                &["protocol"],
            )?,
            drops: IntCounterVec::new(
                Opts::new(
                    "relaycast_ingest_drops_total",
                    "Ingest connections closed by the server, by reason (handshake, protocol, \
                     auth, throttled, busy, codec, media, stalled, replaced, limit, io)",
                ),
                &["protocol", "reason"],
            )?,
            publishers: IntGaugeVec::new(
                Opts::new(
                    "relaycast_ingest_publishers",
                    "Streams being published through an ingest listener now",
                ),
                &["protocol"],
            )?,
        })
    }

    pub fn connection(&self, p: Protocol) {
        self.connections.with_label_values(&[p.label()]).inc();
    }

    pub fn drop(&self, p: Protocol, reason: &str) {
        self.drops.with_label_values(&[p.label(), reason]).inc();
    }

    pub fn drops(&self, p: Protocol, reason: &str) -> u64 {
        self.drops.with_label_values(&[p.label(), reason]).get()
    }

    pub fn publisher_started(&self, p: Protocol) {
        self.publishers.with_label_values(&[p.label()]).inc();
    }

    pub fn publisher_ended(&self, p: Protocol) {
        self.publishers.with_label_values(&[p.label()]).dec();
    }
}
