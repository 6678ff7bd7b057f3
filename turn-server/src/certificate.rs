//! A TLS certificate chain and private key read from PEM files, replaced
//! while the server runs: on SIGHUP, and when either file changes on disk
//! (checked every `poll` by modification time and length, so atomic
//! renames, symlink swaps of mounted secrets and in-place rewrites are all
//! seen).
//!
//! Both TLS listeners of relaycast use it: `turns:` here and HTTPS in
//! `api`. [`ReloadingCertificate`] is a rustls certificate resolver, so a
//! reload changes what the next handshake presents; connections already
//! open keep theirs. A reload that fails (a file missing, half written, a
//! key that does not match the certificate) keeps the certificate in use
//! and says why.
//!
//! `ring` is the provider, as for every other rustls user in the workspace
//! (webrtc-rs's DTLS): a second provider would make rustls's process-wide
//! default ambiguous and panic in crates that rely on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate chain and private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// A file could not be read or held no valid PEM of the expected kind.
    #[error("reading {path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file held no certificate.
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    /// rustls refused the key, or the key is not the certificate's.
    #[error("certificate {cert} with key {key}: {source}")]
    Key {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What one look at the files did (see [`ReloadingCertificate::watch`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Reload {
    /// New certificate and key are in use.
    Loaded,
    /// The files changed or SIGHUP came, but could not be loaded; the
    /// previous certificate stays in use.
    Failed(CertificateError),
}

/// What identifies a version of a file without reading it.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A certificate a TLS listener presents, replaceable while it serves.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: TlsFiles,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when they were last looked at.
    seen: Mutex<(Stamp, Stamp)>,
}

impl ReloadingCertificate {
    /// Reads `files`; fails if they do not make a usable certificate.
    pub fn load(files: TlsFiles) -> Result<Arc<ReloadingCertificate>, CertificateError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = (stamp(&files.cert), stamp(&files.key));
        let key = read(&files, &provider)?;
        Ok(Arc::new(ReloadingCertificate {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        }))
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A server configuration (TLS 1.2 and 1.3, no client certificates)
    /// that presents this certificate and offers `alpn` (most preferred
    /// first; empty: no ALPN).
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<rustls::ServerConfig, CertificateError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// Reads the files again. On success the next handshakes present the
    /// new certificate; on failure the one in use stays.
    pub fn reload(&self) -> Result<(), CertificateError> {
        *self.seen.lock() = (stamp(&self.files.cert), stamp(&self.files.key));
        let key = read(&self.files, &self.provider)?;
        *self.current.write() = Arc::new(key);
        Ok(())
    }

    /// Whether either file changed since it was last read.
    fn changed_on_disk(&self) -> bool {
        *self.seen.lock() != (stamp(&self.files.cert), stamp(&self.files.key))
    }

    /// Reloads on SIGHUP (Unix) and, unless `poll` is `None`, when a file
    /// has changed, looking every `poll`; logs each outcome and hands it
    /// to `report` (for metrics). The SIGHUP handler is in place when this
    /// returns (call it inside the runtime); the future runs until
    /// dropped: spawn it and abort it with the listener. `what` names the
    /// listener in the log.
    pub fn watch(
        self: Arc<Self>,
        what: &'static str,
        poll: Option<Duration>,
        mut report: impl FnMut(&Reload) + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut hangup = hangup_signal(what);
        async move {
            let mut tick = poll.map(|every| {
                let mut t = tokio::time::interval(every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let why = tokio::select! {
                    () = next_hangup(&mut hangup) => "SIGHUP",
                    () = next_tick(&mut tick) => {
                        if !self.changed_on_disk() {
                            continue;
                        }
                        "the files changed"
                    }
                };
                let outcome = match self.reload() {
                    Ok(()) => {
                        tracing::info!(
                            listener = what,
                            cert = %self.files.cert.display(),
                            "TLS certificate reloaded ({why})"
                        );
                        Reload::Loaded
                    }
                    Err(e) => {
                        tracing::error!(
                            listener = what,
                            "TLS certificate not reloaded ({why}), keeping the one in use: {e}"
                        );
                        Reload::Failed(e)
                    }
                };
                report(&outcome);
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

fn pem(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> CertificateError + '_ {
    move |source| CertificateError::Pem {
        path: path.to_path_buf(),
        source,
    }
}

fn read(
    files: &TlsFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, CertificateError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem(&files.cert))?
        .collect::<Result<_, _>>()
        .map_err(pem(&files.cert))?;
    if certs.is_empty() {
        return Err(CertificateError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem(&files.key))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|source| CertificateError::Key {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<std::convert::Infallible>;

#[cfg(unix)]
fn hangup_signal(what: &str) -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                listener = what,
                "no SIGHUP handler, certificate reloads on file changes only: {e}"
            );
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal(_what: &str) -> Hangup {
    None
}

async fn next_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(s) = hangup {
        if s.recv().await.is_some() {
            return;
        }
        // The signal driver is gone (runtime shutting down).
        *hangup = None;
    }
    std::future::pending().await
}

async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> TlsFiles {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .expect("rcgen");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, c.cert.pem()).expect("write cert");
        std::fs::write(&files.key, c.key_pair.serialize_pem()).expect("write key");
        files
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "relaycast-cert-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn leaf(cert: &ReloadingCertificate) -> Vec<u8> {
        cert.current.read().cert[0].as_ref().to_vec()
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_in_use() {
        let dir = temp_dir("reload");
        let files = write_pair(&dir, &["a.example"]);
        let cert = ReloadingCertificate::load(files.clone()).expect("loads");
        let first = leaf(&cert);
        assert!(!cert.changed_on_disk());

        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().expect("key");
        std::fs::write(&files.key, other.serialize_pem()).expect("write key");
        assert!(cert.changed_on_disk());
        assert!(matches!(cert.reload(), Err(CertificateError::Key { .. })));
        assert_eq!(leaf(&cert), first, "the old certificate stays");
        assert!(
            !cert.changed_on_disk(),
            "a failed attempt is not retried until the next change"
        );

        // Garbage, then no file at all.
        std::fs::write(&files.cert, "not a certificate").expect("write");
        assert!(matches!(
            cert.reload(),
            Err(CertificateError::NoCertificate { .. })
        ));
        std::fs::remove_file(&files.cert).expect("remove");
        assert!(matches!(cert.reload(), Err(CertificateError::Pem { .. })));
        assert_eq!(leaf(&cert), first);

        // A good pair again.
        write_pair(&dir, &["b.example"]);
        cert.reload().expect("reloads");
        assert_ne!(leaf(&cert), first, "the new certificate is in use");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
