//! # api — the composition root of relaycast
//!
//! Builds every part from one [`Config`] and serves them on one HTTP
//! listener: WHIP/WHEP (`whip-whep`), LL-HLS (`transcoder`, `/hls/…`), the
//! control-plane REST API under `/api` ([`rest`]: accounts, streams, keys,
//! entitlements, payments, OpenAPI), `/healthz`, `/readyz`, `/metrics`
//! (Prometheus text), `/api/ice-servers`. The [`stream_recorder`] turns
//! stream events into `stream_sessions` rows. Media runs on the `sfu` workers'
//! UDP sockets; TURN (`turn-server`), when configured, on its own sockets.
//! [`start`] takes an already-bound listener so tests run servers on
//! port 0 in-process; [`http_listener`] serves it, as HTTP or HTTPS
//! (`--tls-cert`; HTTP/2 by ALPN, the certificate reloaded on SIGHUP and
//! file changes), with header and idle timeouts and a per-address
//! connection cap; [`client_addr`] decides the client address every route
//! sees (`--trusted-proxies`), and [`http_edge`] holds the rules every
//! route follows (JSON 405s, one `Authorization` header).

pub mod analytics;
pub mod cli;
pub mod client_addr;
pub mod http_edge;
pub mod http_listener;
pub mod log_sampling;
pub mod malloc_trim;
pub mod media_access;
pub mod realtime;
pub mod rest;
pub mod stream_recorder;
pub mod viewers;
pub mod web;
pub mod webhooks;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use sfu::{Sfu, SfuConfig};
use signaling::{Role, Store, Tokens};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Everything `relaycast serve` needs; flags and `RELAYCAST_*` variables map
/// onto it (see [`cli`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP listener is bound to (informational for [`start`]).
    pub http_addr: SocketAddr,
    /// Header and idle timeouts and the per-address connection cap of the
    /// HTTP listener.
    pub http: http_listener::HttpLimits,
    /// HTTPS on the HTTP listener; `None`: plain HTTP.
    pub https: Option<HttpsConfig>,
    /// Proxies whose `X-Forwarded-For` names the client (see
    /// [`client_addr`]); none by default.
    pub trusted_proxies: client_addr::TrustedProxies,
    /// First UDP media port (one per worker); 0 lets the OS choose.
    pub media_port: u16,
    /// RTMP ingest listener (`ingest::rtmp`); `None`: off.
    pub rtmp_addr: Option<SocketAddr>,
    /// Limits of the RTMP listener.
    pub rtmp: ingest::RtmpConfig,
    /// RTMPS ingest (`rtmps://HOST/live/KEY`) with the HTTPS certificate;
    /// needs [`Config::https`].
    pub rtmps_addr: Option<SocketAddr>,
    /// SRT ingest listener (`ingest::srt`, UDP); `None`: off.
    pub srt_addr: Option<SocketAddr>,
    /// Latency, passphrase and limits of the SRT listener.
    pub srt: ingest::SrtConfig,
    /// Address put in ICE candidates; `None` picks the first non-loopback
    /// IPv4 address of this host (loopback if there is none).
    pub public_ip: Option<IpAddr>,
    /// Address the media sockets bind to.
    pub bind_ip: IpAddr,
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; `None` is `relaycast.db` in the data
    /// directory.
    pub database_url: Option<String>,
    /// JWT signing secret; when absent one is generated once and kept in
    /// the data directory.
    pub jwt_secret: Option<String>,
    /// Media workers (one UDP socket and thread each); defaults to the cores.
    pub workers: usize,
    /// Publisher and viewer sessions the server accepts at once.
    pub max_sessions: usize,
    /// Batch each viewer's datagram runs with UDP GSO where available.
    pub udp_gso: bool,
    /// Pace simulcast viewers' video to their bandwidth estimate.
    pub pace_viewers: bool,
    /// Sent packets each estimating viewer remembers for TWCC feedback.
    pub twcc_send_history: usize,
    /// Where simulcast viewers' bandwidth estimates come from.
    pub viewer_estimator: sfu::ViewerEstimator,
    /// TURN server run alongside (WHIP/WHEP answers then carry `turn:`
    /// Link headers with fresh credentials).
    pub turn: Option<turn_server::TurnConfig>,
    /// Redis shared by the nodes of a deployment (chat, viewer counts,
    /// events); `None` keeps the realtime bus in this process.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel relaycast uses.
    pub redis_prefix: String,
    /// Chat rate limit, message size and history length.
    pub chat: signaling::ChatLimits,
    /// MaxMind country database for country rules (without one, country
    /// rules refuse every viewer: see `signaling::access`).
    pub geoip_db: Option<PathBuf>,
    /// REST API settings (token lifetimes, login limits, payment webhook).
    pub rest: rest::RestConfig,
    /// Failed credentials one client address (IPv4, or IPv6 /64) may have
    /// in a window before WHIP, WHEP and the REST API answer it 429 and
    /// TURN drops its credentialed requests, for the rest of the window.
    pub auth_fail_limits: throttle::Limits,
    /// LL-HLS packaging of live streams (`/hls/…`).
    pub hls: transcoder::HlsConfig,
    /// Keep ended streams as VOD under `{data_dir}/recordings` for this
    /// long (`/vod/…`); `None`: no recording.
    pub vod_retention: Option<Duration>,
    /// Media tokens that open non-public streams' LL-HLS and VOD.
    pub media_tokens: MediaTokenConfig,
    /// Analytics in ScyllaDB instead of the SQL database; start fails when
    /// the cluster cannot be reached.
    pub scylla: Option<analytics::ScyllaConfig>,
    /// Webhook deliveries (which destinations they may reach).
    pub webhooks: webhooks::WebhookConfig,
}

