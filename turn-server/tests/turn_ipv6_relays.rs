//! IPv6 relays (RFC 8656 REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY)
//! with coturn's `turnutils_uclient` over the IPv6 loopback: an IPv6 relay to
//! an IPv6 peer, a client talking to the server over IPv6, and 440 from a
//! server without IPv6 relays. Also the `turn:` URLs a `--turn-host` name
//! goes into. Dual allocations are tested on the engine only
//! (`engine_tests.rs`): uclient's `-Z` sends ADDITIONAL-ADDRESS-FAMILY under
//! a pre-RFC codepoint (0x8032, not RFC 8656's 0x8000), so against an RFC
//! server it makes an IPv4-only allocation.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use turn_server::{Metrics, TurnConfig, TurnServer};

const SECRET: &str = "ipv6-secret";

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// coturn's tools are installed by `.ci/run`; outside CI the test is
/// skipped when they are missing, or when this host has no `::1`.
fn can_run() -> bool {
    let tools = have("turnutils_uclient") && have("turnutils_peer");
    if !tools {
        assert!(
            std::env::var_os("CI").is_none(),
            "turnutils_uclient/turnutils_peer missing (apt-get install coturn)"
        );
        eprintln!("skipping: coturn tools not installed");
        return false;
    }
    if std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipping: no IPv6 loopback on this host");
        return false;
    }
    true
}

fn free_udp_port(ip: std::net::IpAddr) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

async fn start_turn(
    listen: std::net::IpAddr,
    relay_ipv6: Option<Ipv6Addr>,
) -> (TurnServer, Metrics) {
    let mut cfg = TurnConfig::new(SECRET);
    cfg.udp = Some(SocketAddr::new(listen, 0));
    cfg.relay_ipv6 = relay_ipv6;
    cfg.allow_loopback_peers = true;
    let metrics = Metrics::unregistered();
    let server = TurnServer::start(cfg, metrics.clone())
        .await
        .expect("TURN starts");
    (server, metrics)
}

struct Peer(#[allow(dead_code)] tokio::process::Child);

/// turnutils_peer echoes on `ip:port`.
async fn start_peer(ip: &str, port: u16) -> Peer {
    let child = Command::new("turnutils_peer")
        .args(["-L", ip, "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_peer starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    Peer(child)
}

const MSGS: u64 = 30;
const LEN: u64 = 200;

/// Runs uclient (2 clients, channels) against `server` with peer `peer`;
/// returns (success, output).
async fn uclient(server: SocketAddr, peer: SocketAddr, extra: &[&str]) -> (bool, String) {
    let mut args: Vec<String> = [
        "-W",
        SECRET,
        "-u",
        "viewer",
        "-e",
        &peer.ip().to_string(),
        "-r",
        &peer.port().to_string(),
        "-p",
        &server.port().to_string(),
        "-n",
        &MSGS.to_string(),
        "-l",
        &LEN.to_string(),
        "-m",
        "2",
        "-z",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(server.ip().to_string());
    let run = Command::new("timeout")
        .arg("30")
        .arg("turnutils_uclient")
        .args(&args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("uclient finishes within 60 s")
        .expect("uclient runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn lost(output: &str) -> Option<u64> {
    let key = "Total lost packets";
    output.lines().rev().find_map(|l| {
        let i = l.find(key)?;
        l[i + key.len()..].split_whitespace().next()?.parse().ok()
    })
}

/// Every message of both clients crossed the server both ways.
fn assert_relayed_all(ok: bool, out: &str, metrics: &Metrics) {
    assert!(ok, "uclient failed:\n{out}");
    assert_eq!(lost(out), Some(0), "packets lost:\n{out}");
    assert!(
        metrics.relayed_bytes.get() >= 2 * 2 * MSGS * LEN,
        "relayed {} bytes:\n{out}",
        metrics.relayed_bytes.get()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_client_gets_an_ipv6_relay_to_an_ipv6_peer() {
    if !can_run() {
        return;
    }
    let (server, metrics) = start_turn(Ipv4Addr::LOCALHOST.into(), Some(Ipv6Addr::LOCALHOST)).await;
    let peer = SocketAddr::from((
        Ipv6Addr::LOCALHOST,
        free_udp_port(Ipv6Addr::LOCALHOST.into()),
    ));
    let _peer = start_peer("::1", peer.port()).await;
    // -x: REQUESTED-ADDRESS-FAMILY IPv6.
    let (ok, out) = uclient(server.udp_addr().expect("udp"), peer, &["-c", "-x"]).await;
    assert_relayed_all(ok, &out, &metrics);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_client_relays_over_an_ipv6_only_server() {
    if !can_run() {
        return;
    }
    let (server, metrics) = start_turn(Ipv6Addr::LOCALHOST.into(), None).await;
    let peer = SocketAddr::from((
        Ipv6Addr::LOCALHOST,
        free_udp_port(Ipv6Addr::LOCALHOST.into()),
    ));
    let _peer = start_peer("::1", peer.port()).await;
    let (ok, out) = uclient(server.udp_addr().expect("udp"), peer, &["-c", "-x"]).await;
    assert_relayed_all(ok, &out, &metrics);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_relay_from_a_server_without_one_is_refused_with_440() {
    if !can_run() {
        return;
    }
    let (server, metrics) = start_turn(Ipv4Addr::LOCALHOST.into(), None).await;
    let peer = SocketAddr::from((
        Ipv6Addr::LOCALHOST,
        free_udp_port(Ipv6Addr::LOCALHOST.into()),
    ));
    let (_, out) = uclient(
        server.udp_addr().expect("udp"),
        peer,
        &["-c", "-x", "-n", "1"],
    )
    .await;
    assert!(
        out.contains("440"),
        "no 440 (Address Family not Supported):\n{out}"
    );
    assert_eq!(server.allocation_count(), 0);
    assert_eq!(metrics.relayed_bytes.get(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn turn_host_names_the_server_in_its_urls() {
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut cfg = TurnConfig::new(SECRET);
    cfg.udp = Some(lo);
    cfg.tcp = Some(lo);
    cfg.host = Some("turn.example.com".into());
    let server = TurnServer::start(cfg, Metrics::unregistered())
        .await
        .expect("TURN starts");
    let urls = server.ice_server("viewer", Duration::from_secs(60)).urls;
    let udp = server.udp_addr().expect("udp").port();
    let tcp = server.tcp_addr().expect("tcp").port();
    assert_eq!(
        urls,
        vec![
            format!("turn:turn.example.com:{udp}?transport=udp"),
            format!("turn:turn.example.com:{tcp}?transport=tcp"),
        ]
    );
    server.shutdown().await;

    let mut cfg = TurnConfig::new(SECRET);
    cfg.udp = Some(lo);
    cfg.host = Some("https://turn.example.com/".into());
    assert!(
        TurnServer::start(cfg, Metrics::unregistered())
            .await
            .is_err(),
        "a URL is not a host name"
    );
}
