//! The control-plane REST API over real HTTP against a running relaycast,
//! every body run twice: on a fresh SQLite file and on a fresh PostgreSQL
//! database (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test;
//! unreachable PostgreSQL fails the run when `CI=true`).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signaling::testing::TestDb;

#[macro_use]
mod control_plane;
use control_plane::*;

on_both_backends!(
    register_login_logout_and_revocation,
    login_is_rate_limited_per_account_and_per_address,
    integrator_api_keys,
    streams_belong_to_their_broadcaster,
    stream_keys_publish_until_rotated_or_revoked,
    whep_enforces_visibility_and_token_rules,
    entitlements_and_payments_decide_play_tokens,
    bad_input_gets_json_errors,
    openapi_describes_every_route,
);

impl Api {
    /// An admin token as `relaycast token --role admin` mints it.
    fn admin_token(&self) -> Result<String> {
        Ok(self.server().tokens().issue(
            "ops",
            None,
            signaling::Role::Admin,
            api::unix_now(),
            600,
        )?)
    }

    /// POSTs an SDP-ish offer to WHEP; the status tells the access
    /// decision: 400 (the offer is not real) means it was allowed.
    async fn whep(&self, stream: &str, bearer: Option<&str>) -> Result<(StatusCode, String)> {
        let mut req = self
            .http
            .post(format!("{}/whep/{stream}", self.base))
            .header("content-type", "application/sdp")
            .body("v=0\r\n");
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        Ok((status, resp.text().await?))
    }

    async fn webhook(&self, body: &Value, t: u64, secret: &str) -> Result<Resp> {
        let raw = serde_json::to_vec(body)?;
        let sig = api::rest::payments::sign(&raw, secret.as_bytes(), t);
        let resp = self
            .http
            .post(format!("{}/api/payments/webhook", self.base))
            .header("content-type", "application/json")
            .header("stripe-signature", sig)
            .body(raw)
            .send()
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.json().await?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
}

async fn register_login_logout_and_revocation(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let (alice_id, reg_token) = api.register("alice", "viewer", None).await?;
    let me = api
        .get("/api/auth/me", Some(&reg_token))
        .await?
        .expect(200)?;
    ensure!(
        me["id"] == alice_id.as_str() && me["role"] == "viewer",
        "{me}"
    );
    ensure!(me["username"] == "alice");

    let dup = api
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "ALICE", "password": "another password" }),
        )
        .await?
        .error(409)?;
    ensure!(dup.contains("already exists"), "{dup}");

    // Only admins make admins and integrators.
    api.post(
        "/api/auth/register",
        None,
        json!({ "username": "mallory", "password": "a good password", "role": "admin" }),
    )
    .await?
    .error(403)?;
    api.post(
        "/api/auth/register",
        Some(&reg_token),
        json!({ "username": "mallory", "password": "a good password", "role": "integrator" }),
    )
    .await?
    .error(403)?;
    let admin = api.admin_token()?;
    let (_, int_token) = api.register("bookie", "integrator", Some(&admin)).await?;
    ensure!(
        api.get("/api/auth/me", Some(&int_token))
            .await?
            .expect(200)?["role"]
            == "integrator"
    );

    // Login.
    let login = api
        .post(
            "/api/auth/login",
            None,
            json!({ "username": "alice", "password": "a good password" }),
        )
        .await?
        .expect(200)?;
    let token = login["token"].as_str().context("token")?.to_string();
    ensure!(login["expires_at"].as_u64().is_some());
    let wrong = api
        .post(
            "/api/auth/login",
            None,
            json!({ "username": "alice", "password": "not the password" }),
        )
        .await?
        .error(401)?;
    ensure!(wrong == "invalid username or password");
    api.post(
        "/api/auth/login",
        None,
        json!({ "username": "nobody", "password": "whatever pw" }),
    )
    .await?
    .error(401)?;

    // No token, garbage token, wrong scheme.
    ensure!(api.get("/api/auth/me", None).await?.error(401)? == "missing bearer token");
    api.get("/api/auth/me", Some("eyJ.not.atoken"))
        .await?
        .error(401)?;
    let r = api
        .http
        .get(format!("{}/api/auth/me", api.base))
        .header("authorization", "Basic YTpi")
        .send()
        .await?;
    ensure!(r.status() == 401);

    // Expired.
    let expired = api.server().tokens().issue(
        &alice_id,
        None,
        signaling::Role::Viewer,
        api::unix_now() - 7200,
        60,
    )?;
    ensure!(api.get("/api/auth/me", Some(&expired)).await?.error(401)? == "token expired");

    // A stream token is not an API credential.
    let play = api.server().tokens().issue(
        &alice_id,
        Some("x"),
        signaling::Role::Play,
        api::unix_now(),
        60,
    )?;
    api.get("/api/auth/me", Some(&play)).await?.error(403)?;

    // Logout revokes that token only.
    api.post("/api/auth/logout", Some(&token), json!({}))
        .await?
        .expect(204)?;
    ensure!(api.get("/api/auth/me", Some(&token)).await?.error(401)? == "token revoked");
    api.get("/api/ice-servers", Some(&token))
        .await?
        .error(401)?;
    api.get("/api/ice-servers", Some(&reg_token))
        .await?
        .expect(200)?;
    api.get("/api/auth/me", Some(&reg_token))
        .await?
        .expect(200)?;

    // Admin revocation, by token and by id; non-admins may not.
    api.post(
        "/api/auth/revoke",
        Some(&int_token),
        json!({ "token": reg_token }),
    )
    .await?
    .error(403)?;
    api.post(
        "/api/auth/revoke",
        Some(&admin),
        json!({ "token": reg_token }),
    )
    .await?
    .expect(204)?;
    api.get("/api/auth/me", Some(&reg_token))
        .await?
        .error(401)?;
    let jti = api.server().tokens().verify(&int_token)?.jti;
    api.post("/api/auth/revoke", Some(&admin), json!({ "jti": jti }))
        .await?
        .expect(204)?;
    api.get("/api/auth/me", Some(&int_token))
        .await?
        .error(401)?;
    api.post("/api/auth/revoke", Some(&admin), json!({}))
        .await?
        .error(400)?;
    api.post("/api/auth/revoke", Some(&admin), json!({ "token": "junk" }))
        .await?
        .error(422)?;
    api.stop().await;
    Ok(())
}

