//! # whip-whep — the WHIP (RFC 9725) and WHEP HTTP resources
//!
//! `POST /whip/{stream}` and `POST /whep/{stream}` take an SDP offer and
//! answer `201 Created` with the SDP answer, a `Location` for the session
//! resource, an `ETag`, and `Link: <stun:…>; rel="ice-server"` headers (plus
//! `<turn:…>` ones with fresh credentials when a TURN server is configured).
//! `PATCH` on the resource takes `application/trickle-ice-sdpfrag`
//! (trickled candidates → `204`, new ICE credentials → ICE restart → `200`
//! with our new credentials), `DELETE` ends the session (`200`). CORS lets a
//! page on another origin publish or play.
//!
//! Media state lives in `sfu`; this crate keeps only what the HTTP resource
//! needs (its ETag and the remote ICE username, to tell trickle from restart).

mod body;
mod error;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use sfu::{IceCredentials, LayerCap, Offer, Role, SessionId, Sfu, SfuError};
use signaling::{AuthError, Store, Tokens};
use throttle::{AuthKind, AuthThrottle};
use tower_http::cors::{Any, CorsLayer};

pub use crate::body::{is_length_limit, read_limited, BodyError, DRAIN_BYTES};
pub use crate::error::{json_error, ApiError};

/// SDP offers larger than this are refused (413). Real offers with
/// simulcast and many codecs are under 16 KiB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// A TURN server with credentials, the RTCIceServer shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServerLink {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Mints TURN credentials for a session (the argument names the session,
/// for per-user accounting on the TURN side).
pub type TurnLinks = Arc<dyn Fn(&str) -> Vec<TurnServerLink> + Send + Sync>;

#[derive(Clone)]
pub struct WhipWhepState {
    pub sfu: Sfu,
    pub store: Store,
    pub tokens: Tokens,
    /// ICE server URLs (`stun:` / `turn:`) sent as `Link` headers.
    pub ice_servers: Arc<Vec<String>>,
    /// TURN servers with fresh credentials per session (see [`TurnLinks`]).
    pub turn: Option<TurnLinks>,
    /// Failed credentials per client address (shared with the REST API).
    pub auth_throttle: Arc<AuthThrottle>,
    resources: Arc<Mutex<HashMap<SessionId, Resource>>>,
}

struct Resource {
    etag: String,
    remote_ufrag: Option<String>,
    /// Remote candidates trickled so far; each costs the ICE agent work
    /// for the session's lifetime, so they are capped.
    candidates: usize,
}

/// Trickled candidates accepted per session.
pub const MAX_CANDIDATES_PER_SESSION: usize = 64;

impl WhipWhepState {
    pub fn new(sfu: Sfu, store: Store, tokens: Tokens, ice_servers: Vec<String>) -> WhipWhepState {
        WhipWhepState {
            sfu,
            store,
            tokens,
            ice_servers: Arc::new(ice_servers),
            turn: None,
            auth_throttle: Arc::new(AuthThrottle::default()),
            resources: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Adds TURN servers whose credentials are minted for each answer.
    pub fn with_turn(mut self, turn: TurnLinks) -> WhipWhepState {
        self.turn = Some(turn);
        self
    }

    /// Counts failed credentials in `throttle` (the process's one table).
    pub fn with_auth_throttle(mut self, throttle: Arc<AuthThrottle>) -> WhipWhepState {
        self.auth_throttle = throttle;
        self
    }

    /// Drops resource records of sessions the SFU has ended on its own
    /// (ICE timeout, replaced publisher).
    fn prune(&self) {
        let sfu = &self.sfu;
        self.resources
            .lock()
            .retain(|id, _| sfu.session(*id).is_some());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Whip,
    Whep,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }
    fn role(self) -> Role {
        match self {
            Kind::Whip => Role::Publisher,
            Kind::Whep => Role::Viewer,
        }
    }
    fn auth_kind(self) -> AuthKind {
        match self {
            Kind::Whip => AuthKind::Whip,
            Kind::Whep => AuthKind::Whep,
        }
    }
}

/// Counts a bad credential against the client's address.
fn count_failure<'a>(
    state: &'a WhipWhepState,
    kind: Kind,
    client: &ClientIp,
) -> impl FnOnce(AuthError) -> AuthError + 'a {
    let ip = client.0;
    move |e| {
        if e.is_bad_credential() {
            state
                .auth_throttle
                .failed(ip, kind.auth_kind(), Instant::now());
        }
        e
    }
}

