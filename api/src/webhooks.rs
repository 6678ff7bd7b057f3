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
//!
//! Destinations: deliveries go to public addresses only (private ones with
//! `--webhook-allow-private`), checked at registration and again at each
//! delivery ([`destination`]); redirects are not followed and no proxy is
//! used. The delivery log shows the owner each attempt's outcome, the
//! receiver's HTTP status when it answered, and otherwise a coarse
//! [`Failure`], never the transport's error text or timing: the log must
//! not be a way to probe what the server can reach.
//!
//! Routes take account credentials only ([`crate::rest::Principal`]):
//! broadcasters manage the webhooks of streams they own
//! (`streams.owner_id`), admins all of them; stream tokens (play, publish)
//! are refused with 403.

pub mod destination;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use signaling::{Role, Store};
use sqlx::Row;
use tokio::sync::{mpsc, Semaphore};

use crate::rest::{ApiError, Principal, RestState};
use destination::{GuardedResolver, Policy, Refused};

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
    /// Starts the dispatcher, delivering to the destinations `policy`
    /// permits.
    pub fn start(
        store: Store,
        registry: &prometheus::Registry,
        policy: Policy,
    ) -> anyhow::Result<Webhooks> {
        let dropped = IntCounter::new(
            "relaycast_webhook_events_dropped_total",
            "Webhook events dropped because the delivery queue was full",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        let client = delivery_client(policy)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(store, client, policy, rx));
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

/// The HTTP client of deliveries (reqwest, rustls): names resolve through
/// [`GuardedResolver`]; redirects are not followed (a public receiver
/// could otherwise send the request on to a private address) and no proxy
/// from the environment is used (the proxy would resolve the name, not
/// the guarded resolver).
fn delivery_client(policy: Policy) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .user_agent(concat!("relaycast-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

struct Endpoint {
    id: String,
    url: String,
    secret: String,
    thresholds: Vec<u32>,
}

async fn dispatch(
    store: Store,
    client: reqwest::Client,
    policy: Policy,
    mut rx: mpsc::Receiver<WebhookEvent>,
) {
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
                deliver(&store, &client, policy, &ep, &event, &body).await;
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

/// Why an attempt got no HTTP answer, as the delivery log shows it: coarse
/// on purpose (the transport's error text and timing would tell a prober
/// what is listening where). Stored as [`Failure::as_str`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The destination is not one deliveries may reach (see
    /// [`destination`]); not retried.
    DestinationRefused,
    /// No answer within the attempt's time limit.
    TimedOut,
    /// The connection failed (including the name not resolving).
    CouldNotConnect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// Anything else on the way (sending the request, reading the answer).
    RequestFailed,
}

impl Failure {
    /// What the delivery log may show in `error` (the OpenAPI enum).
    pub const MESSAGES: [Option<&'static str>; 6] = [
        Some(Failure::DestinationRefused.as_str()),
        Some(Failure::TimedOut.as_str()),
        Some(Failure::CouldNotConnect.as_str()),
        Some(Failure::Tls.as_str()),
        Some(Failure::RequestFailed.as_str()),
        None,
    ];

    const ALL: [Failure; 5] = [
        Failure::DestinationRefused,
        Failure::TimedOut,
        Failure::CouldNotConnect,
        Failure::Tls,
        Failure::RequestFailed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Failure::DestinationRefused => "destination refused: not a public address",
            Failure::TimedOut => "timed out",
            Failure::CouldNotConnect => "could not connect",
            Failure::Tls => "TLS error",
            Failure::RequestFailed => "request failed",
        }
    }

    /// A stored failure; rows from before the categories held the raw
    /// error text, shown now as [`Failure::RequestFailed`].
    fn from_stored(s: &str) -> Failure {
        Failure::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .unwrap_or(Failure::RequestFailed)
    }

    fn of(e: &reqwest::Error) -> Failure {
        let causes = causes(e);
        // The guarded resolver's refusal comes back as the connect error's cause.
        if causes.iter().any(|c| c.downcast_ref::<Refused>().is_some()) {
            return Failure::DestinationRefused;
        }
        if e.is_timeout() {
            return Failure::TimedOut;
        }
        if e.is_connect() {
            // A plain TCP connect reads nothing, so data that is not what
            // was expected, or its end, during the connect is the TLS
            // handshake's (tokio-rustls reports rustls' errors as
            // InvalidData).
            let tls = causes.iter().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    )
                })
            });
            return if tls {
                Failure::Tls
            } else {
                Failure::CouldNotConnect
            };
        }
        Failure::RequestFailed
    }
}

