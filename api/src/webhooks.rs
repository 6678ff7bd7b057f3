//! Webhooks: endpoints a stream's owner registers (`/api/webhooks` CRUD),
//! signed deliveries of stream events, retries with exponential backoff,
//! and a delivery log (`GET /api/webhooks/{id}/deliveries`).
//!
//! Events: `stream.started`, `stream.stalled`, `stream.resumed`,
//! `stream.ended` (from the SFU's stream events), `viewers.threshold` (a
//! registered viewer count crossed upwards on this node), and
//! `recording.ready` (a publisher run's VOD recording is complete on disk:
//! `data` is `{run, url, duration_s, segments}`, `url` the recording's
//! multivariant playlist `/vod/{stream}/{run}/index.m3u8`; from
//! [`forward_recordings`]).
//!
//! Nothing here can slow the media path: [`Webhooks::notify`] is a
//! `try_send` into a bounded queue (full: dropped, logged and counted in
//! `relaycast_webhook_events_dropped_total`); one dispatcher task looks up
//! endpoints and starts one delivery task per endpoint, at most
//! [`MAX_IN_FLIGHT`] at once.
//!
//! Signature: `Relaycast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256
//! of "<t>.<body>" keyed with the endpoint's secret>`. Receivers recompute
//! it and reject stale `t` to stop replays.

pub mod destination;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use signaling::{Claims, Role, Store, Tokens};
use sqlx::Row;
use tokio::sync::{mpsc, Semaphore};

use crate::realtime::{auth_error, bearer, ApiError};

/// Event types an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 6] = [
    "stream.started",
    "stream.stalled",
    "stream.resumed",
    "stream.ended",
    "recording.ready",
    "viewers.threshold",
];
/// Events waiting for the dispatcher; beyond this they are dropped.
const QUEUE: usize = 1024;
/// Deliveries in flight at once (each may be waiting between retries).
pub const MAX_IN_FLIGHT: usize = 64;
/// Attempts per delivery, the first included.
pub const MAX_ATTEMPTS: u32 = 6;
/// Wait before the second attempt; doubled for each next one (0.25, 0.5,
/// 1, 2, 4 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// One attempt's time limit (connect + answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Endpoints one owner may register.
const MAX_PER_OWNER: i64 = 50;

/// An event to deliver to the endpoints of `stream` that want `kind`.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub stream: String,
    pub at_ms: u64,
    pub data: serde_json::Value,
}

impl WebhookEvent {
    pub fn new(kind: &'static str, stream: &str, at_ms: u64, data: serde_json::Value) -> Self {
        WebhookEvent {
            id: signaling::db::new_id(),
            kind,
            stream: stream.to_string(),
            at_ms,
            data,
        }
    }
}

/// Handle to the delivery machinery; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<WebhookEvent>,
    dropped: IntCounter,
}

impl Webhooks {
    /// Starts the dispatcher. Deliveries use `client` (reqwest, rustls).
    pub fn start(store: Store, registry: &prometheus::Registry) -> anyhow::Result<Webhooks> {
        let dropped = IntCounter::new(
            "relaycast_webhook_events_dropped_total",
            "Webhook events dropped because the delivery queue was full",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("relaycast-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(store, client, rx));
        Ok(Webhooks { tx, dropped })
    }

    /// Queues an event; never waits.
    pub fn notify(&self, event: WebhookEvent) {
        if let Err(e) = self.tx.try_send(event) {
            self.dropped.inc();
            tracing::warn!("webhook event dropped: {e}");
        }
    }
}

struct Endpoint {
    id: String,
    url: String,
    secret: String,
    thresholds: Vec<u32>,
}

async fn dispatch(store: Store, client: reqwest::Client, mut rx: mpsc::Receiver<WebhookEvent>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(event) = rx.recv().await {
        let endpoints = match endpoints_for(&store, &event).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(stream = event.stream, "loading webhooks: {e}");
                continue;
            }
        };
        if endpoints.is_empty() {
            continue;
        }
        for (ep, event) in expand_thresholds(endpoints, event) {
            let body = match serde_json::to_vec(&event) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("encoding webhook event: {e}");
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (store, client) = (store.clone(), client.clone());
            tokio::spawn(async move {
                deliver(&store, &client, &ep, &event, &body).await;
                drop(permit);
            });
        }
    }
}