pub fn router(state: WhipWhepState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            HeaderName::from_static("accept-patch"),
            header::RETRY_AFTER,
        ]);
    Router::new()
        .route(
            "/whip/{stream}",
            post(|s, c, p, q, h, b| create(Kind::Whip, s, c, p, q, h, b)),
        )
        .route(
            "/whep/{stream}",
            post(|s, c, p, q, h, b| create(Kind::Whep, s, c, p, q, h, b)),
        )
        .route(
            "/whip/{stream}/{session}",
            axum::routing::patch(|s, p, h, b| patch(Kind::Whip, s, p, h, b))
                .delete(|s, p| delete(Kind::Whip, s, p)),
        )
        .route(
            "/whep/{stream}/{session}",
            axum::routing::patch(|s, p, h, b| patch(Kind::Whep, s, p, h, b))
                .delete(|s, p| delete(Kind::Whep, s, p)),
        )
        .route(
            "/whep/{stream}/{session}/layer",
            post(select_layer).get(list_layers),
        )
        .layer(cors)
        .layer(axum::middleware::from_fn(accept_headers))
        .with_state(state)
}

/// OPTIONS (preflight or not) is answered by the CORS layer; this adds
/// what WHIP clients look for: `Accept-Post` on the endpoint, `Accept-Patch`
/// on a session resource.
async fn accept_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let options = req.method() == Method::OPTIONS;
    let depth = req.uri().path().trim_matches('/').split('/').count();
    let mut resp = next.run(req).await;
    if options {
        let (name, value) = if depth == 2 {
            ("accept-post", "application/sdp")
        } else {
            ("accept-patch", "application/trickle-ice-sdpfrag")
        };
        resp.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

/// The TCP peer's address, when the server was started with connect info
/// (`into_make_service_with_connect_info`). Forwarding headers are not
/// trusted: a viewer could write any address into them.
struct ClientIp(Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<ClientIp, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

fn insert_link(h: &mut HeaderMap, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.append(header::LINK, v);
    }
}

/// A query parameter's value (no percent-decoding: the values taken here
/// are plain tokens).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// An `Authorization` header that is not a bearer credential (another
/// scheme, no token, or bytes that are not visible ASCII).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBearer;

/// The token of `Authorization: Bearer <token>`, the one parser of it for
/// every route (WHIP/WHEP, REST, realtime, ICE servers). The scheme is
/// case-insensitive (RFC 7235 section 2.1: `bearer`, `BEARER` and `Bearer`
/// are the same) and may be followed by any run of spaces; surrounding
/// whitespace is not part of the token. `Ok(None)`: no `Authorization`.
pub fn authorization_bearer(headers: &HeaderMap) -> Result<Option<&str>, NotBearer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| NotBearer)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(NotBearer)?;
    let token = token.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
        Ok(Some(token))
    } else {
        Err(NotBearer)
    }
}

/// The bearer credential: `Authorization: Bearer …` ([`authorization_bearer`]),
/// or (OBS users and players that cannot set headers do this) a `key`,
/// `token` or `access_token` query parameter. The LL-HLS door (`api`) takes
/// the same.
pub fn bearer(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Ok(Some(token)) = authorization_bearer(headers) {
        return Some(token.to_string());
    }
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        matches!(k, "key" | "token" | "access_token")
            .then(|| v.to_string())
            .filter(|v| !v.is_empty())
    })
}

async fn read_body(
    body: Body,
    content_type: &str,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if !content_type_is(headers, content_type) {
        return Err(ApiError::UnsupportedMediaType {
            expected: content_type.to_string(),
        });
    }
    let bytes = read_limited(body, headers, MAX_SDP_BYTES).await?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))
}

