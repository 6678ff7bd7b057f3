//! The control-plane REST API under `/api`: accounts and tokens
//! ([`auth`]), streams, their keys, live status and play tokens
//! ([`streams`]), entitlements ([`entitlements`]), the payment-provider
//! webhook ([`payments`]), the viewer site's catalogue ([`directory`],
//! open to anonymous callers) and the OpenAPI document ([`openapi`]).
//!
//! Every handler authenticates through [`Principal`] (a bearer JWT of an
//! account, checked against the revocation deny-list, or an integrator API
//! key) and answers errors as [`ApiError`]: `{"error": "…"}` with the
//! status that fits.

pub mod auth;
pub mod directory;
pub mod entitlements;
pub mod openapi;
pub mod payments;
pub mod ratelimit;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::Router;
use sfu::Sfu;
use signaling::{Role, Store, Tokens, API_KEY_PREFIX};

/// The REST API answers with the HTTP edge's one error type.
pub use whip_whep::ApiError;

/// Largest JSON body accepted (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;

/// Settings of the REST API.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Lifetime of the tokens login and register issue.
    pub session_ttl: Duration,
    /// Longest lifetime of a play token (a request may ask for less).
    pub max_play_ttl: Duration,
    /// Login attempt limits.
    pub login_limits: ratelimit::Limits,
    /// Shared secret of the payment provider's webhook signatures
    /// (`whsec_…`); without it the webhook answers 503.
    pub payment_webhook_secret: Option<String>,
    /// The payment provider's checkout page the viewer site hands buyers
    /// to ([`directory`]); `None`: no buy or subscribe buttons.
    pub checkout_url: Option<url::Url>,
}

impl Default for RestConfig {
    fn default() -> RestConfig {
        RestConfig {
            session_ttl: Duration::from_secs(3600),
            max_play_ttl: Duration::from_secs(600),
            login_limits: ratelimit::Limits::default(),
            payment_webhook_secret: None,
            checkout_url: None,
        }
    }
}

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct RestState {
    pub store: Store,
    pub tokens: Tokens,
    pub sfu: Sfu,
    /// Viewer counts (WebRTC and LL-HLS).
    pub viewers: crate::viewers::Viewers,
    pub config: Arc<RestConfig>,
    pub limiter: Arc<ratelimit::LoginLimiter>,
    /// Recent catalogue answers ([`directory::list`]).
    pub directory: Arc<directory::Recent>,
    /// Failed bearer credentials per client address (shared with WHIP and
    /// WHEP: one budget per address).
    pub auth_throttle: Arc<throttle::AuthThrottle>,
}

impl RestState {
    pub fn new(store: Store, tokens: Tokens, sfu: Sfu, config: RestConfig) -> RestState {
        let limiter = Arc::new(ratelimit::LoginLimiter::new(config.login_limits));
        RestState {
            store,
            tokens,
            viewers: crate::viewers::Viewers::new(sfu.clone(), None),
            sfu,
            config: Arc::new(config),
            limiter,
            directory: Arc::default(),
            auth_throttle: Arc::new(throttle::AuthThrottle::default()),
        }
    }

    /// Counts failed credentials in `throttle` (the process's one table).
    pub fn with_auth_throttle(mut self, throttle: Arc<throttle::AuthThrottle>) -> RestState {
        self.auth_throttle = throttle;
        self
    }
}

