//! Webhooks written as the attacks they stop, over real HTTP against a
//! running relaycast, each scenario on a fresh SQLite file and on a fresh
//! PostgreSQL database (`DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/test; unreachable PostgreSQL fails
//! the run when `CI=true`).
//!
//! - Server-side request forgery: a broadcaster registers webhooks at
//!   loopback, private, metadata and other special addresses in every
//!   spelling the URL parser accepts; each is refused, and the delivery log
//!   of one registered while allowed shows no scanner's detail.
//! - Foreign tokens: stream tokens (a play token minted with a
//!   broadcaster's user id, a CLI play token) and other accounts cannot
//!   read or delete a broadcaster's or an admin's webhooks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use signaling::testing::TestDb;

#[macro_use]
mod control_plane;
use control_plane::*;

on_both_backends!(
    hostile_webhook_urls_are_refused_at_registration,
    with_allow_private_a_local_receiver_gets_signed_deliveries,
    a_webhook_registered_while_allowed_is_refused_at_send_time_without_the_flag,
    stream_tokens_and_other_accounts_cannot_touch_a_broadcasters_webhooks,
    a_cli_play_token_cannot_delete_an_admins_webhook,
);

/// The JWT secret of every server here, so a restarted server (and the
/// CLI) mint and accept the same tokens.
const JWT_SECRET: &str = "webhook-test-jwt-secret";

/// The failure categories the delivery log may show.
const CATEGORIES: &[&str] = &[
    "destination refused: not a public address",
    "timed out",
    "could not connect",
    "TLS error",
    "request failed",
];

/// A server on `db` sharing [`JWT_SECRET`], webhooks to private addresses
/// allowed or not.
async fn start(db: &TestDb, allow_private: bool) -> Result<Api> {
    Api::start_with(db, |c| {
        c.jwt_secret = Some(JWT_SECRET.into());
        c.webhooks.allow_private = allow_private;
    })
    .await
}

impl Api {
    /// An admin token as `relaycast token --role admin` mints it.
    fn admin_token(&self) -> Result<String> {
        Ok(self.server().tokens().issue(
            &format!("cli-{:016x}", rand::random::<u64>()),
            None,
            signaling::Role::Admin,
            api::unix_now(),
            600,
        )?)
    }

    /// A broadcaster account that owns stream `name`: its session token.
    async fn broadcaster_with_stream(&self, user: &str, stream: &str) -> Result<(String, String)> {
        let (id, token) = self.register(user, "broadcaster", None).await?;
        self.post("/api/streams", Some(&token), json!({ "name": stream }))
            .await?
            .expect(201)?;
        Ok((id, token))
    }

    /// Registers a webhook; its id.
    async fn hook(&self, token: &str, stream: &str, url: &str) -> Result<String> {
        let created = self
            .post(
                "/api/webhooks",
                Some(token),
                json!({ "url": url, "stream": stream, "events": ["stream.started"] }),
            )
            .await?
            .expect(201)?;
        Ok(created["id"].as_str().context("id")?.to_string())
    }

    /// Queues a `stream.started` event for `stream`, as the SFU would.
    fn fire(&self, stream: &str) {
        self.server()
            .webhooks()
            .notify(api::webhooks::WebhookEvent::new(
                "stream.started",
                stream,
                signaling::unix_ms(),
                json!({}),
            ));
    }

