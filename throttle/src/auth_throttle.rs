//! [`AuthThrottle`]: the HTTP edge's one failed-credential limiter, shared by
//! WHIP, WHEP and the REST API, with its Prometheus counters.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::{ClientKey, FailureLimiter, Limits};

/// Where a credential was presented (the `kind` label of the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// A WHIP publish: stream key or publish token.
    Whip,
    /// A WHEP play: play token, account token or stream key.
    Whep,
    /// A REST API call with an integrator API key (`rci_…`).
    ApiKey,
    /// A REST API call with a JWT.
    ApiToken,
    /// LL-HLS or VOD of a non-public stream: play token or stream key.
    Media,
    /// An RTMP or SRT publish: stream key or publish token.
    Rtmp,
}

impl AuthKind {
    pub fn label(self) -> &'static str {
        match self {
            AuthKind::Whip => "whip",
            AuthKind::Whep => "whep",
            AuthKind::ApiKey => "api_key",
            AuthKind::ApiToken => "api_token",
            AuthKind::Media => "media",
            AuthKind::Rtmp => "rtmp",
        }
    }
}

/// One table of failures per client address for every HTTP credential, so
/// an address guessing stream keys and API keys at once has one budget.
/// Requests without a known peer address (in-process callers) are never
/// refused, but their failures are still counted in the metrics.
#[derive(Debug)]
pub struct AuthThrottle {
    limiter: Mutex<FailureLimiter<ClientKey>>,
    failures: IntCounterVec,
    throttled: IntCounterVec,
}

impl AuthThrottle {
    pub fn new(limits: Limits) -> AuthThrottle {
        // Names, help strings and labels are constants: creation cannot fail.
        let failures = IntCounterVec::new(
            Opts::new(
                "relaycast_auth_failures_total",
                "Requests refused for a bad, expired or revoked credential",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let throttled = IntCounterVec::new(
            Opts::new(
                "relaycast_auth_throttled_total",
                "Requests refused (429) because their address had too many failed credentials",
            ),
            &["kind"],
        )
        .expect("valid metric");
        AuthThrottle {
            limiter: Mutex::new(FailureLimiter::new(limits)),
            failures,
            throttled,
        }
    }

    /// Registers the counters in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.throttled.clone()))
    }

    pub fn limits(&self) -> Limits {
        self.limiter.lock().limits()
    }

    /// Before a credential from `ip` is checked: `Err(retry_after)` if the
    /// address is refused (counted as throttled).
    pub fn check(&self, ip: Option<IpAddr>, kind: AuthKind, now: Instant) -> Result<(), Duration> {
        let Some(ip) = ip else { return Ok(()) };
        let verdict = self.limiter.lock().check(&ClientKey::from(ip), now);
        if verdict.is_err() {
            self.throttled.with_label_values(&[kind.label()]).inc();
        }
        verdict
    }

    /// A credential from `ip` was bad, expired or revoked.
    pub fn failed(&self, ip: Option<IpAddr>, kind: AuthKind, now: Instant) {
        self.failures.with_label_values(&[kind.label()]).inc();
        if let Some(ip) = ip {
            self.limiter.lock().failed(ClientKey::from(ip), now);
        }
    }

    /// Failures counted for `kind` (tests, diagnostics).
    pub fn failure_count(&self, kind: AuthKind) -> u64 {
        self.failures.with_label_values(&[kind.label()]).get()
    }

    /// Requests refused as throttled for `kind`.
    pub fn throttled_count(&self, kind: AuthKind) -> u64 {
        self.throttled.with_label_values(&[kind.label()]).get()
    }
}

impl Default for AuthThrottle {
    fn default() -> AuthThrottle {
        AuthThrottle::new(Limits::DEFAULT)
    }
}

/// `Retry-After` in whole seconds, rounded up and at least 1: a client that
/// waits exactly that long is past the window.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_per_address_across_kinds_and_no_address_is_never_refused() {
        let t = AuthThrottle::new(Limits {
            failures: 3,
            window: Duration::from_secs(60),
            capacity: 100,
        });
        let t0 = Instant::now();
        let ip = Some(IpAddr::from([203, 0, 113, 1]));
        t.failed(ip, AuthKind::Whip, t0);
        t.failed(ip, AuthKind::ApiKey, t0);
        assert!(t.check(ip, AuthKind::Whep, t0).is_ok());
        t.failed(ip, AuthKind::Whep, t0);
        assert!(t.check(ip, AuthKind::Whip, t0).is_err());
        assert_eq!(t.throttled_count(AuthKind::Whip), 1);
        assert_eq!(t.failure_count(AuthKind::Whip), 1);
        for _ in 0..10 {
            t.failed(None, AuthKind::Whip, t0);
        }
        assert!(t.check(None, AuthKind::Whip, t0).is_ok());
        assert!(t
            .check(Some(IpAddr::from([203, 0, 113, 2])), AuthKind::Whip, t0)
            .is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(40)), 40);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
