//! Two relaycast servers in one process (separate data directories) and
//! one real Redis (127.0.0.1:6379, or RELAYCAST_TEST_REDIS_URL): chat,
//! moderation, history, viewer counts and integrator events cross nodes.
//! Each run uses its own random key prefix. With `CI=true` a missing
//! Redis fails the test; elsewhere it is skipped with a message.

mod realtime_client;
mod support;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use realtime_client::{Auth, WsClient};
use serde_json::{json, Value};
use support::*;

const HOUR: Duration = Duration::from_secs(3600);

fn redis_url() -> String {
    std::env::var("RELAYCAST_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether Redis answers; `Err` under CI when it does not.
async fn redis_available() -> Result<bool> {
    let url = redis_url();
    let ok = match redis::Client::open(url.as_str()) {
        Ok(c) => matches!(
            tokio::time::timeout(Duration::from_secs(5), c.get_multiplexed_async_connection())
                .await,
            Ok(Ok(_))
        ),
        Err(_) => false,
    };
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("Redis at {url} is not reachable (CI=true: Redis tests must run)");
        }
        eprintln!("SKIPPED: Redis at {url} is not reachable");
    }
    Ok(ok)
}

async fn node(prefix: &str) -> Result<TestServer> {
    let prefix = prefix.to_owned();
    TestServer::start_with(move |c| {
        c.redis_url = Some(redis_url());
        c.redis_prefix = prefix;
    })
    .await
}

async fn post_event(
    base: &str,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> Result<(u16, Value)> {
    let mut req = http_client()?
        .post(format!("{base}/api/streams/shared/events"))
        .bearer_auth(token)
        .json(&body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_moderation_counts_and_events_cross_nodes() -> Result<()> {
    init_logging();
    if !redis_available().await? {
        return Ok(());
    }
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT * 3, async {
        let prefix = format!("relaycast-test-{:016x}", rand::random::<u64>());
        let a = node(&prefix).await?;
        let b = node(&prefix).await?;
        ensure!(
            a.server().bus().uses_redis()
                && a.server().bus().node_id() != b.server().bus().node_id()
        );
        a.create_stream("shared", false).await?;
        b.create_stream("shared", false).await?;
        let alice = a
            .server()
            .token_for("alice", Some("shared"), "play", HOUR)?;
        let owner = a
            .server()
            .token_for("owner", Some("shared"), "publish", HOUR)?;
        let bob = b.server().token_for("bob", Some("shared"), "play", HOUR)?;

        let mut on_a = WsClient::connect(a.base_url(), "shared", Auth::Query(&alice)).await?;
        let mut mod_a = WsClient::connect(a.base_url(), "shared", Auth::Query(&owner)).await?;
        let mut on_b = WsClient::connect(b.base_url(), "shared", Auth::Header(&bob)).await?;

        // Chat both ways.
        on_a.chat("hello from a").await?;
        let got = on_b.next_of("chat").await?;
        ensure!(
            got["user"] == "alice" && got["text"] == "hello from a",
            "{got}"
        );
        on_b.chat("hello from b").await?;
        let got = on_a
            .wait_for("b's chat on a", |v| {
                v["type"] == "chat" && v["user"] == "bob"
            })
            .await?;
        ensure!(got["text"] == "hello from b");

        // History lives in Redis: a newcomer on either node sees both lines.
        let late = WsClient::connect(b.base_url(), "shared", Auth::None).await?;
        let texts: Vec<&str> = late.hello["history"]
            .as_array()
            .context("history")?
            .iter()
            .filter_map(|c| c["text"].as_str())
            .collect();
        ensure!(texts == ["hello from a", "hello from b"], "{texts:?}");

        // Moderation set on a applies to chatters on b.
        mod_a
            .send(json!({"type": "slow_mode", "seconds": 120}))
            .await?;
        ensure!(on_b.next_of("slow_mode").await?["seconds"] == 120);
        on_b.chat("too soon").await?;
        let e = on_b.next_of("error").await?;
        ensure!(e["code"] == "slow_mode", "{e}");
        mod_a
            .send(json!({"type": "ban", "user": "bob", "seconds": 600}))
            .await?;
        ensure!(on_b.next_of("banned").await?["user"] == "bob");
        // A node that joins the stream later loads moderation from Redis.
        let c = node(&prefix).await?;
        c.create_stream("shared", false).await?;
        let bob_c = c.server().token_for("bob", Some("shared"), "play", HOUR)?;
        let mut on_c = WsClient::connect(c.base_url(), "shared", Auth::Query(&bob_c)).await?;
        ensure!(on_c.hello["slow_mode"] == 120, "{}", on_c.hello);
        on_c.chat("from the third node").await?;
        ensure!(on_c.next_of("error").await?["code"] == "banned");
        c.shutdown().await;

        // Integrator events: one sequence across nodes, idempotency across nodes.
        let ia = a
            .server()
            .token_for("bookmaker", Some("shared"), "integrator", HOUR)?;
        let ib = b
            .server()
            .token_for("bookmaker", Some("shared"), "integrator", HOUR)?;
        let mut feed_b = b.server().bus().event_feed("shared");
        let (st, e1) = post_event(a.base_url(), &ia, Some("bet-1"), json!({"n": 1})).await?;
        ensure!(st == 201, "{st} {e1}");
        let (st, e2) = post_event(b.base_url(), &ib, None, json!({"n": 2})).await?;
        ensure!(
            st == 201 && e2["seq"].as_u64() > e1["seq"].as_u64(),
            "{e1} {e2}"
        );
        let (st, again) = post_event(b.base_url(), &ib, Some("bet-1"), json!({"n": 1})).await?;
        ensure!(st == 200 && again == e1, "{st} {again}");
        let (st, _) = post_event(b.base_url(), &ib, Some("bet-1"), json!({"n": 3})).await?;
        ensure!(st == 409, "{st}");
        let first = tokio::time::timeout(Duration::from_secs(20), feed_b.recv())
            .await
            .context("feed")?
            .context("lagged")?
            .context("closed")?;
        ensure!(first.seq == e1["seq"].as_u64().context("seq")? && first.payload["n"] == 1);
        let ev = on_a
            .wait_for("b's event on a", |v| {
                v["type"] == "event" && v["seq"] == e2["seq"]
            })
            .await?;
        ensure!(ev["payload"]["n"] == 2);

        // Viewer counts add up: one WHEP viewer on each node.
        let opts = ViewOptions::browser_like(VideoSink::None);
        let va = whep_view(a.base_url(), "shared", None, &opts).await?;
        let vb = whep_view(b.base_url(), "shared", None, &opts).await?;
        on_a.wait_for("2 viewers on a", |v| {
            v["type"] == "viewers" && v["count"] == 2
        })
        .await?;
        on_b.wait_for("2 viewers on b", |v| {
            v["type"] == "viewers" && v["count"] == 2
        })
        .await?;
        vb.close().await?;
        on_a.wait_for("1 viewer on a", |v| {
            v["type"] == "viewers" && v["count"] == 1
        })
        .await?;
        va.close().await?;
        on_b.wait_for("0 viewers on b", |v| {
            v["type"] == "viewers" && v["count"] == 0
        })
        .await?;

        a.shutdown().await;
        b.shutdown().await;
        cleanup(&prefix).await;
        Ok(())
    })
    .await
}

/// Removes the test's keys (best effort).
async fn cleanup(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url().as_str()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}
