//! coturn's own test client (`turnutils_uclient`) allocates, binds channels
//! and relays through our server to `turnutils_peer`, over UDP and TCP,
//! with TURN REST credentials (`-W secret`).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use turn_server::{Metrics, TurnConfig, TurnServer};

const SECRET: &str = "uclient-secret";

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// coturn's tools are installed by `.ci/run`; outside CI the test is
/// skipped when they are missing.
fn coturn_tools() -> bool {
    let ok = have("turnutils_uclient") && have("turnutils_peer");
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "turnutils_uclient/turnutils_peer missing (apt-get install coturn)"
        );
        eprintln!("skipping: coturn tools not installed");
    }
    ok
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

async fn start_turn() -> (TurnServer, Metrics) {
    start_turn_with(|_| {}).await
}

async fn start_turn_with(tweak: impl FnOnce(&mut TurnConfig)) -> (TurnServer, Metrics) {
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut cfg = TurnConfig::new(SECRET);
    cfg.udp = Some(lo);
    cfg.tcp = Some(lo);
    tweak(&mut cfg);
    cfg.allow_loopback_peers = true;
    let metrics = Metrics::unregistered();
    let server = TurnServer::start(cfg, metrics.clone())
        .await
        .expect("TURN starts");
    (server, metrics)
}

struct Peer(#[allow(dead_code)] tokio::process::Child);

fn start_peer(port: u16) -> Peer {
    let child = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("turnutils_peer starts");
    Peer(child)
}

/// Runs uclient and returns (success, output).
async fn uclient(turn_port: u16, peer_port: u16, extra: &[&str]) -> (bool, String) {
    let mut args: Vec<String> = vec![
        "-W".into(),
        SECRET.into(),
        "-u".into(),
        "viewer".into(),
        "-e".into(),
        "127.0.0.1".into(),
        "-r".into(),
        peer_port.to_string(),
        "-p".into(),
        turn_port.to_string(),
        "-c".into(),
        "-n".into(),
        "40".into(),
        "-l".into(),
        "200".into(),
        "-m".into(),
        "2".into(),
        "-z".into(),
        "5".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1".into());
    // `timeout` so that a hung client still prints what it saw.
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

/// uclient prints `Total lost packets N (x%), total send dropped M`.
fn lost_and_received(output: &str) -> (Option<u64>, Option<u64>) {
    let num_after = |key: &str| {
        output.lines().rev().find_map(|l| {
            let i = l.find(key)?;
            l[i + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())?
                .parse()
                .ok()
        })
    };
    (num_after("Total lost packets"), num_after("tot_recv_msgs="))
}

#[derive(Clone, Copy, PartialEq)]
enum Over {
    Udp,
    Tcp,
    Tls,
}

async fn relays_through_us(transport_flags: &[&str], over: Over) {
    if !coturn_tools() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("uclient-tls-{}", std::process::id()));
    let (server, metrics) = start_turn_with(|cfg| {
        if over == Over::Tls {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
            std::fs::create_dir_all(&dir).expect("temp dir");
            let files = turn_server::TlsFiles {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            };
            std::fs::write(&files.cert, ck.cert.pem()).expect("cert");
            std::fs::write(&files.key, ck.key_pair.serialize_pem()).expect("key");
            cfg.tls = Some((SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), files));
        }
    })
    .await;
    let tcp = over != Over::Udp;
    let peer_port = free_udp_port();
    let _peer = start_peer(peer_port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = match over {
        Over::Udp => server.udp_addr().expect("udp").port(),
        Over::Tcp => server.tcp_addr().expect("tcp").port(),
        Over::Tls => server.tls_addr().expect("tls").port(),
    };
    if over == Over::Udp {
        garbage_first(server.udp_addr().expect("udp")).await;
    }
    let (ok, out) = uclient(port, peer_port, transport_flags).await;
    let (lost, _) = lost_and_received(&out);
    assert!(ok, "uclient failed:\n{out}");
    assert_eq!(lost, Some(0), "packets lost:\n{out}");
    assert!(
        metrics.relayed_bytes.get() >= 2 * 40 * 200,
        "relayed {} bytes:\n{out}",
        metrics.relayed_bytes.get()
    );
    assert_eq!(metrics.auth_failures.get(), 0);
    if over == Over::Udp {
        assert!(metrics.malformed.get() > 0, "the garbage was not counted");
    }
    // uclient's two clients hold at most one allocation each. Over TCP/TLS
    // a client that retried on a new connection (a loaded machine) may
    // leave one more until the server has read its close; those are
    // checked below, once the connections are gone.
    if !tcp {
        assert!(server.allocation_count() <= 2, "allocations leaked");
    }
    if tcp {
        // Closed connections take their allocations with them.
        for _ in 0..250 {
            if server.allocation_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.allocation_count(), 0, "allocations leaked");
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Junk, truncated STUN and unknown-channel ChannelData before the real
/// client: the server must shrug them off and keep serving.
async fn garbage_first(turn: SocketAddr) {
    let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let mut seed = 0x9e37_79b9_u32;
    for len in 0..200usize {
        let mut junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = sock.send_to(&junk, turn).await;
        if len >= 20 {
            // STUN-looking: magic cookie, lying length.
            junk[0] = 0x00;
            junk[1] = 0x03;
            junk[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
            let _ = sock.send_to(&junk, turn).await;
            let _ = sock.send_to(&junk[..20], turn).await;
        }
        if len >= 4 {
            junk[0] = 0x40;
            let _ = sock.send_to(&junk, turn).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_over_udp_with_rest_credentials() {
    relays_through_us(&[], Over::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_over_tcp_with_rest_credentials() {
    relays_through_us(&["-t"], Over::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_over_tls_with_rest_credentials() {
    relays_through_us(&["-t", "-S"], Over::Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_relays_with_send_indications() {
    relays_through_us(&["-s"], Over::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_with_a_wrong_secret_is_refused() {
    if !coturn_tools() {
        return;
    }
    let (server, metrics) = start_turn().await;
    let peer_port = free_udp_port();
    let mut args = vec!["-W", "not-the-secret"];
    args.extend(["-n", "1"]);
    let port = server.udp_addr().expect("udp").port();
    let (_, out) = uclient(port, peer_port, &args).await;
    assert!(
        metrics.auth_failures.get() > 0,
        "no auth failure counted:\n{out}"
    );
    assert_eq!(server.allocation_count(), 0);
    server.shutdown().await;
}
