//! The `relaycast` command line: `serve`, `turn`, `keys create`, `token`,
//! `migrate`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "relaycast",
    version,
    about = "Ultra-low-latency live streaming: WHIP in, WebRTC (WHEP) out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (HTTP API, WHIP/WHEP, media workers).
    Serve(Box<ServeArgs>),
    /// Manage stream keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a signed JWT (for tests and integrators).
    Token(TokenArgs),
    /// Run only the TURN server (needs --turn-secret and a listener).
    Turn(Box<TurnCommand>),
    /// Print the key of media tokens (`hls_token`) for a CDN edge that
    /// checks them: derived from the JWT secret (RELAYCAST_JWT_SECRET or the
    /// data directory's), unless --hls-token-key is set on `serve`.
    HlsTokenKey {
        /// JWT signing secret (default: the one kept in the data directory).
        #[arg(long, env = "RELAYCAST_JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
        /// Data directory (where the JWT secret is kept).
        #[arg(long, env = "RELAYCAST_DATA_DIR", default_value = "./relaycast-data")]
        data_dir: PathBuf,
    },
    /// Apply pending database migrations and exit (`serve` also applies them).
    Migrate {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// Data directory (SQLite database, JWT secret).
    #[arg(long, env = "RELAYCAST_DATA_DIR", default_value = "./relaycast-data")]
    pub data_dir: PathBuf,
    /// Database URL, `postgres://user:pass@host/db` (default: SQLite file
    /// `relaycast.db` in the data directory).
    #[arg(long, env = "RELAYCAST_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTP listen address.
    #[arg(long, env = "RELAYCAST_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// First UDP port for media; worker N uses this port + N.
    #[arg(long, env = "RELAYCAST_MEDIA_PORT", default_value_t = 50000)]
    pub media_port: u16,
    /// RTMP ingest listen address (e.g. `0.0.0.0:1935`); off when absent.
    /// Encoders publish to `rtmp://HOST/live` with a stream key.
    #[arg(long, env = "RELAYCAST_RTMP_ADDR")]
    pub rtmp_addr: Option<SocketAddr>,
    /// RTMPS ingest listen address (e.g. `0.0.0.0:1936`); off when absent.
    /// Uses the HTTPS certificate (`--tls-cert`, `--tls-key`, required).
    #[arg(long, env = "RELAYCAST_RTMPS_ADDR", requires_all = ["tls_cert", "tls_key"])]
    pub rtmps_addr: Option<SocketAddr>,
    /// Seconds an RTMP connection may send nothing (no media once
    /// publishing) before it is closed.
    #[arg(long, env = "RELAYCAST_RTMP_STALL_TIMEOUT", default_value_t = 10)]
    pub rtmp_stall_timeout: u64,
    /// SRT ingest listen address (UDP, e.g. `0.0.0.0:9000`); off when
    /// absent. Callers send MPEG-TS with `streamid=#!::r=NAME,m=publish,s=KEY`.
    #[arg(long, env = "RELAYCAST_SRT_ADDR")]
    pub srt_addr: Option<SocketAddr>,
    /// SRT receive latency in milliseconds.
    #[arg(long, env = "RELAYCAST_SRT_LATENCY", default_value_t = 120)]
    pub srt_latency: u64,
    /// SRT AES passphrase (10-79 characters) callers must use.
    #[arg(long, env = "RELAYCAST_SRT_PASSPHRASE", hide_env_values = true)]
    pub srt_passphrase: Option<String>,
    /// Address put in ICE candidates (default: first non-loopback IPv4 of this host).
    #[arg(long, env = "RELAYCAST_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// Address the media sockets bind to.
    #[arg(long, env = "RELAYCAST_BIND_IP", default_value = "0.0.0.0")]
    pub bind_ip: IpAddr,
    /// Media worker threads (default: number of cores).
    #[arg(long, env = "RELAYCAST_WORKERS")]
    pub workers: Option<usize>,
    /// Publisher and viewer sessions accepted at once; more get 503.
    #[arg(long, env = "RELAYCAST_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: usize,
    /// Send each viewer's runs of equal-size datagrams as one UDP GSO call
    /// (Linux; falls back to one send per datagram where unsupported).
    #[arg(long, env = "RELAYCAST_UDP_GSO", default_value_t = true, action = clap::ArgAction::Set)]
    pub udp_gso: bool,
    /// Pace the video of bandwidth-estimating (simulcast) viewers at 1.1x
    /// their estimate instead of forwarding it as it arrives.
    #[arg(long, env = "RELAYCAST_PACE_VIEWERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub pace_viewers: bool,
    /// Sent packets each bandwidth-estimating viewer remembers for its TWCC
    /// feedback (str0m's own default is 1000).
    #[arg(long, env = "RELAYCAST_TWCC_SEND_HISTORY", default_value_t = sfu::DEFAULT_TWCC_SEND_HISTORY,
          value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(32..), usize::from))]
    pub twcc_send_history: usize,
    /// Where simulcast viewers' bandwidth estimates come from: `twcc`
    /// (computed here from each viewer's per-packet feedback, with padding
    /// probes; moves viewers up as well as down) or `remb` (the viewer's
    /// browser estimates and reports it; less server CPU per packet, but a
    /// viewer moved down is slow to come back up).
    #[arg(long, env = "RELAYCAST_VIEWER_ESTIMATOR", value_enum, default_value_t = ViewerEstimatorArg::Twcc)]
    pub viewer_estimator: ViewerEstimatorArg,
    /// JWT signing secret (default: generated once and kept in the data directory).
    #[arg(long, env = "RELAYCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Redis shared by the nodes (chat, viewer counts, events), e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "RELAYCAST_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of relaycast's Redis keys and channels.
    #[arg(long, env = "RELAYCAST_REDIS_PREFIX", default_value = "relaycast")]
    pub redis_prefix: String,
    /// MaxMind country database (.mmdb) for country rules on streams and
    /// play tokens; without it, country rules refuse every viewer.
    #[arg(long, env = "RELAYCAST_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
    /// Lifetime of session tokens issued by login and register.
    #[arg(long, env = "RELAYCAST_SESSION_TTL", default_value = "1h", value_parser = parse_ttl)]
    pub session_ttl: Duration,
    /// Signing secret of the payment provider's webhook (Stripe's whsec_…);
    /// without it POST /api/payments/webhook answers 503.
    #[arg(long, env = "RELAYCAST_PAYMENT_WEBHOOK_SECRET", hide_env_values = true)]
    pub payment_webhook_secret: Option<String>,
    /// The payment provider's checkout page (absolute http(s) URL). The
    /// viewer site's buy and subscribe buttons open it with `kind`
    /// (`ppv` or `subscription`), `user_id`, `stream` or `broadcaster_id`
    /// and `return_to` in the query; the provider's signed webhook then
    /// grants the entitlement. Without it the buttons are not shown.
    #[arg(long, env = "RELAYCAST_CHECKOUT_URL", value_parser = parse_checkout_url)]
    pub checkout_url: Option<url::Url>,
    /// LL-HLS segment target: segments are cut at the first keyframe after it
    /// (EXT-X-TARGETDURATION is 1.5 × this, rounded up).
    #[arg(long, env = "RELAYCAST_HLS_SEGMENT", default_value = "2s", value_parser = parse_duration)]
    pub hls_segment: std::time::Duration,
    /// LL-HLS part target (PART-TARGET).
    #[arg(long, env = "RELAYCAST_HLS_PART", default_value = "334ms", value_parser = parse_duration)]
    pub hls_part: std::time::Duration,
    /// LL-HLS ABR ladder below the source, HEIGHT:KBPS,… (rungs at or above
    /// the source height are left out); "none" for the source only.
    #[arg(long, env = "RELAYCAST_HLS_LADDER", default_value = "720:2500,480:1200,360:700",
          value_parser = parse_ladder)]
    pub hls_ladder: Ladder,
    /// LL-HLS audio: `aac` (AAC-LC transcoded from Opus; plays on Apple
    /// devices too) or `opus` (passed through; hls.js/MSE players only).
    #[arg(long, env = "RELAYCAST_HLS_AUDIO", default_value = "aac", value_parser = ["aac", "opus"])]
    pub hls_audio: String,
    /// How long ended streams stay as VOD (`/vod/NAME`) under DATA_DIR/recordings
    /// (90s, 30m, 12h, 7d); `off` records nothing.
    #[arg(long, env = "RELAYCAST_VOD_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub vod_retention: Retention,
    /// How long the media token (`hls_token`) that opens a non-public
    /// stream's LL-HLS and VOD stays valid after a viewer is admitted (at
    /// least this, at most 10 minutes more).
    #[arg(long, env = "RELAYCAST_HLS_TOKEN_TTL", default_value = "6h", value_parser = parse_ttl)]
    pub hls_token_ttl: Duration,
    /// Key of media tokens, 64 hex digits, to share with a CDN edge that
    /// checks them (default: derived from the JWT secret; `relaycast
    /// hls-token-key` prints it).
    #[arg(long, env = "RELAYCAST_HLS_TOKEN_KEY", hide_env_values = true, value_parser = parse_hls_token_key)]
    pub hls_token_key: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1) instead of HTTP on --http-addr with
    /// this PEM certificate chain, leaf first; needs --tls-key. Reloaded on
    /// SIGHUP and when the files change; a reload that fails keeps the
    /// certificate in use and logs why.
    #[arg(long, env = "RELAYCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RELAYCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often --tls-cert and --tls-key are checked for changes (5s, 1m);
    /// `off`: reloaded on SIGHUP only.
    #[arg(long, env = "RELAYCAST_TLS_WATCH_INTERVAL", default_value = "5s", value_parser = parse_watch_interval)]
    pub tls_watch_interval: WatchInterval,
    /// Proxies and load balancers in front of relaycast whose
    /// X-Forwarded-For is believed, ADDR or CIDR,… (e.g.
    /// 10.0.0.0/8,2001:db8::1). From them, the client is the rightmost
    /// X-Forwarded-For address that is not a trusted proxy; from any other
    /// peer the header is ignored. Default: none (the TCP peer is the
    /// client).
    #[arg(long, env = "RELAYCAST_TRUSTED_PROXIES", default_value = "",
          value_parser = clap::builder::ValueParser::new(crate::client_addr::TrustedProxies::parse))]
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Let webhooks reach loopback, private (RFC 1918), CGNAT and
    /// unique-local addresses and `localhost` names, for on-premises
    /// receivers. Off: webhooks reach public addresses only. Link-local
    /// (cloud metadata), multicast and other special addresses are refused
    /// either way.
    #[arg(long, env = "RELAYCAST_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub turn: TurnArgs,
    #[command(flatten)]
    pub auth_fail: AuthFailArgs,
    #[command(flatten)]
    pub scylla: ScyllaArgs,
}

