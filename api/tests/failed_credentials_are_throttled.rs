//! The attack: one address hammering WHIP, WHEP or the REST API with bad
//! stream keys, play tokens or API keys. After the limit it gets 429 with
//! `Retry-After` and a JSON error, its requests are refused before the
//! credential is looked at (so even the right key is refused), other
//! addresses are not affected, and once the window is over the right
//! credential works again. In-process, every request comes from 127.0.0.1;
//! "another address" is 127.0.0.2 (Linux routes all of 127/8 to loopback).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

const LIMIT: u32 = 5;
/// Long enough that the bad requests of a test fit in one window on a
/// loaded machine, short enough to wait out.
const WINDOW: Duration = Duration::from_secs(10);

struct Harness {
    server: api::Server,
    base: String,
    dir: std::path::PathBuf,
}

async fn harness(name: &str) -> Result<Harness> {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut config = api::Config::for_test(dir.clone());
    config.auth_fail_limits = throttle::Limits {
        failures: LIMIT,
        window: WINDOW,
        capacity: 1000,
    };
    let server = api::start(config, listener).await?;
    let base = format!("http://{}", server.http_addr());
    Ok(Harness { server, base, dir })
}

impl Harness {
    async fn stop(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    async fn metric(&self, series: &str) -> Result<f64> {
        let text = Client::new()
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .with_context(|| format!("{series} not in /metrics"))
    }
}

fn client_from(ip: Ipv4Addr) -> Result<Client> {
    Ok(Client::builder()
        .local_address(IpAddr::V4(ip))
        .timeout(Duration::from_secs(20))
        .build()?)
}

fn offer(direction: Direction) -> String {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, direction, None, None, None);
    api.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: String,
}

