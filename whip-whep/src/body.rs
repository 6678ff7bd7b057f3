//! The one size-limited request body reader of relaycast's HTTP routes
//! (SDP offers and fragments here; integrator events, QoE beacons and the
//! payment webhook in `api`).
//!
//! A body declared (`Content-Length`) larger than the limit is refused
//! before it is read; one that turns out larger while streaming is refused
//! at the limit. Either way the answer is 413 (with `Connection: close`,
//! see [`crate::json_error`]). A declared body up to [`DRAIN_BYTES`] is
//! read and dropped first, so closing the connection does not reset it
//! under the client while it still writes, which could lose the answer.

use axum::body::{to_bytes, Body, Bytes};
use axum::http::{header, HeaderMap};

/// An oversized body declared up to this size is read and dropped before
/// the 413.
pub const DRAIN_BYTES: usize = 1024 * 1024;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Larger than `limit` bytes (413).
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The client stopped sending or the connection failed (400).
    #[error("could not read the request body")]
    Unreadable,
}

/// Reads `body` whole if it is at most `limit` bytes.
pub async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limit as u64) {
        if n <= DRAIN_BYTES as u64 {
            let _ = to_bytes(body, DRAIN_BYTES).await;
        }
        return Err(BodyError::TooLarge { limit });
    }
    to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            BodyError::TooLarge { limit }
        } else {
            BodyError::Unreadable
        }
    })
}

/// Whether reading failed at the length limit (not on the connection).
pub fn is_length_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn declared(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        h
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_declared_or_not() {
        let limit = 16;
        let ok = read_limited(Body::from(vec![b'a'; 16]), &declared(16), limit).await;
        assert_eq!(ok.map(|b| b.len()), Ok(16));
        let undeclared = read_limited(Body::from(vec![b'a'; 17]), &HeaderMap::new(), limit).await;
        assert_eq!(undeclared, Err(BodyError::TooLarge { limit }));
        let big = read_limited(Body::from(vec![b'a'; 17]), &declared(17), limit).await;
        assert_eq!(big, Err(BodyError::TooLarge { limit }));
        // A lie about the length is refused on what is declared.
        let lie = read_limited(Body::from("short"), &declared(DRAIN_BYTES * 4), limit).await;
        assert_eq!(lie, Err(BodyError::TooLarge { limit }));
    }
}