/// `--viewer-estimator` (see [`sfu::ViewerEstimator`]).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ViewerEstimatorArg {
    Twcc,
    Remb,
}

impl From<ViewerEstimatorArg> for sfu::ViewerEstimator {
    fn from(a: ViewerEstimatorArg) -> sfu::ViewerEstimator {
        match a {
            ViewerEstimatorArg::Twcc => sfu::ViewerEstimator::Twcc,
            ViewerEstimatorArg::Remb => sfu::ViewerEstimator::Remb,
        }
    }
}

/// Limits of an HTTP listener (the API's, or `relaycast turn`'s metrics).
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Time a connection has to send a complete request head (from accept,
    /// or from the first byte of a kept-alive connection's next request).
    #[arg(long, env = "RELAYCAST_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_ttl)]
    pub http_header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    #[arg(long, env = "RELAYCAST_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_ttl)]
    pub http_idle_timeout: Duration,
    /// Connections one client address (IPv6: one /64) may hold open; more
    /// are closed at once.
    #[arg(long, env = "RELAYCAST_HTTP_MAX_CONNS_PER_IP", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_conns_per_ip: u32,
}

impl HttpArgs {
    pub fn to_limits(&self) -> crate::http_listener::HttpLimits {
        crate::http_listener::HttpLimits {
            header_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
            max_conns_per_ip: self.http_max_conns_per_ip as usize,
            ..Default::default()
        }
    }
}

