//! The web front end: the viewer site (home `/`, stream pages
//! `/watch/{stream}`, `/embed/{stream}`, account `/account`), studio
//! (`/studio`) and dashboard (`/dashboard`). The pages are static files
//! from `web/` compiled into the binary, so serving them needs no build
//! step and no files next to the binary; they talk to the server only
//! through its public HTTP API (WHIP, WHEP, `/api`, `/hls`, `/vod`). The
//! one thing rendered here is a stream page's head: its `<title>` and Open
//! Graph tags, so that a shared link previews with the stream's title (and
//! thumbnail, for streams anyone may watch) without running scripts. A
//! browser asking for a page that does not exist gets an HTML 404
//! ([`not_found`]); other clients keep the JSON one.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::rest::directory::{page_facts, PageFacts};
use crate::rest::RestState;

/// One embedded file: URL name, content type, bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            body: include_bytes!(concat!("../../web/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Files under `/web/…`.
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("common.js", JS),
    asset!("player.js", JS),
    asset!("studio.js", JS),
    asset!("dashboard.js", JS),
    asset!("home.js", JS),
    asset!("account.js", JS),
    asset!("stream_page.js", JS),
    asset!("favicon.svg", SVG),
    asset!("vendor/hls.min.js", JS),
];

const WATCH_HTML: &str = include_str!("../../web/watch.html");
const STUDIO_HTML: &str = include_str!("../../web/studio.html");
const DASHBOARD_HTML: &str = include_str!("../../web/dashboard.html");
const HOME_HTML: &str = include_str!("../../web/home.html");
const ACCOUNT_HTML: &str = include_str!("../../web/account.html");
const NOT_FOUND_HTML: &str = include_str!("../../web/404.html");
const FAVICON: &[u8] = include_bytes!("../../web/favicon.svg");
/// The line of `watch.html` the stream's own head replaces.
const WATCH_TITLE: &str = "<title>relaycast player</title>";

/// Framing policy of a page: the embed page may be framed by any site, the
/// others only by this origin.
#[derive(Clone, Copy)]
enum Framing {
    SameOrigin,
    Anywhere,
}

fn page(html: impl Into<axum::body::Body>, framing: Framing) -> Response {
    let mut res = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        html.into(),
    )
        .into_response();
    if let Framing::SameOrigin = framing {
        res.headers_mut().insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
    res
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// Escapes text for HTML content and quoted attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `http(s)://host` of the request, when its `Host` looks like one (a
/// forged header cannot break out of the attribute: it is checked, then
/// escaped).
fn origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return None;
    }
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    Some(format!("{}://{host}", if https { "https" } else { "http" }))
}

/// The head lines of a stream page: title, description, Open Graph.
fn stream_head(stream: &str, facts: Option<&PageFacts>, origin: Option<&str>) -> String {
    let title = match facts {
        Some(f) if !f.title.is_empty() => f.title.clone(),
        _ => stream.to_string(),
    };
    let description = match facts {
        Some(f) => {
            let by = f
                .broadcaster
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
            if f.live {
                format!("Live now{by} on relaycast.")
            } else {
                format!("A stream{by} on relaycast: watch live, or catch the recording.")
            }
        }
        None => "A stream on relaycast.".to_string(),
    };
    let path = format!("/watch/{stream}");
    let mut head = format!(
        "<title>{t} — relaycast</title>\n\
         <meta name=\"description\" content=\"{d}\">\n\
         <meta property=\"og:type\" content=\"video.other\">\n\
         <meta property=\"og:site_name\" content=\"relaycast\">\n\
         <meta property=\"og:title\" content=\"{t}\">\n\
         <meta property=\"og:description\" content=\"{d}\">\n\
         <meta name=\"twitter:card\" content=\"summary_large_image\">",
        t = escape(&title),
        d = escape(&description),
    );
    if let Some(o) = origin {
        head.push_str(&format!(
            "\n<meta property=\"og:url\" content=\"{}\">",
            escape(&format!("{o}{path}"))
        ));
        if let Some(picture) = facts.and_then(|f| f.picture.as_deref()) {
            head.push_str(&format!(
                "\n<meta property=\"og:image\" content=\"{}\">",
                escape(&format!("{o}{picture}"))
            ));
        }
    }
    head
}