async fn create(
    kind: Kind,
    State(state): State<WhipWhepState>,
    client: ClientIp,
    Path(stream): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !signaling::valid_stream_name(&stream) {
        return Err(ApiError::NotFound("stream"));
    }
    let offer = read_body(body, "application/sdp", &headers).await?;
    // Before any credential is looked at: a throttled address learns
    // nothing, not even whether a guess was right.
    state
        .auth_throttle
        .check(client.0, kind.auth_kind(), Instant::now())
        .map_err(ApiError::TooManyRequests)?;
    let bearer = bearer(&headers, query.as_deref());
    state.prune();
    let remote_ufrag;
    let answer = match kind {
        Kind::Whip => {
            let grant = state
                .store
                .authorize_publish(&state.tokens, &stream, bearer.as_deref())
                .await
                .map_err(count_failure(&state, kind, &client))?;
            let offer = Offer::parse(&offer)?;
            remote_ufrag = offer.ice_ufrag().map(str::to_string);
            state.sfu.publish(&stream, offer, &grant.owner()).await
        }
        Kind::Whep => {
            let info = state
                .store
                .stream(&stream)
                .await
                .map_err(signaling::AuthError::from)?;
            let info = match info {
                Some(info) => info,
                // Published with a token but never registered: public.
                None if state.sfu.is_live(&stream) => signaling::StreamInfo::unregistered(&stream),
                None => return Err(ApiError::NotFound("stream")),
            };
            state
                .store
                .authorize_play(
                    &state.tokens,
                    &info,
                    bearer.as_deref(),
                    signaling::Viewer { ip: client.0 },
                )
                .await
                .map_err(count_failure(&state, kind, &client))?;
            let offer = Offer::parse(&offer)?;
            remote_ufrag = offer.ice_ufrag().map(str::to_string);
            let cap = match query_param(query.as_deref(), "layer") {
                None => LayerCap::Auto,
                Some(v) => LayerCap::parse(&v).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "layer must be auto, low, mid, high or a rid, not {v:?}"
                    ))
                })?,
            };
            state.sfu.subscribe_with(&stream, offer, cap).await
        }
    }
    .map_err(|e| match (kind, e) {
        (Kind::Whep, SfuError::NoCommonCodec) => ApiError::RetryLater(
            "the offer has no codec relaycast can forward for this stream".into(),
        ),
        (_, e) => ApiError::from(e),
    })?;

    let etag = format!("\"{}\"", answer.ice_ufrag);
    state.resources.lock().insert(
        answer.session,
        Resource {
            etag: etag.clone(),
            remote_ufrag,
            candidates: 0,
        },
    );
    let location = format!("/{}/{}/{}", kind.path(), stream, answer.session);
    let answer_session_name = answer.session.to_string();
    let mut resp = (StatusCode::CREATED, answer.sdp).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    insert(h, header::LOCATION, &location);
    insert(h, header::ETAG, &etag);
    h.insert(
        HeaderName::from_static("accept-patch"),
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    if kind == Kind::Whep {
        // WHEP layer extension: POST {"encodingId": rid} or {"layer": …}.
        insert_link(
            h,
            &format!("<{location}/layer>; rel=\"urn:ietf:params:whep:ext:core:layer\""),
        );
    }
    // One ICE server per Link header line (OBS parses them that way).
    for url in state.ice_servers.iter() {
        if let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")) {
            h.append(header::LINK, v);
        }
    }
    if let Some(turn) = &state.turn {
        for server in turn(&answer_session_name) {
            for url in &server.urls {
                let link = format!(
                    "<{url}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    server.username, server.credential
                );
                if let Ok(v) = HeaderValue::from_str(&link) {
                    h.append(header::LINK, v);
                }
            }
        }
    }
    Ok(resp)
}

fn insert(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn session_of(
    kind: Kind,
    state: &WhipWhepState,
    stream: &str,
    session: &str,
) -> Result<SessionId, ApiError> {
    let id = SessionId::parse(session).ok_or(ApiError::NotFound("session"))?;
    match state.sfu.session(id) {
        Some((s, role)) if s == stream && role == kind.role() => Ok(id),
        _ => Err(ApiError::NotFound("session")),
    }
}

/// Body of `POST /whep/{stream}/{session}/layer`: `encodingId` names a rid
/// (the WHEP layer extension's field), `layer` is `auto`, `low`, `mid`,
/// `high` or a rid; an empty object returns to automatic choice.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerRequest {
    #[serde(default, rename = "encodingId")]
    encoding_id: Option<String>,
    #[serde(default)]
    layer: Option<String>,
    /// Accepted for compatibility with the extension; one video track.
    #[serde(default, rename = "mediaId")]
    _media_id: Option<String>,
}

async fn select_layer(
    State(state): State<WhipWhepState>,
    Path((stream, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = session_of(Kind::Whep, &state, &stream, &session)?;
    let body = read_body(body, "application/json", &headers).await?;
    let req: LayerRequest = serde_json::from_str(&body)
        .map_err(|e| ApiError::BadRequest(format!("layer request: {e}")))?;
    let cap = match req.encoding_id.or(req.layer) {
        None => LayerCap::Auto,
        Some(v) => LayerCap::parse(&v).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "layer must be auto, low, mid, high or a rid, not {v:?}"
            ))
        })?,
    };
    state.sfu.set_layer_cap(id, cap).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The stream's layers as last measured, lowest first.
async fn list_layers(
    State(state): State<WhipWhepState>,
    Path((stream, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    session_of(Kind::Whep, &state, &stream, &session)?;
    let layers: Vec<serde_json::Value> = state
        .sfu
        .layers(&stream)
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "encodingId": l.rid,
                "bitrate": l.bitrate_bps,
                "fps": l.fps,
                "width": l.width,
                "height": l.height,
                "active": l.active,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "layers": layers })).into_response())
}

