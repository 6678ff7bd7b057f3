//! The `relaycast` command line: `serve`, `turn`, `keys create`, `token`.

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
    Serve(ServeArgs),
    /// Manage stream keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a signed JWT (for tests and integrators).
    Token(TokenArgs),
    /// Run only the TURN server (needs --turn-secret and a listener).
    Turn(TurnCommand),
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// Data directory (SQLite database, JWT secret).
    #[arg(long, env = "RELAYCAST_DATA_DIR", default_value = "./relaycast-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTP listen address.
    #[arg(long, env = "RELAYCAST_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// First UDP port for media; worker N uses this port + N.
    #[arg(long, env = "RELAYCAST_MEDIA_PORT", default_value_t = 50000)]
    pub media_port: u16,
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
    /// JWT signing secret (default: generated once and kept in the data directory).
    #[arg(long, env = "RELAYCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub turn: TurnArgs,
}

/// `relaycast turn`: the TURN flags, and where to serve `/metrics`, since
/// there is no HTTP API alongside.
#[derive(Debug, Args)]
pub struct TurnCommand {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9641).
    #[arg(long, env = "RELAYCAST_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub turn: TurnArgs,
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
    /// Stream the token is for (admin tokens without it cover every stream).
    #[arg(long)]
    pub stream: Option<String>,
    /// publish, play or admin.
    #[arg(long)]
    pub role: String,
    /// Lifetime: e.g. 90s, 30m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Subject claim.
    #[arg(long, default_value = "cli")]
    pub subject: String,
    /// JWT signing secret (default: the one kept in the data directory).
    #[arg(long, env = "RELAYCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    #[command(flatten)]
    pub data: DataDir,
}

/// Parses `90`, `90s`, `30m`, `1h`, `2d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ttl_units() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172800)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