/// Pairs each endpoint with the event it gets: the event itself, except
/// that a viewer-count change (`data.previous` → `data.viewers`) becomes one
/// `viewers.threshold` event per registered threshold it crossed upwards.
fn expand_thresholds(
    endpoints: Vec<Endpoint>,
    event: WebhookEvent,
) -> Vec<(Endpoint, WebhookEvent)> {
    if event.kind != "viewers.threshold" {
        return endpoints
            .into_iter()
            .map(|ep| (ep, event.clone()))
            .collect();
    }
    let count = |k: &str| event.data[k].as_u64().unwrap_or(0);
    let (before, now) = (count("previous"), count("viewers"));
    let mut out = Vec::new();
    for ep in endpoints {
        let crossed: Vec<u32> = ep
            .thresholds
            .iter()
            .copied()
            .filter(|&t| before < u64::from(t) && u64::from(t) <= now)
            .collect();
        for t in crossed {
            let mut e =
                WebhookEvent::new(event.kind, &event.stream, event.at_ms, event.data.clone());
            e.data["threshold"] = t.into();
            out.push((
                Endpoint {
                    id: ep.id.clone(),
                    url: ep.url.clone(),
                    secret: ep.secret.clone(),
                    thresholds: Vec::new(),
                },
                e,
            ));
        }
    }
    out
}

async fn endpoints_for(store: &Store, event: &WebhookEvent) -> Result<Vec<Endpoint>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, url, secret, events, viewer_thresholds FROM webhooks WHERE stream = $1",
    )
    .bind(&event.stream)
    .fetch_all(store.db().pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            r.get::<String, _>("events")
                .split(',')
                .any(|e| e == event.kind)
        })
        .map(|r| Endpoint {
            id: r.get("id"),
            url: r.get("url"),
            secret: r.get("secret"),
            thresholds: split_counts(&r.get::<String, _>("viewer_thresholds")),
        })
        .collect())
}

