//! The sink's CQL, checked against its own schema by a small parser (no
//! server here), and the parts that need no cluster.

use std::collections::HashMap;

use super::*;

/// Number of values a bound or selected tuple carries.
trait Arity {
    const N: usize;
}

macro_rules! arity {
    ($($n:literal: $($t:ident)*;)*) => {
        $(impl<$($t),*> Arity for ($($t,)*) { const N: usize = $n; })*
    };
}

arity! {
    1: A;
    2: A B;
    3: A B C;
    4: A B C D;
    5: A B C D E;
    6: A B C D E F;
    7: A B C D E F G;
    8: A B C D E F G H;
    9: A B C D E F G H I;
    10: A B C D E F G H I J;
}

#[derive(Debug)]
struct Table {
    name: String,
    columns: HashMap<String, String>,
    partition: Vec<String>,
    clustering: Vec<String>,
    ttl: Option<u64>,
}

/// Collapses whitespace.
fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let (mut depth, mut cur, mut out) = (0i32, String::new(), Vec::new());
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The text inside the parentheses opening at `open`, and what follows.
fn group(s: &str, open: usize) -> Result<(&str, &str), String> {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&s[open + 1..open + i], &s[open + i + 1..]));
                }
            }
            _ => {}
        }
    }
    Err(format!("unbalanced parentheses in {s}"))
}

fn parse_create(stmt: &str) -> Result<Table, String> {
    let s = norm(stmt);
    let rest = s
        .strip_prefix("CREATE TABLE IF NOT EXISTS ")
        .ok_or_else(|| format!("not CREATE TABLE IF NOT EXISTS: {s}"))?;
    let open = rest.find('(').ok_or("no column list")?;
    let name = rest[..open].trim().to_string();
    let (body, tail) = group(rest, open)?;
    let mut t = Table {
        name,
        columns: HashMap::new(),
        partition: Vec::new(),
        clustering: Vec::new(),
        ttl: None,
    };
    for item in split_top(body) {
        if let Some(key) = item.strip_prefix("PRIMARY KEY") {
            let key = key.trim();
            let (inner, _) = group(key, 0)?;
            let mut parts = split_top(inner).into_iter();
            let first = parts.next().ok_or("empty primary key")?;
            t.partition = match first.strip_prefix('(') {
                Some(p) => p
                    .trim_end_matches(')')
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .collect(),
                None => vec![first],
            };
            t.clustering = parts.collect();
        } else {
            let mut words = item.split(' ');
            let (Some(col), Some(ty), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("column definition {item:?} is not NAME TYPE"));
            };
            t.columns.insert(col.to_string(), ty.to_string());
        }
    }
    if let Some(i) = tail.find("default_time_to_live = ") {
        let n = &tail[i + "default_time_to_live = ".len()..];
        let n = n.split(' ').next().unwrap_or_default();
        t.ttl = Some(n.parse().map_err(|_| format!("bad TTL {n:?}"))?);
    }
    Ok(t)
}

/// The table's own checks: keys exist, the partition key has a time
/// bucket, rows expire.
fn check_table(t: &Table) -> Result<(), String> {
    for c in t.partition.iter().chain(&t.clustering) {
        if !t.columns.contains_key(c) {
            return Err(format!("{}: key column {c} is not a column", t.name));
        }
    }
    let bucketed = t
        .partition
        .iter()
        .any(|c| ["day", "hour"].contains(&c.as_str()) && t.columns[c] == "int");
    if !bucketed {
        return Err(format!(
            "{}: partition key {:?} has no time bucket",
            t.name, t.partition
        ));
    }
    if t.clustering.is_empty() {
        return Err(format!("{}: not clustered by time", t.name));
    }
    match t.ttl {
        Some(n) if n > 0 => Ok(()),
        _ => Err(format!("{}: no default_time_to_live", t.name)),
    }
}

fn table<'t>(tables: &'t [Table], name: &str) -> Result<&'t Table, String> {
    tables
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("no table {name}"))
}

fn markers(s: &str) -> usize {
    s.matches('?').count()
}

fn check_insert(stmt: &str, tables: &[Table], binds: usize) -> Result<(), String> {
    let s = norm(stmt);
    let rest = s
        .strip_prefix("INSERT INTO ")
        .ok_or_else(|| format!("not an INSERT: {s}"))?;
    let open = rest.find('(').ok_or("no column list")?;
    let t = table(tables, rest[..open].trim())?;
    let (cols, tail) = group(rest, open)?;
    let cols = split_top(cols);
    for c in &cols {
        if !t.columns.contains_key(c) {
            return Err(format!("{}: no column {c}", t.name));
        }
    }
    for k in t.partition.iter().chain(&t.clustering) {
        if !cols.contains(k) {
            return Err(format!("{}: key column {k} not inserted", t.name));
        }
    }
    let tail = tail.trim();
    let values = tail.strip_prefix("VALUES ").ok_or("no VALUES")?;
    let (values, after) = group(values, 0)?;
    if split_top(values).len() != cols.len() || markers(values) != cols.len() {
        return Err(format!(
            "{}: {} columns, values ({values})",
            t.name,
            cols.len()
        ));
    }
    if after.trim() != "USING TTL ?" {
        return Err(format!("{}: insert without USING TTL ?: {s}", t.name));
    }
    if markers(&s) != binds {
        return Err(format!(
            "{} markers, {binds} values bound: {s}",
            markers(&s)
        ));
    }
    Ok(())
}