async fn login_is_rate_limited_per_account_and_per_address(db: &TestDb) -> Result<()> {
    let api = Api::start_with(db, |c| {
        c.rest.login_limits = api::rest::ratelimit::Limits {
            per_account: 3,
            per_ip: 8,
            window: Duration::from_secs(600),
        };
    })
    .await?;
    api.register("carol", "viewer", None).await?;
    for _ in 0..3 {
        api.post(
            "/api/auth/login",
            None,
            json!({ "username": "carol", "password": "wrong password" }),
        )
        .await?
        .error(401)?;
    }
    // Locked: even the right password is refused now.
    let r = api
        .post(
            "/api/auth/login",
            None,
            json!({ "username": "carol", "password": "a good password" }),
        )
        .await?;
    let retry: u64 = r
        .headers
        .get("retry-after")
        .context("Retry-After")?
        .to_str()?
        .parse()?;
    ensure!((1..=600).contains(&retry), "Retry-After {retry}");
    r.error(429)?;

    // Another account from the same address still gets in, until the
    // address has used its attempts (4 so far, limit 8).
    api.register("dave", "viewer", None).await?;
    api.post(
        "/api/auth/login",
        None,
        json!({ "username": "dave", "password": "a good password" }),
    )
    .await?
    .expect(200)?;
    let mut limited = false;
    for i in 0..8 {
        let r = api
            .post(
                "/api/auth/login",
                None,
                json!({ "username": format!("user{i}"), "password": "whatever pw" }),
            )
            .await?;
        if r.status == 429 {
            limited = true;
            break;
        }
        r.error(401)?;
    }
    ensure!(limited, "the address was never limited");
    api.post(
        "/api/auth/login",
        None,
        json!({ "username": "dave", "password": "a good password" }),
    )
    .await?
    .error(429)?;
    api.stop().await;
    Ok(())
}