/// Analytics in ScyllaDB instead of the SQL database.
#[derive(Debug, Clone, Args)]
pub struct ScyllaArgs {
    /// Keep analytics in ScyllaDB: contact points, HOST:PORT,… (port 9042
    /// when left out); start fails when none answers.
    #[arg(long, env = "RELAYCAST_SCYLLA_NODES", value_delimiter = ',')]
    pub scylla_nodes: Vec<String>,
    /// Keyspace of the analytics tables (created when missing).
    #[arg(long, env = "RELAYCAST_SCYLLA_KEYSPACE", default_value = crate::analytics::scylla::DEFAULT_KEYSPACE,
          value_parser = crate::analytics::scylla::parse_keyspace)]
    pub scylla_keyspace: String,
    /// Replication of a keyspace relaycast creates: N (SimpleStrategy) or
    /// DC:N,DC:N (NetworkTopologyStrategy).
    #[arg(long, env = "RELAYCAST_SCYLLA_REPLICATION", default_value = "1",
          value_parser = clap::builder::ValueParser::new(str::parse::<crate::analytics::Replication>))]
    pub scylla_replication: crate::analytics::Replication,
    /// How long viewer sessions and QoE beacons are kept in ScyllaDB.
    #[arg(long, env = "RELAYCAST_SCYLLA_RETENTION", default_value = "30d", value_parser = parse_ttl)]
    pub scylla_retention: Duration,
    /// How long per-second stream health samples are kept in ScyllaDB.
    #[arg(long, env = "RELAYCAST_SCYLLA_HEALTH_RETENTION", default_value = "7d", value_parser = parse_ttl)]
    pub scylla_health_retention: Duration,
}

