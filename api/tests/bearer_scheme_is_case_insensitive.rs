//! Every route that takes a bearer credential reads it with the one parser
//! (`whip_whep::authorization_bearer`): the scheme is case-insensitive (RFC 7235), so
//! `bearer` and `BEARER` open what `Bearer` opens, on the REST API, webhooks, analytics,
//! integrator events and the ICE servers alike; no token, a wrong token or another scheme
//! is refused with 401 and a JSON body.

mod support;

use anyhow::{ensure, Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

/// An admin token as `relaycast token --role admin` mints it.
fn admin_token(server: &TestServer) -> Result<String> {
    Ok(server.server().tokens().issue(
        &format!("cli-{:016x}", rand::random::<u64>()),
        None,
        signaling::Role::Admin,
        api::unix_now(),
        600,
    )?)
}

/// One request with `Authorization: {authorization}` (none if `None`): status and JSON body.
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = client.request(method, url);
    if let Some(a) = authorization {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.context("request")?;
    let status = resp.status();
    let text = resp.text().await.context("body")?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((status, json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_on_every_route() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        server.create_stream("show", false).await?;
        let admin = admin_token(&server)?;
        let client = http_client()?;
        use reqwest::Method;
        let routes: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("{base}/api/ice-servers"), None),
            (Method::GET, format!("{base}/api/streams/live"), None),
            (Method::GET, format!("{base}/api/webhooks"), None),
            (Method::GET, format!("{base}/api/streams/show/stats"), None),
            (
                Method::POST,
                format!("{base}/api/streams/show/events"),
                Some(json!({ "kind": "goal" })),
            ),
        ];

        for (method, url, body) in &routes {
            for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
                let (status, json) = call(
                    &client,
                    method.clone(),
                    url,
                    Some(&format!("{scheme} {admin}")),
                    body.clone(),
                )
                .await?;
                ensure!(
                    status.is_success(),
                    "{method} {url} with `{scheme}`: {status} {json}"
                );
            }
            // Refused: no credential, a wrong token, another scheme.
            for authorization in [
                None,
                Some("Bearer not-a-token".to_owned()),
                Some(format!("Basic {admin}")),
            ] {
                let (status, json) = call(
                    &client,
                    method.clone(),
                    url,
                    authorization.as_deref(),
                    body.clone(),
                )
                .await?;
                ensure!(
                    status == StatusCode::UNAUTHORIZED && json["error"].is_string(),
                    "{method} {url} with {authorization:?}: {status} {json}, expected 401 JSON"
                );
            }
        }
        server.shutdown().await;
        Ok(())
    })
    .await
}
