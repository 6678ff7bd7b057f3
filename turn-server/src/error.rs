use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// A certificate or key file could not be read or parsed.
    #[error("reading {path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file held no certificate.
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    /// `--turn-host` is not a DNS name.
    #[error("invalid TURN host: {reason}")]
    Host { reason: String },
    /// The UDP relay thread or its runtime could not be started.
    #[error("starting the TURN UDP thread: {0}")]
    Thread(#[source] std::io::Error),
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}
