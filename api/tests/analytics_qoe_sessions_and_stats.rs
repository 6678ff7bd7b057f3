//! Analytics through the SQL sink: QoE beacons (validated, rate limited),
//! a real WHEP viewer's session, and the stats summary with its access
//! rules (the scenario is `support::analytics`, shared with the ScyllaDB
//! sink's test).

mod support;

use anyhow::Result;
use support::analytics::beacons_and_viewer_sessions_are_summarised;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beacons_and_viewer_sessions_are_summarised_on_sqlite() -> Result<()> {
    beacons_and_viewer_sessions_are_summarised(|_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beacons_and_viewer_sessions_are_summarised_on_postgres() -> Result<()> {
    let Some(db) = signaling::testing::TestDb::postgres().await else {
        return Ok(());
    };
    let r =
        beacons_and_viewer_sessions_are_summarised(|c| c.database_url = Some(db.url().to_owned()))
            .await;
    db.drop_database().await;
    r
}