async fn delete(
    kind: Kind,
    State(state): State<WhipWhepState>,
    Path((stream, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = session_of(kind, &state, &stream, &session)?;
    state.resources.lock().remove(&id);
    state.sfu.close(id).await?;
    Ok(StatusCode::OK.into_response())
}

async fn patch(
    kind: Kind,
    State(state): State<WhipWhepState>,
    Path((stream, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = session_of(kind, &state, &stream, &session)?;
    let frag = read_body(body, "application/trickle-ice-sdpfrag", &headers).await?;
    let (etag, remote_ufrag) = {
        let res = state.resources.lock();
        let r = res.get(&id).ok_or(ApiError::NotFound("session"))?;
        (r.etag.clone(), r.remote_ufrag.clone())
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    if let Some(m) = if_match {
        if m.trim() != "*" && m.trim() != etag {
            return Err(ApiError::PreconditionFailed);
        }
    }
    let parsed = sfu::fragment::parse(&frag)
        .map_err(|reason| ApiError::from(SfuError::BadFragment { reason }))?;
    {
        let mut res = state.resources.lock();
        let r = res.get_mut(&id).ok_or(ApiError::NotFound("session"))?;
        if r.candidates + parsed.candidates.len() > MAX_CANDIDATES_PER_SESSION {
            return Err(ApiError::BadRequest(format!(
                "more than {MAX_CANDIDATES_PER_SESSION} candidates for one session"
            )));
        }
        r.candidates += parsed.candidates.len();
    }
    let restart = matches!((&parsed.ufrag, &remote_ufrag), (Some(new), Some(old)) if new != old)
        || (parsed.ufrag.is_some() && remote_ufrag.is_none());
    if restart {
        // RFC 9725 §4.3.2: an ICE restart needs If-Match "*".
        if if_match.map(str::trim) != Some("*") {
            return Err(ApiError::PreconditionRequired);
        }
        let (Some(ufrag), Some(pwd)) = (parsed.ufrag.clone(), parsed.pwd.clone()) else {
            return Err(ApiError::BadRequest(
                "ICE restart needs a=ice-ufrag and a=ice-pwd".into(),
            ));
        };
        let ours = state
            .sfu
            .ice_restart(
                id,
                IceCredentials {
                    ufrag: ufrag.clone(),
                    pwd,
                },
            )
            .await?;
        if !parsed.candidates.is_empty() {
            state.sfu.add_candidates(id, parsed.candidates).await?;
        }
        let new_etag = format!("\"{}\"", ours.ufrag);
        if let Some(r) = state.resources.lock().get_mut(&id) {
            r.etag = new_etag.clone();
            r.remote_ufrag = Some(ufrag);
        }
        let mut body = format!(
            "a=ice-lite\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
            ours.ufrag, ours.pwd
        );
        for c in state.sfu.local_candidate_lines(id)? {
            body.push_str(&format!("a={c}\r\n"));
        }
        body.push_str("a=end-of-candidates\r\n");
        let mut resp = (StatusCode::OK, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/trickle-ice-sdpfrag"),
        );
        insert(h, header::ETAG, &new_etag);
        return Ok(resp);
    }
    if !parsed.candidates.is_empty() {
        state.sfu.add_candidates(id, parsed.candidates).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(value).expect("header value"),
        );
        headers
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_spaces_around_the_token_do_not_count() {
        for value in [
            "Bearer abc.def",
            "bearer abc.def",
            "BEARER abc.def",
            "bEaReR   abc.def ",
            " Bearer abc.def",
        ] {
            let headers = with_authorization(value.as_bytes());
            assert_eq!(
                authorization_bearer(&headers),
                Ok(Some("abc.def")),
                "{value:?}"
            );
            assert_eq!(bearer(&headers, None).as_deref(), Some("abc.def"));
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_not_bearer_credentials() {
        for value in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer    ",
            b"Bearerabc",
            b"Token abc",
            b"Bearer \xff\xfe",
        ] {
            let headers = with_authorization(value);
            assert_eq!(authorization_bearer(&headers), Err(NotBearer), "{value:?}");
        }
        assert_eq!(authorization_bearer(&HeaderMap::new()), Ok(None));
        // A query credential still counts when the header is not a bearer one.
        let headers = with_authorization(b"Basic dXNlcjpwYXNz");
        assert_eq!(bearer(&headers, Some("key=k1")).as_deref(), Some("k1"));
    }
}
