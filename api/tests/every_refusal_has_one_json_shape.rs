//! One HTTP edge: whatever route family refuses a request (WHIP/WHEP, the
//! REST API, realtime events, analytics beacons, the payment webhook,
//! LL-HLS, the app-wide rules), the answer is its status with one JSON
//! body shape, `{"error": "<message>"}` and nothing else; and an oversized
//! body is a 413 of that shape on every route that takes one.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use support::*;

/// Checks one answer: `want` status, JSON, exactly `{"error": non-empty string}`.
async fn check(what: &str, response: reqwest::Response, want: StatusCode) -> Result<()> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    ensure!(status == want, "{what}: {status}, expected {want}: {text}");
    ensure!(
        content_type.starts_with("application/json"),
        "{what}: Content-Type {content_type:?}: {text}"
    );
    let body: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))?;
    let object = body
        .as_object()
        .with_context(|| format!("{what}: not an object: {text}"))?;
    ensure!(
        object.len() == 1 && object["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: not the one shape: {text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_family_refuses_with_the_one_shape() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        server.create_stream("show", false).await?;
        let integrator = server.server().token_for(
            "feed",
            Some("show"),
            "integrator",
            Duration::from_secs(600),
        )?;
        let client = http_client()?;
        let big = |n: usize| "x".repeat(n);
        let json_big = |n: usize| format!("{{\"pad\":\"{}\"}}", "x".repeat(n));

        let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
            (
                "unknown path",
                client.get(format!("{base}/no/such/thing")),
                StatusCode::NOT_FOUND,
            ),
            (
                "wrong method",
                client.delete(format!("{base}/healthz")),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                "two Authorization headers",
                client
                    .get(format!("{base}/api/ice-servers"))
                    .header(AUTHORIZATION, "Bearer a")
                    .header(AUTHORIZATION, "Bearer b"),
                StatusCode::BAD_REQUEST,
            ),
            (
                "ice servers without a token",
                client.get(format!("{base}/api/ice-servers")),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "WHIP with a wrong Content-Type",
                client
                    .post(format!("{base}/whip/show"))
                    .header(CONTENT_TYPE, "text/plain")
                    .body("v=0"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "WHIP with an oversized offer",
                client
                    .post(format!("{base}/whip/show"))
                    .header(CONTENT_TYPE, "application/sdp")
                    .body(big(whip_whep::MAX_SDP_BYTES + 1)),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "WHEP of an unknown stream",
                client
                    .post(format!("{base}/whep/nobody"))
                    .header(CONTENT_TYPE, "application/sdp")
                    .body("v=0\r\n"),
                StatusCode::NOT_FOUND,
            ),
            (
                "REST with an oversized JSON body",
                client
                    .post(format!("{base}/api/auth/register"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(json_big(api::rest::MAX_BODY)),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "REST with a body that is not JSON",
                client
                    .post(format!("{base}/api/auth/login"))
                    .header(CONTENT_TYPE, "text/plain")
                    .body("{}"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "REST with JSON of the wrong shape",
                client
                    .post(format!("{base}/api/auth/login"))
                    .header(CONTENT_TYPE, "application/json")
                    .body("{\"username\": 7}"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                "REST with bad JSON",
                client
                    .post(format!("{base}/api/auth/login"))
                    .header(CONTENT_TYPE, "application/json")
                    .body("{"),
                StatusCode::BAD_REQUEST,
            ),
            (
                "REST without a token",
                client.get(format!("{base}/api/auth/me")),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "an oversized integrator event",
                client
                    .post(format!("{base}/api/streams/show/events"))
                    .bearer_auth(&integrator)
                    .header(CONTENT_TYPE, "application/json")
                    .body(json_big(256 * 1024)),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "an event without a token",
                client
                    .post(format!("{base}/api/streams/show/events"))
                    .header(CONTENT_TYPE, "application/json")
                    .body("{}"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "an oversized QoE beacon",
                client
                    .post(format!("{base}/api/qoe"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(json_big(8 * 1024)),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "an oversized payment webhook",
                client
                    .post(format!("{base}/api/payments/webhook"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(json_big(api::rest::MAX_BODY)),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "LL-HLS with a wrong method",
                client.post(format!("{base}/hls/show/index.m3u8")),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                "LL-HLS of an unknown stream",
                client.get(format!("{base}/hls/nobody/index.m3u8")),
                StatusCode::NOT_FOUND,
            ),
        ];
        for (what, request, want) in cases {
            let response = request.send().await.with_context(|| what.to_string())?;
            check(what, response, want).await?;
        }

        server.shutdown().await;
        Ok(())
    })
    .await
}
