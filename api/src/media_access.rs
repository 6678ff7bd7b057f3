//! The one door to a stream's media over HTTP.
//!
//! Every route of the transcoder's router (`/hls/{stream}/…`,
//! `/vod/{stream}`, `/vod/{stream}/…`: playlists, blocking reloads, parts,
//! segments, init, recordings) passes [`gate`] after routing, with the
//! `{stream}` path parameter decoded exactly as the handler sees it. A
//! route without one is refused, so a media route added later cannot be
//! reached around the door.
//!
//! - A **public** stream without address rules (or one that is live but was
//!   never registered, as WHEP treats it) passes untouched: same bodies,
//!   same cache headers.
//! - Any other stream (**authenticated**, **entitled**, or public with
//!   CIDR / country rules, which are judged on the viewer's address at
//!   admission) needs either a
//!   media token (`hls_token=…`, [`signaling::MediaTokens`]) for this
//!   stream, or the play credential WHEP takes ([`whip_whep::bearer`]:
//!   `Authorization: Bearer`, or `token` / `access_token` / `key` in the
//!   query, for players that cannot set headers), judged by the same [`signaling::Store::authorize_play`]
//!   (visibility, entitlement-backed play tokens, address rules, the
//!   deny-list). Admitted with a credential, the answer's URIs carry a
//!   fresh media token and it is `Cache-Control: private, no-store` (it
//!   was decided for one viewer); admitted with a media token, the answer
//!   carries that same token and keeps its cache headers (viewers of one
//!   ten-minute bucket share URLs, see `signaling::media_token`).
//!   Refusals are 401 / 403 with the JSON error body, `no-store`; bad
//!   credentials count against the address in the HTTP edge's one
//!   failed-credential table (`throttle::AuthThrottle`, 429 past the limit).
//!
//! A stream's visibility is looked up at most once per [`INFO_TTL`] per
//! stream (blocking reloads arrive several times a second per viewer);
//! a change of visibility takes effect within that time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use signaling::media_token::QUERY_PARAM;
use signaling::{MediaTokenError, MediaTokens, StreamInfo, Tokens, Visibility};
use throttle::{AuthKind, AuthThrottle};
use transcoder::UriQuery;
use whip_whep::ApiError;

/// How long a stream's visibility is trusted from the last lookup.
pub const INFO_TTL: Duration = Duration::from_secs(2);
/// Streams whose lookup is remembered; beyond, the memory starts over
/// (requests for made-up names must not grow it without bound).
const INFO_CAP: usize = 4096;

/// A stream's lookup and when it was made (`None`: not registered).
type Looked = (Instant, Option<Arc<StreamInfo>>);

/// What [`gate`] needs: the control-plane store and the signers.
#[derive(Clone)]
pub struct MediaAccess {
    store: signaling::Store,
    tokens: Tokens,
    media: MediaTokens,
    throttle: Arc<AuthThrottle>,
    infos: Arc<Mutex<HashMap<String, Looked>>>,
}

impl MediaAccess {
    pub fn new(
        store: signaling::Store,
        tokens: Tokens,
        media: MediaTokens,
        throttle: Arc<AuthThrottle>,
    ) -> MediaAccess {
        MediaAccess {
            store,
            tokens,
            media,
            throttle,
            infos: Arc::default(),
        }
    }

    async fn info(&self, stream: &str) -> Result<Option<Arc<StreamInfo>>, ApiError> {
        let now = Instant::now();
        if let Some((at, info)) = self.infos.lock().get(stream) {
            if now.duration_since(*at) < INFO_TTL {
                return Ok(info.clone());
            }
        }
        let info = self
            .store
            .stream(stream)
            .await
            .map_err(|e| ApiError::Internal(format!("looking up stream {stream}: {e}")))?
            .map(Arc::new);
        let mut infos = self.infos.lock();
        if infos.len() >= INFO_CAP {
            infos.clear();
        }
        infos.insert(stream.to_string(), (now, info.clone()));
        Ok(info)
    }
}

/// The middleware: see the module documentation.
pub async fn gate(
    State(access): State<MediaAccess>,
    params: Option<Path<HashMap<String, String>>>,
    mut req: Request,
    next: Next,
) -> Response {
    // Media is read-only: another method gets its 405 before any question
    // of who is asking (and a route added later with another method is
    // closed until the door learns about it).
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = whip_whep::json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".into(),
            None,
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
        resp.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return resp;
    }
    let Some(stream) = params.and_then(|Path(mut p)| p.remove("stream")) else {
        // A media route without a stream cannot be judged: closed.
        return refuse(ApiError::NotFound("stream"));
    };
    if !signaling::valid_stream_name(&stream) {
        return refuse(ApiError::NotFound("stream"));
    }
    let info = match access.info(&stream).await {
        Ok(info) => info,
        Err(e) => return refuse(e),
    };
    let info = match info {
        Some(info) if !is_open(&info) => info,
        // Public without address rules, or live without registration
        // (public, as WHEP treats it): untouched.
        _ => return next.run(req).await,
    };
    let query = req.uri().query().map(str::to_owned);
    let now = crate::unix_now();
    let presented = whip_whep::query_param(query.as_deref(), QUERY_PARAM);
    let media_refusal = match presented {
        Some(t) => match access.media.verify(&stream, &t, now) {
            Ok(()) => {
                let q = UriQuery::new(&format!("{QUERY_PARAM}={t}"));
                req.extensions_mut().insert(q);
                return next.run(req).await;
            }
            Err(e) => Some(e),
        },
        None => None,
    };
    let viewer = signaling::Viewer {
        ip: req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
    };
    let bearer = whip_whep::bearer(req.headers(), query.as_deref());
    // Before a credential is looked at (a stream key is one): a throttled
    // address learns nothing. Media tokens above are 256-bit signatures,
    // not worth guessing, and are not counted.
    if bearer.is_some() {
        if let Err(wait) = access
            .throttle
            .check(viewer.ip, AuthKind::Media, Instant::now())
        {
            return refuse(ApiError::TooManyRequests(wait));
        }
    }
    if bearer.is_none() && info.visibility != Visibility::Public {
        return refuse(match media_refusal {
            Some(MediaTokenError::Expired) => ApiError::Expired,
            Some(_) => ApiError::InvalidCredential,
            None => ApiError::Unauthorized,
        });
    }
    // A public stream with address rules admits anyone inside them.
    if let Err(e) = access
        .store
        .authorize_play(&access.tokens, &info, bearer.as_deref(), viewer)
        .await
    {
        if e.is_bad_credential() {
            access
                .throttle
                .failed(viewer.ip, AuthKind::Media, Instant::now());
        }
        return refuse(ApiError::from(e));
    }
    let token = access.media.issue(&stream, now);
    req.extensions_mut()
        .insert(UriQuery::new(&format!("{QUERY_PARAM}={token}")));
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

/// Whether anyone anywhere may fetch the stream's media: public, no
/// address rules.
fn is_open(info: &StreamInfo) -> bool {
    info.visibility == Visibility::Public
        && info.allowed_cidrs.is_empty()
        && info.allowed_countries.is_empty()
}

fn refuse(e: ApiError) -> Response {
    let mut resp = e.into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Players on other origins must be able to read the refusal.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}