impl ScyllaArgs {
    /// The sink's configuration, or `None` without `--scylla-nodes`.
    pub fn to_config(&self) -> Option<crate::analytics::ScyllaConfig> {
        let nodes: Vec<String> = self
            .scylla_nodes
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            return None;
        }
        Some(crate::analytics::ScyllaConfig {
            nodes,
            keyspace: self.scylla_keyspace.clone(),
            replication: self.scylla_replication.clone(),
            retention: self.scylla_retention,
            health_retention: self.scylla_health_retention,
        })
    }
}

/// `relaycast turn`: the TURN flags, and where to serve `/metrics`, since
/// there is no HTTP API alongside.
#[derive(Debug, Args)]
pub struct TurnCommand {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9641).
    #[arg(long, env = "RELAYCAST_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub turn: TurnArgs,
    #[command(flatten)]
    pub auth_fail: AuthFailArgs,
}

/// Throttling of failed credentials per client address (IPv4 address or
/// IPv6 /64), shared by `serve` (WHIP, WHEP, REST API, TURN) and `turn`.
#[derive(Debug, Clone, Args)]
pub struct AuthFailArgs {
    /// Failed credentials (stream keys, tokens, API keys, TURN passwords)
    /// one client address may have per --auth-fail-window; beyond, HTTP
    /// answers 429 with Retry-After and TURN drops its authenticated
    /// requests until the window ends. 0 turns throttling off.
    #[arg(long, env = "RELAYCAST_AUTH_FAIL_LIMIT", default_value_t = throttle::Limits::DEFAULT.failures)]
    pub auth_fail_limit: u32,
    /// The window of --auth-fail-limit, starting at an address's first
    /// failure (90s, 30m, 1h).
    #[arg(long, env = "RELAYCAST_AUTH_FAIL_WINDOW", default_value = "1m", value_parser = parse_ttl)]
    pub auth_fail_window: Duration,
}

impl AuthFailArgs {
    pub fn to_limits(&self) -> throttle::Limits {
        throttle::Limits {
            failures: self.auth_fail_limit,
            window: self.auth_fail_window,
            ..throttle::Limits::DEFAULT
        }
    }
}

