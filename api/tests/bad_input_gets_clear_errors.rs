//! Every way a WHIP/WHEP client can get it wrong gets the right status and a
//! JSON `{"error": …}` body, and the server keeps working afterwards.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Method, StatusCode};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

struct Harness {
    server: api::Server,
    base: String,
    client: Client,
    dir: std::path::PathBuf,
}

async fn harness(name: &str) -> Harness {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{:x}", rand_u64()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = api::start(api::Config::for_test(dir.clone()), listener)
        .await
        .expect("server starts");
    let base = format!("http://{}", server.http_addr());
    Harness {
        server,
        base,
        client: Client::new(),
        dir,
    }
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id())
}

/// A real offer from an independent ICE/DTLS stack instance, without
/// candidates (as OBS sends them).
fn offer(direction: Direction) -> String {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, direction, None, None, None);
    api.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

async fn post(
    h: &Harness,
    path: &str,
    ctype: &str,
    auth: Option<&str>,
    body: String,
) -> (StatusCode, HeaderMap, String) {
    let mut req = h
        .client
        .post(format!("{}{}", h.base, path))
        .header(CONTENT_TYPE, ctype)
        .body(body);
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, format!("Bearer {a}"));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

fn assert_json_error(status: StatusCode, body: &str, want: StatusCode, contains: &str) {
    assert_eq!(status, want, "body: {body}");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    let msg = v["error"].as_str().expect("error field");
    assert!(
        msg.to_lowercase().contains(&contains.to_lowercase()),
        "error {msg:?} should mention {contains:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn whip_rejects_bad_requests_with_status_and_json() {
    let h = harness("whip-bad").await;
    let key = h.server.create_stream("show", false).await.expect("key");
    let sdp = offer(Direction::SendOnly);

    let (s, _, b) = post(&h, "/whip/show", "text/plain", Some(&key), sdp.clone()).await;
    assert_json_error(s, &b, StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/sdp");

    let (s, hd, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some(&key),
        "v=0\r\n".repeat(20_000),
    )
    .await;
    assert_json_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "larger than");
    // The unread rest of the body makes the connection unusable: the client
    // is told not to send the next request on it.
    assert_eq!(
        hd.get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );

    let (s, hd, b) = post(&h, "/whip/show", "application/sdp", None, sdp.clone()).await;
    assert_json_error(s, &b, StatusCode::UNAUTHORIZED, "missing bearer");
    assert_eq!(
        hd.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );

    let (s, _, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some("rk_not_a_key"),
        sdp.clone(),
    )
    .await;
    assert_json_error(s, &b, StatusCode::UNAUTHORIZED, "invalid credential");

    // A key of another stream does not open this one.
    let other = h.server.create_stream("other", false).await.expect("key");
    let (s, _, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some(&other),
        sdp.clone(),
    )
    .await;
    assert_json_error(s, &b, StatusCode::UNAUTHORIZED, "invalid credential");

    let play = h
        .server
        .token("show", "play", Duration::from_secs(60))
        .expect("jwt");
    let (s, _, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some(&play),
        sdp.clone(),
    )
    .await;
    assert_json_error(s, &b, StatusCode::FORBIDDEN, "publish");

    let secret = api::load_or_create_secret(&h.dir).expect("secret");
    let expired = signaling::Tokens::new(secret.as_bytes())
        .issue(
            "t",
            Some("show"),
            signaling::Role::Publish,
            api::unix_now() - 7200,
            60,
        )
        .expect("jwt");
    let (s, _, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some(&expired),
        sdp.clone(),
    )
    .await;
    assert_json_error(s, &b, StatusCode::UNAUTHORIZED, "expired");

    let (s, _, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some(&key),
        "hello".into(),
    )
    .await;
    assert_json_error(s, &b, StatusCode::BAD_REQUEST, "malformed SDP");
    let (s, _, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some(&key),
        "v=0\r\nm=banana\r\na=x\r\n".into(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    serde_json::from_str::<serde_json::Value>(&b).expect("JSON");
    // The parser's error says what was wrong, not where in the server's
    // memory it stopped.
    assert!(!b.contains("PointerOffset") && !b.contains("0x7"), "{b}");

    // A receive-only offer cannot publish.
    let (s, _, b) = post(
        &h,
        "/whip/show",
        "application/sdp",
        Some(&key),
        offer(Direction::RecvOnly),
    )
    .await;
    assert_json_error(s, &b, StatusCode::BAD_REQUEST, "no media");

    // After all that, a good request still works, with the headers OBS needs.
    let (s, hd, b) = post(&h, "/whip/show", "application/sdp", Some(&key), sdp.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(b.starts_with("v=0"), "answer body is SDP");
    assert!(b.contains("a=ice-lite"));
    assert!(b.contains("typ host"), "answer lists a server candidate");
    let location = hd
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location");
    assert!(location.starts_with("/whip/show/"));
    assert!(hd.get("etag").is_some());
    let links: Vec<_> = hd
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.starts_with("<stun:") && l.ends_with("rel=\"ice-server\"")),
        "{links:?}"
    );

    // A different credential while the stream is live: 409.
    let jwt = h
        .server
        .token("show", "publish", Duration::from_secs(60))
        .expect("jwt");
    let (s, _, b) = post(&h, "/whip/show", "application/sdp", Some(&jwt), sdp.clone()).await;
    assert_json_error(s, &b, StatusCode::CONFLICT, "already has a publisher");
    // The same key replaces the session (OBS reconnecting).
    let (s, hd2, _) = post(&h, "/whip/show", "application/sdp", Some(&key), sdp.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let location2 = hd2
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location");
    assert_ne!(location, location2);

    // Two tokens for the same subject are two publishers; one token
    // reconnecting is the same one.
    let t1 = h
        .server
        .token("tok", "publish", Duration::from_secs(60))
        .expect("jwt");
    let t2 = h
        .server
        .token("tok", "publish", Duration::from_secs(60))
        .expect("jwt");
    let (s, _, _) = post(&h, "/whip/tok", "application/sdp", Some(&t1), sdp.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, b) = post(&h, "/whip/tok", "application/sdp", Some(&t2), sdp.clone()).await;
    assert_json_error(s, &b, StatusCode::CONFLICT, "already has a publisher");
    let (s, _, _) = post(&h, "/whip/tok", "application/sdp", Some(&t1), sdp.clone()).await;
    assert_eq!(s, StatusCode::CREATED);

    // Key in the query string (some OBS setups) works too.
    let (s, _, _) = post(
        &h,
        &format!("/whip/other?key={other}"),
        "application/sdp",
        None,
        sdp.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    // Resource errors.
    let url = format!("{}{}", h.base, location2);
    let r = h
        .client
        .patch(&url)
        .header(CONTENT_TYPE, "application/sdp")
        .body("a=x")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = h
        .client
        .patch(&url)
        .header(CONTENT_TYPE, "application/trickle-ice-sdpfrag")
        .header("if-match", "\"nope\"")
        .body("a=candidate:1 1 udp 2113929471 127.0.0.1 5000 typ host\r\n")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = h
        .client
        .patch(&url)
        .header(CONTENT_TYPE, "application/trickle-ice-sdpfrag")
        .body("a=candidate:garbage\r\n")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = h
        .client
        .patch(&url)
        .header(CONTENT_TYPE, "application/trickle-ice-sdpfrag")
        .body("a=candidate:1 1 udp 2113929471 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n")
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "trickle accepted");

    // Trickle is capped per fragment and per session.
    let many = "a=candidate:1 1 udp 2113929471 127.0.0.1 5000 typ host\r\n".repeat(21);
    let r = h
        .client
        .patch(&url)
        .header(CONTENT_TYPE, "application/trickle-ice-sdpfrag")
        .body(many)
        .send()
        .await
        .expect("patch");
    assert_json_error(
        r.status(),
        &r.text().await.expect("body"),
        StatusCode::BAD_REQUEST,
        "candidates",
    );
    let mut last = StatusCode::NO_CONTENT;
    for i in 0..5 {
        let frag: String = (0..20)
            .map(|j| {
                format!(
                    "a=candidate:{i}{j} 1 udp 2113929471 127.0.0.{} {} typ host\r\n",
                    j + 1,
                    6000 + i * 100 + j
                )
            })
            .collect();
        last = h
            .client
            .patch(&url)
            .header(CONTENT_TYPE, "application/trickle-ice-sdpfrag")
            .body(frag)
            .send()
            .await
            .expect("patch")
            .status();
    }
    assert_eq!(
        last,
        StatusCode::BAD_REQUEST,
        "more than 64 candidates for one session"
    );

    let r = h.client.delete(&url).send().await.expect("delete");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "OBS needs exactly 200 on DELETE"
    );
    let r = h.client.delete(&url).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = h
        .client
        .delete(format!("{}/whip/show/zzzz", h.base))
        .send()
        .await
        .expect("delete");
    assert_json_error(
        r.status(),
        &r.text().await.expect("body"),
        StatusCode::NOT_FOUND,
        "session",
    );

    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whep_access_rules() {
    let h = harness("whep-bad").await;
    let sdp = offer(Direction::RecvOnly);
    let (s, _, b) = post(&h, "/whep/nobody", "application/sdp", None, sdp.clone()).await;
    assert_json_error(s, &b, StatusCode::NOT_FOUND, "unknown stream");

    h.server.create_stream("public", false).await.expect("key");
    let (s, hd, b) = post(&h, "/whep/public", "application/sdp", None, sdp.clone()).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a viewer before the publisher is accepted: {b}"
    );
    assert!(hd.get("location").is_some());

    h.server.create_stream("vip", true).await.expect("key");
    let (s, _, b) = post(&h, "/whep/vip", "application/sdp", None, sdp.clone()).await;
    assert_json_error(s, &b, StatusCode::UNAUTHORIZED, "missing bearer");
    let wrong = h
        .server
        .token("public", "play", Duration::from_secs(60))
        .expect("jwt");
    let (s, _, b) = post(
        &h,
        "/whep/vip",
        "application/sdp",
        Some(&wrong),
        sdp.clone(),
    )
    .await;
    assert_json_error(s, &b, StatusCode::FORBIDDEN, "play");
    let play = h
        .server
        .token("vip", "play", Duration::from_secs(60))
        .expect("jwt");
    let (s, _, b) = post(&h, "/whep/vip", "application/sdp", Some(&play), sdp.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // A viewer whose offer has nothing relaycast can forward: 409 + Retry-After.
    let pcmu_only = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n\
        a=setup:actpass\r\na=rtcp-mux\r\na=recvonly\r\na=rtpmap:0 PCMU/8000\r\n";
    let (s, hd, b) = post(
        &h,
        "/whep/public",
        "application/sdp",
        None,
        pcmu_only.into(),
    )
    .await;
    assert_json_error(s, &b, StatusCode::CONFLICT, "codec");
    assert!(hd.get("retry-after").is_some());

    // CORS preflight and plain OPTIONS.
    let r = h
        .client
        .request(Method::OPTIONS, format!("{}/whep/public", h.base))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .expect("preflight");
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"*"[..])
    );
    let r = h
        .client
        .request(Method::OPTIONS, format!("{}/whip/public", h.base))
        .send()
        .await
        .expect("options");
    assert!(r.status().is_success());
    assert_eq!(
        r.headers().get("accept-post").map(|v| v.as_bytes()),
        Some(&b"application/sdp"[..])
    );

    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_beyond_the_limit_get_503() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("limit-{:x}", rand_u64()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut config = api::Config::for_test(dir.clone());
    config.max_sessions = 2;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = api::start(config, listener).await.expect("start");
    server.create_stream("full", false).await.expect("key");
    let h = Harness {
        base: format!("http://{}", server.http_addr()),
        server,
        client: Client::new(),
        dir,
    };
    let sdp = offer(Direction::RecvOnly);
    for _ in 0..2 {
        let (s, _, b) = post(&h, "/whep/full", "application/sdp", None, sdp.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, hd, b) = post(&h, "/whep/full", "application/sdp", None, sdp.clone()).await;
    assert_json_error(s, &b, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(hd.get("retry-after").is_some());
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_udp_is_counted_and_stun_binding_is_answered() {
    let h = harness("udp").await;
    let media = h.server.media_addrs()[0];
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    for i in 0..50u8 {
        let junk: Vec<u8> = (0..(i as usize * 7 + 1))
            .map(|j| (j as u8).wrapping_mul(31) ^ i)
            .collect();
        sock.send_to(&junk, media).expect("send");
    }
    // A truncated STUN header and an RTP-looking packet from a stranger.
    sock.send_to(&[0x00, 0x01, 0x00], media).expect("send");
    sock.send_to(&[0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3], media)
        .expect("send");

    // Plain STUN binding request: answered with our view of the sender.
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(b"relaycast-tx");
    sock.send_to(&req, media).expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).expect("STUN response");
    assert!(n >= 20);
    assert_eq!(&buf[..2], &[0x01, 0x01], "binding success response");
    assert_eq!(&buf[8..20], b"relaycast-tx", "same transaction id");

    // Give the worker a moment, then read the drop counters.
    let mut dropped = 0.0;
    for _ in 0..50 {
        let text = h
            .client
            .get(format!("{}/metrics", h.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        dropped = text
            .lines()
            .filter(|l| {
                l.starts_with("relaycast_drops_total{reason=\"malformed\"}")
                    || l.starts_with("relaycast_drops_total{reason=\"unknown_peer\"}")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if dropped >= 52.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dropped >= 52.0,
        "every garbage datagram is counted, got {dropped}"
    );
    let r = h
        .client
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_method_gets_405_with_json_and_allow() {
    let h = harness("405").await;
    for (method, path, allowed) in [
        (Method::DELETE, "/healthz", "GET"),
        (Method::PUT, "/whip/show", "POST"),
        (Method::GET, "/api/auth/login", "POST"),
        (Method::PATCH, "/api/streams", "GET"),
    ] {
        let r = h
            .client
            .request(method.clone(), format!("{}{path}", h.base))
            .send()
            .await
            .expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        assert_json_error(
            status,
            &body,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        );
        assert_eq!(
            headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "{method} {path}"
        );
        let allow = headers
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            allow.split(',').any(|m| m.trim() == allowed),
            "{method} {path}: Allow {allow:?} should list {allowed}"
        );
    }
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_authorization_headers_get_400() {
    let h = harness("two-auth").await;
    let key = h.server.create_stream("show", false).await.expect("key");
    let admin = h
        .server
        .token_for("root", None, "admin", Duration::from_secs(60))
        .expect("jwt");
    // Even two valid credentials: which one counts would be up to whoever
    // reads the request (this server, a proxy, a log), so neither does.
    let r = h
        .client
        .post(format!("{}/whip/show", h.base))
        .header(CONTENT_TYPE, "application/sdp")
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .header(AUTHORIZATION, "Bearer rk_someone_else")
        .body(offer(Direction::SendOnly))
        .send()
        .await
        .expect("request");
    let status = r.status();
    assert_json_error(
        status,
        &r.text().await.expect("body"),
        StatusCode::BAD_REQUEST,
        "authorization",
    );
    let r = h
        .client
        .get(format!("{}/api/streams", h.base))
        .header(AUTHORIZATION, format!("Bearer {admin}"))
        .header(AUTHORIZATION, format!("Bearer {admin}"))
        .send()
        .await
        .expect("request");
    let status = r.status();
    assert_json_error(
        status,
        &r.text().await.expect("body"),
        StatusCode::BAD_REQUEST,
        "authorization",
    );
    // One header is fine.
    let r = h
        .client
        .get(format!("{}/api/streams", h.base))
        .header(AUTHORIZATION, format!("Bearer {admin}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    h.server.shutdown().await;
}