/// Every `/api` route of this module, as `(method, path)` in axum's path
/// syntax; the OpenAPI document must describe exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/logout"),
    ("get", "/api/auth/me"),
    ("post", "/api/auth/revoke"),
    ("post", "/api/api-keys"),
    ("get", "/api/api-keys"),
    ("delete", "/api/api-keys/{id}"),
    ("post", "/api/streams"),
    ("get", "/api/streams"),
    ("get", "/api/streams/live"),
    ("get", "/api/streams/{id}"),
    ("patch", "/api/streams/{id}"),
    ("delete", "/api/streams/{id}"),
    ("post", "/api/streams/{id}/keys"),
    ("get", "/api/streams/{id}/keys"),
    ("post", "/api/streams/{id}/keys/rotate"),
    ("delete", "/api/streams/{id}/keys/{key_id}"),
    ("get", "/api/streams/{id}/sessions"),
    ("post", "/api/streams/{id}/play-token"),
    ("post", "/api/entitlements"),
    ("get", "/api/entitlements"),
    ("delete", "/api/entitlements/{id}"),
    ("post", "/api/payments/webhook"),
    ("get", "/api/openapi.json"),
    ("get", "/api/directory"),
    ("get", "/api/directory/{stream}"),
];

/// The REST router (all of [`ROUTES`]).
pub fn router(state: RestState) -> Router {
    use axum::routing::{delete, get, post};
    Router::new()
        .route("/api/auth/register", post(auth::register))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/me", get(auth::me))
        .route("/api/auth/revoke", post(auth::revoke))
        .route(
            "/api/api-keys",
            post(auth::create_api_key).get(auth::list_api_keys),
        )
        .route("/api/api-keys/{id}", delete(auth::revoke_api_key))
        .route("/api/streams", post(streams::create).get(streams::list))
        .route("/api/streams/live", get(streams::live))
        .route(
            "/api/streams/{id}",
            get(streams::get_one)
                .patch(streams::update)
                .delete(streams::delete_one),
        )
        .route(
            "/api/streams/{id}/keys",
            post(streams::create_key).get(streams::list_keys),
        )
        .route("/api/streams/{id}/keys/rotate", post(streams::rotate_keys))
        .route(
            "/api/streams/{id}/keys/{key_id}",
            delete(streams::revoke_key),
        )
        .route("/api/streams/{id}/sessions", get(streams::sessions))
        .route("/api/streams/{id}/play-token", post(streams::play_token))
        .route(
            "/api/entitlements",
            post(entitlements::grant).get(entitlements::list),
        )
        .route("/api/entitlements/{id}", delete(entitlements::revoke))
        .route("/api/payments/webhook", post(payments::webhook))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/directory", get(directory::list))
        .route("/api/directory/{stream}", get(directory::one))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Who is calling: an account (by a JWT from login/register, or an
/// integrator API key).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user id (a JWT's `sub`; `relaycast token` may mint admin
    /// tokens whose subject is not a stored user).
    pub subject: String,
    pub role: Role,
    /// The JWT's id and expiry (unix seconds), when authenticated by JWT.
    pub token: Option<(String, u64)>,
    /// The API key's id, when authenticated by one.
    pub api_key: Option<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Requires one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden("your role does not allow this"))
        }
    }
}

/// The request's bearer token ([`whip_whep::authorization_bearer`]); an
/// `Authorization` of another shape is refused rather than ignored.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    whip_whep::authorization_bearer(&parts.headers)
        .map_err(|_| ApiError::InvalidToken("expected Authorization: Bearer <token>"))
}