async fn integrator_api_keys(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let admin = api.admin_token()?;
    let (int_id, int_token) = api.register("oddsfeed", "integrator", Some(&admin)).await?;
    let (_, viewer) = api.register("victor", "viewer", None).await?;

    api.post("/api/api-keys", Some(&viewer), json!({ "name": "x" }))
        .await?
        .error(403)?;
    api.post("/api/api-keys", Some(&int_token), json!({ "name": "" }))
        .await?
        .error(422)?;
    let created = api
        .post("/api/api-keys", Some(&int_token), json!({ "name": "prod" }))
        .await?
        .expect(201)?;
    let secret = created["secret"].as_str().context("secret")?.to_string();
    let key_id = created["key"]["id"].as_str().context("id")?.to_string();
    ensure!(secret.starts_with("rci_"));

    // The key is a bearer credential with the integrator's role.
    let me = api.get("/api/auth/me", Some(&secret)).await?.expect(200)?;
    ensure!(
        me["id"] == int_id.as_str() && me["authenticated_by"] == "api_key",
        "{me}"
    );
    api.get("/api/streams", Some(&secret)).await?.expect(200)?;
    let keys = api
        .get("/api/api-keys", Some(&int_token))
        .await?
        .expect(200)?;
    ensure!(keys["keys"].as_array().map(Vec::len) == Some(1));
    ensure!(
        !keys.to_string().contains(&secret),
        "listing leaks the secret"
    );
    api.post("/api/auth/logout", Some(&secret), json!({}))
        .await?
        .error(422)?;

    api.delete(&format!("/api/api-keys/{key_id}"), Some(&int_token))
        .await?
        .expect(204)?;
    api.delete(&format!("/api/api-keys/{key_id}"), Some(&int_token))
        .await?
        .error(404)?;
    api.get("/api/auth/me", Some(&secret)).await?.error(401)?;
    api.get("/api/auth/me", Some("rci_madeup"))
        .await?
        .error(401)?;
    api.stop().await;
    Ok(())
}

