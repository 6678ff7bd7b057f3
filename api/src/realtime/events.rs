//! `POST /api/streams/{id}/events`: an integrator posts a JSON event (at
//! most 4 KiB) that is stamped with the stream's media time and wall
//! clock, sequenced per stream and delivered on the stream's WebSocket and
//! [`signaling::EventFeed`]s (from which the stream watcher hands it to
//! WebRTC viewers' data channels and, as [`date_range`], to the LL-HLS
//! playlists). `Idempotency-Key`: the same key and body return the first
//! event (200), another body is 409. First post: 201.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use signaling::{EventError, Role, MAX_EVENT_BYTES};

use super::{auth_error, bearer, check_stream_name, ApiError, RealtimeState};

/// The event as an `EXT-X-DATERANGE`: START-DATE is its media moment on
/// the playlists' program date-time clock — the capture wall clock of the
/// stream's newest frame when it was accepted (the sender-report time the
/// program date-times derive from), else its acceptance time.
pub fn date_range(event: &signaling::IntegratorEvent) -> Option<transcoder::DateRange> {
    let ms = event
        .media
        .and_then(|m| m.capture_ms)
        .unwrap_or(event.at_ms);
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    match serde_json::to_string(&event.payload) {
        Ok(json) => Some(transcoder::DateRange::event(
            &event.id, start, event.seq, &json,
        )),
        Err(e) => {
            tracing::warn!(stream = event.stream, "event payload not serialisable: {e}");
            None
        }
    }
}

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub(super) async fn post_event(
    State(st): State<RealtimeState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_stream_name(&id)?;
    let Some(token) = bearer(&headers, None) else {
        return Err(ApiError::CredentialRequired(
            "an integrator or admin token is required",
        ));
    };
    let claims = st
        .store
        .verify_token(&st.tokens, &token)
        .await
        .map_err(auth_error)?;
    // Admins anywhere; integrators on the stream their token names, or on
    // every stream when it names none.
    let allowed = match claims.role {
        Role::Admin | Role::Integrator => claims.stream.as_deref().is_none_or(|s| s == id),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::Forbidden(
            "token does not allow posting events on this stream".into(),
        ));
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json".into(),
        });
    }
    let body = whip_whep::read_limited(body, &headers, MAX_EVENT_BYTES).await?;
    let payload: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Idempotency-Key must be 1-255 visible ASCII characters".into(),
                    )
                })?;
            Some(k.to_string())
        }
    };
    let media = st.clock.stamp(&id);
    match st
        .bus
        .post_event(&id, payload, &body, key.as_deref(), media)
        .await
    {
        Ok((event, fresh)) => {
            let status = if fresh {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, axum::Json(&*event)).into_response())
        }
        Err(EventError::IdempotencyConflict) => Err(ApiError::Conflict(
            "Idempotency-Key already used with a different body".into(),
        )),
        Err(e) => Err(ApiError::Internal(format!("posting an event: {e}"))),
    }
}