async fn send(req: reqwest::RequestBuilder) -> Result<Answer> {
    let resp = req.send().await?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.text().await?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

async fn post_sdp(client: &Client, url: &str, bearer: &str, sdp: &str) -> Result<Answer> {
    send(
        client
            .post(url)
            .header(CONTENT_TYPE, "application/sdp")
            .header(AUTHORIZATION, format!("Bearer {bearer}"))
            .body(sdp.to_string()),
    )
    .await
}

/// A 429 with `Retry-After` within the window and a JSON error body.
fn assert_throttled(a: &Answer) -> Result<u64> {
    ensure!(
        a.status == StatusCode::TOO_MANY_REQUESTS,
        "expected 429, got {} {}",
        a.status,
        a.body
    );
    let after = a.retry_after.context("429 without Retry-After")?;
    ensure!(
        (1..=WINDOW.as_secs()).contains(&after),
        "Retry-After {after}"
    );
    let v: serde_json::Value = serde_json::from_str(&a.body).context("JSON error body")?;
    ensure!(v["error"].is_string(), "{v}");
    Ok(after)
}

/// Sends `attempt` until it is no longer throttled (the window ends); the
/// first wait is what `Retry-After` said.
async fn after_the_window<F, Fut>(retry_after: u64, mut attempt: F) -> Result<Answer>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Answer>>,
{
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let deadline = Instant::now() + WINDOW * 3;
    loop {
        let a = attempt().await?;
        if a.status != StatusCode::TOO_MANY_REQUESTS {
            return Ok(a);
        }
        ensure!(
            Instant::now() < deadline,
            "still throttled long after the window"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_with_bad_stream_keys_is_throttled_per_address() -> Result<()> {
    let h = harness("throttle-whip").await?;
    let key = h.server.create_stream("show", false).await?;
    let url = format!("{}/whip/show", h.base);
    let sdp = offer(Direction::SendOnly);
    let attacker = client_from(Ipv4Addr::LOCALHOST)?;

    for i in 0..LIMIT {
        let a = post_sdp(&attacker, &url, &format!("rk_guess{i}"), &sdp).await?;
        ensure!(
            a.status == StatusCode::UNAUTHORIZED,
            "guess {i}: {}",
            a.status
        );
    }
    let mut retry_after = 0;
    for i in 0..50 {
        let a = post_sdp(&attacker, &url, &format!("rk_more{i}"), &sdp).await?;
        retry_after = assert_throttled(&a)?;
    }
    // Refused before the key is checked: the right key gets the same 429.
    let a = post_sdp(&attacker, &url, &key, &sdp).await?;
    assert_throttled(&a)?;

    // Another address still gets answers: 401 for a bad key, not 429.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2))?;
    let a = post_sdp(&other, &url, "rk_other", &sdp).await?;
    ensure!(
        a.status == StatusCode::UNAUTHORIZED,
        "{} {}",
        a.status,
        a.body
    );

    ensure!(
        h.metric("relaycast_auth_failures_total{kind=\"whip\"}")
            .await?
            == 6.0
    );
    ensure!(
        h.metric("relaycast_auth_throttled_total{kind=\"whip\"}")
            .await?
            == 51.0
    );

    // After the window the right key publishes.
    let a = after_the_window(retry_after, || post_sdp(&attacker, &url, &key, &sdp)).await?;
    ensure!(a.status == StatusCode::CREATED, "{} {}", a.status, a.body);
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_with_bad_play_tokens_is_throttled_per_address() -> Result<()> {
    let h = harness("throttle-whep").await?;
    h.server.create_stream("paid", true).await?;
    let url = format!("{}/whep/paid", h.base);
    // Not a real offer: once the token is accepted, the answer is 400.
    let sdp = "v=0\r\nnot an offer\r\n";
    let attacker = client_from(Ipv4Addr::LOCALHOST)?;
    let good = h.server.token("paid", "play", Duration::from_secs(600))?;
    let other_stream = h.server.token("other", "play", Duration::from_secs(600))?;
    let expired = h.server.tokens().issue(
        "cli",
        Some("paid"),
        signaling::Role::Play,
        api::unix_now() - 7200,
        60,
    )?;

    // A token for another stream is a valid credential, not a guess: 403,
    // not counted.
    for _ in 0..10 {
        let a = post_sdp(&attacker, &url, &other_stream, sdp).await?;
        ensure!(a.status == StatusCode::FORBIDDEN, "{} {}", a.status, a.body);
    }
    for i in 0..LIMIT {
        let bearer = if i % 2 == 0 {
            expired.clone()
        } else {
            format!("{good}x")
        };
        let a = post_sdp(&attacker, &url, &bearer, sdp).await?;
        ensure!(
            a.status == StatusCode::UNAUTHORIZED,
            "bad token {i}: {}",
            a.status
        );
    }
    let retry_after = assert_throttled(&post_sdp(&attacker, &url, &expired, sdp).await?)?;
    assert_throttled(&post_sdp(&attacker, &url, &good, sdp).await?)?;

    let other = client_from(Ipv4Addr::new(127, 0, 0, 2))?;
    let a = post_sdp(&other, &url, &good, sdp).await?;
    ensure!(
        a.status == StatusCode::BAD_REQUEST,
        "{} {}",
        a.status,
        a.body
    );

    ensure!(
        h.metric("relaycast_auth_failures_total{kind=\"whep\"}")
            .await?
            == 5.0
    );
    let a = after_the_window(retry_after, || post_sdp(&attacker, &url, &good, sdp)).await?;
    ensure!(
        a.status == StatusCode::BAD_REQUEST,
        "{} {}",
        a.status,
        a.body
    );
    h.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_with_bad_api_keys_is_throttled_per_address() -> Result<()> {
    let h = harness("throttle-api-key").await?;
    let admin =
        h.server
            .tokens()
            .issue("ops", None, signaling::Role::Admin, api::unix_now(), 600)?;
    let http = Client::new();
    let reg: serde_json::Value = http
        .post(format!("{}/api/auth/register", h.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "username": "oddsfeed", "password": "a good password", "role": "integrator"
        }))
        .send()
        .await?
        .json()
        .await?;
    let token = reg["token"].as_str().context("token")?;
    let created: serde_json::Value = http
        .post(format!("{}/api/api-keys", h.base))
        .bearer_auth(token)
        .json(&serde_json::json!({ "name": "prod" }))
        .send()
        .await?
        .json()
        .await?;
    let key = created["secret"].as_str().context("secret")?.to_string();

    let me = format!("{}/api/auth/me", h.base);
    let attacker = client_from(Ipv4Addr::LOCALHOST)?;
    let get = |c: &Client, bearer: &str| send(c.get(&me).bearer_auth(bearer));
    for i in 0..LIMIT {
        let a = get(&attacker, &format!("rci_guess{i}")).await?;
        ensure!(
            a.status == StatusCode::UNAUTHORIZED,
            "guess {i}: {}",
            a.status
        );
    }
    let retry_after = assert_throttled(&get(&attacker, "rci_more").await?)?;
    assert_throttled(&get(&attacker, &key).await?)?;
    // JWTs take the same path and the same budget.
    assert_throttled(&get(&attacker, token).await?)?;

    let other = client_from(Ipv4Addr::new(127, 0, 0, 2))?;
    let a = get(&other, &key).await?;
    ensure!(a.status == StatusCode::OK, "{} {}", a.status, a.body);

    ensure!(
        h.metric("relaycast_auth_failures_total{kind=\"api_key\"}")
            .await?
            == 5.0
    );
    ensure!(
        h.metric("relaycast_auth_throttled_total{kind=\"api_key\"}")
            .await?
            == 2.0
    );
    let a = after_the_window(retry_after, || get(&attacker, &key)).await?;
    ensure!(a.status == StatusCode::OK, "{} {}", a.status, a.body);
    h.stop().await;
    Ok(())
}
