//! The attack: a stream is `entitled` (paywalled) and WHEP refuses an
//! anonymous viewer, so the viewer takes the LL-HLS or VOD door instead —
//! `curl $H/hls/NAME/index.m3u8`, a media playlist, a segment, a part,
//! `curl $H/vod/NAME` and a recorded segment. Every one of those must be
//! refused without the credential WHEP would want, and admitted with it;
//! public streams stay exactly as they were (no token in their URIs, the
//! same cache headers).
//!
//! The access decisions (no media needed) run on SQLite and PostgreSQL;
//! the published stream with its recording runs once.

mod support;
#[macro_use]
mod control_plane;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use control_plane::Api;
use serde_json::{json, Value};
use signaling::testing::TestDb;
use support::*;

/// Every kind of media URL, for a stream and a made-up run.
fn media_paths(stream: &str) -> Vec<String> {
    let run = "r1";
    vec![
        format!("/hls/{stream}/index.m3u8"),
        format!("/hls/{stream}/{run}/video/index.m3u8"),
        format!("/hls/{stream}/{run}/video/index.m3u8?_HLS_msn=1&_HLS_part=0"),
        format!("/hls/{stream}/{run}/audio/index.m3u8?_HLS_msn=1&_HLS_skip=YES"),
        format!("/hls/{stream}/{run}/video/init.mp4"),
        format!("/hls/{stream}/{run}/video/seg1.m4s"),
        format!("/hls/{stream}/{run}/video/part1.0.m4s"),
        format!("/hls/{stream}/{run}/720p/seg1.m4s"),
        format!("/hls/{stream}/thumbnail.jpg"),
        format!("/vod/{stream}"),
        format!("/vod/{stream}/{run}/index.m3u8"),
        format!("/vod/{stream}/{run}/video/index.m3u8"),
        format!("/vod/{stream}/{run}/video/seg0.m4s"),
        format!("/vod/{stream}/{run}/audio/init.mp4"),
        format!("/vod/{stream}/{run}/poster.jpg"),
    ]
}