/// `e` and what caused it, outermost first. An `io::Error`'s `source()`
/// skips the error it wraps (it returns that error's source), so wrapped
/// errors are reached through `get_ref` instead.
fn causes(e: &reqwest::Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded: a cause chain is a handful deep.
    while let Some(c) = next.filter(|_| out.len() < 32) {
        out.push(c);
        next = match c.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    out
}

/// One attempt's result: the receiver's HTTP status, or why there was none.
enum Attempt {
    Answered(reqwest::StatusCode),
    Failed(Failure),
}

async fn attempt(
    client: &reqwest::Client,
    policy: Policy,
    ep: &Endpoint,
    event: &WebhookEvent,
    body: &[u8],
) -> Attempt {
    let Ok(url) = reqwest::Url::parse(&ep.url) else {
        return Attempt::Failed(Failure::RequestFailed);
    };
    // reqwest resolves names through the guarded resolver but connects to
    // IP literals directly: check those here.
    if policy.permits_literal(&url).is_err() {
        return Attempt::Failed(Failure::DestinationRefused);
    }
    let t = crate::unix_now();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("relaycast-signature", signature(&ep.secret, t, body))
        .header("relaycast-event", event.kind)
        .header("relaycast-delivery", &event.id)
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(r) => Attempt::Answered(r.status()),
        Err(e) => {
            let failure = Failure::of(&e);
            tracing::debug!(webhook = ep.id, "delivery attempt failed: {failure:?}: {e}");
            Attempt::Failed(failure)
        }
    }
}

