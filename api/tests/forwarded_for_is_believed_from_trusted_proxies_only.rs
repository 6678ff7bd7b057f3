//! The client address behind `X-Forwarded-For` (`--trusted-proxies`): a
//! client that forges the header cannot step out of the failed-credential
//! throttle, from a peer that is not a trusted proxy (the header is
//! ignored) nor through one (a forged left part is not believed), while
//! behind a trusted proxy distinct clients are throttled apart.
//! In-process, the test's requests come from 127.0.0.1.

mod support;

use std::time::Duration;

use anyhow::{ensure, Result};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use support::*;

const LIMIT: u32 = 3;

async fn server(trusted: &str) -> Result<TestServer> {
    let trusted = api::client_addr::TrustedProxies::parse(trusted).map_err(anyhow::Error::msg)?;
    TestServer::start_with(|c| {
        c.trusted_proxies = trusted;
        c.auth_fail_limits = throttle::Limits {
            failures: LIMIT,
            window: Duration::from_secs(600),
            capacity: 1000,
        };
    })
    .await
}

/// A WHIP publish with a wrong key, claiming to come from `forwarded_for`.
async fn bad_publish(base: &str, forwarded_for: &str) -> Result<StatusCode> {
    Ok(http_client()?
        .post(format!("{base}/whip/show"))
        .header(CONTENT_TYPE, "application/sdp")
        .header(AUTHORIZATION, "Bearer not-a-key")
        .header("x-forwarded-for", forwarded_for)
        .body("v=0\r\n")
        .send()
        .await?
        .status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_header_from_an_untrusted_peer_changes_nothing() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        // Trusted proxies exist, but the test's peer is not one of them.
        let server = server("10.0.0.0/8").await?;
        server.create_stream("show", false).await?;
        let base = server.base_url().to_owned();
        for i in 0..LIMIT {
            let status = bad_publish(&base, &format!("198.51.100.{i}")).await?;
            ensure!(status == StatusCode::UNAUTHORIZED, "attempt {i}: {status}");
        }
        // A fresh forged address each time: still the one peer, throttled.
        let status = bad_publish(&base, "203.0.113.77").await?;
        ensure!(
            status == StatusCode::TOO_MANY_REQUESTS,
            "a forged X-Forwarded-For escaped the throttle: {status}"
        );
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_clients_are_told_apart_and_forgery_does_not_help() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        let server = server("127.0.0.1").await?;
        server.create_stream("show", false).await?;
        let base = server.base_url().to_owned();
        // One client behind the proxy fails until it is throttled…
        for i in 0..LIMIT {
            let status = bad_publish(&base, "198.51.100.1").await?;
            ensure!(status == StatusCode::UNAUTHORIZED, "attempt {i}: {status}");
        }
        ensure!(bad_publish(&base, "198.51.100.1").await? == StatusCode::TOO_MANY_REQUESTS);
        // …and cannot escape by putting another address in front of the
        // one the proxy appended…
        let status = bad_publish(&base, "203.0.113.9, 198.51.100.1").await?;
        ensure!(
            status == StatusCode::TOO_MANY_REQUESTS,
            "a forged left part was believed: {status}"
        );
        // …while another client behind the same proxy is not throttled.
        let status = bad_publish(&base, "198.51.100.2").await?;
        ensure!(
            status == StatusCode::UNAUTHORIZED,
            "another client was throttled with the first: {status}"
        );
        server.shutdown().await;
        Ok(())
    })
    .await
}
