//! HTTPS on the HTTP listener (`--tls-cert`, `--tls-key`): a non-browser
//! client (reqwest on rustls, trusting a CA made here) publishes with WHIP
//! and views with WHEP over HTTP/2; the certificate is replaced when its
//! files change and on SIGHUP to `relaycast serve`, and kept when the new
//! files are broken; a plain HTTP request on the port gets a clear 400, and
//! garbage, a handshake that never ends or a TLS connection that never
//! sends a request are closed without harm to the server.
//!
//! The certificate names `relaycast.test`, which the clients resolve to
//! the listener's loopback address: what a deployment with a real name
//! does, without touching the system resolver. Timing bounds are
//! generous: CI is a loaded 2-core machine.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webrtc::peer_connection::configuration::RTCConfiguration;

const HOST: &str = "relaycast.test";

/// How long a test waits for something the server does within seconds.
const BOUND: Duration = Duration::from_secs(30);

/// A certificate authority made for one test, and leaves it signs.
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A leaf certificate and its key, as PEM, and the leaf as DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl TestCa {
    fn new() -> Result<TestCa> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "relaycast test CA");
        let cert = params.self_signed(&key)?;
        Ok(TestCa { cert, key })
    }

    fn leaf(&self, name: &str) -> Result<Leaf> {
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])?
            .signed_by(&key, &self.cert, &self.key)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }

    /// A client that trusts only this CA, reaches `HOST` at `addr`, keeps
    /// no idle connection and records the server's certificate.
    fn client(&self, addr: SocketAddr) -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert.pem().as_bytes())?)
            .resolve(HOST, addr)
            .pool_max_idle_per_host(0)
            .tls_info(true)
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the HTTPS client")
    }

    /// A raw TLS client config trusting this CA, offering `alpn`.
    fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<tokio_rustls::rustls::ClientConfig>> {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone())?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Writes `leaf` to `files`, each file replaced at once (written beside
/// it, then renamed over it), key first.
fn install(leaf: &Leaf, files: &turn_server::TlsFiles) -> Result<()> {
    for (path, pem) in [(&files.key, &leaf.key_pem), (&files.cert, &leaf.cert_pem)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, pem)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}

fn files_in(dir: &Path) -> turn_server::TlsFiles {
    turn_server::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

async fn https_server(
    files: &turn_server::TlsFiles,
    watch_interval: Option<Duration>,
    tweak: impl FnOnce(&mut api::http_listener::HttpLimits),
) -> Result<TestServer> {
    TestServer::start_with(|c| {
        c.https = Some(api::HttpsConfig {
            files: files.clone(),
            watch_interval,
        });
        tweak(&mut c.http);
    })
    .await
}

fn base(addr: SocketAddr) -> String {
    format!("https://{HOST}:{}", addr.port())
}

/// The leaf certificate a new client is shown (GET /healthz). A client of
/// its own each time: one that resumed an earlier TLS session would be
/// shown no certificate and report the earlier one.
async fn served_leaf(ca: &TestCa, addr: SocketAddr) -> Result<Vec<u8>> {
    let base = base(addr);
    let r = ca
        .client(addr)?
        .get(format!("{base}/healthz"))
        .send()
        .await?;
    ensure!(r.status().is_success(), "/healthz: {}", r.status());
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .context("no TLS info on the response")
}

/// Polls until new clients are shown `want`.
async fn wait_for_leaf(ca: &TestCa, addr: SocketAddr, want: &Leaf) -> Result<()> {
    let deadline = Instant::now() + BOUND;
    loop {
        let seen = served_leaf(ca, addr).await;
        match seen {
            Ok(der) if der == want.der => return Ok(()),
            other if Instant::now() > deadline => {
                bail!(
                    "the new certificate was never served: {:?}",
                    other.map(|d| d.len())
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A labelled series from `/metrics`, 0 when absent.
async fn series(client: &reqwest::Client, base: &str, name_and_labels: &str) -> Result<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_and_whep_run_over_https_with_http2() -> Result<()> {
    init_logging();
    with_timeout(Duration::from_secs(120), async {
        let ca = TestCa::new()?;
        let dir = TempDir::new("relaycast-https")?;
        let files = files_in(dir.path());
        install(&ca.leaf(HOST)?, &files)?;
        let server = https_server(&files, Some(api::TLS_WATCH_INTERVAL), |_| {}).await?;
        ensure!(server.server().is_https());
        let addr = server.server().http_addr();
        let base = base(addr);
        let client = ca.client(addr)?;

        let health = client.get(format!("{base}/healthz")).send().await?;
        ensure!(health.status().is_success());
        ensure!(
            health.version() == reqwest::Version::HTTP_2,
            "ALPN did not give HTTP/2: {:?}",
            health.version()
        );

        // Publish: the WHIP POST and the publisher's media.
        let key = server.create_stream("secure", false).await?;
        let publisher = PublisherPeer::new(&PublishOptions::h264_and_opus()).await?;
        let offer = publisher.peer.create_offer(false).await?;
        let whip = post_offer_with(&client, &base, "/whip/secure", Some(&key), &offer).await?;
        ensure!(
            whip.version == reqwest::Version::HTTP_2,
            "WHIP over {:?}",
            whip.version
        );
        ensure!(
            whip.session_url.starts_with("https://"),
            "the session URL is not HTTPS: {}",
            whip.session_url
        );
        publisher.peer.apply_answer(&whip.answer_sdp).await?;
        publisher.peer.wait_connected(CONNECT_TIMEOUT).await?;
        let frames = test_pattern_320x240(60).await?;
        let video = spawn_sample_sender(
            publisher.video_track()?,
            Arc::new(frames),
            FRAME_DURATION_30FPS,
            true,
        );
        let audio = spawn_opus_sender(publisher.audio_track()?);

        // View: a WHEP viewer connects and decodes pictures.
        let ViewerPeer { peer, media } = ViewerPeer::with_config(
            &ViewOptions::browser_like(VideoSink::DecodeH264),
            RTCConfiguration::default(),
        )
        .await?;
        let offer = peer.create_offer(false).await?;
        let whep = post_offer_with(&client, &base, "/whep/secure", None, &offer).await?;
        ensure!(
            whep.version == reqwest::Version::HTTP_2,
            "WHEP over {:?}",
            whep.version
        );
        peer.apply_answer(&whep.answer_sdp).await?;
        peer.wait_connected(CONNECT_TIMEOUT).await?;
        media
            .wait_until(BOUND, "5 decoded pictures", |s| s.decoded.len() >= 5)
            .await?;

        // Both sessions end with DELETE over the same HTTPS.
        for url in [&whep.session_url, &whip.session_url] {
            let r = client.delete(url.as_str()).send().await?;
            ensure!(r.status().is_success(), "DELETE {url}: {}", r.status());
            ensure!(r.version() == reqwest::Version::HTTP_2);
        }
        video.stop().await?;
        audio.stop().await?;
        peer.close().await?;
        publisher.peer.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_replace_the_certificate_and_broken_ones_keep_it() -> Result<()> {
    init_logging();
    with_timeout(Duration::from_secs(120), async {
        let ca = TestCa::new()?;
        let dir = TempDir::new("relaycast-https-reload")?;
        let files = files_in(dir.path());
        let first = ca.leaf(HOST)?;
        install(&first, &files)?;
        let server = https_server(&files, Some(Duration::from_secs(1)), |_| {}).await?;
        let addr = server.server().http_addr();
        let base = base(addr);
        let client = ca.client(addr)?;
        ensure!(served_leaf(&ca, addr).await? == first.der);

        let second = ca.leaf(HOST)?;
        install(&second, &files)?;
        wait_for_leaf(&ca, addr, &second).await?;
        let loaded = r#"relaycast_tls_certificate_reloads_total{result="loaded"}"#;
        ensure!(series(&client, &base, loaded).await? >= 1.0);

        // A certificate file that is not one: the reload fails, is counted
        // and logged, and the second certificate stays. (Installing a pair
        // may itself count a failure, when the watch looks between the two
        // renames; hence "more than before".)
        let failed = r#"relaycast_tls_certificate_reloads_total{result="failed"}"#;
        let before = series(&client, &base, failed).await?;
        std::fs::write(&files.cert, "not a certificate")?;
        wait_for_series_above(&client, &base, failed, before).await?;
        ensure!(
            served_leaf(&ca, addr).await? == second.der,
            "a failed reload changed the certificate"
        );
        // A key that is not the certificate's: refused too.
        let third = ca.leaf(HOST)?;
        let before = series(&client, &base, failed).await?;
        std::fs::write(&files.cert, &third.cert_pem)?;
        wait_for_series_above(&client, &base, failed, before).await?;
        ensure!(served_leaf(&ca, addr).await? == second.der);
        // The matching key arrives: the third is served.
        std::fs::write(&files.key, &third.key_pem)?;
        wait_for_leaf(&ca, addr, &third).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

/// Polls until the series is above `before`.
async fn wait_for_series_above(
    client: &reqwest::Client,
    base: &str,
    name_and_labels: &str,
    before: f64,
) -> Result<()> {
    let deadline = Instant::now() + BOUND;
    while series(client, base, name_and_labels).await? <= before {
        ensure!(
            Instant::now() < deadline,
            "{name_and_labels} stayed at {before}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Reads until the peer closes; what was read, or `None` if nothing came
/// to an end within `BOUND`.
async fn read_to_close(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_garbage_and_stalled_handshakes_are_refused_without_harm() -> Result<()> {
    init_logging();
    with_timeout(Duration::from_secs(120), async {
        let ca = TestCa::new()?;
        let dir = TempDir::new("relaycast-https-refuse")?;
        let files = files_in(dir.path());
        install(&ca.leaf(HOST)?, &files)?;
        let server = https_server(&files, None, |l| {
            l.header_timeout = Duration::from_secs(1);
            l.idle_timeout = Duration::from_secs(2);
        })
        .await?;
        let addr = server.server().http_addr();
        let base = base(addr);
        let client = ca.client(addr)?;

        // Plain HTTP: told, in the API's error shape, and closed.
        let r = http_client()?
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .context("a plain HTTP request on the HTTPS port gets an answer")?;
        ensure!(
            r.status() == reqwest::StatusCode::BAD_REQUEST,
            "{}",
            r.status()
        );
        let body: serde_json::Value = r.json().await?;
        ensure!(
            body["error"].as_str().is_some_and(|e| e.contains("HTTPS")),
            "{body}"
        );

        // Bytes that are not TLS, and a handshake record of garbage: closed.
        for garbage in [
            &b"\x00\x01\x02garbage\xff\xfe"[..],
            &b"\x16\x03\x01\x00\x05\xde\xad\xbe\xef\x00"[..],
        ] {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(garbage).await?;
            let answer = read_to_close(&mut s).await;
            ensure!(
                answer.is_some(),
                "garbage {garbage:?} left the connection open"
            );
        }

        // TCP with no handshake, and a handshake left half way: closed
        // after the header timeout.
        let mut silent = TcpStream::connect(addr).await?;
        ensure!(
            read_to_close(&mut silent).await.is_some(),
            "a connection without a handshake stayed open"
        );
        let mut half = TcpStream::connect(addr).await?;
        half.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            .await?;
        ensure!(
            read_to_close(&mut half).await.is_some(),
            "a half handshake stayed open"
        );

        // A finished handshake with no request, then a kept-alive
        // connection left idle: closed by the listener's timers as on
        // plain HTTP.
        let connector = tokio_rustls::TlsConnector::from(ca.rustls_config(&[b"http/1.1"])?);
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(HOST)?;
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector.connect(name.clone(), tcp).await?;
        let mut buf = [0u8; 1024];
        let quiet = tokio::time::timeout(BOUND, tls.read(&mut buf)).await;
        ensure!(
            matches!(quiet, Ok(Ok(0)) | Ok(Err(_))),
            "a TLS connection without a request stayed open: {quiet:?}"
        );
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: relaycast.test\r\n\r\n")
            .await?;
        let mut got = Vec::new();
        let idle = tokio::time::timeout(BOUND, async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        ensure!(
            idle.is_ok(),
            "an idle kept-alive TLS connection stayed open"
        );
        let text = String::from_utf8_lossy(&got);
        ensure!(text.starts_with("HTTP/1.1 200"), "{text}");

        // Every refusal was counted, and the server still serves.
        for (reason, at_least) in [
            ("plain_http", 1.0),
            ("not_tls", 1.0),
            ("handshake", 1.0),
            ("timeout", 2.0),
        ] {
            let n = series(
                &client,
                &base,
                &format!("relaycast_http_tls_refused_total{{reason=\"{reason}\"}}"),
            )
            .await?;
            ensure!(n >= at_least, "{reason}: {n} counted, expected {at_least}");
        }
        ensure!(
            series(
                &client,
                &base,
                r#"relaycast_http_connections_timed_out_total{reason="header"}"#
            )
            .await?
                >= 1.0
        );
        ensure!(
            series(
                &client,
                &base,
                r#"relaycast_http_connections_timed_out_total{reason="idle"}"#
            )
            .await?
                >= 1.0
        );
        ensure!(client
            .get(format!("{base}/healthz"))
            .send()
            .await?
            .status()
            .is_success());
        server.shutdown().await;
        Ok(())
    })
    .await
}

const BIN: &str = env!("CARGO_BIN_EXE_relaycast");

/// `relaycast serve` as a child process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_relaycast_serve_reload_its_certificate() -> Result<()> {
    init_logging();
    with_timeout(Duration::from_secs(120), async {
        let ca = TestCa::new()?;
        let dir = TempDir::new("relaycast-https-sighup")?;
        let files = files_in(dir.path());
        let first = ca.leaf(HOST)?;
        install(&first, &files)?;
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--media-port",
                "0",
                "--public-ip",
                "127.0.0.1",
                "--workers",
                "1",
                // SIGHUP alone reloads: a changed file must not.
                "--tls-watch-interval",
                "off",
            ])
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning relaycast serve")?;
        let stderr = child.stderr.take().context("stderr")?;
        let running = Running(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("serve: {line}");
                if let Some(addr) = line.strip_prefix("relaycast listening on https://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr: SocketAddr = tokio::task::spawn_blocking(move || rx.recv_timeout(BOUND))
            .await?
            .context("relaycast serve never said it listens on https://")?
            .parse()?;
        let base = base(addr);
        let client = ca.client(addr)?;
        ensure!(served_leaf(&ca, addr).await? == first.der);

        let second = ca.leaf(HOST)?;
        install(&second, &files)?;
        // With the watch off, nothing changes until the signal.
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            served_leaf(&ca, addr).await? == first.der,
            "the certificate changed without SIGHUP"
        );
        let pid = running.0.id().to_string();
        let hup = Command::new("kill").args(["-HUP", &pid]).status()?;
        ensure!(hup.success(), "kill -HUP failed");
        wait_for_leaf(&ca, addr, &second).await?;
        ensure!(client
            .get(format!("{base}/healthz"))
            .send()
            .await?
            .status()
            .is_success());
        drop(running);
        Ok(())
    })
    .await
}
