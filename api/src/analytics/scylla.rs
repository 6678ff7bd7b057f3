//! The ScyllaDB analytics sink (`--scylla-nodes`).
//!
//! On start it connects, creates the keyspace (replication from
//! `--scylla-replication`) and three tables if missing, and prepares its
//! statements; an unreachable cluster or a refused statement fails start.
//! Every table is partitioned by (stream, time bucket) and clustered by
//! time, newest first:
//!
//! - `viewer_sessions`: ((stream, day), started_at_ms, session)
//! - `qoe_beacons`: ((stream, day), at_ms, id)
//! - `health_samples`: ((stream, hour), at_ms)
//!
//! `day` and `hour` are whole days and hours since the Unix epoch (UTC) of
//! the row's time. Rows expire: every insert carries `USING TTL` with the
//! configured retention (`--scylla-retention` for sessions and beacons,
//! `--scylla-health-retention` for health), so a changed retention applies to
//! new rows of an existing table; the tables' `default_time_to_live` is the
//! retention they were created with, for rows written by anything else.
//!
//! [`AnalyticsSink::stats`] reads one aggregate per bucket between `since`
//! and now, at most as many buckets as the retention can hold (and never more
//! than [`MAX_BUCKETS`]); each query names its whole partition key, so
//! nothing scans a table or filters.
//!
//! Writes come from the analytics writer task (bounded queue, drops counted
//! in `relaycast_analytics_dropped_total`); records of a batch are written
//! 32 at a time, and each one that fails is counted in
//! `relaycast_analytics_scylla_write_errors_total` and reported to the
//! writer, which logs it. Requests time out after [`REQUEST_TIMEOUT`].

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::deserialize::row::DeserializeRow;
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::value::MaybeUnset;
use anyhow::{bail, Context};
use futures_util::future::join_all;
use futures_util::{StreamExt, TryStreamExt};
use prometheus::IntCounter;

use super::{
    AnalyticsSink, HealthSample, QoeBeacon, Record, SinkFuture, StreamStats, ViewerSession,
};

pub const DEFAULT_KEYSPACE: &str = "relaycast";
/// How long viewer sessions and QoE beacons are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// How long per-second health samples are kept by default.
pub const DEFAULT_HEALTH_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Longest TTL CQL accepts (20 years).
pub const MAX_TTL_SECS: u64 = 630_720_000;
/// Limit on one CQL request (connection, write or stats query).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit on connecting and creating the schema at start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Most buckets one stats read of a table visits.
pub const MAX_BUCKETS: i32 = 400;
/// Writes of one batch in flight at once.
const WRITE_CONCURRENCY: usize = 32;
/// Bucket queries of one stats read in flight at once.
const READ_CONCURRENCY: usize = 16;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;

/// Keyspace replication (`--scylla-replication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this replication factor (one data centre).
    Simple(u32),
    /// `NetworkTopologyStrategy`: replication factor per data centre.
    NetworkTopology(Vec<(String, u32)>),
}

impl Default for Replication {
    fn default() -> Replication {
        Replication::Simple(1)
    }
}

/// Parses `N` (SimpleStrategy, rf N) or `DC:N,DC:N`
/// (NetworkTopologyStrategy).
impl FromStr for Replication {
    type Err = String;