/// `stream` with its first letter percent-encoded (`/hls/%70aid/…`).
fn encoded(stream: &str) -> String {
    let mut c = stream.chars();
    let first = c.next().map(|f| format!("%{:02x}", f as u32));
    format!("{}{}", first.unwrap_or_default(), c.as_str())
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn fetch(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> Result<Got> {
    let mut req = http.get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let res = req.send().await.with_context(|| format!("GET {url}"))?;
    Ok(Got {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.bytes().await?,
    })
}

/// A refusal as the API promises it: the status, a JSON `error`, never
/// cached, readable by a player on another origin, 401 with a challenge.
fn check_refusal(g: &Got, status: u16, what: &str) -> Result<()> {
    ensure!(
        g.status == status,
        "{what}: expected {status}, got {} {}",
        g.status,
        g.text()
    );
    let body: Value = serde_json::from_slice(&g.body).with_context(|| format!("{what}: JSON"))?;
    ensure!(body["error"].is_string(), "{what}: {body}");
    ensure!(
        g.header("cache-control") == "no-store",
        "{what}: cacheable refusal"
    );
    ensure!(
        g.header("access-control-allow-origin") == "*",
        "{what}: no CORS"
    );
    ensure!(
        status != 401 || !g.header("www-authenticate").is_empty(),
        "{what}: 401 without WWW-Authenticate"
    );
    Ok(())
}

/// Past the door: the stream is not live, so the media answer is 404
/// (its own JSON), never 401/403.
fn check_admitted(g: &Got, what: &str) -> Result<()> {
    ensure!(
        g.status == 404 || g.status == 200,
        "{what}: expected to pass the door, got {} {}",
        g.status,
        g.text()
    );
    Ok(())
}

on_both_backends!(the_media_door_judges_like_whep);

async fn the_media_door_judges_like_whep(db: &TestDb) -> Result<()> {
    let api = Api::start(db).await?;
    let base = api.base.clone();
    let http = http_client()?;
    let (_, owner) = api.register("anna", "broadcaster", None).await?;
    let (_, viewer) = api.register("vera", "viewer", None).await?;
    for (name, visibility) in [
        ("open", "public"),
        ("members", "authenticated"),
        ("paid", "entitled"),
        ("fenced", "public"),
    ] {
        api.post(
            "/api/streams",
            Some(&owner),
            json!({ "name": name, "visibility": visibility }),
        )
        .await?
        .expect(201)?;
    }
    // Public, but only for a network the test client is not in.
    api.patch(
        "/api/streams/fenced",
        Some(&owner),
        json!({ "allowed_cidrs": ["203.0.113.0/24"] }),
    )
    .await?
    .expect(200)?;
    let play_token = |body: Value| -> Result<String> {
        Ok(body["token"].as_str().context("play token")?.to_string())
    };
    let play = play_token(
        api.post("/api/streams/paid/play-token", Some(&owner), json!({}))
            .await?
            .expect(201)?,
    )?;
    let members_play = play_token(
        api.post("/api/streams/members/play-token", Some(&viewer), json!({}))
            .await?
            .expect(201)?,
    )?;
    let media = api.server().media_tokens().clone();
    let now = api::unix_now();
    let paid_media = media.issue("paid", now);
    let other_media = media.issue("open", now);
    let forged_key = signaling::MediaTokens::derive(b"not the server's secret", 3600);
    let forged = forged_key.issue("paid", now);
    let expired = {
        // A real signature whose expiry has passed.
        let short = signaling::MediaTokens::from_hex(&media.key_hex(), 0).context("key")?;
        let t = short.issue("paid", now - 2 * signaling::media_token::BUCKET_SECS);
        ensure!(media.verify("paid", &t, now).is_err(), "not expired: {t}");
        t
    };
    let old_play =
        api.server()
            .tokens()
            .issue("x", Some("paid"), signaling::Role::Play, now - 3600, 60)?;

    for stream in ["paid", &encoded("paid")] {
        for path in media_paths(stream) {
            let url = format!("{base}{path}");
            let sep = if path.contains('?') { '&' } else { '?' };
            check_refusal(
                &fetch(&http, &url, None).await?,
                401,
                &format!("anonymous {path}"),
            )?;
            check_refusal(
                &fetch(&http, &url, Some(&viewer)).await?,
                403,
                &format!("a viewer account without a ticket: {path}"),
            )?;
            check_refusal(
                &fetch(&http, &url, Some(&members_play)).await?,
                403,
                &format!("another stream's play token: {path}"),
            )?;
            check_refusal(
                &fetch(&http, &url, Some(&old_play)).await?,
                401,
                &format!("an expired play token: {path}"),
            )?;
            for (what, t) in [
                ("forged", &forged),
                ("another stream's", &other_media),
                ("expired", &expired),
                ("garbage", &"1.x".to_string()),
            ] {
                check_refusal(
                    &fetch(&http, &format!("{url}{sep}hls_token={t}"), None).await?,
                    401,
                    &format!("{what} media token: {path}"),
                )?;
            }
            check_refusal(
                &fetch(&http, &format!("{url}{sep}token=eyJ.bad.token"), None).await?,
                401,
                &format!("a bad token in the query: {path}"),
            )?;
            check_admitted(
                &fetch(&http, &url, Some(&play)).await?,
                &format!("play token: {path}"),
            )?;
            check_admitted(
                &fetch(&http, &format!("{url}{sep}token={play}"), None).await?,
                &format!("play token in the query: {path}"),
            )?;
            check_admitted(
                &fetch(&http, &format!("{url}{sep}hls_token={paid_media}"), None).await?,
                &format!("media token: {path}"),
            )?;
        }
    }
    for path in media_paths("members") {
        let url = format!("{base}{path}");
        check_refusal(
            &fetch(&http, &url, None).await?,
            401,
            &format!("members {path}"),
        )?;
        check_admitted(&fetch(&http, &url, Some(&viewer)).await?, &path)?;
        check_admitted(&fetch(&http, &url, Some(&members_play)).await?, &path)?;
    }
    for path in media_paths("fenced") {
        let url = format!("{base}{path}");
        check_refusal(
            &fetch(&http, &url, None).await?,
            403,
            &format!("fenced {path}"),
        )?;
    }
    for path in media_paths("open") {
        let g = fetch(&http, &format!("{base}{path}"), None).await?;
        check_admitted(&g, &format!("open {path}"))?;
    }
    // Media is read-only: other methods get 405 before any credential
    // question, with the JSON body.
    for path in [
        "/hls/paid/index.m3u8",
        "/vod/paid",
        "/hls/open/r1/video/seg1.m4s",
    ] {
        let res = http.delete(format!("{base}{path}")).send().await?;
        ensure!(res.status() == 405, "DELETE {path}: {}", res.status());
        let body: Value = res.json().await?;
        ensure!(body["error"].is_string(), "{body}");
    }
    // Made-up names and names that cannot be streams: nothing to open.
    for path in [
        "/hls/nosuch/index.m3u8",
        "/hls/a%2Fb/index.m3u8",
        "/vod/a%2Fb",
    ] {
        let g = fetch(&http, &format!("{base}{path}"), None).await?;
        ensure!(g.status == 404, "{path}: {}", g.status);
    }
    api.stop().await;
    Ok(())
}

/// Appends `?`/`&` + `query` to a URL.
fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// Every URI a playlist names: URI lines and `URI="…"` attributes.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in playlist.lines() {
        if l.is_empty() {
            continue;
        }
        if !l.starts_with('#') {
            out.push(l.to_string());
            continue;
        }
        let mut rest = l;
        while let Some(i) = rest.find("URI=\"") {
            let v = &rest[i + 5..];
            let Some(end) = v.find('"') else { break };
            out.push(v[..end].to_string());
            rest = &v[end..];
        }
    }
    out
}