/// Turns the transcoder's notices of complete recordings into
/// `recording.ready` events until the transcoder is gone.
pub async fn forward_recordings(
    mut notices: tokio::sync::broadcast::Receiver<transcoder::RecordingReady>,
    hooks: Webhooks,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match notices.recv().await {
            Ok(r) => hooks.notify(recording_ready(&r)),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("{n} recording.ready webhooks lost: the notices ran ahead");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// The `recording.ready` event of a complete recording.
pub fn recording_ready(r: &transcoder::RecordingReady) -> WebhookEvent {
    let at_ms =
        r.at.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
    WebhookEvent::new(
        "recording.ready",
        &r.stream,
        at_ms,
        serde_json::json!({
            "run": r.run,
            "url": r.url,
            "duration_s": r.duration.as_millis() as f64 / 1000.0,
            "segments": r.segments,
        }),
    )
}

/// `t=<unix>,v1=<hex hmac>` for `body` signed at `t`.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

async fn deliver(
    store: &Store,
    client: &reqwest::Client,
    ep: &Endpoint,
    event: &WebhookEvent,
    body: &[u8],
) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let started = Instant::now();
        let t = crate::unix_now();
        let result = client
            .post(&ep.url)
            .header("content-type", "application/json")
            .header("relaycast-signature", signature(&ep.secret, t, body))
            .header("relaycast-event", event.kind)
            .header("relaycast-delivery", &event.id)
            .body(body.to_vec())
            .send()
            .await;
        let (status, error) = match &result {
            Ok(r) => (Some(i64::from(r.status().as_u16())), None),
            // The error names the URL, which the owner registered: fine to log for them.
            Err(e) => (None, Some(e.to_string())),
        };
        let ok = result.as_ref().is_ok_and(|r| r.status().is_success());
        let logged = sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, attempt, \
             status_code, error, at_ms, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(signaling::db::new_id())
        .bind(&ep.id)
        .bind(&event.id)
        .bind(event.kind)
        .bind(i64::from(attempt))
        .bind(status)
        .bind(error)
        .bind(signaling::unix_ms() as i64)
        .bind(started.elapsed().as_millis() as i64)
        .execute(store.db().pool())
        .await;
        if let Err(e) = logged {
            tracing::error!(webhook = ep.id, "logging a delivery: {e}");
        }
        if ok {
            return;
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::warn!(
        webhook = ep.id,
        event = event.kind,
        "webhook delivery gave up"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP: /api/webhooks
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct WebhookRoutes {
    pub store: Store,
    pub tokens: Tokens,
}

/// The routes of [`router`] (documented in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/webhooks"),
    ("get", "/api/webhooks"),
    ("get", "/api/webhooks/{id}"),
    ("delete", "/api/webhooks/{id}"),
    ("get", "/api/webhooks/{id}/deliveries"),
];

pub fn router(state: WebhookRoutes) -> Router {
    Router::new()
        .route("/api/webhooks", get(list).post(create))
        .route("/api/webhooks/{id}", get(show).delete(remove))
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    stream: String,
    events: Vec<String>,
    #[serde(default)]
    viewer_thresholds: Vec<u32>,
}

#[derive(Serialize)]
struct WebhookView {
    id: String,
    stream: String,
    url: String,
    events: Vec<String>,
    viewer_thresholds: Vec<u32>,
    created_at: i64,
    /// Only in the answer to POST.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

async fn claims_of(st: &WebhookRoutes, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let Some(token) = bearer(headers, None) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
        ));
    };
    st.store
        .verify_token(&st.tokens, &token)
        .await
        .map_err(auth_error)
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

async fn create(
    State(st): State<WebhookRoutes>,
    headers: HeaderMap,
    body: Result<Json<NewWebhook>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let claims = claims_of(&st, &headers).await?;
    let Json(req) = body.map_err(|e| match e.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(e.status(), e.body_text()),
        _ => bad(e.body_text()),
    })?;
    if !signaling::valid_stream_name(&req.stream) {
        return Err(bad("invalid stream name"));
    }
    let owner = st
        .store
        .stream(&req.stream)
        .await
        .map_err(ApiError::internal)?
        .and_then(|s| s.owner_id);
    let allowed = claims.allows(&req.stream, Role::Publish)
        || owner.as_deref().is_some_and(|o| o == claims.sub);
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only the stream's owner or an admin may add webhooks to it",
        ));
    }
    let url = reqwest::Url::parse(&req.url).map_err(|_| bad("url is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || req.url.len() > 2048
    {
        return Err(bad("url must be an http(s) URL of at most 2048 characters"));
    }
    if req.events.is_empty() {
        return Err(bad("events must name at least one event type"));
    }
    if let Some(e) = req
        .events
        .iter()
        .find(|e| !EVENT_TYPES.contains(&e.as_str()))
    {
        return Err(bad(format!(
            "unknown event type {e:?} (known: {})",
            EVENT_TYPES.join(", ")
        )));
    }
    if req.viewer_thresholds.len() > 20 || req.viewer_thresholds.contains(&0) {
        return Err(bad("viewer_thresholds: at most 20 counts, each at least 1"));
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE owner = $1")
        .bind(&claims.sub)
        .fetch_one(st.store.db().pool())
        .await
        .map_err(ApiError::internal)?
        .get("n");
    if count >= MAX_PER_OWNER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("at most {MAX_PER_OWNER} webhooks per owner"),
        ));
    }
    let mut events = req.events.clone();
    events.sort();
    events.dedup();
    let view = WebhookView {
        id: signaling::db::new_id(),
        stream: req.stream,
        url: req.url,
        events,
        viewer_thresholds: req.viewer_thresholds,
        created_at: crate::unix_now() as i64,
        secret: Some(format!("whsec_{}", signaling::db::new_id())),
    };
    sqlx::query(
        "INSERT INTO webhooks (id, owner, stream, url, secret, events, viewer_thresholds, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&view.id)
    .bind(&claims.sub)
    .bind(&view.stream)
    .bind(&view.url)
    .bind(view.secret.as_deref().unwrap_or_default())
    .bind(view.events.join(","))
    .bind(join_counts(&view.viewer_thresholds))
    .bind(view.created_at)
    .execute(st.store.db().pool())
    .await
    .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn join_counts(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn split_counts(s: &str) -> Vec<u32> {
    s.split(',').filter_map(|n| n.parse().ok()).collect()
}

fn view_of(r: &sqlx::any::AnyRow) -> WebhookView {
    WebhookView {
        id: r.get("id"),
        stream: r.get("stream"),
        url: r.get("url"),
        events: r
            .get::<String, _>("events")
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        viewer_thresholds: split_counts(&r.get::<String, _>("viewer_thresholds")),
        created_at: r.get("created_at"),
        secret: None,
    }
}

const COLUMNS: &str = "id, owner, stream, url, events, viewer_thresholds, created_at";

/// The webhook if `claims` may see it (its owner, or an admin); 404
/// otherwise, so ids of others' webhooks are not confirmed.
async fn owned(
    st: &WebhookRoutes,
    claims: &Claims,
    id: &str,
) -> Result<sqlx::any::AnyRow, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
        .bind(id)
        .fetch_optional(st.store.db().pool())
        .await
        .map_err(ApiError::internal)?;
    match row {
        Some(r) if claims.role == Role::Admin || r.get::<String, _>("owner") == claims.sub => Ok(r),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown webhook")),
    }
}

async fn list(State(st): State<WebhookRoutes>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = claims_of(&st, &headers).await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE owner = $1 ORDER BY created_at, id"
    ))
    .bind(&claims.sub)
    .fetch_all(st.store.db().pool())
    .await
    .map_err(ApiError::internal)?;
    let views: Vec<WebhookView> = rows.iter().map(view_of).collect();
    Ok(Json(serde_json::json!({ "webhooks": views })).into_response())
}

