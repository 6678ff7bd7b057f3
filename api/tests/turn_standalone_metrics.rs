//! `relaycast turn` on its own serves Prometheus metrics on `--metrics-addr`:
//! coturn's `turnutils_uclient` relays through the real binary to
//! `turnutils_peer`, and `/metrics` then shows the allocations and bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_relaycast");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The address after `prefix` on one of `relaycast turn`'s start-up lines.
fn addr_after(lines: &[String], prefix: &str) -> Option<SocketAddr> {
    lines.iter().find_map(|l| {
        let rest = &l[l.find(prefix)? + prefix.len()..];
        let end = rest.find([')', '/', ' ', ',']).unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

fn get_metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to --metrics-addr");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    body
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn turn_alone_serves_metrics_of_what_it_relayed() {
    if !(have("turnutils_uclient") && have("turnutils_peer")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "turnutils_uclient/turnutils_peer missing (apt-get install coturn)"
        );
        eprintln!("skipping: coturn tools not installed");
        return;
    }
    let mut child = Command::new(BIN)
        .args([
            "turn",
            "--turn-udp",
            "127.0.0.1:0",
            "--turn-secret",
            "metrics-secret",
            "--turn-allow-loopback-peers",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relaycast turn");
    let stderr = child.stderr.take().expect("stderr");
    let server = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while addr_after(&lines, "metrics on http://").is_none() {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("relaycast turn did not start: {lines:?}"),
        }
    }
    let turn = addr_after(&lines, "udp Some(").expect("the UDP listener is printed");
    let metrics = addr_after(&lines, "metrics on http://").expect("checked above");

    let before = get_metrics(metrics);
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert_eq!(
        metric(&before, "relaycast_turn_allocations"),
        Some(0.0),
        "{before}"
    );

    let peer_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let _peer = Kill(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer starts"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("timeout")
        .args([
            "30",
            "turnutils_uclient",
            "-W",
            "metrics-secret",
            "-u",
            "viewer",
        ])
        .args(["-e", "127.0.0.1", "-r", &peer_port.to_string()])
        .args([
            "-p",
            &turn.port().to_string(),
            "-c",
            "-n",
            "20",
            "-l",
            "200",
            "-z",
            "5",
        ])
        .arg("127.0.0.1")
        .output()
        .expect("uclient runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "uclient failed:\n{text}");

    let after = get_metrics(metrics);
    let relayed = metric(&after, "relaycast_turn_relayed_bytes_total").unwrap_or(0.0);
    assert!(
        relayed >= 20.0 * 200.0,
        "relayed {relayed} bytes:\n{after}\n{text}"
    );
    assert_eq!(
        metric(&after, "relaycast_turn_auth_failures_total"),
        Some(0.0),
        "{after}"
    );
    drop(server);
}