/// TURN server flags, shared by `serve` and `turn`. No listener flag, no TURN.
#[derive(Debug, Clone, Args)]
pub struct TurnArgs {
    /// TURN over UDP on this address (e.g. 0.0.0.0:3478).
    #[arg(long, env = "RELAYCAST_TURN_UDP")]
    pub turn_udp: Option<SocketAddr>,
    /// TURN over TCP on this address (e.g. 0.0.0.0:3478).
    #[arg(long, env = "RELAYCAST_TURN_TCP")]
    pub turn_tcp: Option<SocketAddr>,
    /// TURN over TLS on this address (e.g. 0.0.0.0:5349); needs --turn-cert and --turn-key.
    #[arg(long, env = "RELAYCAST_TURN_TLS", requires_all = ["turn_cert", "turn_key"])]
    pub turn_tls: Option<SocketAddr>,
    /// PEM certificate chain for --turn-tls.
    #[arg(long, env = "RELAYCAST_TURN_CERT")]
    pub turn_cert: Option<PathBuf>,
    /// PEM private key for --turn-tls.
    #[arg(long, env = "RELAYCAST_TURN_KEY")]
    pub turn_key: Option<PathBuf>,
    /// Shared secret of the TURN REST credentials (coturn's static-auth-secret).
    /// `serve` generates one per run when absent; `turn` requires it.
    #[arg(long, env = "RELAYCAST_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// TURN realm.
    #[arg(long, env = "RELAYCAST_TURN_REALM", default_value = "relaycast")]
    pub turn_realm: String,
    /// Address put in relayed addresses and turn: URLs (default: --public-ip, else the
    /// listener's address, else the first non-loopback IPv4).
    #[arg(long, env = "RELAYCAST_TURN_PUBLIC_IP")]
    pub turn_public_ip: Option<IpAddr>,
    /// DNS name put in turn:/turns: URLs instead of the address (a turns: URL must
    /// name the host its certificate is for).
    #[arg(long, env = "RELAYCAST_TURN_HOST", value_parser = turn_server::parse_turn_host)]
    pub turn_host: Option<String>,
    /// IPv6 address for IPv6 relays (bound and advertised); without one, clients
    /// asking for an IPv6 relay get 440 unless a TURN listener is on IPv6.
    #[arg(long, env = "RELAYCAST_TURN_RELAY_IPV6")]
    pub turn_relay_ipv6: Option<Ipv6Addr>,
    /// Relay ports, LOW-HIGH.
    #[arg(long, env = "RELAYCAST_TURN_RELAY_PORTS", default_value = "49152-65535",
          value_parser = turn_server::parse_port_range)]
    pub turn_relay_ports: std::ops::RangeInclusive<u16>,
    /// Allow relaying to loopback peers (tests on one machine; never in production).
    #[arg(long, env = "RELAYCAST_TURN_ALLOW_LOOPBACK_PEERS")]
    pub turn_allow_loopback_peers: bool,
    /// Allocations one TURN user may hold at once.
    #[arg(long, env = "RELAYCAST_TURN_USER_QUOTA", default_value_t = 100)]
    pub turn_user_quota: usize,
    /// Allocations the TURN server holds at once.
    #[arg(long, env = "RELAYCAST_TURN_TOTAL_QUOTA", default_value_t = 50_000)]
    pub turn_total_quota: usize,
}

