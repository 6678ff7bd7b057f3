//! A loopback-only TURN server for trying clients by hand:
//! `cargo run -p turn-server --example loopback_turn -- SECRET UDP_PORT TCP_PORT`.

use std::net::{Ipv4Addr, SocketAddr};

use turn_server::{Metrics, TurnConfig, TurnServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let secret = args.next().unwrap_or_else(|| "secret".into());
    let udp: u16 = args.next().map_or(Ok(3478), |p| p.parse())?;
    let tcp: u16 = args.next().map_or(Ok(3478), |p| p.parse())?;
    let mut cfg = TurnConfig::new(&secret);
    cfg.udp = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, udp)));
    cfg.tcp = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, tcp)));
    cfg.allow_loopback_peers = true;
    let server = TurnServer::start(cfg, Metrics::unregistered()).await?;
    println!(
        "TURN on udp {:?} tcp {:?}",
        server.udp_addr(),
        server.tcp_addr()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