async fn show(
    State(st): State<WebhookRoutes>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = claims_of(&st, &headers).await?;
    let row = owned(&st, &claims, &id).await?;
    Ok(Json(view_of(&row)).into_response())
}

async fn remove(
    State(st): State<WebhookRoutes>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = claims_of(&st, &headers).await?;
    owned(&st, &claims, &id).await?;
    // Deliveries first: the Any driver does not guarantee SQLite's
    // foreign-key cascade is on for every pooled connection.
    for q in [
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
        "DELETE FROM webhooks WHERE id = $1",
    ] {
        sqlx::query(q)
            .bind(&id)
            .execute(st.store.db().pool())
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct DeliveryView {
    event_id: String,
    event_type: String,
    attempt: i64,
    status_code: Option<i64>,
    error: Option<String>,
    at_ms: i64,
    duration_ms: i64,
}

async fn deliveries(
    State(st): State<WebhookRoutes>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = claims_of(&st, &headers).await?;
    owned(&st, &claims, &id).await?;
    let rows = sqlx::query(
        "SELECT event_id, event_type, attempt, status_code, error, at_ms, duration_ms \
         FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY at_ms DESC, attempt DESC LIMIT 500",
    )
    .bind(&id)
    .fetch_all(st.store.db().pool())
    .await
    .map_err(ApiError::internal)?;
    let out: Vec<DeliveryView> = rows
        .iter()
        .map(|r| DeliveryView {
            event_id: r.get("event_id"),
            event_type: r.get("event_type"),
            attempt: r.get("attempt"),
            status_code: r.get("status_code"),
            error: r.get("error"),
            at_ms: r.get("at_ms"),
            duration_ms: r.get("duration_ms"),
        })
        .collect();
    Ok(Json(serde_json::json!({ "deliveries": out })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; message "1.{}" here.
        let s = signature("Jefe", 1, b"{}");
        assert!(s.starts_with("t=1,v1="));
        assert_eq!(s.len(), "t=1,v1=".len() + 64);
        assert_ne!(s, signature("Jefe", 2, b"{}"));
        assert_ne!(s, signature("other", 1, b"{}"));
        assert_eq!(s, signature("Jefe", 1, b"{}"));
    }

    #[test]
    fn a_viewer_change_fires_each_threshold_crossed_upwards_once() {
        let ep = |thresholds: Vec<u32>| Endpoint {
            id: "w".into(),
            url: "http://x/".into(),
            secret: "s".into(),
            thresholds,
        };
        let change = |before: u32, now: u32| {
            WebhookEvent::new(
                "viewers.threshold",
                "s",
                0,
                serde_json::json!({"previous": before, "viewers": now}),
            )
        };
        let fired = |before, now| -> Vec<u64> {
            expand_thresholds(vec![ep(vec![1, 10, 100])], change(before, now))
                .iter()
                .filter_map(|(_, e)| e.data["threshold"].as_u64())
                .collect()
        };
        assert_eq!(fired(0, 1), [1]);
        assert_eq!(fired(1, 150), [10, 100]);
        assert!(fired(10, 99).is_empty());
        let other = WebhookEvent::new("stream.started", "s", 0, serde_json::json!({}));
        assert_eq!(
            expand_thresholds(vec![ep(vec![]), ep(vec![])], other).len(),
            2
        );
    }
}
