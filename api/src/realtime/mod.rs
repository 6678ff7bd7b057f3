//! Realtime routes: the stream WebSocket (chat, presence, status,
//! integrator events) and `POST /api/streams/{id}/events`, on top of
//! [`signaling::Bus`]; and the stream watcher that turns the SFU's stream
//! events into status messages and keeps each live stream's media clock.

mod events;
mod stream_watch;
mod ws;

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use signaling::{AuthError, Bus, Store, Tokens};

pub use events::date_range;
pub use stream_watch::{EventSink, MediaClock, StreamListener, StreamWatch};

/// Shared state of the realtime routes.
#[derive(Clone)]
pub struct RealtimeState {
    pub bus: Bus,
    pub tokens: Tokens,
    pub store: Store,
    pub clock: Arc<MediaClock>,
}

/// The routes of [`router`] (documented in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/streams/{id}/ws"),
    ("post", "/api/streams/{id}/events"),
];

pub fn router(state: RealtimeState) -> Router {
    Router::new()
        .route("/api/streams/{id}/ws", get(ws::upgrade))
        .route("/api/streams/{id}/events", post(events::post_event))
        .with_state(state)
}

/// Errors of the realtime HTTP edge: a status and `{"error": …}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// A 500 whose cause is logged, not sent.
    pub(crate) fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!("realtime: {cause}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<whip_whep::BodyError> for ApiError {
    fn from(e: whip_whep::BodyError) -> ApiError {
        let status = match e {
            whip_whep::BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The causes of 500s were logged where they were made.
        let mut resp = whip_whep::json_error(self.status, self.message, None);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// The bearer credential: `Authorization: Bearer …` (any case of the
/// scheme, [`whip_whep::authorization_bearer`]), else `?token=` (browsers
/// cannot set headers on a WebSocket).
pub(crate) fn bearer(headers: &HeaderMap, token_param: Option<&str>) -> Option<String> {
    whip_whep::authorization_bearer(headers)
        .ok()
        .flatten()
        .map(str::to_string)
        .or_else(|| token_param.map(str::to_string))
        .filter(|s| !s.is_empty())
}

/// Maps an authorisation failure to 401/403 (causes of 500 are logged).
pub(crate) fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Missing => ApiError::new(StatusCode::UNAUTHORIZED, "this stream needs a token"),
        AuthError::Invalid | AuthError::Expired | AuthError::Revoked => {
            ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
        }
        AuthError::Forbidden { .. } | AuthError::Location { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, e.to_string())
        }
        other => ApiError::internal(other),
    }
}

pub(crate) fn check_stream_name(id: &str) -> Result<(), ApiError> {
    if signaling::valid_stream_name(id) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "unknown stream"))
    }
}