    /// The delivery log of webhook `id` once it has at least `n` rows.
    async fn deliveries(&self, token: &str, id: &str, n: usize) -> Result<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self
                .get(&format!("/api/webhooks/{id}/deliveries"), Some(token))
                .await?
                .expect(200)?;
            let rows = log["deliveries"].as_array().context("deliveries")?.clone();
            if rows.len() >= n {
                return Ok(rows);
            }
            ensure!(
                Instant::now() < deadline,
                "{id}: {} of {n} deliveries logged: {rows:?}",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An HTTP receiver on 127.0.0.1 that counts requests and answers 204.
struct Receiver {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Result<Receiver> {
        let requests = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&requests);
        let app = axum::Router::new()
            .route(
                "/hooks",
                axum::routing::post(move |headers: axum::http::HeaderMap| {
                    let count = Arc::clone(&count);
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        if headers.contains_key("relaycast-signature") {
                            StatusCode::NO_CONTENT
                        } else {
                            StatusCode::BAD_REQUEST
                        }
                    }
                }),
            )
            // Sends the request on elsewhere (here: /hooks); must not be followed.
            .route(
                "/redirect",
                axum::routing::post(|| async {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(axum::http::header::LOCATION, "/hooks")],
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            addr,
            requests,
            task,
        })
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A delivery row shows the owner what happened, not a scanner's detail:
/// no timing, a status only when the receiver answered, and otherwise one
/// of the coarse categories.
fn check_row_shape(row: &Value) -> Result<()> {
    ensure!(row.get("duration_ms").is_none(), "timing served: {row}");
    ensure!(
        row["outcome"] == "delivered" || row["outcome"] == "failed",
        "{row}"
    );
    match row["status_code"].as_i64() {
        Some(_) => ensure!(row["error"].is_null(), "{row}"),
        None => ensure!(
            row["error"]
                .as_str()
                .is_some_and(|e| CATEGORIES.contains(&e)),
            "not a category: {row}"
        ),
    }
    Ok(())
}

async fn hostile_webhook_urls_are_refused_at_registration(db: &TestDb) -> Result<()> {
    let api = start(db, false).await?;
    let (_, mallory) = api.broadcaster_with_stream("mallory", "show").await?;
    // A port something listens on: the probe would learn it is open.
    let receiver = Receiver::start().await?;
    let port = receiver.addr.port();
    let hostile = [
        format!("http://127.0.0.1:{port}/hooks"),
        format!("http://2130706433:{port}/hooks"),
        format!("http://0x7f.1:{port}/hooks"),
        format!("http://127.1:{port}/hooks"),
        format!("http://0177.0.0.1:{port}/hooks"),
        format!("http://[::ffff:127.0.0.1]:{port}/hooks"),
        format!("http://[::ffff:7f00:1]:{port}/hooks"),
        format!("http://[::1]:{port}/hooks"),
        format!("http://localhost:{port}/hooks"),
        format!("http://localhost.:{port}/hooks"),
        format!("http://LocalHost:{port}/hooks"),
        format!("http://hooks.localhost:{port}/hooks"),
        format!("http://%6c%6fcalhost:{port}/hooks"),
        "http://0.0.0.0/".into(),
        "http://0/".into(),
        "http://[::]/".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://[64:ff9b::a9fe:a9fe]/".into(),
        "http://[::ffff:169.254.169.254]/".into(),
        "http://[2002:7f00:1::]/".into(),
        "http://[2002:a9fe:a9fe::]/".into(),
        "http://10.0.0.1/".into(),
        "http://172.16.0.1/".into(),
        "http://192.168.1.1/".into(),
        "http://100.64.0.1/".into(),
        "http://192.0.0.1/".into(),
        "http://192.0.2.1/".into(),
        "http://198.18.0.1/".into(),
        "http://224.0.0.1/".into(),
        "http://240.0.0.1/".into(),
        "http://255.255.255.255/".into(),
        "http://[fd00::1]/".into(),
        "http://[fe80::1]/".into(),
        "http://[fec0::1]/".into(),
        "http://[ff02::1]/".into(),
        "http://[2001::1]/".into(),
        "http://[2001:db8::1]/".into(),
        "https://[::1]:8443/hooks".into(),
    ];
    for url in &hostile {
        let msg = api
            .post(
                "/api/webhooks",
                Some(&mallory),
                json!({ "url": url, "stream": "show", "events": ["stream.started"] }),
            )
            .await?
            .error(422)
            .with_context(|| format!("registering {url}"))?;
        ensure!(
            msg.contains("refused") && msg.contains("public addresses only"),
            "{url}: {msg}"
        );
    }
    // Userinfo could hide where a URL goes from a reader of the list.
    let msg = api
        .post(
            "/api/webhooks",
            Some(&mallory),
            json!({ "url": "http://hooks.example.com@127.0.0.1/", "stream": "show",
                "events": ["stream.started"] }),
        )
        .await?
        .error(422)?;
    ensure!(msg.contains("user name or password"), "{msg}");
    // The metadata address names its block; a resolved name does not say
    // what it resolved to.
    let msg = api
        .post(
            "/api/webhooks",
            Some(&mallory),
            json!({ "url": "http://169.254.169.254/", "stream": "show",
                "events": ["stream.started"] }),
        )
        .await?
        .error(422)?;
    ensure!(msg.contains("link-local"), "{msg}");
    let list = api
        .get("/api/webhooks", Some(&mallory))
        .await?
        .expect(200)?;
    ensure!(list["webhooks"] == json!([]), "{list}");
    ensure!(receiver.requests() == 0, "the receiver was reached");
    // A public address is fine (nothing fires here, so nothing is sent).
    let id = api.hook(&mallory, "show", "http://8.8.8.8/hooks").await?;
    api.delete(&format!("/api/webhooks/{id}"), Some(&mallory))
        .await?
        .expect(204)?;
    api.stop().await;
    Ok(())
}

async fn with_allow_private_a_local_receiver_gets_signed_deliveries(db: &TestDb) -> Result<()> {
    let api = start(db, true).await?;
    let (_, owner) = api.broadcaster_with_stream("onprem", "show").await?;
    let receiver = Receiver::start().await?;
    let port = receiver.addr.port();
    let delivered = api
        .hook(&owner, "show", &format!("http://127.0.0.1:{port}/hooks"))
        .await?;
    let by_name = api
        .hook(&owner, "show", &format!("http://localhost:{port}/hooks"))
        .await?;
    // Nothing listens here: the log says so, coarsely.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let refused = api
        .hook(&owner, "show", &format!("http://{closed}/hooks"))
        .await?;
    let redirected = api
        .hook(&owner, "show", &format!("http://127.0.0.1:{port}/redirect"))
        .await?;
    // An HTTP receiver spoken to in TLS.
    let tls = api
        .hook(&owner, "show", &format!("https://127.0.0.1:{port}/hooks"))
        .await?;
    // Metadata stays out of reach on premises too.
    api.post(
        "/api/webhooks",
        Some(&owner),
        json!({ "url": "http://169.254.169.254/", "stream": "show",
            "events": ["stream.started"] }),
    )
    .await?
    .error(422)?;

    api.fire("show");
    for id in [&delivered, &by_name] {
        let rows = api.deliveries(&owner, id, 1).await?;
        ensure!(rows.len() == 1, "{rows:?}");
        check_row_shape(&rows[0])?;
        ensure!(
            rows[0]["outcome"] == "delivered" && rows[0]["status_code"] == 204,
            "{rows:?}"
        );
    }
    let rows = api.deliveries(&owner, &redirected, 1).await?;
    check_row_shape(&rows[0])?;
    ensure!(
        rows[0]["outcome"] == "failed" && rows[0]["status_code"] == 307,
        "{rows:?}"
    );
    ensure!(
        receiver.requests() == 2,
        "{} requests: the redirect was followed",
        receiver.requests()
    );
    let rows = api.deliveries(&owner, &refused, 1).await?;
    check_row_shape(&rows[0])?;
    ensure!(
        rows[0]["outcome"] == "failed" && rows[0]["error"] == "could not connect",
        "{rows:?}"
    );
    let rows = api.deliveries(&owner, &tls, 1).await?;
    check_row_shape(&rows[0])?;
    ensure!(
        rows[0]["outcome"] == "failed" && rows[0]["error"] == "TLS error",
        "{rows:?}"
    );
    api.stop().await;
    Ok(())
}

async fn a_webhook_registered_while_allowed_is_refused_at_send_time_without_the_flag(
    db: &TestDb,
) -> Result<()> {
    let receiver = Receiver::start().await?;
    let port = receiver.addr.port();
    // Registered on a server that allowed private destinations…
    let api = start(db, true).await?;
    let (_, owner) = api.broadcaster_with_stream("moved", "show").await?;
    let literal = api
        .hook(&owner, "show", &format!("http://127.0.0.1:{port}/hooks"))
        .await?;
    let mapped = api
        .hook(
            &owner,
            "show",
            &format!("http://[::ffff:7f00:1]:{port}/hooks"),
        )
        .await?;
    // …a name whose addresses are checked by the delivery client's
    // resolver, as for a name that re-resolves (DNS rebinding).
    let by_name = api
        .hook(&owner, "show", &format!("http://localhost:{port}/hooks"))
        .await?;
    api.stop().await;

    // …then delivered by one that does not.
    let api = start(db, false).await?;
    api.fire("show");
    for id in [&literal, &mapped, &by_name] {
        let rows = api.deliveries(&owner, id, 1).await?;
        check_row_shape(&rows[0])?;
        ensure!(
            rows[0]["outcome"] == "failed"
                && rows[0]["status_code"].is_null()
                && rows[0]["error"] == "destination refused: not a public address",
            "{id}: {rows:?}"
        );
    }
    // A refusal is final: no retries pile up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for id in [&literal, &mapped, &by_name] {
        let rows = api.deliveries(&owner, id, 1).await?;
        ensure!(rows.len() == 1, "{id} retried: {rows:?}");
    }
    ensure!(receiver.requests() == 0, "the receiver was reached");
    api.stop().await;
    Ok(())
}

async fn stream_tokens_and_other_accounts_cannot_touch_a_broadcasters_webhooks(
    db: &TestDb,
) -> Result<()> {
    let api = start(db, true).await?;
    let admin = api.admin_token()?;
    let (bob_id, bob) = api.broadcaster_with_stream("bob", "bobs-show").await?;
    let (_, eve) = api.broadcaster_with_stream("eve", "eves-show").await?;
    let (_, viewer) = api.register("vic", "viewer", None).await?;
    let (_, integrator) = api.register("bookie", "integrator", Some(&admin)).await?;
    let hook = api
        .hook(&bob, "bobs-show", "http://127.0.0.1:9/hooks")
        .await?;
    let eves_hook = api
        .hook(&eve, "eves-show", "http://127.0.0.1:9/hooks")
        .await?;

    // An integrator mints a play token whose subject is Bob's user id.
    let minted = api
        .post(
            "/api/streams/bobs-show/play-token",
            Some(&integrator),
            json!({ "user_id": bob_id }),
        )
        .await?
        .expect(201)?;
    let play_as_bob = minted["token"].as_str().context("token")?.to_string();
    let claims = api.server().tokens().verify(&play_as_bob)?;
    ensure!(claims.sub == bob_id, "the token carries Bob's id");
    // And a publish token of Bob's stream, with his id.
    let publish_as_bob = api.server().tokens().issue(
        &bob_id,
        Some("bobs-show"),
        signaling::Role::Publish,
        api::unix_now(),
        600,
    )?;
    let item = format!("/api/webhooks/{hook}");
    let log = format!("/api/webhooks/{hook}/deliveries");
    let create = json!({ "url": "http://127.0.0.1:9/x", "stream": "bobs-show",
        "events": ["stream.started"] });
    for stream_token in [&play_as_bob, &publish_as_bob] {
        api.get("/api/webhooks", Some(stream_token))
            .await?
            .error(403)?;
        api.get(&item, Some(stream_token)).await?.error(403)?;
        api.get(&log, Some(stream_token)).await?.error(403)?;
        api.delete(&item, Some(stream_token)).await?.error(403)?;
        api.post("/api/webhooks", Some(stream_token), create.clone())
            .await?
            .error(403)?;
    }
    // Accounts whose role does not manage streams.
    for account in [&viewer, &integrator] {
        api.get("/api/webhooks", Some(account)).await?.error(403)?;
        api.get(&item, Some(account)).await?.error(403)?;
        api.delete(&item, Some(account)).await?.error(403)?;
        api.post("/api/webhooks", Some(account), create.clone())
            .await?
            .error(403)?;
    }
    // Another broadcaster: not listed, not found, cannot add one.
    let eves = api.get("/api/webhooks", Some(&eve)).await?.expect(200)?;
    let ids: Vec<&str> = eves["webhooks"]
        .as_array()
        .context("webhooks")?
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    ensure!(ids == [eves_hook.as_str()], "Eve sees {ids:?}");
    api.get(&item, Some(&eve)).await?.error(404)?;
    api.get(&log, Some(&eve)).await?.error(404)?;
    api.delete(&item, Some(&eve)).await?.error(404)?;
    api.post("/api/webhooks", Some(&eve), create.clone())
        .await?
        .error(403)?;

    // The owner and an admin can.
    let bobs = api.get("/api/webhooks", Some(&bob)).await?.expect(200)?;
    ensure!(
        bobs["webhooks"].as_array().map(Vec::len) == Some(1) && bobs["webhooks"][0]["id"] == hook,
        "{bobs}"
    );
    api.get(&item, Some(&bob)).await?.expect(200)?;
    api.get(&log, Some(&bob)).await?.expect(200)?;
    let all = api.get("/api/webhooks", Some(&admin)).await?.expect(200)?;
    ensure!(
        all["webhooks"].as_array().map(Vec::len) == Some(2),
        "the admin sees all: {all}"
    );
    api.get(&item, Some(&admin)).await?.expect(200)?;
    api.get(&log, Some(&admin)).await?.expect(200)?;
    api.delete(&item, Some(&bob)).await?.expect(204)?;
    api.get(&item, Some(&bob)).await?.error(404)?;
    api.delete(&format!("/api/webhooks/{eves_hook}"), Some(&admin))
        .await?
        .expect(204)?;
    api.stop().await;
    Ok(())
}

/// `relaycast token …` with the servers' JWT secret; the JWT it prints.
fn cli_token(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relaycast"))
        .arg("token")
        .args(args)
        .args(["--jwt-secret", JWT_SECRET, "--data-dir"])
        .arg(std::env::temp_dir())
        .output()
        .context("running relaycast token")?;
    ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

async fn a_cli_play_token_cannot_delete_an_admins_webhook(db: &TestDb) -> Result<()> {
    let api = start(db, true).await?;
    let admin = cli_token(&["--role", "admin"])?;
    let play = cli_token(&["--stream", "ops-show", "--role", "play"])?;
    let (a, p) = (
        api.server().tokens().verify(&admin)?,
        api.server().tokens().verify(&play)?,
    );
    ensure!(
        a.sub.starts_with("cli-") && p.sub.starts_with("cli-") && a.sub != p.sub,
        "CLI tokens get subjects of their own: {} {}",
        a.sub,
        p.sub
    );
    api.post("/api/streams", Some(&admin), json!({ "name": "ops-show" }))
        .await?
        .expect(201)?;
    let hook = api
        .hook(&admin, "ops-show", "http://127.0.0.1:9/hooks")
        .await?;
    let item = format!("/api/webhooks/{hook}");
    api.delete(&item, Some(&play)).await?.error(403)?;
    api.get(&item, Some(&play)).await?.error(403)?;
    // Even a play token asked for with the admin's subject is a stream token.
    let same_subject = cli_token(&[
        "--stream",
        "ops-show",
        "--role",
        "play",
        "--subject",
        &a.sub,
    ])?;
    api.delete(&item, Some(&same_subject)).await?.error(403)?;
    api.get(&item, Some(&admin)).await?.expect(200)?;
    // Admins act on every webhook, whichever subject their token has.
    let other_admin = cli_token(&["--role", "admin"])?;
    api.delete(&item, Some(&other_admin)).await?.expect(204)?;
    api.stop().await;
    Ok(())
}