impl TurnArgs {
    /// The TURN configuration, or `None` when no listener is asked for.
    /// The advertised address is --turn-public-ip, else `public_ip` (serve's
    /// --public-ip), else a listener's specific address; still `None` if all
    /// listeners are on 0.0.0.0, for the caller to fill in.
    pub fn to_config(&self, public_ip: Option<IpAddr>) -> Option<turn_server::TurnConfig> {
        if self.turn_udp.is_none() && self.turn_tcp.is_none() && self.turn_tls.is_none() {
            return None;
        }
        let secret = self.turn_secret.clone().unwrap_or_else(|| {
            rand::random::<[u8; 24]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
        let mut cfg = turn_server::TurnConfig::new(&secret);
        cfg.udp = self.turn_udp;
        cfg.tcp = self.turn_tcp;
        cfg.tls = match (self.turn_tls, &self.turn_cert, &self.turn_key) {
            (Some(addr), Some(cert), Some(key)) => Some((
                addr,
                turn_server::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                },
            )),
            _ => None,
        };
        cfg.realm = self.turn_realm.clone();
        let listener_ip = [self.turn_udp, self.turn_tcp, self.turn_tls]
            .into_iter()
            .flatten()
            .map(|a| a.ip())
            .find(|ip| !ip.is_unspecified());
        cfg.public_ip = self.turn_public_ip.or(public_ip).or(listener_ip);
        cfg.host = self.turn_host.clone();
        cfg.relay_ipv6 = self.turn_relay_ipv6;
        cfg.relay_ports = self.turn_relay_ports.clone();
        cfg.allow_loopback_peers = self.turn_allow_loopback_peers;
        cfg.user_quota = self.turn_user_quota;
        cfg.total_quota = self.turn_total_quota;
        Some(cfg)
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a stream (if new) and print a new stream key for it.
    Create {
        /// Stream name (1-64 of A-Z a-z 0-9 _ -).
        name: String,
        /// Viewers need a play token.
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Stream the token is for (admin and integrator tokens without it cover every stream).
    #[arg(long)]
    pub stream: Option<String>,
    /// publish or play (with --stream), or an account role: admin,
    /// viewer, broadcaster, integrator (the subject should then be a
    /// user id; an admin token bootstraps the first accounts).
    #[arg(long)]
    pub role: String,
    /// Lifetime: e.g. 90s, 30m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Subject claim (default: `cli-` and 16 random hex digits, new for
    /// each token, so no two CLI tokens act as the same caller).
    #[arg(long)]
    pub subject: Option<String>,
    /// JWT signing secret (default: the one kept in the data directory).
    #[arg(long, env = "RELAYCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    #[command(flatten)]
    pub data: DataDir,
}

impl TokenArgs {
    /// The token's subject: `--subject`, else `cli-` and 16 random hex
    /// digits, new for each token. The API tells callers apart by subject,
    /// so two CLI tokens must not share one.
    pub fn subject(&self) -> String {
        self.subject
            .clone()
            .unwrap_or_else(|| format!("cli-{:016x}", rand::random::<u64>()))
    }
}

/// Parses `90`, `90s`, `30m`, `1h`, `2d`.
/// 64 hex digits (a 256-bit key).
pub fn parse_hls_token_key(s: &str) -> Result<String, String> {
    signaling::MediaTokens::from_hex(s, 0)
        .map(|t| t.key_hex())
        .ok_or_else(|| "expected 64 hex digits (a 256-bit key)".to_string())
}

pub fn parse_checkout_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err("the checkout URL must be an absolute http(s) URL".into());
    }
    Ok(u)
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("invalid duration unit in {s:?} (use s, m, h or d)")),
    };
    if secs == 0 {
        return Err("duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// `--vod-retention`: how long recordings stay; `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// Parses a duration (as `--ttl`) or `off`.
pub fn parse_retention(s: &str) -> Result<Retention, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        Ok(Retention(None))
    } else {
        parse_ttl(s).map(|d| Retention(Some(d)))
    }
}

/// `--tls-watch-interval`: `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchInterval(pub Option<Duration>);

/// Parses a duration (as `--ttl`) or `off`.
pub fn parse_watch_interval(s: &str) -> Result<WatchInterval, String> {
    parse_retention(s).map(|r| WatchInterval(r.0))
}

impl ServeArgs {
    /// HTTPS on the HTTP listener, when --tls-cert and --tls-key are given.
    pub fn https(&self) -> Option<crate::HttpsConfig> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::HttpsConfig {
                files: turn_server::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                watch_interval: self.tls_watch_interval.0,
            }),
            _ => None,
        }
    }
}

/// ABR ladder rungs from `--hls-ladder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder(pub Vec<transcoder::Rung>);

/// Parses `720:2500,480:1200` (height in lines, bitrate in kbit/s) or `none`.
pub fn parse_ladder(s: &str) -> Result<Ladder, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("none") || s.is_empty() {
        return Ok(Ladder(Vec::new()));
    }
    s.split(',')
        .map(|r| {
            let (h, k) = r
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("ladder rung {r:?} is not HEIGHT:KBPS"))?;
            let h: u32 = h.parse().map_err(|_| format!("bad height in {r:?}"))?;
            let k: u32 = k.parse().map_err(|_| format!("bad kbit/s in {r:?}"))?;
            if !(90..=2160).contains(&h) || !(50..=50_000).contains(&k) {
                return Err(format!(
                    "ladder rung {r:?} out of range (90..2160 lines, 50..50000 kbit/s)"
                ));
            }
            Ok(transcoder::Rung::new(&format!("{h}p"), h, k * 1000))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Ladder)
}

