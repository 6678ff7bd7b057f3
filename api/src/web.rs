//! The web front end: player (`/watch/{stream}`, `/embed/{stream}`),
//! studio (`/studio`) and dashboard (`/dashboard`). The pages are static
//! files from `web/` compiled into the binary, so serving them needs no
//! build step and no files next to the binary; they talk to the server
//! only through its public HTTP API (WHIP, WHEP, `/api`, `/hls`).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

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

/// Files under `/web/…`.
const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("common.js", JS),
    asset!("player.js", JS),
    asset!("studio.js", JS),
    asset!("dashboard.js", JS),
    asset!("vendor/hls.min.js", JS),
];

const WATCH_HTML: &str = include_str!("../../web/watch.html");
const STUDIO_HTML: &str = include_str!("../../web/studio.html");
const DASHBOARD_HTML: &str = include_str!("../../web/dashboard.html");

/// Framing policy of a page: the embed page may be framed by any site, the
/// others only by this origin.
#[derive(Clone, Copy)]
enum Framing {
    SameOrigin,
    Anywhere,
}

fn page(html: &'static str, framing: Framing) -> Response {
    let mut res = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        html,
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

/// The front end's routes, to merge into the application router.
pub fn router() -> Router {
    Router::new()
        .route(
            "/watch/{stream}",
            get(|| async { page(WATCH_HTML, Framing::SameOrigin) }),
        )
        .route(
            "/embed/{stream}",
            get(|| async { page(WATCH_HTML, Framing::Anywhere) }),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