async fn stream_page(
    state: &RestState,
    stream: &str,
    headers: &HeaderMap,
    framing: Framing,
) -> Response {
    let facts = if signaling::valid_stream_name(stream) {
        page_facts(state, stream).await
    } else {
        None
    };
    let head = stream_head(stream, facts.as_ref(), origin(headers).as_deref());
    page(WATCH_HTML.replacen(WATCH_TITLE, &head, 1), framing)
}

/// The answer to a path no route has: an HTML page for browsers (they
/// send `Accept: text/html`), `{"error":"not found"}` for everyone else.
pub async fn not_found(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    if wants_html {
        let mut res = page(NOT_FOUND_HTML, Framing::SameOrigin);
        *res.status_mut() = StatusCode::NOT_FOUND;
        res
    } else {
        whip_whep::json_error(StatusCode::NOT_FOUND, "not found".into(), None).into_response()
    }
}

/// The front end's routes, to merge into the application router.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/", get(|| async { page(HOME_HTML, Framing::SameOrigin) }))
        .route(
            "/account",
            get(|| async { page(ACCOUNT_HTML, Framing::SameOrigin) }),
        )
        .route(
            "/favicon.ico",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, SVG),
                        (header::CACHE_CONTROL, "max-age=86400"),
                    ],
                    FAVICON,
                )
            }),
        )
        .route(
            "/watch/{stream}",
            get(
                |State(st): State<RestState>, Path(s): Path<String>, h: HeaderMap| async move {
                    stream_page(&st, &s, &h, Framing::SameOrigin).await
                },
            ),
        )
        .route(
            "/embed/{stream}",
            get(
                |State(st): State<RestState>, Path(s): Path<String>, h: HeaderMap| async move {
                    stream_page(&st, &s, &h, Framing::Anywhere).await
                },
            ),
        )
        .route(
            "/studio",
            get(|| async { page(STUDIO_HTML, Framing::SameOrigin) }),
        )
        .route(
            "/dashboard",
            get(|| async { page(DASHBOARD_HTML, Framing::SameOrigin) }),
        )
        .route("/web/{*name}", get(asset))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_head_is_escaped_and_previews_only_open_streams() {
        let facts = PageFacts {
            title: "Cup final <live> & \"more\"".into(),
            broadcaster: Some("anna".into()),
            live: true,
            picture: Some("/hls/final/thumbnail.jpg".into()),
        };
        let head = stream_head("final", Some(&facts), Some("http://example.test:8080"));
        assert!(head
            .contains("<title>Cup final &lt;live&gt; &amp; &quot;more&quot; — relaycast</title>"));
        assert!(head.contains("og:title\" content=\"Cup final &lt;live&gt;"));
        assert!(head.contains("og:url\" content=\"http://example.test:8080/watch/final\""));
        assert!(head
            .contains("og:image\" content=\"http://example.test:8080/hls/final/thumbnail.jpg\""));
        assert!(head.contains("Live now by anna"));
        let paid = PageFacts {
            picture: None,
            ..facts
        };
        assert!(!stream_head("final", Some(&paid), Some("http://h")).contains("og:image"));
        assert!(
            WATCH_HTML.contains(WATCH_TITLE),
            "watch.html lost its title line"
        );
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("evil\"><script>"));
        assert_eq!(origin(&h), None);
    }

    #[test]
    fn every_asset_is_non_empty_and_hls_js_is_vendored() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
        let hls = ASSETS
            .iter()
            .find(|a| a.name == "vendor/hls.min.js")
            .map(|a| a.body.len())
            .unwrap_or(0);
        assert!(hls > 100_000, "hls.min.js looks truncated ({hls} bytes)");
    }
}
