//! The viewer site's server side, without a browser:
//!
//! - the catalogue (`GET /api/directory`) is open to anonymous visitors,
//!   lists scheduled streams as upcoming, searches by title (a `%` in the
//!   search is text, not a wildcard) and refuses a search too long;
//! - scheduling (`PATCH /api/streams/{id}` with `scheduled_at`) is refused
//!   to anonymous callers and to other users' tokens, and checked;
//! - a stream page (`GET /api/directory/{stream}`) tells a visitor to sign
//!   in, a signed-in viewer to buy (with checkout URLs naming them and the
//!   stream), and after the signed payment webhook that they may watch;
//! - pages: `/`, `/account`, the favicon, a stream page whose head carries
//!   its title and Open Graph tags, and an HTML 404 for browsers only;
//! - thumbnails (`/hls/{stream}/thumbnail.jpg`, a JPEG of the latest
//!   keyframe) of a live public stream are served to anyone with short
//!   caching; a paywalled stream's are refused to anonymous visitors, to a
//!   bad token and to a signed-in viewer without a ticket, and served
//!   (never cached) with a play token.

mod support;
#[macro_use]
mod control_plane;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use control_plane::{Api, Resp, WEBHOOK_SECRET};
use serde_json::{json, Value};
use signaling::testing::TestDb;
use support::*;

const CHECKOUT: &str = "https://pay.example.test/checkout";

