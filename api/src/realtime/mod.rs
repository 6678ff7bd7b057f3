//! Realtime routes: the stream WebSocket (chat, presence, status,
//! integrator events) and `POST /api/streams/{id}/events`, on top of
//! [`signaling::Bus`]; and the stream watcher that turns the SFU's stream
//! events into status messages and keeps each live stream's media clock.

mod events;
mod stream_watch;
mod ws;

use std::sync::Arc;

use axum::http::HeaderMap;
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

/// The realtime routes answer with the HTTP edge's one error type.
pub(crate) use whip_whep::ApiError;

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
        AuthError::Missing => ApiError::CredentialRequired("this stream needs a token"),
        AuthError::Invalid => ApiError::InvalidCredential,
        AuthError::Expired => ApiError::Expired,
        AuthError::Revoked => ApiError::Revoked,
        AuthError::Forbidden { .. } | AuthError::Location { .. } => {
            ApiError::Forbidden(e.to_string())
        }
        other => ApiError::Internal(format!("realtime: {other}")),
    }
}

pub(crate) fn check_stream_name(id: &str) -> Result<(), ApiError> {
    if signaling::valid_stream_name(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound("stream"))
    }
}
