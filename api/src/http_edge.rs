//! Rules the whole HTTP app follows, applied once as layers around the
//! merged router (see `start`), not per route.
//!
//! * A 405 carries `{"error": "method not allowed"}` as JSON, with the
//!   `Allow` header the router set.
//! * A request with more than one `Authorization` header is refused with
//!   400 before any handler sees it: handlers read the first one, a proxy
//!   or cache in front may read another, and no client needs two.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// Gives a body-less 405 (the router's answer for a known path with another
/// method) the API's JSON error body; other responses pass unchanged.
pub async fn json_method_not_allowed(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (mut parts, _empty) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(METHOD_NOT_ALLOWED_BODY))
}

const METHOD_NOT_ALLOWED_BODY: &str = r#"{"error":"method not allowed"}"#;

/// Refuses a request that carries `Authorization` more than once.
pub async fn refuse_repeated_authorization(request: Request, next: Next) -> Response {
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return whip_whep::json_error(
            StatusCode::BAD_REQUEST,
            "more than one Authorization header".into(),
            None,
        );
    }
    next.run(request).await
}
