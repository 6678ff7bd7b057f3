//! `POST /api/payments/webhook`: a payment provider tells us a checkout
//! completed or a subscription ended; we grant or revoke entitlements.
//!
//! Requests are authenticated the way Stripe signs them: header
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"{t}.{raw body}"` with the endpoint's secret; several `v1` entries may
//! be present (secret rotation) and one must match; `t` must be within
//! [`TOLERANCE`] of our clock (replay protection). Failures answer 400, as
//! Stripe expects. Events are applied once per event id.
//!
//! Events understood (the rest are acknowledged and ignored):
//! - `checkout.session.completed`: `data.object.metadata.user_id` plus
//!   `stream` (pay-per-view) or `broadcaster_id` (subscription); optional
//!   `metadata.expires_at` (unix seconds). The external reference kept is
//!   `data.object.subscription` when present, else `data.object.id`.
//! - `customer.subscription.deleted`: revokes the entitlements made with
//!   `data.object.id` (the subscription id).
//! - `checkout.session.expired` / `charge.refunded`: nothing to grant;
//!   a refund revokes by `data.object.metadata.checkout_session` when given.
//!
//! No card or payer data is stored: only user/stream ids from metadata,
//! the provider's opaque ids and the event id.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use signaling::{EntitlementKind, NewEntitlement, PaymentAction, PaymentOutcome};

use super::{unix_now, ApiError, RestState};

/// How far a signature's timestamp may be from our clock.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// Why a signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("signature timestamp outside the tolerance")]
    Stale,
    #[error("no matching v1 signature")]
    Mismatch,
}

/// Checks a `Stripe-Signature` header over `body` at `now` (unix seconds).
pub fn verify_signature(
    header: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t: Option<u64> = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => t = Some(v.parse().map_err(|_| SignatureError::Malformed)?),
            "v1" => sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            // v0 and future schemes are ignored, as Stripe's libraries do.
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(t) > TOLERANCE.as_secs() {
        return Err(SignatureError::Stale);
    }
    let mac = || {
        let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
        m.update(t.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        Ok::<_, SignatureError>(m)
    };
    for sig in &sigs {
        // verify_slice compares in constant time.
        if mac()?.verify_slice(sig).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The header value a provider would send for `body` at `t` (tests and
/// local tooling).
pub fn sign(body: &[u8], secret: &[u8], t: u64) -> String {
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// The action an event asks for; `Ok(None)` for events we ignore.
fn action_of(event_type: &str, event: &Value) -> Result<Option<PaymentAction>, ApiError> {
    let obj = &event["data"]["object"];
    match event_type {
        "checkout.session.completed" => {
            let user = text(obj, &["metadata", "user_id"])
                .ok_or_else(|| ApiError::Unprocessable("metadata.user_id is required".into()))?;
            let stream = text(obj, &["metadata", "stream"]).map(str::to_string);
            let broadcaster = text(obj, &["metadata", "broadcaster_id"]).map(str::to_string);
            let kind = if broadcaster.is_some() {
                EntitlementKind::Subscription
            } else {
                EntitlementKind::Ppv
            };
            let target =
                super::entitlements::target_of(kind, stream, broadcaster).map_err(|_| {
                    ApiError::Unprocessable(
                        "metadata needs exactly one of stream or broadcaster_id".into(),
                    )
                })?;
            let expires_at = match text(obj, &["metadata", "expires_at"]) {
                Some(s) => Some(s.parse::<i64>().map_err(|_| {
                    ApiError::Unprocessable("metadata.expires_at must be unix seconds".into())
                })?),
                None => None,
            };
            let external_ref = text(obj, &["subscription"])
                .or_else(|| text(obj, &["id"]))
                .map(str::to_string);
            Ok(Some(PaymentAction::Grant(NewEntitlement {
                user_id: user.to_string(),
                kind,
                target,
                external_ref,
                expires_at,
            })))
        }
        "customer.subscription.deleted" => {
            let id = text(obj, &["id"])
                .ok_or_else(|| ApiError::Unprocessable("data.object.id is required".into()))?;
            Ok(Some(PaymentAction::RevokeByRef(id.to_string())))
        }
        "charge.refunded" => Ok(text(obj, &["metadata", "checkout_session"])
            .map(|r| PaymentAction::RevokeByRef(r.to_string()))),
        _ => Ok(None),
    }
}

/// `POST /api/payments/webhook`
pub async fn webhook(
    State(state): State<RestState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    // Read here (not with the `Bytes` extractor) so an oversized body is a
    // JSON 413 like every other error.
    let body = whip_whep::read_limited(body, &headers, super::MAX_BODY).await?;
    let secret = state
        .config
        .payment_webhook_secret
        .as_deref()
        .ok_or(ApiError::NotConfigured("payments are not configured"))?;
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    verify_signature(sig, &body, secret.as_bytes(), unix_now())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let event: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::BadRequest("body is not JSON".into()))?;
    let id = text(&event, &["id"])
        .ok_or_else(|| ApiError::Unprocessable("event id is required".into()))?;
    let event_type = text(&event, &["type"])
        .ok_or_else(|| ApiError::Unprocessable("event type is required".into()))?;
    if id.len() > 255 || event_type.len() > 255 {
        return Err(ApiError::Unprocessable("event id or type too long".into()));
    }
    let Some(action) = action_of(event_type, &event)? else {
        return Ok(Json(json!({ "received": true, "ignored": true })));
    };
    let outcome = state
        .store
        .apply_payment_event(id, event_type, &action)
        .await?;
    Ok(Json(match outcome {
        PaymentOutcome::Granted(e) => json!({ "received": true, "entitlement_id": e }),
        PaymentOutcome::Revoked(n) => json!({ "received": true, "revoked": n }),
        PaymentOutcome::AlreadyProcessed => json!({ "received": true, "duplicate": true }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_and_in_time() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let h = sign(body, b"whsec_test", now);
        assert_eq!(verify_signature(Some(&h), body, b"whsec_test", now), Ok(()));
        assert_eq!(
            verify_signature(Some(&h), body, b"whsec_test", now + 299),
            Ok(())
        );
        assert_eq!(
            verify_signature(Some(&h), body, b"whsec_test", now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(Some(&h), body, b"other", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(Some(&h), br#"{"id":"evt_2"}"#, b"whsec_test", now),
            Err(SignatureError::Mismatch)
        );
        // Rotation: a second v1 that matches is enough.
        let bad = format!("t={now},v1={},v1={}", "00".repeat(32), &h[h.len() - 64..]);
        assert_eq!(
            verify_signature(Some(&bad), body, b"whsec_test", now),
            Ok(())
        );
        for garbage in ["", "t=x,v1=00", "v1=00", "t=1", "t=1,v1=zz", "nonsense"] {
            assert_eq!(
                verify_signature(Some(garbage), body, b"whsec_test", now),
                Err(SignatureError::Malformed),
                "{garbage:?}"
            );
        }
        assert_eq!(
            verify_signature(None, body, b"whsec_test", now),
            Err(SignatureError::Missing)
        );
    }
}