fn check_select(stmt: &str, tables: &[Table], binds: usize, answers: usize) -> Result<(), String> {
    let s = norm(stmt);
    if s.contains("ALLOW FILTERING") {
        return Err(format!("ALLOW FILTERING: {s}"));
    }
    let rest = s
        .strip_prefix("SELECT ")
        .ok_or_else(|| format!("not a SELECT: {s}"))?;
    let (selectors, rest) = rest.split_once(" FROM ").ok_or("no FROM")?;
    let (name, conds) = rest.split_once(" WHERE ").ok_or("no WHERE")?;
    let t = table(tables, name.trim())?;
    let selectors = split_top(selectors);
    for sel in &selectors {
        let col = match sel.find('(') {
            Some(open) => group(sel, open)?.0.trim(),
            None => sel.as_str(),
        };
        let count_all = col == "*" && sel.starts_with("COUNT(");
        if !count_all && !t.columns.contains_key(col) {
            return Err(format!("{}: selects unknown column {col}", t.name));
        }
    }
    if selectors.len() != answers {
        return Err(format!(
            "{} selectors, {answers} read back: {s}",
            selectors.len()
        ));
    }
    let mut eq = Vec::new();
    let mut range = Vec::new();
    for cond in conds.split(" AND ") {
        let mut w = cond.split(' ');
        let (Some(col), Some(op), Some("?"), None) = (w.next(), w.next(), w.next(), w.next())
        else {
            return Err(format!("condition {cond:?} is not COLUMN OP ?"));
        };
        if !t.columns.contains_key(col) {
            return Err(format!("{}: restricts unknown column {col}", t.name));
        }
        match op {
            "=" => eq.push(col),
            ">=" | ">" | "<=" | "<" => range.push(col),
            _ => return Err(format!("operator {op} in {cond:?}")),
        }
    }
    for k in &t.partition {
        if !eq.contains(&k.as_str()) {
            return Err(format!(
                "{}: partition key column {k} not restricted",
                t.name
            ));
        }
    }
    // Beyond the partition key only clustering columns, in order, the
    // last one possibly by range: anything else needs ALLOW FILTERING.
    let rest: Vec<&str> = eq
        .iter()
        .copied()
        .filter(|c| !t.partition.iter().any(|k| k == c))
        .chain(range.iter().copied())
        .collect();
    if range.len() > 1 {
        return Err(format!("{}: more than one range restriction", t.name));
    }
    for (i, c) in rest.iter().enumerate() {
        if t.clustering.get(i).map(String::as_str) != Some(*c) {
            return Err(format!(
                "{}: {c} is not clustering column {i} (filtering)",
                t.name
            ));
        }
    }
    if markers(&s) != binds {
        return Err(format!(
            "{} markers, {binds} values bound: {s}",
            markers(&s)
        ));
    }
    Ok(())
}

fn cql() -> Cql {
    Cql::new("relaycast", &Replication::default(), 2_592_000, 604_800)
}

fn tables(c: &Cql) -> Vec<Table> {
    c.create_tables
        .iter()
        .map(|t| parse_create(t).expect("our CREATE TABLE parses"))
        .collect()
}

/// Every statement against the schema, with the arities the code binds
/// and reads.
fn check_all(c: &Cql) -> Result<(), String> {
    let ts: Vec<Table> = c
        .create_tables
        .iter()
        .map(|t| parse_create(t))
        .collect::<Result<_, _>>()?;
    for t in &ts {
        check_table(t)?;
    }
    check_insert(&c.insert_session, &ts, <SessionRow as Arity>::N)?;
    check_insert(&c.insert_qoe, &ts, <QoeRow as Arity>::N)?;
    check_insert(&c.insert_health, &ts, <HealthRow as Arity>::N)?;
    let b = <BucketArgs as Arity>::N;
    check_select(&c.select_sessions, &ts, b, <SessionsAgg as Arity>::N)?;
    check_select(&c.select_qoe, &ts, b, <QoeAgg as Arity>::N)?;
    check_select(&c.select_health, &ts, b, <HealthAgg as Arity>::N)?;
    Ok(())
}

#[test]
fn the_cql_matches_the_schema() {
    let c = cql();
    assert_eq!(check_all(&c), Ok(()));
    let ts = tables(&c);
    assert_eq!(ts.len(), 3);
    let health = table(&ts, "relaycast.health_samples").expect("health table");
    assert_eq!(health.partition, ["stream", "hour"]);
    assert_eq!(health.ttl, Some(604_800));
    assert_eq!(
        table(&ts, "relaycast.viewer_sessions").map(|t| t.ttl),
        Ok(Some(2_592_000))
    );
    assert!(c
        .create_keyspace
        .starts_with("CREATE KEYSPACE IF NOT EXISTS relaycast WITH"));
}