impl Config {
    /// Loopback-only configuration for tests: OS-assigned ports, two workers.
    pub fn for_test(data_dir: PathBuf) -> Config {
        Config {
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            http: http_listener::HttpLimits::default(),
            https: None,
            trusted_proxies: client_addr::TrustedProxies::none(),
            media_port: 0,
            rtmp_addr: None,
            rtmp: ingest::RtmpConfig::default(),
            rtmps_addr: None,
            srt_addr: None,
            srt: ingest::SrtConfig::default(),
            public_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            data_dir,
            database_url: None,
            jwt_secret: None,
            workers: 2,
            max_sessions: 1000,
            udp_gso: true,
            pace_viewers: false,
            twcc_send_history: sfu::DEFAULT_TWCC_SEND_HISTORY,
            viewer_estimator: sfu::ViewerEstimator::default(),
            turn: None,
            redis_url: None,
            redis_prefix: "relaycast".into(),
            chat: signaling::ChatLimits::default(),
            geoip_db: None,
            rest: rest::RestConfig::default(),
            // In-process tests all come from 127.0.0.1, and some send many
            // bad credentials on purpose; tests of the throttle set their
            // own small limit.
            auth_fail_limits: throttle::Limits {
                failures: 1000,
                ..throttle::Limits::DEFAULT
            },
            hls: transcoder::HlsConfig::default(),
            vod_retention: Some(Duration::from_secs(3600)),
            media_tokens: MediaTokenConfig::default(),
            scylla: None,
            webhooks: webhooks::WebhookConfig::default(),
        }
    }
}

/// HTTPS on the HTTP listener (`--tls-cert`, `--tls-key`,
/// `--tls-watch-interval`): the certificate is reloaded on SIGHUP and when
/// its files change (see `turn_server::certificate`).
#[derive(Debug, Clone)]
pub struct HttpsConfig {
    pub files: turn_server::TlsFiles,
    /// How often the files are checked for changes; `None`: on SIGHUP only.
    pub watch_interval: Option<Duration>,
}