/// Authenticates `bearer` from `ip`: refused at once (429) while the
/// address is throttled; a bad, expired or revoked credential counts
/// against it.
async fn authenticate(
    state: &RestState,
    bearer: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Principal, ApiError> {
    let kind = if bearer.starts_with(API_KEY_PREFIX) {
        throttle::AuthKind::ApiKey
    } else {
        throttle::AuthKind::ApiToken
    };
    state
        .auth_throttle
        .check(ip, kind, std::time::Instant::now())
        .map_err(ApiError::TooManyRequests)?;
    let result = check_credential(state, bearer).await;
    if let Err(e) = &result {
        if e.is_bad_credential() {
            state
                .auth_throttle
                .failed(ip, kind, std::time::Instant::now());
        }
    }
    result.map_err(ApiError::from)
}

/// Why a bearer did not authenticate: a [`signaling::AuthError`] (bad
/// credentials are counted), or an error of the API's own.
enum CredentialError {
    Auth(signaling::AuthError),
    Api(ApiError),
}

impl CredentialError {
    fn is_bad_credential(&self) -> bool {
        matches!(self, CredentialError::Auth(e) if e.is_bad_credential())
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> ApiError {
        match e {
            CredentialError::Auth(e) => ApiError::from(e),
            CredentialError::Api(e) => e,
        }
    }
}

async fn check_credential(state: &RestState, bearer: &str) -> Result<Principal, CredentialError> {
    if bearer.starts_with(API_KEY_PREFIX) {
        let (user, key_id) = state
            .store
            .user_by_api_key(bearer)
            .await
            .map_err(|e| CredentialError::Api(e.into()))?
            .ok_or(CredentialError::Auth(signaling::AuthError::Invalid))?;
        return Ok(Principal {
            subject: user.id,
            role: user.role,
            token: None,
            api_key: Some(key_id),
        });
    }
    let claims = state
        .store
        .verify_token(&state.tokens, bearer)
        .await
        .map_err(CredentialError::Auth)?;
    if !claims.role.is_account() {
        return Err(CredentialError::Api(ApiError::forbidden(
            "a stream token (publish/play) cannot be used on the API",
        )));
    }
    Ok(Principal {
        subject: claims.sub,
        role: claims.role,
        token: Some((claims.jti, claims.exp)),
        api_key: None,
    })
}

/// The client address of a request (see [`ClientIp`]).
fn peer_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Any router whose state holds a [`RestState`] authenticates the same way
/// (the webhook routes do).
impl<S> FromRequestParts<S> for Principal
where
    RestState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let b = bearer(parts)?.ok_or(ApiError::InvalidToken("missing bearer token"))?;
        authenticate(&RestState::from_ref(state), b, peer_ip(parts)).await
    }
}

/// A [`Principal`] if the request carries credentials (which must then be
/// valid), `None` if it carries none.
pub struct MaybePrincipal(pub Option<Principal>);

impl FromRequestParts<RestState> for MaybePrincipal {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, ApiError> {
        match bearer(parts)? {
            Some(b) => Ok(MaybePrincipal(Some(
                authenticate(state, b, peer_ip(parts)).await?,
            ))),
            None => Ok(MaybePrincipal(None)),
        }
    }
}

/// A JSON request body of at most [`MAX_BODY`] bytes, read with the one
/// body reader (`whip_whep::read_limited`); its rejections are
/// [`ApiError`]s: 415 without a JSON `Content-Type`, 413 over the limit,
/// 400 for bad JSON, 422 for JSON of the wrong shape.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        if !is_json(&parts.headers) {
            return Err(ApiError::UnsupportedMediaType {
                expected: "application/json".into(),
            });
        }
        let bytes = whip_whep::read_limited(body, &parts.headers, MAX_BODY).await?;
        let axum::Json(v) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(JsonBody(v))
    }
}

/// `Content-Type: application/json` or another `+json` type, as axum's
/// `Json` accepts.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype
                    .get(subtype.len() - 5..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case("+json")))
}

pub(crate) fn unix_now() -> u64 {
    crate::unix_now()
}

/// The client address, as the HTTP listener decided it (`ConnectInfo`,
/// see [`crate::client_addr`]): the TCP peer, or behind a trusted proxy
/// the address its `X-Forwarded-For` gives; a client's own forwarding
/// headers are never believed.
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(peer_ip(parts)))
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s (400 with a JSON body).
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Like [`JsonBody`], but an empty body is `T::default()` (for requests
/// whose fields are all optional).
pub struct JsonOrEmpty<T>(pub T);

impl<S, T> FromRequest<S> for JsonOrEmpty<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
            || (req.headers().get(header::CONTENT_LENGTH).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none());
        if empty {
            return Ok(JsonOrEmpty(T::default()));
        }
        let JsonBody(v) = JsonBody::<T>::from_request(req, state).await?;
        Ok(JsonOrEmpty(v))
    }
}