async fn streams_belong_to_their_broadcaster(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let admin = api.admin_token()?;
    let (a_id, a) = api.register("anna", "broadcaster", None).await?;
    let (_, b) = api.register("ben", "broadcaster", None).await?;
    let (_, viewer) = api.register("vera", "viewer", None).await?;
    let (_, integrator) = api.register("intg", "integrator", Some(&admin)).await?;

    let s = api
        .post(
            "/api/streams",
            Some(&a),
            json!({ "name": "anna-live", "title": "Anna", "visibility": "authenticated" }),
        )
        .await?
        .expect(201)?;
    ensure!(
        s["owner_id"] == a_id.as_str() && s["visibility"] == "authenticated" && s["live"] == false,
        "{s}"
    );
    api.post("/api/streams", Some(&b), json!({ "name": "ben-live" }))
        .await?
        .expect(201)?;
    api.post("/api/streams", Some(&b), json!({ "name": "anna-live" }))
        .await?
        .error(409)?;
    api.post("/api/streams", Some(&viewer), json!({ "name": "v" }))
        .await?
        .error(403)?;
    api.post("/api/streams", None, json!({ "name": "v" }))
        .await?
        .error(401)?;
    api.post("/api/streams", Some(&a), json!({ "name": "live" }))
        .await?
        .error(422)?;
    api.post("/api/streams", Some(&a), json!({ "name": "has space" }))
        .await?
        .error(422)?;
    api.post(
        "/api/streams",
        Some(&a),
        json!({ "name": "x", "visibility": "secret" }),
    )
    .await?
    .error(422)?;
    api.post("/api/streams", Some(&admin), json!({ "name": "ops-made" }))
        .await?
        .expect(201)?;

    let names = |v: &Value| -> Vec<String> {
        v["streams"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    ensure!(names(&api.get("/api/streams", Some(&a)).await?.expect(200)?) == ["anna-live"]);
    ensure!(names(&api.get("/api/streams", Some(&b)).await?.expect(200)?) == ["ben-live"]);
    ensure!(names(&api.get("/api/streams", Some(&admin)).await?.expect(200)?).len() == 3);
    ensure!(
        names(
            &api.get("/api/streams", Some(&integrator))
                .await?
                .expect(200)?
        )
        .len()
            == 3
    );
    api.get("/api/streams", Some(&viewer)).await?.error(403)?;

    // Other people's streams.
    api.get("/api/streams/anna-live", Some(&b))
        .await?
        .error(403)?;
    api.patch(
        "/api/streams/anna-live",
        Some(&b),
        json!({ "title": "mine" }),
    )
    .await?
    .error(403)?;
    api.delete("/api/streams/anna-live", Some(&b))
        .await?
        .error(403)?;
    api.post("/api/streams/anna-live/keys", Some(&b), json!({}))
        .await?
        .error(403)?;
    api.get("/api/streams/anna-live", Some(&integrator))
        .await?
        .expect(200)?;
    api.patch(
        "/api/streams/anna-live",
        Some(&integrator),
        json!({ "title": "t" }),
    )
    .await?
    .error(403)?;
    api.get("/api/streams/nope", Some(&a)).await?.error(404)?;

    let updated = api
        .patch(
            "/api/streams/anna-live",
            Some(&a),
            json!({ "title": "Anna's show", "visibility": "entitled", "allowed_countries": ["fr", "de"] }),
        )
        .await?
        .expect(200)?;
    ensure!(updated["title"] == "Anna's show" && updated["visibility"] == "entitled");
    ensure!(updated["allowed_countries"] == json!(["FR", "DE"]));
    api.patch(
        "/api/streams/anna-live",
        Some(&a),
        json!({ "allowed_cidrs": ["not-a-cidr"] }),
    )
    .await?
    .error(422)?;
    api.patch(
        "/api/streams/anna-live",
        Some(&a),
        json!({ "owner_id": "x" }),
    )
    .await?
    .error(422)?;
    api.get("/api/streams/anna-live", Some(&admin))
        .await?
        .expect(200)?;

    let live = api
        .get("/api/streams/live", Some(&viewer))
        .await?
        .expect(200)?;
    ensure!(live["streams"] == json!([]), "nothing is live: {live}");
    api.get("/api/streams/live", None).await?.error(401)?;
    let sessions = api
        .get("/api/streams/anna-live/sessions", Some(&a))
        .await?
        .expect(200)?;
    ensure!(sessions["sessions"] == json!([]));
    api.get("/api/streams/anna-live/sessions?limit=0", Some(&a))
        .await?
        .error(422)?;

    api.delete("/api/streams/anna-live", Some(&a))
        .await?
        .expect(204)?;
    api.get("/api/streams/anna-live", Some(&a))
        .await?
        .error(404)?;
    api.delete("/api/streams/ben-live", Some(&admin))
        .await?
        .expect(204)?;
    api.stop().await;
    Ok(())
}

async fn stream_keys_publish_until_rotated_or_revoked(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let (_, a) = api.register("anna", "broadcaster", None).await?;
    api.post("/api/streams", Some(&a), json!({ "name": "show" }))
        .await?
        .expect(201)?;
    let k1 = api
        .post("/api/streams/show/keys", Some(&a), json!({}))
        .await?
        .expect(201)?;
    let secret1 = k1["secret"].as_str().context("secret")?.to_string();
    let id1 = k1["key"]["id"].as_str().context("id")?.to_string();
    let store = api.server().store().clone();
    let tokens = api.server().tokens().clone();
    store
        .authorize_publish(&tokens, "show", Some(&secret1))
        .await
        .context("a new key publishes")?;

    let k2 = api
        .post("/api/streams/show/keys/rotate", Some(&a), json!({}))
        .await?
        .expect(201)?;
    let secret2 = k2["secret"].as_str().context("secret")?.to_string();
    let id2 = k2["key"]["id"].as_str().context("id")?.to_string();
    ensure!(store
        .authorize_publish(&tokens, "show", Some(&secret1))
        .await
        .is_err());
    store
        .authorize_publish(&tokens, "show", Some(&secret2))
        .await
        .context("the rotated key publishes")?;

    let keys = api
        .get("/api/streams/show/keys", Some(&a))
        .await?
        .expect(200)?;
    let list = keys["keys"].as_array().context("keys")?;
    ensure!(list.len() == 2);
    ensure!(!keys.to_string().contains("rk_"), "listing leaks a secret");
    ensure!(list
        .iter()
        .any(|k| k["id"] == id1.as_str() && k["revoked_at"].is_i64()));

    api.delete(&format!("/api/streams/show/keys/{id2}"), Some(&a))
        .await?
        .expect(204)?;
    api.delete(&format!("/api/streams/show/keys/{id2}"), Some(&a))
        .await?
        .error(404)?;
    ensure!(store
        .authorize_publish(&tokens, "show", Some(&secret2))
        .await
        .is_err());

    // WHIP itself refuses the revoked key.
    let r = api
        .http
        .post(format!("{}/whip/show", api.base))
        .header("content-type", "application/sdp")
        .bearer_auth(&secret2)
        .body("v=0\r\n")
        .send()
        .await?;
    ensure!(r.status() == 401, "WHIP with a revoked key: {}", r.status());
    api.stop().await;
    Ok(())
}

async fn whep_enforces_visibility_and_token_rules(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let (_, a) = api.register("anna", "broadcaster", None).await?;
    let (_, viewer) = api.register("vera", "viewer", None).await?;
    for (name, vis) in [
        ("open", "public"),
        ("members", "authenticated"),
        ("paid", "entitled"),
    ] {
        api.post(
            "/api/streams",
            Some(&a),
            json!({ "name": name, "visibility": vis }),
        )
        .await?
        .expect(201)?;
    }
    const ALLOWED: StatusCode = StatusCode::BAD_REQUEST; // past the access check, the fake offer fails
    ensure!(api.whep("open", None).await?.0 == ALLOWED);
    ensure!(api.whep("members", None).await?.0 == 401);
    ensure!(api.whep("members", Some(&viewer)).await?.0 == ALLOWED);
    ensure!(api.whep("paid", None).await?.0 == 401);
    ensure!(api.whep("paid", Some(&viewer)).await?.0 == 403);
    ensure!(api.whep("paid", Some("eyJ.bad.token")).await?.0 == 401);

    // The owner mints play tokens for her own entitled stream.
    let t = api
        .post("/api/streams/paid/play-token", Some(&a), json!({}))
        .await?
        .expect(201)?;
    let play = t["token"].as_str().context("token")?.to_string();
    ensure!(api.whep("paid", Some(&play)).await?.0 == ALLOWED);
    // A play token is for its stream only.
    ensure!(api.whep("members", Some(&play)).await?.0 == 403);
    let members = api
        .post("/api/streams/members/play-token", Some(&viewer), json!({}))
        .await?
        .expect(201)?;
    ensure!(api.whep("members", members["token"].as_str()).await?.0 == ALLOWED);

    // Address rules in the token: the test client is 127.0.0.1.
    let inside = api
        .post(
            "/api/streams/paid/play-token",
            Some(&a),
            json!({ "cidrs": ["127.0.0.0/8"] }),
        )
        .await?
        .expect(201)?;
    ensure!(api.whep("paid", inside["token"].as_str()).await?.0 == ALLOWED);
    let outside = api
        .post(
            "/api/streams/paid/play-token",
            Some(&a),
            json!({ "cidrs": ["203.0.113.0/24"] }),
        )
        .await?
        .expect(201)?;
    let (status, body) = api.whep("paid", outside["token"].as_str()).await?;
    ensure!(status == 403, "{status} {body}");
    // Country rules without a GeoIP database refuse (fail closed).
    let country = api
        .post(
            "/api/streams/paid/play-token",
            Some(&a),
            json!({ "countries": ["FR"] }),
        )
        .await?
        .expect(201)?;
    let (status, body) = api.whep("paid", country["token"].as_str()).await?;
    ensure!(status == 403 && body.contains("GeoIP"), "{status} {body}");

    // Stream rules apply to everyone, public streams included.
    api.patch(
        "/api/streams/open",
        Some(&a),
        json!({ "allowed_cidrs": ["203.0.113.0/24"] }),
    )
    .await?
    .expect(200)?;
    ensure!(api.whep("open", None).await?.0 == 403);
    api.patch(
        "/api/streams/open",
        Some(&a),
        json!({ "allowed_cidrs": ["127.0.0.1/32"] }),
    )
    .await?
    .expect(200)?;
    ensure!(api.whep("open", None).await?.0 == ALLOWED);

    // Revoked and expired play tokens.
    let jti = api.server().tokens().verify(&play)?.jti;
    api.server()
        .store()
        .revoke_token(&jti, api::unix_now() as i64 + 600)
        .await?;
    ensure!(api.whep("paid", Some(&play)).await?.0 == 401);
    let old = api.server().tokens().issue(
        "x",
        Some("paid"),
        signaling::Role::Play,
        api::unix_now() - 3600,
        60,
    )?;
    ensure!(api.whep("paid", Some(&old)).await?.0 == 401);
    api.stop().await;
    Ok(())
}

async fn entitlements_and_payments_decide_play_tokens(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let admin = api.admin_token()?;
    let (caster_id, caster) = api.register("caster", "broadcaster", None).await?;
    let (fan_id, fan) = api.register("fan", "viewer", None).await?;
    let (_, other) = api.register("other", "viewer", None).await?;
    let (_, integrator) = api.register("intg", "integrator", Some(&admin)).await?;
    for name in ["final", "semi"] {
        api.post(
            "/api/streams",
            Some(&caster),
            json!({ "name": name, "visibility": "entitled" }),
        )
        .await?
        .expect(201)?;
    }
    ensure!(
        api.post("/api/streams/final/play-token", Some(&fan), json!({}))
            .await?
            .error(403)?
            == "no entitlement to this stream"
    );
    api.post("/api/streams/nope/play-token", Some(&fan), json!({}))
        .await?
        .error(404)?;

    // Webhook: unsigned, wrongly signed, stale.
    let now = api::unix_now();
    let checkout = json!({
        "id": "evt_checkout_1",
        "type": "checkout.session.completed",
        "data": { "object": { "id": "cs_1", "metadata": { "user_id": fan_id, "stream": "final" } } }
    });
    let r = api
        .http
        .post(format!("{}/api/payments/webhook", api.base))
        .header("content-type", "application/json")
        .body(checkout.to_string())
        .send()
        .await?;
    ensure!(r.status() == 400);
    api.webhook(&checkout, now, "whsec_wrong")
        .await?
        .error(400)?;
    api.webhook(&checkout, now - 301, WEBHOOK_SECRET)
        .await?
        .error(400)?;
    // Signed: pay-per-view of "final", once.
    let ok = api
        .webhook(&checkout, now, WEBHOOK_SECRET)
        .await?
        .expect(200)?;
    ensure!(ok["entitlement_id"].is_string(), "{ok}");
    let again = api
        .webhook(&checkout, now, WEBHOOK_SECRET)
        .await?
        .expect(200)?;
    ensure!(again["duplicate"] == true, "{again}");
    let t = api
        .post(
            "/api/streams/final/play-token",
            Some(&fan),
            json!({ "ttl_secs": 60 }),
        )
        .await?
        .expect(201)?;
    let claims = api
        .server()
        .tokens()
        .verify(t["token"].as_str().context("token")?)?;
    ensure!(claims.sub == fan_id && claims.stream.as_deref() == Some("final"));
    ensure!(claims.exp - claims.iat == 60);
    ensure!(
        api.whep("final", t["token"].as_str()).await?.0 == 400,
        "entitled play token passes WHEP"
    );
    api.post("/api/streams/semi/play-token", Some(&fan), json!({}))
        .await?
        .error(403)?;
    api.post("/api/streams/final/play-token", Some(&other), json!({}))
        .await?
        .error(403)?;
    api.post(
        "/api/streams/final/play-token",
        Some(&fan),
        json!({ "ttl_secs": 100000 }),
    )
    .await?
    .error(422)?;
    api.post(
        "/api/streams/final/play-token",
        Some(&fan),
        json!({ "countries": ["XYZ"] }),
    )
    .await?
    .error(422)?;

    // Subscription through the webhook covers all of the caster's streams,
    // until the subscription is deleted.
    let sub = json!({
        "id": "evt_sub_1",
        "type": "checkout.session.completed",
        "data": { "object": { "id": "cs_2", "subscription": "sub_42",
                   "metadata": { "user_id": fan_id, "broadcaster_id": caster_id } } }
    });
    api.webhook(&sub, now, WEBHOOK_SECRET).await?.expect(200)?;
    api.post("/api/streams/semi/play-token", Some(&fan), json!({}))
        .await?
        .expect(201)?;
    let cancel = json!({
        "id": "evt_sub_2", "type": "customer.subscription.deleted",
        "data": { "object": { "id": "sub_42" } }
    });
    ensure!(
        api.webhook(&cancel, now, WEBHOOK_SECRET)
            .await?
            .expect(200)?["revoked"]
            == 1
    );
    api.post("/api/streams/semi/play-token", Some(&fan), json!({}))
        .await?
        .error(403)?;
    let ignored = json!({ "id": "evt_x", "type": "invoice.paid", "data": { "object": {} } });
    ensure!(
        api.webhook(&ignored, now, WEBHOOK_SECRET)
            .await?
            .expect(200)?["ignored"]
            == true
    );
    let bad_meta = json!({ "id": "evt_y", "type": "checkout.session.completed",
        "data": { "object": { "id": "cs_3", "metadata": { "user_id": fan_id } } } });
    api.webhook(&bad_meta, now, WEBHOOK_SECRET)
        .await?
        .error(422)?;
    let unknown_user = json!({ "id": "evt_z", "type": "checkout.session.completed",
        "data": { "object": { "id": "cs_4", "metadata": { "user_id": "ghost", "stream": "final" } } } });
    api.webhook(&unknown_user, now, WEBHOOK_SECRET)
        .await?
        .error(422)?;

    // Entitlements by hand: admins and integrators only.
    api.post(
        "/api/entitlements",
        Some(&fan),
        json!({ "user_id": fan_id, "kind": "ppv", "stream": "semi" }),
    )
    .await?
    .error(403)?;
    api.post(
        "/api/entitlements",
        Some(&integrator),
        json!({ "user_id": fan_id, "kind": "ppv", "broadcaster_id": caster_id }),
    )
    .await?
    .error(422)?;
    let granted = api
        .post(
            "/api/entitlements",
            Some(&integrator),
            json!({ "user_id": fan_id, "kind": "ppv", "stream": "semi" }),
        )
        .await?
        .expect(201)?;
    let ent_id = granted["id"].as_str().context("id")?.to_string();
    api.post("/api/streams/semi/play-token", Some(&fan), json!({}))
        .await?
        .expect(201)?;
    // An integrator mints for its user (the user's entitlement counts).
    api.post(
        "/api/streams/semi/play-token",
        Some(&integrator),
        json!({ "user_id": fan_id }),
    )
    .await?
    .expect(201)?;
    api.post(
        "/api/streams/semi/play-token",
        Some(&fan),
        json!({ "user_id": fan_id }),
    )
    .await?
    .error(403)?;
    let mine = api
        .get("/api/entitlements", Some(&fan))
        .await?
        .expect(200)?;
    ensure!(
        mine["entitlements"].as_array().map(Vec::len) == Some(3),
        "{mine}"
    );
    api.get(&format!("/api/entitlements?user_id={fan_id}"), Some(&other))
        .await?
        .error(403)?;
    let all = api
        .get("/api/entitlements", Some(&admin))
        .await?
        .expect(200)?;
    ensure!(all["entitlements"].as_array().map(Vec::len) == Some(3));
    api.delete(&format!("/api/entitlements/{ent_id}"), Some(&fan))
        .await?
        .error(403)?;
    api.delete(&format!("/api/entitlements/{ent_id}"), Some(&admin))
        .await?
        .expect(204)?;
    api.delete(&format!("/api/entitlements/{ent_id}"), Some(&admin))
        .await?
        .error(404)?;
    api.post("/api/streams/semi/play-token", Some(&fan), json!({}))
        .await?
        .error(403)?;
    api.stop().await;

    // Without a configured secret the webhook is off.
    let off = Api::start_with(db, |c| c.rest.payment_webhook_secret = None).await?;
    off.webhook(&checkout, now, WEBHOOK_SECRET)
        .await?
        .error(503)?;
    off.stop().await;
    Ok(())
}

async fn bad_input_gets_json_errors(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let (_, a) = api.register("anna", "broadcaster", None).await?;
    let url = format!("{}/api/streams", api.base);
    let send = |body: String, ct: Option<&'static str>| {
        let mut r = api.http.post(&url).bearer_auth(&a).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let check = |r: reqwest::Response, want: u16| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.context("JSON error body")?;
        ensure!(status == want && v["error"].is_string(), "{status} {v}");
        Ok::<(), anyhow::Error>(())
    };
    check(
        send("{not json".into(), Some("application/json")).await?,
        400,
    )
    .await?;
    check(
        send("{\"name\": 5}".into(), Some("application/json")).await?,
        422,
    )
    .await?;
    check(send("{\"name\": \"x\"}".into(), None).await?, 415).await?;
    let huge = format!(
        "{{\"name\": \"x\", \"title\": \"{}\"}}",
        "a".repeat(100_000)
    );
    check(send(huge, Some("application/json")).await?, 413).await?;
    check(
        send(
            format!("{{\"name\": \"x\", \"title\": \"{}\"}}", "a".repeat(300)),
            Some("application/json"),
        )
        .await?,
        422,
    )
    .await?;
    api.post(
        "/api/auth/register",
        None,
        json!({ "username": "x", "password": "a good password" }),
    )
    .await?
    .error(422)?;
    api.post(
        "/api/auth/register",
        None,
        json!({ "username": "okname", "password": "short" }),
    )
    .await?
    .error(422)?;
    api.post(
        "/api/auth/register",
        None,
        json!({ "username": "okname", "password": "a good password", "role": "play" }),
    )
    .await?
    .error(422)?;
    api.get("/api/nothing-here", None).await?.error(404)?;
    api.call(Method::PUT, "/api/streams", Some(&a), None)
        .await?
        .error(405)?;
    api.get("/api/streams/x/sessions?limit=many", Some(&a))
        .await?
        .error(400)?;
    let r = api
        .http
        .post(format!("{}/api/payments/webhook", api.base))
        .header("stripe-signature", "t=1,v1=00")
        .body(vec![b'x'; 100_000])
        .send()
        .await?;
    check(r, 413).await?;
    api.stop().await;
    Ok(())
}

async fn openapi_describes_every_route(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let doc = api.get("/api/openapi.json", None).await?.expect(200)?;
    ensure!(doc["openapi"] == "3.1.0");
    let paths = doc["paths"].as_object().context("paths")?;
    for (method, path) in api::rest::ROUTES {
        ensure!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} undocumented"
        );
        // Registered: neither the 404 fallback nor 405.
        let concrete = path.replace("{id}", "nope").replace("{key_id}", "nope");
        let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
        let r = api.call(m, &concrete, None, None).await?;
        ensure!(
            r.status != StatusCode::METHOD_NOT_ALLOWED && r.body != json!({ "error": "not found" }),
            "{method} {path} is not routed: {} {}",
            r.status,
            r.body
        );
    }
    api.stop().await;
    Ok(())
}