async fn deliver(
    store: &Store,
    client: &reqwest::Client,
    policy: Policy,
    ep: &Endpoint,
    event: &WebhookEvent,
    body: &[u8],
) {
    let mut backoff = FIRST_BACKOFF;
    for n in 1..=MAX_ATTEMPTS {
        let started = Instant::now();
        let result = attempt(client, policy, ep, event, body).await;
        let took = started.elapsed();
        let (status, failure) = match &result {
            Attempt::Answered(s) => (Some(i64::from(s.as_u16())), None),
            Attempt::Failed(f) => (None, Some(f.as_str())),
        };
        tracing::debug!(
            webhook = ep.id,
            attempt = n,
            ?status,
            failure,
            took_ms = took.as_millis() as u64,
            "webhook delivery attempt"
        );
        // duration_ms stays in the table for operators; the API no longer
        // serves it.
        let logged = sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, attempt, \
             status_code, error, at_ms, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(signaling::db::new_id())
        .bind(&ep.id)
        .bind(&event.id)
        .bind(event.kind)
        .bind(i64::from(n))
        .bind(status)
        .bind(failure)
        .bind(signaling::unix_ms() as i64)
        .bind(took.as_millis() as i64)
        .execute(store.db().pool())
        .await;
        if let Err(e) = logged {
            tracing::error!(webhook = ep.id, "logging a delivery: {e}");
        }
        match result {
            Attempt::Answered(s) if s.is_success() => return,
            Attempt::Failed(Failure::DestinationRefused) => {
                tracing::warn!(
                    webhook = ep.id,
                    event = event.kind,
                    "webhook destination refused: not a public address"
                );
                return;
            }
            _ => {}
        }
        if n < MAX_ATTEMPTS {
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

/// State of [`router`]: the REST state (its [`Principal`] authenticates)
/// and the destination policy registration checks.
#[derive(Clone)]
pub struct WebhookRoutes {
    pub rest: RestState,
    pub policy: Policy,
}

impl FromRef<WebhookRoutes> for RestState {
    fn from_ref(st: &WebhookRoutes) -> RestState {
        st.rest.clone()
    }
}

impl WebhookRoutes {
    fn store(&self) -> &Store {
        &self.rest.store
    }
}

/// Settings of webhook deliveries.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookConfig {
    /// Let webhooks reach loopback, private, CGNAT and unique-local
    /// addresses (on-premises receivers; `--webhook-allow-private`).
    pub allow_private: bool,
}

impl WebhookConfig {
    pub fn policy(self) -> Policy {
        Policy {
            allow_private: self.allow_private,
        }
    }
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
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
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

/// Webhooks are managed by accounts that own streams, and admins.
/// Integrators do not: like stream keys and settings, a stream's webhooks
/// are its owner's to change.
fn require_manager(who: &Principal) -> Result<(), ApiError> {
    who.require(&[Role::Broadcaster, Role::Admin])
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

async fn create(
    State(st): State<WebhookRoutes>,
    who: Principal,
    body: Result<crate::rest::JsonBody<serde_json::Value>, ApiError>,
) -> Result<Response, ApiError> {
    require_manager(&who)?;
    // Read as any JSON first (415/413/400 as every JSON body), then this
    // shape: a wrong one is a bad request here, with serde's words.
    let req: NewWebhook = serde_json::from_value(body?.0).map_err(|e| bad(e.to_string()))?;
    if !signaling::valid_stream_name(&req.stream) {
        return Err(bad("invalid stream name"));
    }
    let owner = st
        .store()
        .stream(&req.stream)
        .await?
        .and_then(|s| s.owner_id);
    if !who.is_admin() && owner.as_deref() != Some(who.subject.as_str()) {
        return Err(ApiError::forbidden(
            "only the stream's owner or an admin may add webhooks to it",
        ));
    }
    if req.url.len() > 2048 {
        return Err(bad("url must be an http(s) URL of at most 2048 characters"));
    }
    let url = reqwest::Url::parse(&req.url).map_err(|_| bad("url is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("url must be an http(s) URL of at most 2048 characters"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::Unprocessable(
            "url must not carry a user name or password".into(),
        ));
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
    // Last of the checks of the request: it may wait for DNS.
    if let Err(refused) = destination::check_url(&url, st.policy).await {
        return Err(ApiError::Unprocessable(format!(
            "url is refused: {refused}; webhooks are delivered to public addresses only"
        )));
    }
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE owner = $1")
        .bind(&who.subject)
        .fetch_one(st.store().db().pool())
        .await
        .map_err(internal)?
        .get("n");
    if count >= MAX_PER_OWNER {
        let msg = format!("at most {MAX_PER_OWNER} webhooks per owner");
        return Ok(whip_whep::json_error(StatusCode::CONFLICT, msg, None));
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
    .bind(&who.subject)
    .bind(&view.stream)
    .bind(&view.url)
    .bind(view.secret.as_deref().unwrap_or_default())
    .bind(view.events.join(","))
    .bind(join_counts(&view.viewer_thresholds))
    .bind(view.created_at)
    .execute(st.store().db().pool())
    .await
    .map_err(internal)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn internal(e: sqlx::Error) -> ApiError {
    ApiError::Internal(e.to_string())
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

const COLUMNS: &str = "w.id, w.stream, w.url, w.events, w.viewer_thresholds, w.created_at";

/// The webhook if `who` may manage it: an admin, or the broadcaster who
/// owns its stream now (`streams.owner_id`; not whoever registered it).
/// 404 otherwise, so ids of others' webhooks are not confirmed.
async fn owned(
    st: &WebhookRoutes,
    who: &Principal,
    id: &str,
) -> Result<sqlx::any::AnyRow, ApiError> {
    require_manager(who)?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, s.owner_id FROM webhooks w LEFT JOIN streams s ON s.name = w.stream \
         WHERE w.id = $1"
    ))
    .bind(id)
    .fetch_optional(st.store().db().pool())
    .await
    .map_err(internal)?;
    match row {
        Some(r)
            if who.is_admin()
                || r.get::<Option<String>, _>("owner_id").as_deref()
                    == Some(who.subject.as_str()) =>
        {
            Ok(r)
        }
        _ => Err(ApiError::NotFound("webhook")),
    }
}

/// `GET /api/webhooks`: the webhooks of the caller's streams (admins: all).
async fn list(State(st): State<WebhookRoutes>, who: Principal) -> Result<Response, ApiError> {
    require_manager(&who)?;
    let rows = if who.is_admin() {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks w ORDER BY w.created_at, w.id"
        ))
        .fetch_all(st.store().db().pool())
        .await
    } else {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM webhooks w JOIN streams s ON s.name = w.stream \
             WHERE s.owner_id = $1 ORDER BY w.created_at, w.id"
        ))
        .bind(&who.subject)
        .fetch_all(st.store().db().pool())
        .await
    }
    .map_err(internal)?;
    let views: Vec<WebhookView> = rows.iter().map(view_of).collect();
    Ok(Json(serde_json::json!({ "webhooks": views })).into_response())
}

async fn show(
    State(st): State<WebhookRoutes>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = owned(&st, &who, &id).await?;
    Ok(Json(view_of(&row)).into_response())
}

async fn remove(
    State(st): State<WebhookRoutes>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    owned(&st, &who, &id).await?;
    // Deliveries first: the Any driver does not guarantee SQLite's
    // foreign-key cascade is on for every pooled connection.
    for q in [
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
        "DELETE FROM webhooks WHERE id = $1",
    ] {
        sqlx::query(q)
            .bind(&id)
            .execute(st.store().db().pool())
            .await
            .map_err(internal)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One attempt as the owner sees it.
#[derive(Serialize)]
struct DeliveryView {
    event_id: String,
    event_type: String,
    attempt: i64,
    at_ms: i64,
    /// `delivered` (a 2xx answer) or `failed`.
    outcome: &'static str,
    /// The receiver's HTTP status, when it answered.
    status_code: Option<i64>,
    /// Why there was no answer ([`Failure`]), when there was none.
    error: Option<&'static str>,
}

async fn deliveries(
    State(st): State<WebhookRoutes>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    owned(&st, &who, &id).await?;
    let rows = sqlx::query(
        "SELECT event_id, event_type, attempt, status_code, error, at_ms \
         FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY at_ms DESC, attempt DESC LIMIT 500",
    )
    .bind(&id)
    .fetch_all(st.store().db().pool())
    .await
    .map_err(internal)?;
    let out: Vec<DeliveryView> = rows
        .iter()
        .map(|r| {
            let status: Option<i64> = r.get("status_code");
            let stored: Option<String> = r.get("error");
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            DeliveryView {
                event_id: r.get("event_id"),
                event_type: r.get("event_type"),
                attempt: r.get("attempt"),
                at_ms: r.get("at_ms"),
                outcome: if delivered { "delivered" } else { "failed" },
                status_code: status,
                error: match status {
                    Some(_) => None,
                    None => {
                        Some(Failure::from_stored(stored.as_deref().unwrap_or_default()).as_str())
                    }
                },
            }
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
