//! Analytics: viewer sessions, QoE beacons from players and per-second
//! stream health, written through an [`AnalyticsSink`] (the SQL database by
//! default, ScyllaDB with `--scylla-nodes`: [`scylla`]) and summarised by
//! `GET /api/streams/{id}/stats`.
//!
//! Feeding: WHEP session start comes from the `POST /whep/{stream}` answer
//! (a middleware reads the session resource from `Location`), its end from
//! `DELETE` or, for viewers that just vanish, from a sweep that asks the SFU
//! whether the session still exists. Bytes and loss per session are `None`
//! until the SFU reports per-session statistics. Health: every second, the
//! viewer count of each live stream and whether it is stalled.
//!
//! Records travel through a bounded queue to one writer task that batches
//! them; a full queue drops and counts (`relaycast_analytics_dropped_total`),
//! so nothing on the request or media path waits for the database.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use sfu::Sfu;
use signaling::{Role, Store, Tokens};
use sqlx::Row;
use tokio::sync::mpsc;

use crate::realtime::{auth_error, bearer, check_stream_name, ApiError};

pub mod scylla;
pub use self::scylla::{Replication, ScyllaConfig, ScyllaSink};

/// One viewer's WHEP session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewerSession {
    pub stream: String,
    pub session: String,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    /// Media bytes sent to the viewer, when the SFU reports it.
    pub bytes: Option<u64>,
    /// Packets the viewer reported lost, when the SFU reports it.
    pub packets_lost: Option<u64>,
    /// Simulcast layers shown (rids, comma-separated, in the order first
    /// shown); `None` without simulcast.
    pub layers: Option<String>,
}

/// A player's quality-of-experience report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QoeBeacon {
    pub stream: String,
    /// Time from play to first frame; absent when the viewer left first.
    #[serde(default)]
    pub startup_ms: Option<u32>,
    /// Time spent rebuffering (frozen) during the reported period.
    #[serde(default)]
    pub rebuffer_ms: u32,
    /// Time watched during the reported period.
    #[serde(default)]
    pub watched_ms: u32,
    /// The viewer left before the first frame.
    #[serde(default)]
    pub exited_before_start: bool,
}

/// One second of a live stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HealthSample {
    pub at_ms: u64,
    pub viewers: u32,
    pub stalled: bool,
}

#[derive(Debug, Clone)]
pub enum Record {
    Session(ViewerSession),
    Qoe {
        at_ms: u64,
        beacon: QoeBeacon,
    },
    Health {
        stream: String,
        sample: HealthSample,
    },
}

/// What `GET /api/streams/{id}/stats` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamStats {
    pub sessions: u64,
    pub watch_ms_total: u64,
    pub watch_ms_avg: u64,
    /// Media bytes sent to the sessions (those the SFU reported on).
    pub bytes_total: u64,
    /// Packets those viewers reported lost.
    pub packets_lost_total: u64,
    pub qoe_beacons: u64,
    /// Mean startup time over beacons that have one.
    pub startup_ms_avg: Option<u64>,
    pub exits_before_start: u64,
    /// Rebuffer time / (watched + rebuffer time), over all beacons.
    pub rebuffer_ratio: Option<f64>,
    pub health_seconds: u64,
    pub stalled_seconds: u64,
    pub peak_viewers: u64,
}

pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// Where analytics go. Implementations: [`SqlSink`] (default; SQLite or
/// PostgreSQL through the control-plane pool) and [`ScyllaSink`].
pub trait AnalyticsSink: Send + Sync + 'static {
    fn write<'a>(&'a self, batch: &'a [Record]) -> SinkFuture<'a, ()>;
    /// Summary of the stream's records at or after `since_ms`.
    fn stats<'a>(&'a self, stream: &'a str, since_ms: u64) -> SinkFuture<'a, StreamStats>;
}

/// Analytics in the control-plane database (migration 0101).
pub struct SqlSink {
    store: Store,
}

