//! The `relaycast` command line: `serve`, `keys create`, `token`.

use std::net::{IpAddr, SocketAddr};
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
    fn ttl_units() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172800)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
