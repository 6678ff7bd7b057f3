//! The HTTP edge's one error type: status code plus `{"error": …}`. WHIP
//! and WHEP, the REST API (`api::rest`), webhooks, realtime and analytics
//! routes all answer with it.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sfu::SfuError;
use signaling::{AuthError, StoreError};

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing bearer token")]
    Unauthorized,
    /// 401 with `WWW-Authenticate: Bearer`: no credential, in the route's
    /// words (which credential it needs).
    #[error("{0}")]
    CredentialRequired(&'static str),
    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"` and the
    /// reason as its description (a login that failed, a credential of the
    /// wrong form).
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("invalid credential")]
    InvalidCredential,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("{0}")]
    Forbidden(String),
    #[error("unknown {0}")]
    NotFound(&'static str),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// 409 with `Retry-After`: may work later (a viewer before its codecs are forwardable).
    #[error("{0}")]
    RetryLater(String),
    #[error("If-Match does not match the session's ETag")]
    PreconditionFailed,
    #[error("ICE restart requires If-Match: *")]
    PreconditionRequired,
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("Content-Type must be {expected}")]
    UnsupportedMediaType { expected: String },
    #[error("{0}")]
    Unprocessable(String),
    #[error("service unavailable")]
    Unavailable,
    /// 503 without `Retry-After`: a feature this server is not configured
    /// for.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// 429 with `Retry-After`: the client's address had too many failed
    /// credentials; refused before its credential is looked at.
    #[error("too many failed credentials from this address, retry in {} s", throttle::retry_after_secs(*.0))]
    TooManyRequests(std::time::Duration),
    /// 429: a route's own rate limit (e.g. QoE beacons per address), in
    /// its words.
    #[error("{0}")]
    RateLimited(String),
    /// Logged with its cause; the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

impl From<SfuError> for ApiError {
    fn from(e: SfuError) -> ApiError {
        match e {
            SfuError::BadOffer { .. } | SfuError::NoMedia { .. } | SfuError::BadFragment { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            SfuError::NoCommonCodec => ApiError::Unprocessable(e.to_string()),
            SfuError::StreamBusy => ApiError::Conflict(e.to_string()),
            SfuError::UnknownSession => ApiError::NotFound("session"),
            SfuError::WorkerGone | SfuError::Full => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::BodyError> for ApiError {
    fn from(e: crate::BodyError) -> ApiError {
        match e {
            crate::BodyError::TooLarge { limit } => ApiError::TooLarge { limit },
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::BadName => ApiError::Unprocessable(e.to_string()),
            StoreError::Duplicate(what) => ApiError::Conflict(format!("{what} already exists")),
            StoreError::Invalid(msg) => ApiError::Unprocessable(msg.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A JSON body that did not parse (the body itself is read with
/// [`crate::read_limited`], so its size is not a question here).
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType {
                expected: "application/json".into(),
            },
            JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Missing => ApiError::Unauthorized,
            AuthError::Invalid => ApiError::InvalidCredential,
            AuthError::Expired => ApiError::Expired,
            AuthError::Revoked => ApiError::Revoked,
            AuthError::Forbidden { .. } | AuthError::Location { .. } => {
                ApiError::Forbidden(e.to_string())
            }
            AuthError::Store(s) => ApiError::from(s),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// 403 in the route's words.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::Forbidden(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized
            | ApiError::CredentialRequired(_)
            | ApiError::InvalidToken(_)
            | ApiError::InvalidCredential
            | ApiError::Expired
            | ApiError::Revoked => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::RetryLater(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable | ApiError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(_) | ApiError::RateLimited(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The JSON error answer of relaycast's HTTP APIs: `status` with
/// `{"error": message}`. An internal cause is logged at error level and
/// never sent; other refusals are logged at debug level. A 413 also says
/// `Connection: close`: the rest of the body was not read, so the
/// connection cannot carry another request and the client must not pool it.
pub fn json_error(status: StatusCode, message: String, internal_cause: Option<&str>) -> Response {
    match internal_cause {
        Some(cause) => tracing::error!("internal error: {cause}"),
        None => tracing::debug!(status = status.as_u16(), "request refused: {message}"),
    }
    let mut resp = (status, Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let cause = match &self {
            ApiError::Internal(cause) => Some(cause.as_str()),
            _ => None,
        };
        let mut resp = json_error(self.status(), self.to_string(), cause);
        match self {
            ApiError::Unauthorized
            | ApiError::CredentialRequired(_)
            | ApiError::InvalidCredential
            | ApiError::Expired
            | ApiError::Revoked => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::InvalidToken(reason) => {
                let v = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("Bearer")),
                );
            }
            ApiError::RetryLater(_) | ApiError::Unavailable => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            }
            ApiError::TooManyRequests(wait) => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(throttle::retry_after_secs(wait)),
                );
            }
            _ => {}
        }
        resp
    }
}