/// The default of `--tls-watch-interval`.
pub const TLS_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Media tokens (`hls_token`, see [`media_access`] and
/// `signaling::media_token`).
#[derive(Debug, Clone)]
pub struct MediaTokenConfig {
    /// Lifetime from admission (rounded up to ten minutes).
    pub ttl: Duration,
    /// The key as 64 hex digits; `None` derives it from the JWT secret.
    pub key_hex: Option<String>,
}

impl Default for MediaTokenConfig {
    fn default() -> MediaTokenConfig {
        MediaTokenConfig {
            ttl: Duration::from_secs(6 * 3600),
            key_hex: None,
        }
    }
}

impl MediaTokenConfig {
    /// The signer: the configured key, or one derived from `jwt_secret`.
    pub fn tokens(&self, jwt_secret: &str) -> anyhow::Result<signaling::MediaTokens> {
        let ttl = self.ttl.as_secs();
        match &self.key_hex {
            Some(k) => signaling::MediaTokens::from_hex(k, ttl)
                .context("the media token key must be 64 hex digits"),
            None => Ok(signaling::MediaTokens::derive(jwt_secret.as_bytes(), ttl)),
        }
    }
}

/// First non-loopback IPv4 address of this host, else loopback.
pub fn default_public_ip() -> IpAddr {
    if_addrs::get_if_addrs()
        .ok()
        .and_then(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Reads the JWT secret kept in the data directory, creating it (0600) on
/// first use.
pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("jwt-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tmp = data_dir.join("jwt-secret.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
    }
    // A concurrent first start keeps whichever secret landed first.
    if std::fs::hard_link(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return load_or_create_secret(data_dir);
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(secret)
}

/// The database URL: `database_url` when given, else the SQLite file in
/// the data directory.
pub fn database_url(data_dir: &Path, database_url: Option<&str>) -> String {
    match database_url {
        Some(u) => u.to_string(),
        None => signaling::db::sqlite_url(data_dir),
    }
}

/// Opens the data directory and the database (migrating it): store and
/// signing keys. `database_url` `None` is the SQLite file in `data_dir`.
pub async fn open_data(
    data_dir: &Path,
    database_url: Option<&str>,
    jwt_secret: Option<&str>,
) -> anyhow::Result<(Store, Tokens)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store = Store::connect(&self::database_url(data_dir, database_url))
        .await
        .context("opening the database")?;
    let secret = match jwt_secret {
        Some(s) => s.to_string(),
        None => load_or_create_secret(data_dir)?,
    };
    Ok((store, Tokens::new(secret.as_bytes())))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A running relaycast: HTTP server plus media workers.
pub struct Server {
    http_addr: SocketAddr,
    https: bool,
    /// Reloads the HTTPS certificate.
    cert_reloads: Option<AbortOnDrop>,
    sfu: Sfu,
    store: Store,
    tokens: Tokens,
    media_tokens: signaling::MediaTokens,
    turn: Option<Arc<turn_server::TurnServer>>,
    bus: signaling::Bus,
    _watch: realtime::StreamWatch,
    shutdown: Option<oneshot::Sender<()>>,
    http: Option<JoinHandle<()>>,
    recorder: Option<JoinHandle<()>>,
    /// `recording.ready` webhooks from the transcoder.
    recording_hooks: JoinHandle<()>,
    /// Returns ended streams' freed memory to the OS.
    trimmer: JoinHandle<()>,
    hls: transcoder::Hls,
    webhooks: webhooks::Webhooks,
    rtmp: Option<ingest::RtmpServer>,
    rtmps: Option<ingest::RtmpServer>,
    srt: Option<ingest::SrtServer>,
}

impl Server {
    /// Where the RTMP ingest listens, when it runs.
    pub fn rtmp_addr(&self) -> Option<SocketAddr> {
        self.rtmp.as_ref().map(|r| r.local_addr())
    }

    /// Where the RTMPS ingest listens, when it runs.
    pub fn rtmps_addr(&self) -> Option<SocketAddr> {
        self.rtmps.as_ref().map(|r| r.local_addr())
    }

    /// Where the SRT ingest listens (UDP), when it runs.
    pub fn srt_addr(&self) -> Option<SocketAddr> {
        self.srt.as_ref().map(|s| s.local_addr())
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Whether the HTTP listener speaks HTTPS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The LL-HLS side (its notices: recordings, released memory).
    pub fn hls(&self) -> &transcoder::Hls {
        &self.hls
    }

    /// The forwarder (taps, stream events, viewer counts).
    pub fn sfu(&self) -> &Sfu {
        &self.sfu
    }

    /// UDP addresses advertised to peers, one per media worker.
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.sfu.media_addrs()
    }

    /// Registers a stream (if new) and returns a fresh stream key for it.
    pub async fn create_stream(&self, name: &str, private: bool) -> anyhow::Result<String> {
        Ok(self.store.create_key(name, Some(private)).await?)
    }

    /// Mints a JWT for `stream` with `role` (`publish`, `play`, `admin`).
    pub fn token(&self, stream: &str, role: &str, ttl: Duration) -> anyhow::Result<String> {
        let role: Role = role.parse()?;
        Ok(self
            .tokens
            .issue("test", Some(stream), role, unix_now(), ttl.as_secs())?)
    }

    /// Mints a JWT for `subject` (the chat user name) on `stream` (`None`:
    /// every stream, for admin and integrator tokens).
    pub fn token_for(
        &self,
        subject: &str,
        stream: Option<&str>,
        role: &str,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let role: Role = role.parse()?;
        Ok(self
            .tokens
            .issue(subject, stream, role, unix_now(), ttl.as_secs())?)
    }

    /// The realtime bus (chat, presence, status, integrator events; the
    /// per-stream event feed is [`signaling::Bus::event_feed`]).
    pub fn bus(&self) -> &signaling::Bus {
        &self.bus
    }

    /// The control-plane store (database handle via `Store::db`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The JWT signer/verifier.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The signer of media tokens (`hls_token`) for non-public LL-HLS/VOD.
    pub fn media_tokens(&self) -> &signaling::MediaTokens {
        &self.media_tokens
    }

    /// The webhook dispatcher (tests queue events through it).
    pub fn webhooks(&self) -> &webhooks::Webhooks {
        &self.webhooks
    }

    /// The TURN server, when one runs in this process.
    pub fn turn(&self) -> Option<&turn_server::TurnServer> {
        self.turn.as_deref()
    }

    /// Live viewers of a stream (for tests and status).
    pub fn viewer_count(&self, stream: &str) -> usize {
        self.sfu.viewer_count(stream)
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.http.take() {
            let _ = h.await;
        }
        drop(self.cert_reloads.take());
        if let Some(r) = self.recorder.take() {
            r.abort();
            let _ = r.await;
        }
        self.recording_hooks.abort();
        self.trimmer.abort();
        // Stops accepting encoders before the workers go.
        drop(self.rtmp.take());
        drop(self.srt.take());
        self.sfu.shutdown().await;
        if let Some(turn) = self.turn.take() {
            turn.shutdown().await;
        }
        self.store.close().await;
    }

    /// Runs until ctrl-c / SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("no SIGTERM handler: {e}");
                        let _ = ctrl_c.await;
                        self.shutdown().await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Starts relaycast on `listener` with `config`.
pub async fn start(config: Config, listener: tokio::net::TcpListener) -> anyhow::Result<Server> {
    // Read (or made) once: it signs JWTs and keys the media tokens.
    let jwt_secret = match &config.jwt_secret {
        Some(s) => s.clone(),
        None => load_or_create_secret(&config.data_dir)?,
    };
    let (store, tokens) = open_data(
        &config.data_dir,
        config.database_url.as_deref(),
        Some(&jwt_secret),
    )
    .await?;
    let media_tokens = config.media_tokens.tokens(&jwt_secret)?;
    let store = match &config.geoip_db {
        Some(path) => store.with_geoip(
            signaling::GeoIp::open(path)
                .with_context(|| format!("opening GeoIP database {}", path.display()))?,
        ),
        None => {
            tracing::info!(
                "no --geoip-db: streams or play tokens with country rules refuse every viewer"
            );
            store
        }
    };
    let registry = Registry::new();
    // Before anything else starts, so an unreachable cluster fails start.
    let analytics_sink: Arc<dyn analytics::AnalyticsSink> = match &config.scylla {
        Some(sc) => {
            let sink = analytics::ScyllaSink::connect(sc, &registry)
                .await
                .context("starting the ScyllaDB analytics sink")?;
            tracing::info!(
                "analytics sink: ScyllaDB at {} (keyspace {})",
                sc.nodes.join(","),
                sc.keyspace
            );
            Arc::new(sink)
        }
        None => {
            tracing::info!("analytics sink: the SQL database");
            Arc::new(analytics::SqlSink::new(store.clone()))
        }
    };
    let metrics = sfu::Metrics::new(&registry).context("registering metrics")?;
    let http_metrics =
        http_listener::HttpMetrics::new(&registry).context("registering HTTP metrics")?;
    let (tls, rtmps_tls, cert_reloads) = match &config.https {
        Some(https) => {
            let (acceptor, rtmps, reloads) = https_acceptor(https, &registry)?;
            // Ended with the server, or at once if `start` fails below.
            (Some(acceptor), Some(rtmps), Some(AbortOnDrop(reloads)))
        }
        None => (None, None, None),
    };
    let public_ip = config.public_ip.unwrap_or_else(default_public_ip);
    let sfu = Sfu::start(
        &SfuConfig {
            bind_ip: config.bind_ip,
            public_ip,
            first_port: config.media_port,
            workers: config.workers.max(1),
            max_sessions: config.max_sessions,
            udp_gso: config.udp_gso,
            pace_viewers: config.pace_viewers,
            twcc_send_history: config.twcc_send_history,
            viewer_estimator: config.viewer_estimator,
        },
        metrics,
    )
    .context("starting media workers")?;
    // The first worker's port also answers plain STUN binding requests.
    let ice_servers = sfu
        .media_addrs()
        .first()
        .map(|a| vec![format!("stun:{a}")])
        .unwrap_or_default();
    let turn = match config.turn.clone() {
        Some(mut tc) => {
            tc.public_ip = tc.public_ip.or(Some(public_ip));
            tc.auth_fail_limits = config.auth_fail_limits;
            let metrics =
                turn_server::Metrics::new(&registry).context("registering TURN metrics")?;
            Some(Arc::new(
                turn_server::TurnServer::start(tc, metrics)
                    .await
                    .context("starting TURN")?,
            ))
        }
        None => None,
    };
    // One table of failed credentials per address for WHIP, WHEP and the
    // REST API.
    let auth_throttle = Arc::new(throttle::AuthThrottle::new(config.auth_fail_limits));
    auth_throttle
        .register(&registry)
        .context("registering auth metrics")?;
    registry
        .register(Box::new(log_sampling::suppressed_counter().clone()))
        .context("registering log sampling metrics")?;
    let ingest_ctx = ingest::IngestContext {
        sfu: sfu.clone(),
        store: store.clone(),
        tokens: tokens.clone(),
        auth_throttle: Arc::clone(&auth_throttle),
        metrics: ingest::IngestMetrics::new(&registry).context("registering ingest metrics")?,
    };
    let rtmp = match config.rtmp_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the RTMP listener on {addr}"))?;
            Some(ingest::RtmpServer::start(
                listener,
                config.rtmp.clone(),
                ingest_ctx.clone(),
            )?)
        }
        None => None,
    };
    let rtmps = match (config.rtmps_addr, rtmps_tls) {
        (Some(addr), Some(tls)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the RTMPS listener on {addr}"))?;
            Some(ingest::RtmpServer::start(
                listener,
                ingest::RtmpConfig {
                    tls: Some(tls),
                    ..config.rtmp.clone()
                },
                ingest_ctx.clone(),
            )?)
        }
        (Some(_), None) => {
            anyhow::bail!("RTMPS needs the HTTPS certificate (--tls-cert, --tls-key)")
        }
        (None, _) => None,
    };
    let srt = match config.srt_addr {
        Some(addr) => Some(
            ingest::SrtServer::start(addr, config.srt.clone(), ingest_ctx)
                .await
                .with_context(|| format!("starting the SRT listener on {addr}"))?,
        ),
        None => None,
    };
    let mut whip = whip_whep::WhipWhepState::new(
        sfu.clone(),
        store.clone(),
        tokens.clone(),
        ice_servers.clone(),
    )
    .with_auth_throttle(Arc::clone(&auth_throttle));
    if let Some(t) = &turn {
        let t = Arc::clone(t);
        whip = whip.with_turn(Arc::new(move |user: &str| {
            vec![turn_link(&t.ice_server(user, TURN_CREDENTIAL_TTL))]
        }));
    }
    let bus = match &config.redis_url {
        Some(url) => signaling::Bus::with_redis(url, &config.redis_prefix, config.chat)
            .await
            .context("connecting to Redis")?,
        None => signaling::Bus::local(config.chat),
    };
    let clock = Arc::new(realtime::MediaClock::default());
    let webhooks = webhooks::Webhooks::start(store.clone(), &registry, config.webhooks.policy())?;
    let hooks = webhooks.clone();
    let to_webhooks: realtime::StreamListener = Arc::new(move |ev: &sfu::StreamEvent| {
        let kind = match ev.kind {
            sfu::StreamEventKind::Live => "stream.started",
            sfu::StreamEventKind::Stalled => "stream.stalled",
            sfu::StreamEventKind::Resumed => "stream.resumed",
            sfu::StreamEventKind::Ended => "stream.ended",
        };
        let at_ms = ev
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        hooks.notify(webhooks::WebhookEvent::new(
            kind,
            &ev.stream,
            at_ms,
            serde_json::json!({}),
        ));
    });
    let hls_metrics =
        transcoder::HlsMetrics::new(&registry).context("registering LL-HLS metrics")?;
    let mut hls_config = config.hls.clone();
    if let Some(retention) = config.vod_retention {
        hls_config
            .recordings
            .get_or_insert_with(|| transcoder::RecordingConfig {
                dir: config.data_dir.join("recordings"),
                retention,
            });
    }
    let hls = transcoder::Hls::start(sfu.clone(), hls_config, hls_metrics);
    let trimmer = malloc_trim::spawn(hls.released());
    let viewers = viewers::Viewers::new(sfu.clone(), Some(hls.clone()));
    bus.start_presence(Arc::new(viewers.clone()));
    let recording_hooks = tokio::spawn(webhooks::forward_recordings(
        hls.recording_notices(),
        webhooks.clone(),
    ));
    // Integrator events reach WebRTC viewers on their data channels…
    let to_viewers = sfu.clone();
    let mut event_sinks: Vec<realtime::EventSink> = vec![Arc::new(
        move |event: &Arc<signaling::IntegratorEvent>| match serde_json::to_vec(&**event) {
            Ok(json) => {
                to_viewers.send_data(&event.stream, json.into());
            }
            Err(e) => tracing::warn!("integrator event not serialisable: {e}"),
        },
    )];
    // …and LL-HLS viewers as EXT-X-DATERANGE (queued on the stream's
    // packager, never waiting for it; the LL-HLS side always runs).
    let to_hls = hls.clone();
    event_sinks.push(Arc::new(move |event: &Arc<signaling::IntegratorEvent>| {
        if let Some(range) = realtime::date_range(event) {
            to_hls.add_event(&event.stream, range);
        }
    }));
    let watch = realtime::StreamWatch::start(
        sfu.clone(),
        bus.clone(),
        Arc::clone(&clock),
        vec![to_webhooks],
        event_sinks,
    );
    let hooks = webhooks.clone();
    let viewer_change: analytics::ViewerChange = Arc::new(move |stream, before, now| {
        if now > before {
            hooks.notify(webhooks::WebhookEvent::new(
                "viewers.threshold",
                stream,
                signaling::unix_ms(),
                serde_json::json!({ "previous": before, "viewers": now }),
            ));
        }
    });
    let analytics = analytics::Analytics::start(
        analytics_sink,
        viewers.clone(),
        &registry,
        Some(viewer_change),
    )?;
    let analytics_routes = analytics::AnalyticsRoutes {
        analytics: analytics.clone(),
        store: store.clone(),
        tokens: tokens.clone(),
    };
    let rt = realtime::RealtimeState {
        bus: bus.clone(),
        tokens: tokens.clone(),
        store: store.clone(),
        clock,
    };
    let ice = IceServersState {
        store: store.clone(),
        tokens: tokens.clone(),
        stun: Arc::new(ice_servers),
        turn: turn.clone(),
    };
    let recorder = stream_recorder::spawn(viewers.clone(), store.clone()).await;
    let mut rest_state = rest::RestState::new(
        store.clone(),
        tokens.clone(),
        sfu.clone(),
        config.rest.clone(),
    )
    .with_auth_throttle(Arc::clone(&auth_throttle));
    rest_state.viewers.hls = Some(hls.clone());
    let hook_routes = webhooks::WebhookRoutes {
        rest: rest_state.clone(),
        policy: config.webhooks.policy(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { render_metrics(&registry) }
            }),
        )
        .route("/api/ice-servers", get(ice_servers_handler).with_state(ice))
        .merge(
            whip_whep::router(whip).layer(axum::middleware::from_fn_with_state(
                analytics,
                analytics::track_whep,
            )),
        )
        .merge(analytics::router(analytics_routes))
        .merge(realtime::router(rt))
        .merge(webhooks::router(hook_routes))
        .merge(rest::router(rest_state.clone()))
        // Every media route behind the one door (public streams pass
        // untouched).
        .merge(
            transcoder::router(hls.clone()).route_layer(axum::middleware::from_fn_with_state(
                media_access::MediaAccess::new(
                    store.clone(),
                    tokens.clone(),
                    media_tokens.clone(),
                    auth_throttle,
                ),
                media_access::gate,
            )),
        )
        .merge(web::router(rest_state))
        .fallback(web::not_found)
        .layer(axum::middleware::map_response(
            http_edge::json_method_not_allowed,
        ))
        .layer(axum::middleware::from_fn(
            http_edge::refuse_repeated_authorization,
        ));
    let http_addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    // Handlers get `ConnectInfo<SocketAddr>` from it (WHEP address rules).
    let http = tokio::spawn(http_listener::serve(
        listener,
        app,
        config.http,
        http_listener::ListenerOptions {
            tls,
            trusted_proxies: config.trusted_proxies.clone(),
        },
        http_metrics,
        async {
            let _ = rx.await;
        },
    ));
    tracing::info!(%http_addr, media = ?sfu.media_addrs(), "relaycast serving");
    Ok(Server {
        http_addr,
        https: cert_reloads.is_some(),
        cert_reloads,
        sfu,
        store,
        tokens,
        media_tokens,
        turn,
        bus,
        _watch: watch,
        shutdown: Some(tx),
        http: Some(http),
        recorder: Some(recorder),
        recording_hooks,
        trimmer,
        hls,
        webhooks,
        rtmp,
        rtmps,
        srt,
    })
}

/// A task that ends when this is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The HTTPS acceptor (ALPN `h2`, `http/1.1`), a TLS configuration with
/// the same certificate for RTMPS (no ALPN), and the task that reloads the
/// certificate, counted in `relaycast_tls_certificate_reloads_total`.
fn https_acceptor(
    https: &HttpsConfig,
    registry: &Registry,
) -> anyhow::Result<(
    tokio_rustls::TlsAcceptor,
    Arc<tokio_rustls::rustls::ServerConfig>,
    JoinHandle<()>,
)> {
    let cert = turn_server::certificate::ReloadingCertificate::load(https.files.clone())
        .context("loading the HTTPS certificate")?;
    let config = cert
        .server_config(&http_listener::ALPN)
        .context("configuring HTTPS")?;
    let rtmps = cert.server_config(&[]).context("configuring RTMPS")?;
    let reloads = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "relaycast_tls_certificate_reloads_total",
            "HTTPS certificate reloads (SIGHUP or changed files): loaded, or failed \
             (the previous certificate stays in use; the log says why)",
        ),
        &["result"],
    )?;
    registry.register(Box::new(reloads.clone()))?;
    let watch = tokio::spawn(cert.watch(
        "https",
        https.watch_interval,
        move |outcome: &turn_server::certificate::Reload| {
            let result = match outcome {
                turn_server::certificate::Reload::Loaded => "loaded",
                _ => "failed",
            };
            reloads.with_label_values(&[result]).inc();
        },
    ));
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        Arc::new(rtmps),
        watch,
    ))
}

