//! One relaycast, real WebSocket clients (tokio-tungstenite) and a real
//! WHEP viewer: chat with history, rate limit, slow mode, moderation,
//! viewer counts, and integrator events (auth, size limit, idempotency,
//! ordering, the per-stream feed).

mod realtime_client;
mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use realtime_client::{refused_upgrade, Auth, WsClient};
use serde_json::{json, Value};
use support::*;

const HOUR: Duration = Duration::from_secs(3600);

async fn server_with_burst(burst: u32) -> Result<TestServer> {
    TestServer::start_with(|c| {
        c.chat.burst = burst;
        // No refill within a test: the burst is the whole budget.
        c.chat.per_second = 0.0001;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chat_history_limits_slow_mode_and_moderation() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT * 2, async {
        let server = server_with_burst(3).await?;
        let base = server.base_url().to_owned();
        server.create_stream("show", false).await?;
        let s = server.server();
        let alice = s.token_for("alice", Some("show"), "play", HOUR)?;
        let bob = s.token_for("bob", Some("show"), "play", HOUR)?;
        let owner = s.token_for("owner", Some("show"), "publish", HOUR)?;
        let other_stream = s.token_for("eve", Some("other"), "play", HOUR)?;

        // Reading needs no token; writing does.
        let mut reader = WsClient::connect(&base, "show", Auth::None).await?;
        ensure!(reader.hello["can_chat"] == false, "{}", reader.hello);
        ensure!(reader.hello["history"] == json!([]));
        reader.chat("anonymous").await?;
        let e = reader.next_of("error").await?;
        ensure!(e["code"] == "forbidden", "{e}");
        let mut eve = WsClient::connect(&base, "show", Auth::Query(&other_stream)).await?;
        ensure!(
            eve.hello["can_chat"] == false,
            "a token for another stream reads only"
        );

        let mut a = WsClient::connect(&base, "show", Auth::Query(&alice)).await?;
        ensure!(
            a.hello["user"] == "alice"
                && a.hello["can_chat"] == true
                && a.hello["moderator"] == false
        );
        let mut b = WsClient::connect(&base, "show", Auth::Header(&bob)).await?;
        ensure!(b.hello["user"] == "bob");
        let mut m = WsClient::connect(&base, "show", Auth::Header(&owner)).await?;
        ensure!(m.hello["moderator"] == true);

        a.chat("  hello everyone  ").await?;
        let hello_line = reader.next_of("chat").await?;
        ensure!(
            hello_line["user"] == "alice" && hello_line["text"] == "hello everyone",
            "{hello_line}"
        );
        let hello_id = hello_line["id"].as_str().context("chat id")?.to_owned();
        ensure!(b.next_of("chat").await?["id"] == hello_id.as_str());

        // Rate limit: a burst of 3, then refusals with a retry hint.
        a.chat("two").await?;
        a.chat("three").await?;
        a.chat("four").await?;
        let e = a.next_of("error").await?;
        ensure!(
            e["code"] == "rate_limited" && e["retry_after_ms"].as_u64().is_some(),
            "{e}"
        );
        for text in ["two", "three"] {
            ensure!(reader.next_of("chat").await?["text"] == text);
        }

        // Only moderators moderate.
        a.send(json!({"type": "slow_mode", "seconds": 30})).await?;
        ensure!(a.next_of("error").await?["code"] == "forbidden");
        a.send(json!({"type": "slow_mode", "seconds": 99999}))
            .await?;
        ensure!(a.next_of("error").await?["code"] == "forbidden");
        m.send(json!({"type": "slow_mode", "seconds": 99999}))
            .await?;
        ensure!(m.next_of("error").await?["code"] == "bad_request");

        // Slow mode: one message per interval for chatters, not for moderators.
        m.send(json!({"type": "slow_mode", "seconds": 60})).await?;
        ensure!(reader.next_of("slow_mode").await?["seconds"] == 60);
        b.chat("first").await?;
        ensure!(reader.next_of("chat").await?["text"] == "first");
        b.chat("second").await?;
        let e = b.next_of("error").await?;
        ensure!(e["code"] == "slow_mode", "{e}");
        m.chat("mods are not slowed").await?;
        m.chat("at all").await?;
        ensure!(reader.next_of("chat").await?["text"] == "mods are not slowed");
        ensure!(reader.next_of("chat").await?["text"] == "at all");

        // Delete and ban.
        m.send(json!({"type": "delete", "id": hello_id})).await?;
        ensure!(reader.next_of("deleted").await?["id"] == hello_id.as_str());
        m.send(json!({"type": "ban", "user": "bob"})).await?;
        let banned = reader.next_of("banned").await?;
        ensure!(
            banned["user"] == "bob" && banned.get("until_ms").is_none(),
            "{banned}"
        );
        m.send(json!({"type": "slow_mode", "seconds": 0})).await?;
        ensure!(reader.next_of("slow_mode").await?["seconds"] == 0);
        b.chat("let me in").await?;
        ensure!(b.next_of("error").await?["code"] == "banned");

        // Bad frames get errors, not a dropped connection.
        b.send_raw(tokio_tungstenite::tungstenite::Message::Text(
            "not json".into(),
        ))
        .await?;
        ensure!(b.next_of("error").await?["code"] == "bad_request");
        b.send(json!({"type": "warp"})).await?;
        ensure!(b.next_of("error").await?["code"] == "bad_request");
        b.send(json!({"type": "chat", "text": "x".repeat(501)}))
            .await?;
        ensure!(b.next_of("error").await?["code"] == "bad_message");
        a.send(json!({"type": "ping"})).await?;
        ensure!(a.next_of("pong").await?["type"] == "pong");

        // A late joiner gets the history without the deleted line.
        let late = WsClient::connect(&base, "show", Auth::None).await?;
        let texts: Vec<&str> = late.hello["history"]
            .as_array()
            .context("history")?
            .iter()
            .filter_map(|c| c["text"].as_str())
            .collect();
        ensure!(
            texts == ["two", "three", "first", "mods are not slowed", "at all"],
            "history {texts:?}"
        );
        drop(eve.next_of("chat").await?);

        // Refused upgrades: bad token 401, unknown stream name 404, private stream needs a play token.
        let (status, body) = refused_upgrade(&base, "show", Auth::Query("eyJ.bad.token")).await?;
        ensure!(
            status == 401 && body["error"].is_string(),
            "{status} {body}"
        );
        let (status, _) = refused_upgrade(&base, "bad%20name", Auth::None).await?;
        ensure!(status == 404, "{status}");
        server.create_stream("secret", true).await?;
        let (status, _) = refused_upgrade(&base, "secret", Auth::None).await?;
        ensure!(status == 401, "{status}");
        let (status, _) = refused_upgrade(&base, "secret", Auth::Header(&alice)).await?;
        ensure!(status == 403, "{status}");
        let secret_play = s.token_for("carol", Some("secret"), "play", HOUR)?;
        let c = WsClient::connect(&base, "secret", Auth::Header(&secret_play)).await?;
        ensure!(c.hello["can_chat"] == true);
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewer_counts_follow_whep_viewers() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT * 2, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        server.create_stream("counted", false).await?;
        let mut ws = WsClient::connect(&base, "counted", Auth::None).await?;
        ensure!(
            ws.wait_for("zero viewers", |v| v["type"] == "viewers")
                .await?["count"]
                == 0
        );
        let viewer = whep_view(
            &base,
            "counted",
            None,
            &ViewOptions::browser_like(VideoSink::None),
        )
        .await?;
        ws.wait_for("one viewer", |v| v["type"] == "viewers" && v["count"] == 1)
            .await?;
        let late = WsClient::connect(&base, "counted", Auth::None).await?;
        ensure!(late.hello["viewers"] == 1, "{}", late.hello);
        viewer.close().await?;
        ws.wait_for("zero viewers again", |v| {
            v["type"] == "viewers" && v["count"] == 0
        })
        .await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

async fn post_event(
    http: &reqwest::Client,
    base: &str,
    stream: &str,
    token: Option<&str>,
    key: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, Value)> {
    let mut req = http
        .post(format!("{base}/api/streams/{stream}/events"))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn integrator_events_are_sequenced_idempotent_and_delivered() -> Result<()> {
    init_logging();
    with_timeout(TEST_TIMEOUT * 2, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        server.create_stream("match", false).await?;
        let s = server.server();
        let integrator = s.token_for("bookmaker", Some("match"), "integrator", HOUR)?;
        let any_stream = s.token_for("bookmaker", None, "integrator", HOUR)?;
        let admin = s.token_for("ops", None, "admin", HOUR)?;
        let play = s.token_for("viewer", Some("match"), "play", HOUR)?;
        let wrong_stream = s.token_for("bookmaker", Some("other"), "integrator", HOUR)?;
        let http = http_client()?;
        let mut ws = WsClient::connect(&base, "match", Auth::None).await?;
        let mut feed = s.bus().event_feed("match");
        let json_ct = "application/json";

        let body = br#"{"market":"next goal","odds":{"home":2.1}}"#.to_vec();
        let (st, first) = post_event(
            &http,
            &base,
            "match",
            Some(&integrator),
            Some("k-1"),
            json_ct,
            body.clone(),
        )
        .await?;
        ensure!(st == 201, "{st} {first}");
        ensure!(first["seq"] == 1 && first["stream"] == "match", "{first}");
        ensure!(first["payload"]["odds"]["home"] == 2.1);
        ensure!(first["at_ms"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000));
        ensure!(first["media"].is_null(), "not live: no media time");
        let on_ws = ws.next_of("event").await?;
        ensure!(on_ws["id"] == first["id"] && on_ws["seq"] == 1, "{on_ws}");
        let from_feed = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .context("feed")?
            .context("feed lagged")?
            .context("feed closed")?;
        ensure!(from_feed.seq == 1 && from_feed.payload["market"] == "next goal");

        // Same key and body: the same event, 200, not delivered again. Other body: 409.
        let (st, again) = post_event(
            &http,
            &base,
            "match",
            Some(&integrator),
            Some("k-1"),
            json_ct,
            body.clone(),
        )
        .await?;
        ensure!(st == 200 && again == first, "{st} {again}");
        let (st, conflict) = post_event(
            &http,
            &base,
            "match",
            Some(&integrator),
            Some("k-1"),
            json_ct,
            b"{}".to_vec(),
        )
        .await?;
        ensure!(
            st == 409 && conflict["error"].is_string(),
            "{st} {conflict}"
        );

        // Auth, type, size and syntax.
        for (token, want) in [
            (None, 401),
            (Some(play.as_str()), 403),
            (Some(wrong_stream.as_str()), 403),
            (Some("eyJ.x.y"), 401),
        ] {
            let (st, v) =
                post_event(&http, &base, "match", token, None, json_ct, b"{}".to_vec()).await?;
            ensure!(
                st == want && v["error"].is_string(),
                "token {token:?}: {st} {v}"
            );
        }
        let (st, _) = post_event(
            &http,
            &base,
            "match",
            Some(&integrator),
            None,
            "text/plain",
            b"{}".to_vec(),
        )
        .await?;
        ensure!(st == 415, "{st}");
        let mut big = b"{\"pad\":\"".to_vec();
        big.resize(4096 - 2, b'a');
        big.extend_from_slice(b"\"}");
        ensure!(big.len() == 4096);
        let (st, v) = post_event(
            &http,
            &base,
            "match",
            Some(&any_stream),
            None,
            json_ct,
            big.clone(),
        )
        .await?;
        ensure!(st == 201, "4 KiB exactly is accepted: {st} {v}");
        big.insert(1, b' ');
        let (st, v) =
            post_event(&http, &base, "match", Some(&any_stream), None, json_ct, big).await?;
        ensure!(st == 413 && v["error"].is_string(), "{st} {v}");
        let (st, v) = post_event(
            &http,
            &base,
            "match",
            Some(&admin),
            None,
            json_ct,
            b"{nope".to_vec(),
        )
        .await?;
        ensure!(st == 400 && v["error"].is_string(), "{st} {v}");
        let (st, _) = post_event(
            &http,
            &base,
            "bad%20name",
            Some(&admin),
            None,
            json_ct,
            b"{}".to_vec(),
        )
        .await?;
        ensure!(st == 404, "{st}");

        // Concurrent posts: every event gets its own number and clients see them in order.
        ensure!(ws.next_of("event").await?["seq"] == 2);
        let posts = (0..20).map(|i| {
            let http = http.clone();
            let base = base.clone();
            let token = admin.clone();
            tokio::spawn(async move {
                post_event(
                    &http,
                    &base,
                    "match",
                    Some(&token),
                    None,
                    "application/json",
                    format!("{{\"n\":{i}}}").into_bytes(),
                )
                .await
            })
        });
        let mut seqs = Vec::new();
        for p in posts.collect::<Vec<_>>() {
            let (st, v) = p.await??;
            ensure!(st == 201, "{st} {v}");
            seqs.push(v["seq"].as_u64().context("seq")?);
        }
        seqs.sort_unstable();
        ensure!(seqs == (3..=22).collect::<Vec<u64>>(), "{seqs:?}");
        let mut last = 2;
        for _ in 0..20 {
            let seq = ws.next_of("event").await?["seq"].as_u64().context("seq")?;
            ensure!(seq > last, "event {seq} after {last}");
            last = seq;
        }
        server.shutdown().await;
        Ok(())
    })
    .await
}
