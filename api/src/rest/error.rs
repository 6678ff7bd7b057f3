//! The REST API's one error type: a status code and `{"error": "…"}`.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use signaling::{AuthError, StoreError};

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// 401 with `WWW-Authenticate: Bearer`: no, invalid, expired or
    /// revoked credential.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: a unique name is taken.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// 413.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// 415.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 422: well-formed, but breaks a rule.
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with `Retry-After`.
    #[error("too many attempts, retry in {} s", throttle::retry_after_secs(*.0))]
    TooManyRequests(Duration),
    /// 503: a feature that is not configured.
    #[error("{0}")]
    Unavailable(&'static str),
    /// 500: logged with its cause; the client sees a generic message.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::BadName => ApiError::Unprocessable(e.to_string()),
            StoreError::Duplicate(what) => ApiError::Conflict(what),
            StoreError::Invalid(msg) => ApiError::Unprocessable(msg.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Missing => ApiError::Unauthorized("missing bearer token"),
            AuthError::Invalid => ApiError::Unauthorized("invalid credential"),
            AuthError::Expired => ApiError::Unauthorized("token expired"),
            AuthError::Revoked => ApiError::Unauthorized("token revoked"),
            AuthError::Forbidden { .. } => ApiError::Forbidden("not allowed"),
            AuthError::Location { reason } => ApiError::Forbidden(reason),
            AuthError::Store(s) => ApiError::from(s),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<whip_whep::BodyError> for ApiError {
    fn from(e: whip_whep::BodyError) -> ApiError {
        match e {
            whip_whep::BodyError::TooLarge { limit } => ApiError::TooLarge(limit),
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::JsonDataError(e) => ApiError::Unprocessable(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge(super::MAX_BODY)
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let cause = match &self {
            ApiError::Internal(cause) => Some(cause.as_str()),
            _ => None,
        };
        let mut resp = whip_whep::json_error(self.status(), self.to_string(), cause);
        match &self {
            ApiError::Unauthorized(msg) => {
                let v = format!("Bearer error=\"invalid_token\", error_description=\"{msg}\"");
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("Bearer")),
                );
            }
            ApiError::TooManyRequests(after) => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(throttle::retry_after_secs(*after)),
                );
            }
            _ => {}
        }
        resp
    }
}