    fn from_str(s: &str) -> Result<Replication, String> {
        let rf = |n: &str| -> Result<u32, String> {
            match n.trim().parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => Ok(n),
                _ => Err(format!("replication factor {n:?} is not 1..100")),
            }
        };
        let s = s.trim();
        if !s.contains(':') {
            return rf(s).map(Replication::Simple);
        }
        let dcs = s
            .split(',')
            .map(|item| {
                let (dc, n) = item
                    .split_once(':')
                    .ok_or_else(|| format!("{item:?} is not DC:FACTOR"))?;
                let dc = dc.trim();
                let ok = !dc.is_empty()
                    && dc
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                if !ok {
                    return Err(format!("data centre name {dc:?} is not [A-Za-z0-9_.-]+"));
                }
                Ok((dc.to_string(), rf(n)?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Replication::NetworkTopology(dcs))
    }
}

/// The CQL replication map.
impl fmt::Display for Replication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replication::Simple(n) => write!(
                f,
                "{{'class': 'SimpleStrategy', 'replication_factor': {n}}}"
            ),
            Replication::NetworkTopology(dcs) => {
                write!(f, "{{'class': 'NetworkTopologyStrategy'")?;
                for (dc, n) in dcs {
                    write!(f, ", '{dc}': {n}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// Checks a keyspace name (an unquoted CQL identifier, as Scylla allows for
/// keyspaces: a letter, then letters, digits and `_`, 48 at most).
pub fn parse_keyspace(s: &str) -> Result<String, String> {
    let ok = s.len() <= 48
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "keyspace {s:?} is not a letter followed by letters, digits or _ (48 at most)"
        ))
    }
}

/// Where and how the ScyllaDB sink keeps analytics.
#[derive(Debug, Clone, PartialEq)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (port 9042 when left out).
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Replication of the keyspace when it is created (an existing
    /// keyspace is left as it is).
    pub replication: Replication,
    /// How long viewer sessions and QoE beacons are kept.
    pub retention: Duration,
    /// How long per-second health samples are kept.
    pub health_retention: Duration,
}

impl ScyllaConfig {
    /// `nodes` with the default keyspace, replication and retention.
    pub fn new(nodes: Vec<String>) -> ScyllaConfig {
        ScyllaConfig {
            nodes,
            keyspace: DEFAULT_KEYSPACE.to_string(),
            replication: Replication::default(),
            retention: DEFAULT_RETENTION,
            health_retention: DEFAULT_HEALTH_RETENTION,
        }
    }
}

fn ttl_secs(what: &str, d: Duration) -> anyhow::Result<i32> {
    let secs = d.as_secs();
    if !(1..=MAX_TTL_SECS).contains(&secs) {
        bail!("{what} of {secs} s is outside 1 s..20 years (CQL's TTL range)");
    }
    Ok(i32::try_from(secs)?)
}

/// Every CQL statement the sink runs, for one keyspace and retention.
#[derive(Debug, Clone)]
struct Cql {
    create_keyspace: String,
    create_tables: [String; 3],
    insert_session: String,
    insert_qoe: String,
    insert_health: String,
    select_sessions: String,
    select_qoe: String,
    select_health: String,
}

impl Cql {
    fn new(ks: &str, replication: &Replication, retention: i32, health_retention: i32) -> Cql {
        Cql {
            create_keyspace: format!(
                "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"
            ),
            create_tables: [
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.viewer_sessions (\
                     stream text, day int, started_at_ms bigint, session text, \
                     ended_at_ms bigint, duration_ms bigint, bytes bigint, packets_lost bigint, \
                     layers text, PRIMARY KEY ((stream, day), started_at_ms, session)) \
                     WITH CLUSTERING ORDER BY (started_at_ms DESC, session ASC) \
                     AND default_time_to_live = {retention}"
                ),
                // Counters are bigint (and exited_before_start 0 or 1) so
                // the stats are sums the server computes without overflow.
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.qoe_beacons (\
                     stream text, day int, at_ms bigint, id text, startup_ms bigint, \
                     rebuffer_ms bigint, watched_ms bigint, exited_before_start bigint, \
                     PRIMARY KEY ((stream, day), at_ms, id)) \
                     WITH CLUSTERING ORDER BY (at_ms DESC, id ASC) \
                     AND default_time_to_live = {retention}"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {ks}.health_samples (\
                     stream text, hour int, at_ms bigint, viewers int, stalled bigint, \
                     PRIMARY KEY ((stream, hour), at_ms)) \
                     WITH CLUSTERING ORDER BY (at_ms DESC) \
                     AND default_time_to_live = {health_retention}"
                ),
            ],
            insert_session: format!(
                "INSERT INTO {ks}.viewer_sessions (stream, day, started_at_ms, session, \
                 ended_at_ms, duration_ms, bytes, packets_lost, layers) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ),
            insert_qoe: format!(
                "INSERT INTO {ks}.qoe_beacons (stream, day, at_ms, id, startup_ms, rebuffer_ms, \
                 watched_ms, exited_before_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
            ),
            insert_health: format!(
                "INSERT INTO {ks}.health_samples (stream, hour, at_ms, viewers, stalled) \
                 VALUES (?, ?, ?, ?, ?) USING TTL ?"
            ),
            select_sessions: format!(
                "SELECT COUNT(*), SUM(duration_ms), SUM(bytes), SUM(packets_lost) \
                 FROM {ks}.viewer_sessions \
                 WHERE stream = ? AND day = ? AND started_at_ms >= ?"
            ),
            select_qoe: format!(
                "SELECT COUNT(*), COUNT(startup_ms), SUM(startup_ms), SUM(rebuffer_ms), \
                 SUM(watched_ms), SUM(exited_before_start) FROM {ks}.qoe_beacons \
                 WHERE stream = ? AND day = ? AND at_ms >= ?"
            ),
            select_health: format!(
                "SELECT COUNT(*), SUM(stalled), MAX(viewers) FROM {ks}.health_samples \
                 WHERE stream = ? AND hour = ? AND at_ms >= ?"
            ),
        }
    }
}

// What the statements bind, in marker order, and what the selects answer.
type SessionRow<'a> = (
    &'a str,
    i32,
    i64,
    &'a str,
    i64,
    i64,
    MaybeUnset<i64>,
    MaybeUnset<i64>,
    MaybeUnset<&'a str>,
    i32,
);
type QoeRow<'a> = (
    &'a str,
    i32,
    i64,
    String,
    MaybeUnset<i64>,
    i64,
    i64,
    i64,
    i32,
);
type HealthRow<'a> = (&'a str, i32, i64, i32, i64, i32);
/// Stream, bucket, since.
type BucketArgs<'a> = (&'a str, i32, i64);
/// COUNT(*), SUM(duration_ms), SUM(bytes), SUM(packets_lost).
type SessionsAgg = (i64, Option<i64>, Option<i64>, Option<i64>);
/// COUNT(*), COUNT(startup_ms), SUM(startup_ms), SUM(rebuffer_ms),
/// SUM(watched_ms), SUM(exited_before_start).
type QoeAgg = (i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
/// COUNT(*), SUM(stalled), MAX(viewers).
type HealthAgg = (i64, Option<i64>, Option<i32>);

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The bucket (days or hours since the epoch) `ms` falls in.
fn bucket(ms: u64, width: u64) -> i32 {
    i32::try_from(ms / width).unwrap_or(i32::MAX)
}

/// Buckets holding times from `since` to `now`, the newest `max` of them.
fn buckets(since: u64, now: u64, width: u64, max: i32) -> RangeInclusive<i32> {
    let last = bucket(now.max(since), width);
    let first = bucket(since, width).max(last.saturating_sub(max.max(1) - 1));
    first..=last
}

/// Buckets a retention can hold rows in (partly filled ends included).
fn buckets_for(retention_secs: i32, width: u64) -> i32 {
    let n = (u64::try_from(retention_secs).unwrap_or(0) * 1000).div_ceil(width) + 1;
    i32::try_from(n).unwrap_or(MAX_BUCKETS).min(MAX_BUCKETS)
}

fn session_row(s: &ViewerSession, ttl: i32) -> SessionRow<'_> {
    (
        &s.stream,
        bucket(s.started_at_ms, DAY_MS),
        i(s.started_at_ms),
        &s.session,
        i(s.ended_at_ms),
        i(s.ended_at_ms.saturating_sub(s.started_at_ms)),
        MaybeUnset::from_option(s.bytes.map(i)),
        MaybeUnset::from_option(s.packets_lost.map(i)),
        MaybeUnset::from_option(s.layers.as_deref()),
        ttl,
    )
}