/// Parses `2s`, `1500ms`, `0.5s` for the LL-HLS timings (100 ms to 10 s).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = v * scale;
    if !(0.1..=10.0).contains(&secs) {
        return Err(format!("{s:?} is outside 100ms..10s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkout_url_is_an_absolute_http_url() {
        let cli = Cli::try_parse_from([
            "relaycast",
            "serve",
            "--checkout-url",
            "https://pay.example.com/checkout?shop=7",
        ])
        .expect("parses");
        let Command::Serve(s) = cli.command else {
            panic!("not the serve command");
        };
        assert_eq!(
            s.checkout_url.map(|u| u.to_string()),
            Some("https://pay.example.com/checkout?shop=7".to_string())
        );
        for bad in [
            "/checkout",
            "javascript:alert(1)",
            "ftp://x.example/",
            "nonsense",
        ] {
            assert!(
                Cli::try_parse_from(["relaycast", "serve", "--checkout-url", bad]).is_err(),
                "--checkout-url {bad:?} is refused"
            );
        }
    }

    #[test]
    fn https_and_trusted_proxy_flags() {
        let serve = |args: &[&str]| {
            let mut all = vec!["relaycast", "serve"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        let Ok(Cli {
            command: Command::Serve(a),
        }) = serve(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-watch-interval",
            "off",
            "--trusted-proxies",
            "10.0.0.0/8,::1",
        ])
        else {
            panic!("serve flags parse");
        };
        let https = a.https().expect("both files given");
        assert_eq!(https.files.cert, PathBuf::from("c.pem"));
        assert_eq!(https.watch_interval, None);
        assert!(!a.trusted_proxies.is_empty());
        let Ok(Cli {
            command: Command::Serve(plain),
        }) = serve(&[])
        else {
            panic!("defaults parse");
        };
        assert!(plain.https().is_none());
        assert!(
            plain.trusted_proxies.is_empty(),
            "no proxy is trusted by default"
        );
        assert_eq!(
            plain.tls_watch_interval.0,
            Some(crate::TLS_WATCH_INTERVAL),
            "the documented default"
        );
        assert!(
            serve(&["--tls-cert", "c.pem"]).is_err(),
            "a certificate needs its key"
        );
        assert!(serve(&["--trusted-proxies", "proxy.example"]).is_err());
    }

    #[test]
    fn turn_flags_make_a_turn_config() {
        let cli = Cli::try_parse_from([
            "relaycast",
            "turn",
            "--turn-udp",
            "127.0.0.1:3478",
            "--turn-secret",
            "s",
            "--turn-relay-ports",
            "40000-40100",
            "--turn-allow-loopback-peers",
            "--turn-host",
            "Turn.Example.com",
            "--turn-relay-ipv6",
            "::1",
            "--metrics-addr",
            "127.0.0.1:9641",
        ])
        .expect("parses");
        let Command::Turn(t) = cli.command else {
            panic!("not the turn command");
        };
        assert_eq!(
            t.metrics_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 9641)))
        );
        let cfg = t.turn.to_config(None).expect("a listener was given");
        assert_eq!(cfg.relay_ports, 40000..=40100);
        assert_eq!(cfg.public_ip, Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(cfg.host.as_deref(), Some("turn.example.com"));
        assert_eq!(cfg.relay_ipv6, Some(Ipv6Addr::LOCALHOST));
        assert!(cfg.allow_loopback_peers);
        for bad in [
            "https://turn.example.com",
            "turn.example.com:5349",
            "a b",
            "-x.com",
        ] {
            assert!(
                Cli::try_parse_from(["relaycast", "turn", "--turn-host", bad]).is_err(),
                "--turn-host {bad:?} is refused"
            );
        }
        assert!(Cli::try_parse_from(["relaycast", "turn", "--turn-relay-ports", "9-1"]).is_err());
        assert!(
            Cli::try_parse_from(["relaycast", "turn", "--turn-tls", "0.0.0.0:5349"]).is_err(),
            "--turn-tls needs --turn-cert and --turn-key"
        );
    }

    #[test]
    fn scylla_flags() {
        let serve = |args: &[&str]| {
            let cli = Cli::try_parse_from(["relaycast", "serve"].iter().chain(args))?;
            let Command::Serve(a) = cli.command else {
                panic!("not the serve command");
            };
            Ok::<_, clap::Error>(a.scylla.to_config())
        };
        assert_eq!(serve(&[]).expect("parses"), None);
        let c = serve(&[
            "--scylla-nodes",
            "10.0.0.1:9042, db2",
            "--scylla-retention",
            "2d",
        ])
        .expect("parses")
        .expect("nodes given");
        assert_eq!(c.nodes, ["10.0.0.1:9042", "db2"]);
        assert_eq!(c.keyspace, "relaycast");
        assert_eq!(c.replication, crate::analytics::Replication::Simple(1));
        assert_eq!(c.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(c.health_retention, Duration::from_secs(7 * 86_400));
        let c = serve(&[
            "--scylla-nodes",
            "db1",
            "--scylla-keyspace",
            "rc_prod",
            "--scylla-replication",
            "dc1:3,dc2:3",
        ])
        .expect("parses")
        .expect("nodes given");
        assert_eq!(c.keyspace, "rc_prod");
        assert_eq!(
            c.replication,
            crate::analytics::Replication::NetworkTopology(vec![
                ("dc1".into(), 3),
                ("dc2".into(), 3)
            ])
        );
        assert!(serve(&["--scylla-keyspace", "a-b"]).is_err());
        assert!(serve(&["--scylla-replication", "0"]).is_err());
    }

    #[test]
    fn http_limit_flags() {
        let limits = |args: &[&str]| {
            let cli = Cli::try_parse_from(["relaycast", "serve"].iter().chain(args))?;
            let Command::Serve(a) = cli.command else {
                panic!("not the serve command");
            };
            Ok::<_, clap::Error>(a.http.to_limits())
        };
        assert_eq!(
            limits(&[]).expect("parses"),
            crate::http_listener::HttpLimits::default()
        );
        let l = limits(&[
            "--http-header-timeout",
            "5s",
            "--http-idle-timeout",
            "2m",
            "--http-max-conns-per-ip",
            "32",
        ])
        .expect("parses");
        assert_eq!(l.header_timeout, Duration::from_secs(5));
        assert_eq!(l.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.max_conns_per_ip, 32);
        assert!(limits(&["--http-max-conns-per-ip", "0"]).is_err());
        assert!(limits(&["--http-idle-timeout", "0s"]).is_err());
    }

    #[test]
    fn webhooks_reach_private_addresses_only_when_asked() {
        let serve = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["relaycast", "serve"].iter().chain(args)).expect("parses");
            let Command::Serve(a) = cli.command else {
                panic!("not the serve command");
            };
            a.webhook_allow_private
        };
        if std::env::var_os("RELAYCAST_WEBHOOK_ALLOW_PRIVATE").is_none() {
            assert!(!serve(&[]), "off by default");
        }
        assert!(serve(&["--webhook-allow-private"]));
    }

    #[test]
    fn cli_tokens_get_a_subject_of_their_own_unless_one_is_given() {
        let token = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(["relaycast", "token", "--role", "admin"].iter().chain(args))
                    .expect("parses");
            let Command::Token(t) = cli.command else {
                panic!("not the token command");
            };
            t.subject()
        };
        let (a, b) = (token(&[]), token(&[]));
        assert!(a.starts_with("cli-") && a.len() == 20, "{a}");
        assert_ne!(a, b, "each token its own subject");
        assert_eq!(token(&["--subject", "ops"]), "ops");
    }

    #[test]
    fn hls_ladder() {
        let l = parse_ladder("720:2500, 360:700").expect("valid");
        assert_eq!(
            l.0,
            vec![
                transcoder::Rung::new("720p", 720, 2_500_000),
                transcoder::Rung::new("360p", 360, 700_000)
            ]
        );
        assert!(parse_ladder("none").expect("valid").0.is_empty());
        assert!(parse_ladder("720").is_err());
        assert!(parse_ladder("20:100").is_err());
        assert!(parse_ladder("720:x").is_err());
    }

    #[test]
    fn hls_durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("334ms"), Ok(Duration::from_millis(334)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("20ms").is_err());
        assert!(parse_duration("11s").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172800)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