const PAID: &str = "paidshow";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paywalled_stream_and_its_recording_open_only_with_a_ticket() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(Duration::from_secs(150), async {
        let frames = test_pattern_320x240(150).await?;
        let server = TestServer::start_with(|c| {
            c.hls.ladder = vec![transcoder::Rung::new("180p", 180, 250_000)];
        })
        .await?;
        let base = server.base_url().to_owned();
        // `keys create NAME --private`: entitled.
        let key = server.create_stream(PAID, true).await?;
        let play = server.token(PAID, "play", Duration::from_secs(600))?;
        let http = http_client()?;

        let live = LivePublisher::start(&base, PAID, &key, frames).await?;

        let mv_url = format!("{base}/hls/{PAID}/index.m3u8");
        let deadline = Instant::now() + Duration::from_secs(40);
        let mv = loop {
            let g = fetch(&http, &with_query(&mv_url, &format!("token={play}")), None).await?;
            if g.status == 200 {
                break g;
            }
            ensure!(
                g.status == 503 || g.status == 404,
                "{} {}",
                g.status,
                g.text()
            );
            ensure!(Instant::now() < deadline, "no multivariant playlist");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // Live, with media: still closed without a ticket.
        check_refusal(
            &fetch(&http, &mv_url, None).await?,
            401,
            "anonymous multivariant",
        )?;
        // Admitted with a play token: decided for one viewer, not cached.
        ensure!(mv.header("cache-control") == "private, no-store");
        let text = mv.text();
        ensure!(
            !text.contains(&play),
            "the play token leaks into URIs:\n{text}"
        );
        let listed = uris(&text);
        ensure!(listed.len() >= 3, "{text}");
        let token = listed[0]
            .split_once("hls_token=")
            .map(|(_, t)| t.to_string())
            .with_context(|| format!("no media token in {}", listed[0]))?;
        for u in &listed {
            ensure!(
                u.ends_with(&format!("hls_token={token}")),
                "unsigned URI {u}"
            );
        }
        let video_uri = text
            .lines()
            .skip_while(|l| !l.starts_with("#EXT-X-STREAM-INF"))
            .nth(1)
            .context("variant URI")?;
        let video_pl = format!("{base}/hls/{PAID}/{video_uri}");
        let unsigned = video_pl.split('?').next().unwrap_or_default().to_string();
        let media_dir = unsigned.trim_end_matches("index.m3u8").to_string();

        // The media playlist: refused bare, open with the media token,
        // cacheable as before, and every URI in it signed with that token.
        check_refusal(
            &fetch(&http, &unsigned, None).await?,
            401,
            "bare media playlist",
        )?;
        let pl = fetch(&http, &video_pl, None).await?;
        ensure!(
            pl.status == 200,
            "media playlist: {} {}",
            pl.status,
            pl.text()
        );
        ensure!(pl.header("cache-control") == "max-age=1");
        let pl_text = pl.text();
        let media_uris = uris(&pl_text);
        ensure!(
            media_uris.iter().any(|u| u.starts_with("init.mp4"))
                && media_uris.iter().any(|u| u.starts_with("seg"))
                && media_uris.iter().any(|u| u.starts_with("part")),
            "{pl_text}"
        );
        for u in &media_uris {
            ensure!(
                u.ends_with(&format!("hls_token={token}")),
                "unsigned URI {u}"
            );
        }
        // A blocking reload with the token in the URL, as hls.js sends it.
        let msn: u64 = pl_text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .context("MEDIA-SEQUENCE")?
            .parse()?;
        let blocking = fetch(
            &http,
            &with_query(&video_pl, &format!("_HLS_msn={}&_HLS_part=0", msn + 1)),
            None,
        )
        .await?;
        ensure!(
            blocking.status == 200,
            "blocking reload: {}",
            blocking.status
        );
        for u in &media_uris {
            let bare = u.split('?').next().unwrap_or_default();
            let url = format!("{media_dir}{bare}");
            check_refusal(
                &fetch(&http, &url, None).await?,
                401,
                &format!("bare {bare}"),
            )?;
            let signed = format!("{media_dir}{u}");
            let g = fetch(&http, &signed, None).await?;
            ensure!(g.status == 200, "{u}: {}", g.status);
            ensure!(!g.body.is_empty(), "{u}: empty");
            // Rendition reports name the other playlists (short-lived);
            // media is immutable.
            let cache = if bare.ends_with(".m3u8") {
                "max-age=1"
            } else {
                "max-age=31536000, immutable"
            };
            ensure!(
                g.header("cache-control") == cache,
                "{u}: {}",
                g.header("cache-control")
            );
        }
        // The ladder's rung is behind the same door.
        let rung = listed
            .iter()
            .find(|u| u.contains("/180p/"))
            .with_context(|| format!("no 180p variant in {text}"))?;
        let rung_url = format!("{base}/hls/{PAID}/{rung}");
        ensure!(fetch(&http, &rung_url, None).await?.status == 200);
        check_refusal(
            &fetch(&http, rung_url.split('?').next().unwrap_or_default(), None).await?,
            401,
            "bare rung playlist",
        )?;

        live.stop().await?;

        // The recording: listed and served with a ticket only.
        let vod_list = format!("{base}/vod/{PAID}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let list = loop {
            check_refusal(
                &fetch(&http, &vod_list, None).await?,
                401,
                "anonymous VOD list",
            )?;
            let g = fetch(&http, &vod_list, Some(&play)).await?;
            ensure!(g.status == 200, "VOD list: {}", g.status);
            let v: Value = serde_json::from_slice(&g.body)?;
            if v["recordings"][0]["url"].is_string() {
                break v;
            }
            if Instant::now() > deadline {
                bail!("no recording: {v}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let vod_url = list["recordings"][0]["url"].as_str().context("url")?;
        ensure!(vod_url.contains("hls_token="), "unsigned VOD URL {vod_url}");
        let bare_vod = format!("{base}{}", vod_url.split('?').next().unwrap_or_default());
        check_refusal(
            &fetch(&http, &bare_vod, None).await?,
            401,
            "bare VOD playlist",
        )?;
        let vod_mv = fetch(&http, &format!("{base}{vod_url}"), None).await?;
        ensure!(vod_mv.status == 200, "VOD multivariant: {}", vod_mv.status);
        let vod_video = uris(&vod_mv.text())
            .into_iter()
            .find(|u| u.contains("video/"))
            .context("VOD video playlist")?;
        let vod_dir = bare_vod.trim_end_matches("index.m3u8").to_string();
        let vpl = fetch(&http, &format!("{vod_dir}{vod_video}"), None).await?;
        ensure!(vpl.status == 200, "VOD media playlist: {}", vpl.status);
        let seg = uris(&vpl.text())
            .into_iter()
            .find(|u| u.starts_with("seg"))
            .context("a recorded segment")?;
        ensure!(
            seg.contains("hls_token="),
            "unsigned recorded segment {seg}"
        );
        let seg_dir = format!(
            "{vod_dir}{}",
            vod_video
                .split('?')
                .next()
                .unwrap_or_default()
                .trim_end_matches("index.m3u8")
        );
        let bare_seg = format!("{seg_dir}{}", seg.split('?').next().unwrap_or_default());
        check_refusal(
            &fetch(&http, &bare_seg, None).await?,
            401,
            "bare recorded segment",
        )?;
        let g = fetch(&http, &format!("{seg_dir}{seg}"), None).await?;
        ensure!(
            g.status == 200 && !g.body.is_empty(),
            "recorded segment: {}",
            g.status
        );
        server.shutdown().await;
        Ok(())
    })
    .await
}

/// Guessing at the door (stream keys are credentials there too) is
/// throttled per address like WHEP: past the limit even a right play
/// token gets 429 with `Retry-After`; media tokens already handed out keep
/// working (they are signatures, not guesses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_credentials_at_the_media_door_is_throttled() -> Result<()> {
    let server = TestServer::start_with(|c| {
        c.auth_fail_limits = throttle::Limits {
            failures: 5,
            window: Duration::from_secs(600),
            capacity: 1000,
        };
    })
    .await?;
    let base = server.base_url().to_string();
    server.create_stream("paid", true).await?;
    let play = server.token("paid", "play", Duration::from_secs(600))?;
    let media = server
        .server()
        .media_tokens()
        .issue("paid", api::unix_now());
    let http = http_client()?;
    let url = format!("{base}/hls/paid/index.m3u8");
    for i in 0..5 {
        let g = fetch(&http, &format!("{url}?key=rk_guess{i}"), None).await?;
        check_refusal(&g, 401, &format!("guess {i}"))?;
    }
    let g = fetch(&http, &url, Some(&play)).await?;
    ensure!(
        g.status == 429,
        "after 5 guesses: {} {}",
        g.status,
        g.text()
    );
    ensure!(
        g.header("retry-after").parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After {:?}",
        g.header("retry-after")
    );
    let body: Value = serde_json::from_slice(&g.body)?;
    ensure!(body["error"].is_string(), "{body}");
    check_admitted(
        &fetch(&http, &format!("{url}?hls_token={media}"), None).await?,
        "a media token while the address is throttled",
    )?;
    let m = metric(&base, "relaycast_auth_throttled_total{kind=\"media\"}").await?;
    ensure!(m >= 1.0, "throttled counter {m}");
    server.shutdown().await;
    Ok(())
}