fn qoe_row(at_ms: u64, b: &QoeBeacon, ttl: i32) -> QoeRow<'_> {
    (
        &b.stream,
        bucket(at_ms, DAY_MS),
        i(at_ms),
        signaling::db::new_id(),
        MaybeUnset::from_option(b.startup_ms.map(i64::from)),
        i64::from(b.rebuffer_ms),
        i64::from(b.watched_ms),
        i64::from(b.exited_before_start),
        ttl,
    )
}

fn health_row<'a>(stream: &'a str, s: &HealthSample, ttl: i32) -> HealthRow<'a> {
    (
        stream,
        bucket(s.at_ms, HOUR_MS),
        i(s.at_ms),
        i32::try_from(s.viewers).unwrap_or(i32::MAX),
        i64::from(s.stalled),
        ttl,
    )
}

/// Analytics in ScyllaDB (see the module documentation).
pub struct ScyllaSink {
    session: Session,
    insert_session: PreparedStatement,
    insert_qoe: PreparedStatement,
    insert_health: PreparedStatement,
    select_sessions: PreparedStatement,
    select_qoe: PreparedStatement,
    select_health: PreparedStatement,
    retention: i32,
    health_retention: i32,
    day_buckets: i32,
    hour_buckets: i32,
    write_errors: IntCounter,
}

