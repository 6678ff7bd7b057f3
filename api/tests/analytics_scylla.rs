//! Analytics through the ScyllaDB sink: the SQL sink's scenario
//! (`support::analytics`) against a real cluster named by `SCYLLA_NODES`
//! (`host:port,…`), in a fresh keyspace dropped afterwards; without it that
//! test is skipped. That an unreachable cluster fails start runs always.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use support::analytics::beacons_and_viewer_sessions_are_summarised;

const DAY_MS: u64 = 86_400_000;

fn scylla_nodes() -> Option<Vec<String>> {
    let nodes: Vec<String> = std::env::var("SCYLLA_NODES")
        .ok()?
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beacons_and_viewer_sessions_are_summarised_on_scylla() -> Result<()> {
    let Some(nodes) = scylla_nodes() else {
        println!("skipped: SCYLLA_NODES not set (no ScyllaDB server on this machine)");
        return Ok(());
    };
    let keyspace = format!("relaycast_test_{:016x}", rand::random::<u64>());
    let mut config = api::analytics::ScyllaConfig::new(nodes.clone());
    config.keyspace = keyspace.clone();
    let scenario = beacons_and_viewer_sessions_are_summarised(|c| c.scylla = Some(config)).await;
    let session = SessionBuilder::new()
        .known_nodes(&nodes)
        .build()
        .await
        .context("connecting to SCYLLA_NODES")?;
    let checked = match scenario {
        Ok(()) => rows_expire(&session, &keyspace).await,
        Err(e) => Err(e),
    };
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await
        .context("dropping the test keyspace")?;
    checked
}

/// The scenario's session and beacons carry the default retention as TTL.
async fn rows_expire(session: &Session, ks: &str) -> Result<()> {
    let today = i32::try_from(signaling::unix_ms() / DAY_MS)?;
    let mut ttls = Vec::new();
    for (table, column) in [
        ("viewer_sessions", "ended_at_ms"),
        ("qoe_beacons", "watched_ms"),
    ] {
        for day in [today - 1, today] {
            let rows = session
                .query_unpaged(
                    format!("SELECT TTL({column}) FROM {ks}.{table} WHERE stream = ? AND day = ?"),
                    ("measured", day),
                )
                .await?
                .into_rows_result()?;
            for row in rows.rows::<(Option<i32>,)>()? {
                ttls.push((table, row?.0));
            }
        }
    }
    let month = i32::try_from(api::analytics::scylla::DEFAULT_RETENTION.as_secs())?;
    ensure!(ttls.len() == 3, "one session and two beacons: {ttls:?}");
    ensure!(
        ttls.iter()
            .all(|(_, t)| t.is_some_and(|t| t > month - 600 && t <= month)),
        "TTLs: {ttls:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unreachable_scylla_fails_start() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let node = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let r = support::TestServer::start_with(|c| {
        c.scylla = Some(api::analytics::ScyllaConfig::new(vec![node.clone()]));
    })
    .await;
    let Err(e) = r else {
        anyhow::bail!("relaycast started without its ScyllaDB");
    };
    let msg = format!("{e:#}");
    println!("start failed as it should: {msg}");
    ensure!(
        msg.contains("ScyllaDB") && msg.contains(&node),
        "unclear error: {msg}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "failing took {:?}",
        started.elapsed()
    );
    Ok(())
}
