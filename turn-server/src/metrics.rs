//! Prometheus instruments of the TURN server.

use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct Metrics {
    /// Allocations alive now.
    pub allocations: IntGauge,
    /// Payload bytes relayed, both directions.
    pub relayed_bytes: IntCounter,
    /// Requests that carried credentials we refused (wrong, unknown, expired).
    pub auth_failures: IntCounter,
    /// Credentialed requests dropped unanswered because their address had
    /// too many failed credential checks.
    pub auth_throttled: IntCounter,
    /// Allocate requests refused by a per-user or total quota (486).
    pub quota_rejections: IntCounter,
    /// Datagrams or stream records that were not valid STUN or ChannelData.
    pub malformed: IntCounter,
}

impl Metrics {
    /// Creates the instruments and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics::unregistered();
        registry.register(Box::new(m.allocations.clone()))?;
        registry.register(Box::new(m.relayed_bytes.clone()))?;
        registry.register(Box::new(m.auth_failures.clone()))?;
        registry.register(Box::new(m.auth_throttled.clone()))?;
        registry.register(Box::new(m.quota_rejections.clone()))?;
        registry.register(Box::new(m.malformed.clone()))?;
        Ok(m)
    }

    /// Instruments not exported anywhere (tests, embedded use).
    pub fn unregistered() -> Metrics {
        // The names and help strings are constants, so creation cannot fail.
        Metrics {
            allocations: IntGauge::new("relaycast_turn_allocations", "TURN allocations alive")
                .expect("valid metric"),
            relayed_bytes: IntCounter::new(
                "relaycast_turn_relayed_bytes_total",
                "Payload bytes relayed by TURN, both directions",
            )
            .expect("valid metric"),
            auth_failures: IntCounter::new(
                "relaycast_turn_auth_failures_total",
                "TURN requests with refused credentials",
            )
            .expect("valid metric"),
            auth_throttled: IntCounter::new(
                "relaycast_turn_auth_throttled_total",
                "TURN requests dropped because their address failed too many credential checks",
            )
            .expect("valid metric"),
            quota_rejections: IntCounter::new(
                "relaycast_turn_quota_rejections_total",
                "TURN allocations refused by quota",
            )
            .expect("valid metric"),
            malformed: IntCounter::new(
                "relaycast_turn_malformed_total",
                "TURN input that was neither valid STUN nor ChannelData",
            )
            .expect("valid metric"),
        }
    }
}