impl ScyllaSink {
    /// Connects, creates the keyspace and tables if missing and prepares
    /// the statements; fails when the cluster cannot be reached within
    /// [`START_TIMEOUT`] or refuses a statement.
    pub async fn connect(
        cfg: &ScyllaConfig,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<ScyllaSink> {
        let nodes: Vec<&str> = cfg
            .nodes
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            bail!("no ScyllaDB node given");
        }
        let ks = parse_keyspace(&cfg.keyspace).map_err(anyhow::Error::msg)?;
        let retention = ttl_secs("the analytics retention", cfg.retention)?;
        let health_retention = ttl_secs("the health retention", cfg.health_retention)?;
        let cql = Cql::new(&ks, &cfg.replication, retention, health_retention);
        let at = nodes.join(",");
        let setup = async {
            let profile = ExecutionProfile::builder()
                .request_timeout(Some(REQUEST_TIMEOUT))
                .build();
            let session = SessionBuilder::new()
                .known_nodes(&nodes)
                .connection_timeout(REQUEST_TIMEOUT)
                .default_execution_profile_handle(profile.into_handle())
                .build()
                .await
                .context("connecting")?;
            session
                .query_unpaged(cql.create_keyspace.as_str(), ())
                .await
                .with_context(|| format!("creating keyspace {ks}"))?;
            for t in &cql.create_tables {
                session
                    .query_unpaged(t.as_str(), ())
                    .await
                    .with_context(|| format!("creating a table: {t}"))?;
            }
            let prepare = |s: &str| {
                let s = s.to_string();
                let session = &session;
                async move {
                    session
                        .prepare(s.as_str())
                        .await
                        .with_context(|| format!("preparing {s}"))
                }
            };
            let sink = ScyllaSink {
                insert_session: prepare(&cql.insert_session).await?,
                insert_qoe: prepare(&cql.insert_qoe).await?,
                insert_health: prepare(&cql.insert_health).await?,
                select_sessions: prepare(&cql.select_sessions).await?,
                select_qoe: prepare(&cql.select_qoe).await?,
                select_health: prepare(&cql.select_health).await?,
                session,
                retention,
                health_retention,
                day_buckets: buckets_for(retention, DAY_MS),
                hour_buckets: buckets_for(health_retention, HOUR_MS),
                write_errors: IntCounter::new(
                    "relaycast_analytics_scylla_write_errors_total",
                    "Analytics records that could not be written to ScyllaDB",
                )?,
            };
            anyhow::Ok(sink)
        };
        let sink = tokio::time::timeout(START_TIMEOUT, setup)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {START_TIMEOUT:?}"))
            .and_then(|r| r)
            .with_context(|| format!("ScyllaDB at {at} (keyspace {ks})"))?;
        registry.register(Box::new(sink.write_errors.clone()))?;
        Ok(sink)
    }

