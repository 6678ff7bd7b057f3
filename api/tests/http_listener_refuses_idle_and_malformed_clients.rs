//! The HTTP listener as an attacker meets it: one address cannot hold more
//! than its share of connections, a request head that never completes and
//! a kept-alive connection left idle are closed after their timeouts, and
//! none of that cuts a WebSocket that lives longer than both.
//!
//! All test traffic comes from 127.0.0.1, so the per-address cap applies to
//! the test's own requests too. Timing bounds are generous: CI is a loaded
//! 2-core machine.

mod realtime_client;
mod support;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use realtime_client::{Auth, WsClient};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to close a connection it should
/// close after a timeout of a second or a few.
const CLOSE_BOUND: Duration = Duration::from_secs(15);

async fn server(tweak: impl FnOnce(&mut api::http_listener::HttpLimits)) -> Result<TestServer> {
    TestServer::start_with(|c| tweak(&mut c.http)).await
}

fn addr(server: &TestServer) -> std::net::SocketAddr {
    server.server().http_addr()
}

/// What a read on a connection the client keeps open tells.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// EOF or reset: the server closed it.
    Closed,
    /// Nothing arrived within the wait: still open.
    Open,
    /// The server sent bytes.
    Data,
}

async fn read_within(stream: &mut TcpStream, wait: Duration) -> Seen {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => Seen::Open,
        Ok(Ok(0)) | Ok(Err(_)) => Seen::Closed,
        Ok(Ok(_)) => Seen::Data,
    }
}

/// Reads one `Content-Length` response (head and body) off `stream`.
async fn read_response(stream: &mut TcpStream) -> Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .context("no Content-Length")?;
            if got.len() >= end + 4 + len {
                return Ok(text);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .context("no response in time")?
            .context("reading the response")?;
        ensure!(n > 0, "closed before a full response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// A labelled series from `/metrics`, e.g.
/// `relaycast_http_connections_timed_out_total{reason="header"}`.
async fn series(base_url: &str, name_and_labels: &str) -> Result<f64> {
    let text = http_client()?
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .context("GET /metrics")?
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

/// Waits until a plain request gets through (the test's own connections
/// may still be closing on the server side).
async fn healthz_gets_through(base_url: &str) -> Result<()> {
    let deadline = Instant::now() + CLOSE_BOUND;
    loop {
        let attempt = http_client()?
            .get(format!("{base_url}/healthz"))
            .send()
            .await;
        match attempt {
            Ok(r) if r.status().is_success() => return Ok(()),
            other if Instant::now() > deadline => bail!("/healthz never answered: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_are_closed_and_counted() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        const CAP: usize = 50;
        const OPENED: usize = 300;
        // Long timeouts: only the cap may close anything here.
        let server = server(|l| {
            l.max_conns_per_ip = CAP;
            l.header_timeout = Duration::from_secs(120);
            l.idle_timeout = Duration::from_secs(120);
        })
        .await?;
        // No request before the flood: a just-closed client connection
        // could still hold a place on the server side.
        let base = server.base_url().to_owned();

        let mut conns = Vec::with_capacity(OPENED);
        for _ in 0..OPENED {
            conns.push(TcpStream::connect(addr(&server)).await?);
        }
        // Every connection is read at once; the refused ones see EOF
        // (or a reset) straight away, the others stay silent.
        let reads: Vec<_> = conns
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let seen = read_within(&mut c, Duration::from_secs(5)).await;
                    (seen, c)
                })
            })
            .collect();
        let mut open = Vec::new();
        let mut closed = 0;
        for r in reads {
            let (seen, c) = r.await?;
            match seen {
                Seen::Closed => closed += 1,
                Seen::Open => open.push(c),
                Seen::Data => bail!("the server sent bytes to an idle connection"),
            }
        }
        ensure!(
            open.len() == CAP && closed == OPENED - CAP,
            "{} stayed open and {closed} were closed; want {CAP} and {}",
            open.len(),
            OPENED - CAP
        );

        // At the cap, the address gets nothing else either.
        let refused = http_client()?.get(format!("{base}/healthz")).send().await;
        ensure!(
            refused.is_err(),
            "a request beyond the cap was answered: {refused:?}"
        );

        // Closing its idle connections gives the address its places back.
        drop(open);
        healthz_gets_through(&base).await?;
        let counted = metric(&base, "relaycast_http_connections_refused_total").await?;
        ensure!(
            counted >= (OPENED - CAP + 1) as f64,
            "{counted} refusals counted; at least {} happened",
            OPENED - CAP + 1
        );
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_completes_is_closed_after_the_header_timeout() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        let server = server(|l| {
            l.header_timeout = Duration::from_secs(1);
            l.idle_timeout = Duration::from_secs(60);
        })
        .await?;
        let base = server.base_url().to_owned();

        // Half a request head, then nothing.
        let started = Instant::now();
        let mut half = TcpStream::connect(addr(&server)).await?;
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: relaycast\r\nX-Slow: ")
            .await?;
        // A connection that never sends a byte.
        let mut silent = TcpStream::connect(addr(&server)).await?;
        ensure!(read_within(&mut half, CLOSE_BOUND).await == Seen::Closed);
        ensure!(read_within(&mut silent, CLOSE_BOUND).await == Seen::Closed);
        ensure!(
            started.elapsed() >= Duration::from_millis(900),
            "closed before the header timeout: {:?}",
            started.elapsed()
        );

        let timed_out = series(
            &base,
            "relaycast_http_connections_timed_out_total{reason=\"header\"}",
        )
        .await?;
        ensure!(timed_out >= 2.0, "{timed_out} header timeouts counted");
        // Others are served as before.
        healthz_gets_through(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        let server = server(|l| {
            l.header_timeout = Duration::from_secs(1);
            l.idle_timeout = Duration::from_secs(6);
        })
        .await?;
        let base = server.base_url().to_owned();
        let request = b"GET /healthz HTTP/1.1\r\nHost: relaycast\r\n\r\n";

        let mut conn = TcpStream::connect(addr(&server)).await?;
        conn.write_all(request).await?;
        let first = read_response(&mut conn).await?;
        ensure!(first.starts_with("HTTP/1.1 200"), "{first}");

        // Idle longer than the header timeout: a kept-alive connection
        // waits under the idle timeout, so it is still open and usable.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        conn.write_all(request).await?;
        let second = read_response(&mut conn).await?;
        ensure!(second.starts_with("HTTP/1.1 200"), "{second}");

        // Then idle past the idle timeout: closed.
        let idle_from = Instant::now();
        ensure!(read_within(&mut conn, CLOSE_BOUND).await == Seen::Closed);
        ensure!(
            idle_from.elapsed() >= Duration::from_secs(4),
            "closed before the idle timeout: {:?}",
            idle_from.elapsed()
        );
        let timed_out = series(
            &base,
            "relaycast_http_connections_timed_out_total{reason=\"idle\"}",
        )
        .await?;
        ensure!(timed_out >= 1.0, "{timed_out} idle timeouts counted");
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_both_timeouts() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        let server = server(|l| {
            l.header_timeout = Duration::from_secs(1);
            l.idle_timeout = Duration::from_secs(2);
        })
        .await?;
        let base = server.base_url().to_owned();
        server.create_stream("show", false).await?;

        let mut ws = WsClient::connect(&base, "show", Auth::None).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        ws.send(json!({"type": "ping"})).await?;
        let pong = ws.next_of("pong").await?;
        ensure!(pong["type"] == "pong", "{pong}");
        server.shutdown().await;
        Ok(())
    })
    .await
}