/// How long minted TURN credentials stay valid. A TURN allocation is
/// refreshed with the credentials it was made with, so this bounds how
/// long one relayed session can last.
pub const TURN_CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

fn turn_link(s: &turn_server::IceServer) -> whip_whep::TurnServerLink {
    whip_whep::TurnServerLink {
        urls: s.urls.clone(),
        username: s.username.clone(),
        credential: s.credential.clone(),
    }
}

#[derive(Clone)]
struct IceServersState {
    store: Store,
    tokens: Tokens,
    stun: Arc<Vec<String>>,
    turn: Option<Arc<turn_server::TurnServer>>,
}

/// `GET /api/ice-servers` (Bearer: any valid, unrevoked relaycast JWT): the ICE
/// servers in the RTCIceServer shape, TURN with fresh REST credentials.
async fn ice_servers_handler(
    axum::extract::State(st): axum::extract::State<IceServersState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let bearer = whip_whep::authorization_bearer(&headers).ok().flatten();
    let verified = match bearer {
        Some(b) => Some(st.store.verify_token(&st.tokens, b).await),
        None => None,
    };
    let claims = match verified {
        Some(Ok(c)) => c,
        _ => {
            let mut refused = whip_whep::json_error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required".into(),
                None,
            );
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return refused;
        }
    };
    let mut servers = Vec::new();
    if !st.stun.is_empty() {
        servers.push(serde_json::json!({ "urls": st.stun.as_slice() }));
    }
    if let Some(t) = &st.turn {
        let s = t.ice_server(&claims.sub, TURN_CREDENTIAL_TTL);
        servers.push(serde_json::json!({
            "urls": s.urls,
            "username": s.username,
            "credential": s.credential,
        }));
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "iceServers": servers })),
    )
        .into_response()
}

/// `/metrics` and `/healthz` on their own, for `relaycast turn`, which has
/// no HTTP API to carry them; served until the task is dropped.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Registry,
    limits: http_listener::HttpLimits,
) -> anyhow::Result<()> {
    let http_metrics =
        http_listener::HttpMetrics::new(&registry).context("registering HTTP metrics")?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { render_metrics(&registry) }
            }),
        );
    http_listener::serve(
        listener,
        app,
        limits,
        http_listener::ListenerOptions::default(),
        http_metrics,
        std::future::pending::<()>(),
    )
    .await;
    Ok(())
}

fn render_metrics(registry: &Registry) -> axum::response::Response {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => {
            tracing::error!("encoding metrics: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