#[test]
fn the_checker_catches_wrong_cql() {
    let good = cql();
    type Break = Box<dyn Fn(&mut Cql)>;
    let broken: Vec<(&str, Break)> = vec![
        (
            "unknown column",
            Box::new(|c| c.insert_health = c.insert_health.replace("viewers", "viewerz")),
        ),
        (
            "bucket not restricted",
            Box::new(|c| c.select_qoe = c.select_qoe.replace(" AND day = ?", "")),
        ),
        (
            "ALLOW FILTERING",
            Box::new(|c| c.select_health.push_str(" ALLOW FILTERING")),
        ),
        (
            "filtering on a regular column",
            Box::new(|c| {
                c.select_health = c.select_health.replace("at_ms >= ?", "stalled >= ?");
            }),
        ),
        (
            "one marker too many",
            Box::new(|c| {
                c.insert_session = c
                    .insert_session
                    .replace("packets_lost)", "packets_lost, bytes)")
                    .replace("?, ?)", "?, ?, ?)");
            }),
        ),
        (
            "no TTL on insert",
            Box::new(|c| c.insert_qoe = c.insert_qoe.replace(" USING TTL ?", "")),
        ),
        (
            "selects a column of another table",
            Box::new(|c| {
                c.select_sessions = c.select_sessions.replace("duration_ms", "watched_ms")
            }),
        ),
        (
            "partition key without a bucket",
            Box::new(|c| {
                c.create_tables[2] = c.create_tables[2].replace("(stream, hour)", "(stream), hour");
            }),
        ),
        (
            "table without default TTL",
            Box::new(|c| {
                c.create_tables[0] =
                    c.create_tables[0].replace(" AND default_time_to_live = 2592000", "");
            }),
        ),
    ];
    for (what, f) in broken {
        let mut c = good.clone();
        f(&mut c);
        assert!(check_all(&c).is_err(), "the checker missed: {what}");
    }
}

#[test]
fn rows_fill_the_buckets_and_ttl() {
    let s = ViewerSession {
        stream: "s".into(),
        session: "x".into(),
        started_at_ms: 3 * DAY_MS + 5,
        ended_at_ms: 3 * DAY_MS + 1005,
        bytes: None,
        packets_lost: Some(2),
        layers: Some("q,h".into()),
    };
    let r = session_row(&s, 60);
    assert_eq!((r.1, r.2, r.5, r.9), (3, i(3 * DAY_MS + 5), 1000, 60));
    assert!(matches!(r.6, MaybeUnset::Unset));
    assert!(matches!(r.7, MaybeUnset::Set(2)));
    assert!(matches!(r.8, MaybeUnset::Set("q,h")));
    let h = health_row(
        "s",
        &HealthSample {
            at_ms: 7 * HOUR_MS + 1000,
            viewers: 4,
            stalled: true,
        },
        9,
    );
    assert_eq!(h, ("s", 7, i(7 * HOUR_MS + 1000), 4, 1, 9));
}

#[test]
fn stats_read_bounded_buckets() {
    let now = 100 * DAY_MS + 5 * HOUR_MS;
    // The last 24 hours: two days, 25 hours.
    let since = now - DAY_MS;
    assert_eq!(buckets(since, now, DAY_MS, 31), 99..=100);
    assert_eq!(buckets(since, now, HOUR_MS, 169).count(), 25);
    // A since older than the retention reads only what it can hold.
    assert_eq!(buckets(0, now, DAY_MS, 31), 70..=100);
    assert_eq!(buckets_for(30 * 86_400, DAY_MS), 31);
    assert_eq!(buckets_for(7 * 86_400, HOUR_MS), 169);
    assert_eq!(buckets_for(630_720_000, HOUR_MS), MAX_BUCKETS);
}

#[test]
fn replication_and_keyspace_flags() {
    assert_eq!("3".parse(), Ok(Replication::Simple(3)));
    let nts: Replication = "dc1:3, eu-west_2:2".parse().expect("valid");
    assert_eq!(
        nts.to_string(),
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'eu-west_2': 2}"
    );
    assert_eq!(
        Replication::default().to_string(),
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    );
    for bad in ["0", "x", "dc1:0", "dc'1:3", ":3", "dc1:3,dc2"] {
        assert!(bad.parse::<Replication>().is_err(), "{bad}");
    }
    assert!(parse_keyspace("relaycast_2").is_ok());
    for bad in ["", "2x", "a-b", "a.b", "a;DROP", &"k".repeat(49)] {
        assert!(parse_keyspace(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn an_unreachable_cluster_fails_connect() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let registry = prometheus::Registry::new();
    let started = std::time::Instant::now();
    let err = ScyllaSink::connect(
        &ScyllaConfig::new(vec![format!("127.0.0.1:{port}")]),
        &registry,
    )
    .await
    .err()
    .expect("nothing listens there");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("ScyllaDB at 127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(
        started.elapsed() < START_TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
    let mut bad = ScyllaConfig::new(vec!["127.0.0.1:9042".into()]);
    bad.retention = Duration::ZERO;
    assert!(ScyllaSink::connect(&bad, &registry).await.is_err());
}