async fn webhook(api: &Api, body: &Value) -> Result<Resp> {
    let raw = serde_json::to_vec(body)?;
    let sig = api::rest::payments::sign(&raw, WEBHOOK_SECRET.as_bytes(), api::unix_now());
    let resp = api
        .http
        .post(format!("{}/api/payments/webhook", api.base))
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(raw)
        .send()
        .await?;
    Ok(Resp {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.json().await?,
    })
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

on_both_backends!(catalogue_schedule_and_the_checkout_hand_off);

async fn catalogue_schedule_and_the_checkout_hand_off(db: &TestDb) -> Result<()> {
    let api = Api::start_with(db, |c| {
        c.rest.checkout_url = Some(CHECKOUT.parse().expect("a URL"));
    })
    .await?;
    let (anna_id, anna) = api.register("anna", "broadcaster", None).await?;
    let (_, bob) = api.register("bob", "broadcaster", None).await?;
    let (vera_id, vera) = api.register("vera", "viewer", None).await?;
    api.post(
        "/api/streams",
        Some(&anna),
        json!({ "name": "final", "title": "Cup final 100% live" }),
    )
    .await?
    .expect(201)?;
    api.post(
        "/api/streams",
        Some(&anna),
        json!({ "name": "paid", "title": "Ringside", "visibility": "entitled" }),
    )
    .await?
    .expect(201)?;

    // Scheduling: only the owner (or an admin).
    let at = api::unix_now() as i64 + 3600;
    let plan = json!({ "title": "Cup final 100% live", "scheduled_at": at });
    api.patch("/api/streams/final", None, plan.clone())
        .await?
        .error(401)?;
    api.patch("/api/streams/final", Some(&bob), plan.clone())
        .await?
        .error(403)?;
    api.patch("/api/streams/final", Some(&vera), plan.clone())
        .await?
        .error(403)?;
    for bad in [json!(-5), json!(99_999_999_999i64), json!("tomorrow")] {
        api.patch(
            "/api/streams/final",
            Some(&anna),
            json!({ "scheduled_at": bad }),
        )
        .await?
        .error(422)?;
    }
    let s = api
        .patch("/api/streams/final", Some(&anna), plan)
        .await?
        .expect(200)?;
    ensure!(s["scheduled_at"] == at, "{s}");
    // Another field leaves the schedule alone.
    let s = api
        .patch(
            "/api/streams/final",
            Some(&anna),
            json!({ "visibility": "public" }),
        )
        .await?
        .expect(200)?;
    ensure!(s["scheduled_at"] == at, "{s}");

    // The catalogue, anonymously.
    let d = api.get("/api/directory", None).await?.expect(200)?;
    ensure!(names(&d["upcoming"]) == ["final"], "{d}");
    ensure!(names(&d["live"]).is_empty(), "{d}");
    let card = &d["upcoming"][0];
    ensure!(
        card["broadcaster"] == "anna" && card["scheduled_at"] == at,
        "{card}"
    );
    ensure!(card["title"] == "Cup final 100% live", "{card}");
    let d = api.get("/api/directory?q=CUP", None).await?.expect(200)?;
    ensure!(names(&d["upcoming"]) == ["final"], "{d}");
    let d = api.get("/api/directory?q=zzz", None).await?.expect(200)?;
    ensure!(names(&d["upcoming"]).is_empty(), "{d}");
    // "%" is a character to find, not a wildcard: "0% l" is in the title,
    // "p%l" is not.
    let d = api
        .get("/api/directory?q=0%25%20l", None)
        .await?
        .expect(200)?;
    ensure!(names(&d["upcoming"]) == ["final"], "{d}");
    let d = api.get("/api/directory?q=p%25l", None).await?.expect(200)?;
    ensure!(names(&d["upcoming"]).is_empty(), "{d}");
    let long = "x".repeat(101);
    api.get(&format!("/api/directory?q={long}"), None)
        .await?
        .error(422)?;
    api.get("/api/directory?bogus=1", None).await?.error(400)?;

    // A stream page: who may watch, and what would let them.
    let p = api.get("/api/directory/final", None).await?.expect(200)?;
    ensure!(p["state"] == "offline" && p["scheduled_at"] == at, "{p}");
    ensure!(p["access"]["can_watch"] == true, "{p}");
    let p = api.get("/api/directory/paid", None).await?.expect(200)?;
    ensure!(
        p["access"]["can_watch"] == false && p["access"]["needs"] == "sign_in",
        "{p}"
    );
    ensure!(p["access"]["checkout"].is_null(), "{p}");
    let p = api
        .get("/api/directory/paid", Some(&vera))
        .await?
        .expect(200)?;
    ensure!(p["access"]["needs"] == "purchase", "{p}");
    let ppv = p["access"]["checkout"]["ppv"]
        .as_str()
        .context("a checkout URL")?;
    let u = url::Url::parse(ppv)?;
    ensure!(ppv.starts_with(CHECKOUT), "{ppv}");
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    ensure!(
        q.get("kind").map(String::as_str) == Some("ppv")
            && q.get("user_id") == Some(&vera_id)
            && q.get("stream").map(String::as_str) == Some("paid")
            && q.get("return_to").map(String::as_str) == Some("/watch/paid"),
        "{ppv}"
    );
    let sub = p["access"]["checkout"]["subscription"]
        .as_str()
        .context("a subscription URL")?;
    ensure!(sub.contains(&format!("broadcaster_id={anna_id}")), "{sub}");
    let p = api
        .get("/api/directory/paid", Some(&anna))
        .await?
        .expect(200)?;
    ensure!(p["access"]["can_watch"] == true, "the owner: {p}");
    api.get("/api/directory/paid", Some("not-a-token"))
        .await?
        .error(401)?;
    api.get("/api/directory/nope", None).await?.error(404)?;

    // The provider's signed webhook grants the ticket.
    webhook(
        &api,
        &json!({
            "id": "evt_site_1",
            "type": "checkout.session.completed",
            "data": { "object": { "id": "cs_site_1", "metadata": { "user_id": vera_id, "stream": "paid" } } }
        }),
    )
    .await?
    .expect(200)?;
    let p = api
        .get("/api/directory/paid", Some(&vera))
        .await?
        .expect(200)?;
    ensure!(p["access"]["can_watch"] == true, "{p}");
    // A subscription bought the same way lists its broadcaster by name.
    webhook(
        &api,
        &json!({
            "id": "evt_site_2",
            "type": "checkout.session.completed",
            "data": { "object": { "id": "cs_site_2", "subscription": "sub_site_2", "metadata": { "user_id": vera_id, "broadcaster_id": anna_id } } }
        }),
    )
    .await?
    .expect(200)?;
    let mine = api
        .get("/api/entitlements", Some(&vera))
        .await?
        .expect(200)?;
    let subs: Vec<&Value> = mine["entitlements"]
        .as_array()
        .context("entitlements")?
        .iter()
        .filter(|e| e["kind"] == "subscription")
        .collect();
    ensure!(
        subs.len() == 1 && subs[0]["broadcaster_name"] == "anna",
        "{mine}"
    );

    // Clearing the schedule.
    let s = api
        .patch(
            "/api/streams/final",
            Some(&anna),
            json!({ "scheduled_at": null }),
        )
        .await?
        .expect(200)?;
    ensure!(s["scheduled_at"].is_null(), "{s}");
    // A catalogue answer is reused for up to 2 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = api.get("/api/directory", None).await?.expect(200)?;
        if names(&d["upcoming"]).is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "still upcoming: {d}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Pages.
    let http = &api.http;
    for (path, ty) in [
        ("/", "text/html"),
        ("/account", "text/html"),
        ("/favicon.ico", "image/svg+xml"),
        ("/web/home.js", "text/javascript"),
    ] {
        let r = http.get(format!("{}{path}", api.base)).send().await?;
        ensure!(r.status() == 200, "{path}: {}", r.status());
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ensure!(ct.starts_with(ty), "{path}: {ct}");
    }
    let html = http
        .get(format!("{}/watch/final", api.base))
        .send()
        .await?
        .text()
        .await?;
    for want in [
        "<title>Cup final 100% live — relaycast</title>",
        r#"<meta property="og:title" content="Cup final 100% live">"#,
        r#"<meta property="og:url" content="http://127.0.0.1:"#,
        "by anna on relaycast",
    ] {
        ensure!(html.contains(want), "no {want:?} in the head");
    }
    ensure!(
        !html.contains("og:image"),
        "an offline stream has no picture"
    );
    let r = http
        .get(format!("{}/no/such/page", api.base))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await?;
    ensure!(r.status() == 404);
    ensure!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/html")));
    ensure!(r.text().await?.contains("Page not found"));
    let r = http
        .get(format!("{}/no/such/page", api.base))
        .send()
        .await?;
    ensure!(r.status() == 404);
    let body: Value = r.json().await?;
    ensure!(body == json!({ "error": "not found" }), "{body}");
    api.stop().await;
    Ok(())
}

async fn get(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> Result<reqwest::Response> {
    let mut req = http.get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.with_context(|| format!("GET {url}"))
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thumbnails_are_shown_only_to_who_may_watch() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(Duration::from_secs(150), async {
        let frames = test_pattern_320x240(150).await?;
        let server = TestServer::start_with(|c| c.hls.ladder = Vec::new()).await?;
        let base = server.base_url().to_owned();
        let http = http_client()?;
        let open_key = server.create_stream("openshow", false).await?;
        // `keys create NAME --private`: entitled.
        let paid_key = server.create_stream("paidshow", true).await?;
        let play = server.token("paidshow", "play", Duration::from_secs(600))?;
        let play_other = server.token("openshow", "play", Duration::from_secs(600))?;
        let viewer: Value = http
            .post(format!("{base}/api/auth/register"))
            .json(&json!({ "username": "tess", "password": "a good password" }))
            .send()
            .await?
            .json()
            .await?;
        let session = viewer["token"].as_str().context("a session")?.to_string();

        let open = LivePublisher::start(&base, "openshow", &open_key, frames.clone()).await?;
        let paid = LivePublisher::start(&base, "paidshow", &paid_key, frames).await?;

        let open_url = format!("{base}/hls/openshow/thumbnail.jpg");
        let deadline = Instant::now() + Duration::from_secs(40);
        let r = loop {
            let r = get(&http, &open_url, None).await?;
            if r.status() == 200 {
                break r;
            }
            ensure!(r.status() == 404 || r.status() == 503, "{}", r.status());
            ensure!(Instant::now() < deadline, "no thumbnail of the open stream");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        ensure!(header(&r, "content-type") == "image/jpeg");
        ensure!(header(&r, "cache-control") == "max-age=5");
        let jpeg = r.bytes().await?;
        ensure!(
            jpeg.starts_with(&[0xff, 0xd8]) && jpeg.len() > 500,
            "{} bytes",
            jpeg.len()
        );

        // The catalogue shows the open stream's thumbnail, not the paid one's.
        let deadline = Instant::now() + Duration::from_secs(20);
        let live = loop {
            let d: Value = get(&http, &format!("{base}/api/directory"), None)
                .await?
                .json()
                .await?;
            let live = d["live"].as_array().cloned().unwrap_or_default();
            let listed = |n: &str| live.iter().any(|c| c["name"] == n);
            if listed("openshow") && listed("paidshow") {
                break live;
            }
            ensure!(Instant::now() < deadline, "not both live: {d}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let card = |n: &str| live.iter().find(|c| c["name"] == n).cloned();
        let o = card("openshow").context("openshow is live")?;
        ensure!(o["thumbnail"] == "/hls/openshow/thumbnail.jpg", "{o}");
        let p = card("paidshow").context("paidshow is live")?;
        ensure!(
            p["thumbnail"].is_null() && p["visibility"] == "entitled",
            "{p}"
        );

        // The paywalled stream's picture: refused without a ticket.
        let paid_url = format!("{base}/hls/paidshow/thumbnail.jpg");
        for (who, bearer, status) in [
            ("anonymous", None, 401),
            ("a made-up token", Some("garbage"), 401),
            (
                "another stream's play token",
                Some(play_other.as_str()),
                403,
            ),
            ("a viewer without a ticket", Some(session.as_str()), 403),
        ] {
            let r = get(&http, &paid_url, bearer).await?;
            ensure!(r.status() == status, "{who}: {}", r.status());
            ensure!(header(&r, "cache-control") == "no-store", "{who}");
            let body: Value = r.json().await?;
            ensure!(body["error"].is_string(), "{who}: {body}");
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        let r = loop {
            let r = get(&http, &format!("{paid_url}?token={play}"), None).await?;
            if r.status() == 200 {
                break r;
            }
            // Live, but maybe no keyframe yet: never a refusal.
            ensure!(r.status() == 503, "with a ticket: {}", r.status());
            ensure!(Instant::now() < deadline, "no thumbnail of the paid stream");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        ensure!(header(&r, "content-type") == "image/jpeg");
        ensure!(header(&r, "cache-control") == "private, no-store");

        open.stop().await?;
        paid.stop().await?;
        // Ended: the recordings keep a poster (the last keyframe); the
        // open stream's card shows it, the paid one's shows nothing.
        let deadline = Instant::now() + Duration::from_secs(60);
        let d = loop {
            let d: Value = get(&http, &format!("{base}/api/directory"), None)
                .await?
                .json()
                .await?;
            let recorded = |n: &str| {
                d["recent"].as_array().is_some_and(|r| {
                    r.iter()
                        .any(|c| c["name"] == n && c["recordings"][0]["run"].is_string())
                })
            };
            if d["live"].as_array().is_some_and(|l| l.is_empty())
                && recorded("openshow")
                && recorded("paidshow")
            {
                break d;
            }
            ensure!(Instant::now() < deadline, "no recordings: {d}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let recent = d["recent"].as_array().context("recent")?;
        let card = |n: &str| recent.iter().find(|c| c["name"] == n).cloned();
        let o = card("openshow").context("openshow")?;
        let run = o["recordings"][0]["run"].as_str().context("run")?;
        let poster = format!("/vod/openshow/{run}/poster.jpg");
        ensure!(
            o["thumbnail"] == poster && o["recordings"][0]["poster"] == poster,
            "{o}"
        );
        let r = get(&http, &format!("{base}{poster}"), None).await?;
        ensure!(r.status() == 200, "poster: {}", r.status());
        ensure!(header(&r, "content-type") == "image/jpeg");
        ensure!(header(&r, "cache-control") == "max-age=31536000, immutable");
        ensure!(r.bytes().await?.starts_with(&[0xff, 0xd8]));
        let p = card("paidshow").context("paidshow")?;
        ensure!(
            p["thumbnail"].is_null() && p["recordings"][0]["poster"].is_null(),
            "{p}"
        );
        let run = p["recordings"][0]["run"].as_str().context("run")?;
        let paid_poster = format!("{base}/vod/paidshow/{run}/poster.jpg");
        let r = get(&http, &paid_poster, None).await?;
        ensure!(
            r.status() == 401,
            "the paid poster, anonymously: {}",
            r.status()
        );
        let r = get(&http, &paid_poster, Some(&session)).await?;
        ensure!(
            r.status() == 403,
            "the paid poster, no ticket: {}",
            r.status()
        );
        let r = get(&http, &format!("{paid_poster}?token={play}"), None).await?;
        ensure!(
            r.status() == 200,
            "the paid poster, a ticket: {}",
            r.status()
        );
        // The stream page's head previews the open stream with its poster.
        let html = get(&http, &format!("{base}/watch/openshow"), None)
            .await?
            .text()
            .await?;
        ensure!(
            html.contains(&format!("{poster}\"")),
            "no poster in the head"
        );
        server.shutdown().await;
        Ok(())
    })
    .await
}