    async fn write_one(&self, r: &Record) -> anyhow::Result<()> {
        match r {
            Record::Session(s) => {
                self.session
                    .execute_unpaged(&self.insert_session, session_row(s, self.retention))
                    .await?;
            }
            Record::Qoe { at_ms, beacon } => {
                self.session
                    .execute_unpaged(&self.insert_qoe, qoe_row(*at_ms, beacon, self.retention))
                    .await?;
            }
            Record::Health { stream, sample } => {
                self.session
                    .execute_unpaged(
                        &self.insert_health,
                        health_row(stream, sample, self.health_retention),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// One aggregate row per bucket of `buckets`.
    async fn per_bucket<R>(
        &self,
        statement: &PreparedStatement,
        stream: &str,
        buckets: RangeInclusive<i32>,
        since: i64,
    ) -> anyhow::Result<Vec<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f> + Send,
    {
        futures_util::stream::iter(buckets)
            .map(|b| async move {
                let args: BucketArgs = (stream, b, since);
                let rows = self
                    .session
                    .execute_unpaged(statement, args)
                    .await?
                    .into_rows_result()?;
                Ok::<R, anyhow::Error>(rows.single_row::<R>()?)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await
    }
}

impl AnalyticsSink for ScyllaSink {
    fn write<'a>(&'a self, batch: &'a [Record]) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for chunk in batch.chunks(WRITE_CONCURRENCY) {
                let results = join_all(chunk.iter().map(|r| self.write_one(r))).await;
                errors.extend(results.into_iter().filter_map(Result::err));
            }
            if let Some(first) = errors.first() {
                self.write_errors.inc_by(errors.len() as u64);
                bail!(
                    "{} of {} records not written to ScyllaDB; first: {first:#}",
                    errors.len(),
                    batch.len()
                );
            }
            Ok(())
        })
    }

    fn stats<'a>(&'a self, stream: &'a str, since_ms: u64) -> SinkFuture<'a, StreamStats> {
        Box::pin(async move {
            let now = signaling::unix_ms();
            let since = i(since_ms);
            let days = buckets(since_ms, now, DAY_MS, self.day_buckets);
            let hours = buckets(since_ms, now, HOUR_MS, self.hour_buckets);
            let (s, q, h) = tokio::try_join!(
                self.per_bucket::<SessionsAgg>(&self.select_sessions, stream, days.clone(), since),
                self.per_bucket::<QoeAgg>(&self.select_qoe, stream, days, since),
                self.per_bucket::<HealthAgg>(&self.select_health, stream, hours, since),
            )?;
            let u = |v: i64| u64::try_from(v).unwrap_or(0);
            let o = |v: Option<i64>| v.map_or(0, u);
            let sessions: u64 = s.iter().map(|r| u(r.0)).sum();
            let total: u64 = s.iter().map(|r| o(r.1)).sum();
            let mut qs = [0u64; 6];
            for r in &q {
                for (acc, v) in qs
                    .iter_mut()
                    .zip([u(r.0), u(r.1), o(r.2), o(r.3), o(r.4), o(r.5)])
                {
                    *acc += v;
                }
            }
            let [beacons, with_startup, startup, rebuffer, watched, exits] = qs;
            Ok(StreamStats {
                sessions,
                watch_ms_total: total,
                watch_ms_avg: total.checked_div(sessions).unwrap_or(0),
                bytes_total: s.iter().map(|r| o(r.2)).sum(),
                packets_lost_total: s.iter().map(|r| o(r.3)).sum(),
                qoe_beacons: beacons,
                startup_ms_avg: startup.checked_div(with_startup),
                exits_before_start: exits,
                rebuffer_ratio: (rebuffer + watched > 0)
                    .then(|| rebuffer as f64 / (rebuffer + watched) as f64),
                health_seconds: h.iter().map(|r| u(r.0)).sum(),
                stalled_seconds: h.iter().map(|r| o(r.1)).sum(),
                peak_viewers: h
                    .iter()
                    .filter_map(|r| r.2)
                    .map(|v| u64::try_from(v).unwrap_or(0))
                    .max()
                    .unwrap_or(0),
            })
        })
    }
}

#[cfg(test)]
mod tests;
