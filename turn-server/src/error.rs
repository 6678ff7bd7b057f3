use std::net::SocketAddr;

/// Why the TURN server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// No UDP, TCP or TLS listener was configured.
    #[error("no TURN listener configured (use --turn-udp, --turn-tcp or --turn-tls)")]
    NoListener,
    /// A listener address could not be bound.
    #[error("binding TURN listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The `turns:` certificate or key could not be loaded.
    #[error(transparent)]
    Certificate(#[from] crate::certificate::CertificateError),
    /// `--turn-host` is not a DNS name.
    #[error("invalid TURN host: {reason}")]
    Host { reason: String },
    /// The UDP relay thread or its runtime could not be started.
    #[error("starting the TURN UDP thread: {0}")]
    Thread(#[source] std::io::Error),
}