impl SqlSink {
    pub fn new(store: Store) -> SqlSink {
        SqlSink { store }
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl AnalyticsSink for SqlSink {
    fn write<'a>(&'a self, batch: &'a [Record]) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.store.db().pool().begin().await?;
            for r in batch {
                match r {
                    Record::Session(s) => {
                        sqlx::query(
                            "INSERT INTO analytics_viewer_sessions (id, stream, session, started_at_ms, \
                             ended_at_ms, duration_ms, bytes, packets_lost, layers) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(signaling::db::new_id())
                        .bind(&s.stream)
                        .bind(&s.session)
                        .bind(i(s.started_at_ms))
                        .bind(i(s.ended_at_ms))
                        .bind(i(s.ended_at_ms.saturating_sub(s.started_at_ms)))
                        .bind(s.bytes.map(i))
                        .bind(s.packets_lost.map(i))
                        .bind(s.layers.as_deref())
                        .execute(&mut *tx)
                        .await?;
                    }
                    Record::Qoe { at_ms, beacon: b } => {
                        sqlx::query(
                            "INSERT INTO analytics_qoe (id, stream, at_ms, startup_ms, rebuffer_ms, \
                             watched_ms, exited_before_start) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(signaling::db::new_id())
                        .bind(&b.stream)
                        .bind(i(*at_ms))
                        .bind(b.startup_ms.map(i64::from))
                        .bind(i64::from(b.rebuffer_ms))
                        .bind(i64::from(b.watched_ms))
                        .bind(i64::from(b.exited_before_start))
                        .execute(&mut *tx)
                        .await?;
                    }
                    Record::Health { stream, sample } => {
                        sqlx::query(
                            "INSERT INTO analytics_health (stream, at_ms, viewers, stalled) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (stream, at_ms) DO NOTHING",
                        )
                        .bind(stream)
                        .bind(i(sample.at_ms))
                        .bind(i64::from(sample.viewers))
                        .bind(i64::from(sample.stalled))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn stats<'a>(&'a self, stream: &'a str, since_ms: u64) -> SinkFuture<'a, StreamStats> {
        Box::pin(async move {
            let pool = self.store.db().pool();
            let since = i(since_ms);
            // SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both
            // backends answer an integer.
            let s = sqlx::query(
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT) AS total, \
                 CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS bytes, CAST(COALESCE(SUM(packets_lost), 0) AS BIGINT) AS lost \
                 FROM analytics_viewer_sessions WHERE stream = $1 AND started_at_ms >= $2",
            )
            .bind(stream)
            .bind(since)
            .fetch_one(pool)
            .await?;
            let q = sqlx::query(
                "SELECT COUNT(*) AS n, COUNT(startup_ms) AS with_startup, \
                 CAST(COALESCE(SUM(startup_ms), 0) AS BIGINT) AS startup, CAST(COALESCE(SUM(rebuffer_ms), 0) AS BIGINT) AS rebuffer, \
                 CAST(COALESCE(SUM(watched_ms), 0) AS BIGINT) AS watched, CAST(COALESCE(SUM(exited_before_start), 0) AS BIGINT) AS exits \
                 FROM analytics_qoe WHERE stream = $1 AND at_ms >= $2",
            )
            .bind(stream)
            .bind(since)
            .fetch_one(pool)
            .await?;
            let h = sqlx::query(
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(stalled), 0) AS BIGINT) AS stalled, CAST(COALESCE(MAX(viewers), 0) AS BIGINT) AS peak \
                 FROM analytics_health WHERE stream = $1 AND at_ms >= $2",
            )
            .bind(stream)
            .bind(since)
            .fetch_one(pool)
            .await?;
            let u = |v: i64| u64::try_from(v).unwrap_or(0);
            let sessions = u(s.try_get("n")?);
            let total = u(s.try_get("total")?);
            let with_startup = u(q.try_get("with_startup")?);
            let rebuffer = u(q.try_get("rebuffer")?);
            let watched = u(q.try_get("watched")?);
            Ok(StreamStats {
                sessions,
                watch_ms_total: total,
                watch_ms_avg: total.checked_div(sessions).unwrap_or(0),
                bytes_total: u(s.try_get("bytes")?),
                packets_lost_total: u(s.try_get("lost")?),
                qoe_beacons: u(q.try_get("n")?),
                startup_ms_avg: u(q.try_get("startup")?).checked_div(with_startup),
                exits_before_start: u(q.try_get("exits")?),
                rebuffer_ratio: (rebuffer + watched > 0)
                    .then(|| rebuffer as f64 / (rebuffer + watched) as f64),
                health_seconds: u(h.try_get("n")?),
                stalled_seconds: u(h.try_get("stalled")?),
                peak_viewers: u(h.try_get("peak")?),
            })
        })
    }
}

/// Records waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Largest batch one write carries.
const BATCH: usize = 256;

/// Handle for producers; cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    tx: mpsc::Sender<Record>,
    dropped: IntCounter,
    sink: Arc<dyn AnalyticsSink>,
    /// Open WHEP sessions: session id → (stream, started_at_ms, the SFU's
    /// counters of the session).
    open: Arc<Mutex<HashMap<String, OpenSession>>>,
    /// QoE beacons per client address in the current minute.
    qoe_budget: Arc<Mutex<(u64, HashMap<IpAddr, u32>)>>,
    /// Streams seen stalled and not yet resumed.
    stalled: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Last sampled viewer count per live stream, and who hears of changes.
    viewers: Arc<Mutex<HashMap<String, u32>>>,
    on_viewers: Option<ViewerChange>,
    sfu: Sfu,
}

type OpenSession = (String, u64, Option<Arc<sfu::StatsCell>>);

/// Called with (stream, previous count, new count) when a live stream's
/// sampled viewer count changes (webhook viewer thresholds).
pub type ViewerChange = Arc<dyn Fn(&str, u32, u32) + Send + Sync>;

/// QoE beacons one address may send per minute.
pub const QOE_PER_MINUTE: u32 = 30;

impl Analytics {
    /// Starts the writer, the session sweep and the health sampler.
    pub fn start(
        sink: Arc<dyn AnalyticsSink>,
        viewers: crate::viewers::Viewers,
        registry: &prometheus::Registry,
        on_viewers: Option<ViewerChange>,
    ) -> anyhow::Result<Analytics> {
        let dropped = IntCounter::new(
            "relaycast_analytics_dropped_total",
            "Analytics records dropped because the writer queue was full",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let a = Analytics {
            tx,
            dropped,
            sink: Arc::clone(&sink),
            open: Arc::default(),
            qoe_budget: Arc::default(),
            stalled: Arc::default(),
            viewers: Arc::default(),
            on_viewers,
            sfu: viewers.sfu.clone(),
        };
        tokio::spawn(writer(sink, rx));
        let me = a.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut events = viewers.sfu.events();
            loop {
                tokio::select! {
                    ev = events.recv() => {
                        use tokio::sync::broadcast::error::RecvError;
                        match ev {
                            Ok(ev) => match ev.kind {
                                sfu::StreamEventKind::Stalled => { me.stalled.lock().insert(ev.stream); }
                                _ => { me.stalled.lock().remove(&ev.stream); }
                            },
                            Err(RecvError::Lagged(_)) => {}
                            Err(RecvError::Closed) => return,
                        }
                    }
                    _ = tick.tick() => me.second(&viewers),
                }
            }
        });
        Ok(a)
    }

    pub fn sink(&self) -> &Arc<dyn AnalyticsSink> {
        &self.sink
    }

    fn push(&self, r: Record) {
        if self.tx.try_send(r).is_err() {
            self.dropped.inc();
        }
    }

    /// Health samples of live streams and the end of vanished sessions.
    fn second(&self, viewers: &crate::viewers::Viewers) {
        let sfu = &viewers.sfu;
        let now = signaling::unix_ms();
        let at_ms = now - now % 1000;
        let live = sfu.live_streams();
        self.viewers.lock().retain(|s, _| live.contains(s));
        for stream in live {
            let stalled = self.stalled.lock().contains(&stream);
            let viewers = u32::try_from(viewers.total(&stream)).unwrap_or(u32::MAX);
            let before = self
                .viewers
                .lock()
                .insert(stream.clone(), viewers)
                .unwrap_or(0);
            if before != viewers {
                if let Some(f) = &self.on_viewers {
                    f(&stream, before, viewers);
                }
            }
            self.push(Record::Health {
                stream,
                sample: HealthSample {
                    at_ms,
                    viewers,
                    stalled,
                },
            });
        }
        let gone: Vec<String> = self
            .open
            .lock()
            .keys()
            .filter(|id| sfu::SessionId::parse(id).is_none_or(|sid| sfu.session(sid).is_none()))
            .cloned()
            .collect();
        for id in gone {
            self.session_ended(&id, now);
        }
    }

    /// A WHEP session began; `stats` are the SFU's counters for it.
    pub fn session_started(
        &self,
        stream: &str,
        session: &str,
        at_ms: u64,
        stats: Option<Arc<sfu::StatsCell>>,
    ) {
        self.open
            .lock()
            .insert(session.to_string(), (stream.to_string(), at_ms, stats));
    }

    pub fn session_ended(&self, session: &str, at_ms: u64) {
        let Some((stream, started, stats)) = self.open.lock().remove(session) else {
            return;
        };
        let stats = stats.map(|s| s.snapshot());
        self.push(Record::Session(ViewerSession {
            stream,
            session: session.to_string(),
            started_at_ms: started,
            ended_at_ms: at_ms,
            bytes: stats.as_ref().map(|s| s.bytes),
            packets_lost: stats.as_ref().map(|s| s.packets_lost),
            layers: stats
                .filter(|s| !s.layers.is_empty())
                .map(|s| s.layers.join(",")),
        }));
    }

    fn admit_qoe(&self, ip: IpAddr, now_ms: u64) -> bool {
        let minute = now_ms / 60_000;
        let mut b = self.qoe_budget.lock();
        if b.0 != minute {
            *b = (minute, HashMap::new());
        }
        let n = b.1.entry(ip).or_insert(0);
        *n += 1;
        *n <= QOE_PER_MINUTE
    }
}

async fn writer(sink: Arc<dyn AnalyticsSink>, mut rx: mpsc::Receiver<Record>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = sink.write(&batch).await {
            tracing::warn!("writing {} analytics records: {e}", batch.len());
        }
        batch.clear();
    }
}

/// Middleware on the WHEP routes: a 201 to `POST /whep/{stream}` opens a
/// session (id from `Location`), a 2xx to `DELETE /whep/{stream}/{id}`
/// closes it.
pub async fn track_whep(State(a): State<Analytics>, req: Request<Body>, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let mut parts = path.trim_start_matches('/').split('/');
    if parts.next() != Some("whep") {
        return resp;
    }
    let stream = parts.next().unwrap_or_default().to_string();
    let now = signaling::unix_ms();
    if method == Method::POST && resp.status() == StatusCode::CREATED {
        let session = resp
            .headers()
            .get(axum::http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .map(str::to_string);
        if let Some(session) = session {
            let stats = sfu::SessionId::parse(&session).and_then(|sid| a.sfu.session_stats(sid));
            a.session_started(&stream, &session, now, stats);
        }
    } else if method == Method::DELETE && resp.status().is_success() {
        if let Some(session) = parts.next() {
            a.session_ended(session, now);
        }
    }
    resp
}

#[derive(Clone)]
pub struct AnalyticsRoutes {
    pub analytics: Analytics,
    pub store: Store,
    pub tokens: Tokens,
}

/// The routes of [`router`] (documented in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[("post", "/api/qoe"), ("get", "/api/streams/{id}/stats")];

pub fn router(state: AnalyticsRoutes) -> Router {
    Router::new()
        .route("/api/qoe", post(qoe))
        .route("/api/streams/{id}/stats", get(stats))
        .with_state(state)
}

/// Largest QoE beacon body.
const MAX_QOE_BYTES: usize = 2048;

async fn qoe(
    State(st): State<AnalyticsRoutes>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let now = signaling::unix_ms();
    if !st.analytics.admit_qoe(peer.ip(), now) {
        return Err(ApiError::RateLimited(format!(
            "at most {QOE_PER_MINUTE} beacons per minute"
        )));
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/plain"));
    if !json {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json (or text/plain from sendBeacon)".into(),
        });
    }
    let body = whip_whep::read_limited(body, &headers, MAX_QOE_BYTES).await?;
    let beacon: QoeBeacon = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid beacon: {e}")))?;
    validate(&beacon).map_err(|m| ApiError::BadRequest(m.into()))?;
    st.analytics.push(Record::Qoe { at_ms: now, beacon });
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Plausibility rules of a beacon.
pub fn validate(b: &QoeBeacon) -> Result<(), &'static str> {
    if !signaling::valid_stream_name(&b.stream) {
        return Err("invalid stream name");
    }
    if b.startup_ms.is_some_and(|s| s > 120_000) {
        return Err("startup_ms over 120000");
    }
    if b.exited_before_start && b.startup_ms.is_some() {
        return Err("exited_before_start with a startup_ms");
    }
    if b.rebuffer_ms > 3_600_000 || b.watched_ms > 3_600_000 {
        return Err("rebuffer_ms and watched_ms cover at most an hour per beacon");
    }
    Ok(())
}

async fn stats(
    State(st): State<AnalyticsRoutes>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_stream_name(&id)?;
    let Some(token) = bearer(&headers, None) else {
        return Err(ApiError::CredentialRequired("a bearer token is required"));
    };
    let claims = st
        .store
        .verify_token(&st.tokens, &token)
        .await
        .map_err(auth_error)?;
    let owner = st
        .store
        .stream(&id)
        .await
        .map_err(|e| ApiError::Internal(format!("analytics: {e}")))?
        .and_then(|s| s.owner_id)
        .is_some_and(|o| o == claims.sub);
    let allowed = owner
        || claims.allows(&id, Role::Publish)
        || (claims.role == Role::Integrator && claims.stream.as_deref().is_none_or(|s| s == id));
    if !allowed {
        return Err(ApiError::Forbidden(
            "only the stream's owner, an integrator or an admin may read its stats".into(),
        ));
    }
    let since = signaling::unix_ms().saturating_sub(24 * 3600 * 1000);
    let s = st
        .analytics
        .sink()
        .stats(&id, since)
        .await
        .map_err(|e| ApiError::Internal(format!("analytics: {e}")))?;
    Ok(Json(serde_json::json!({ "stream": id, "since_ms": since, "stats": s })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon() -> QoeBeacon {
        QoeBeacon {
            stream: "s".into(),
            startup_ms: Some(300),
            rebuffer_ms: 0,
            watched_ms: 1000,
            exited_before_start: false,
        }
    }

    #[test]
    fn implausible_beacons_are_refused() {
        assert!(validate(&beacon()).is_ok());
        let mut b = beacon();
        b.exited_before_start = true;
        assert!(validate(&b).is_err());
        let mut b = beacon();
        b.startup_ms = Some(500_000);
        assert!(validate(&b).is_err());
        let mut b = beacon();
        b.stream = "a/b".into();
        assert!(validate(&b).is_err());
    }
}
