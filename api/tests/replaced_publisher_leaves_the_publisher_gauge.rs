//! `relaycast_publishers` counts live publishers: a WHIP session replaced
//! by a republish with the same key leaves the gauge when it is replaced,
//! not when the SFU finally reaps it (for a session that never connected,
//! at its connect deadline), and is not taken off a second time then.

mod support;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use support::*;

/// The SFU closes a session that never connected after 20 s
/// (`sfu::peer::CONNECT_DEADLINE`); its reaper looks at least every 200 ms.
const PAST_CONNECT_DEADLINE: Duration = Duration::from_secs(24);

async fn publishers(base: &str) -> Result<f64> {
    metric(base, "relaycast_publishers").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_whip_session_leaves_the_gauge_at_once() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT, async {
        let server = TestServer::start().await?;
        let base = server.base_url().to_owned();
        let key = server.create_stream("show", false).await?;

        // A WHIP POST whose peer never connects (the answer is never
        // applied) and that asks to be the DTLS server, so the SFU's DTLS
        // client handshake is under way: closing it does not end it at
        // once, it lingers until its connect deadline.
        let ghost = PublisherPeer::new(&PublishOptions::h264_and_opus()).await?;
        let offer = ghost
            .peer
            .create_offer(false)
            .await?
            .replace("a=setup:actpass", "a=setup:passive");
        ensure!(offer.contains("a=setup:passive"), "{offer}");
        post_offer(&base, "/whip/show", Some(&key), &offer).await?;
        ensure!(publishers(&base).await? == 1.0);

        // The same key publishes again, for real: it replaces the first.
        let publisher = whip_publish(&base, "show", &key, &PublishOptions::h264_and_opus()).await?;
        ensure!(
            publishers(&base).await? == 1.0,
            "the replaced session is still counted"
        );
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;

        // The replaced session reaches its connect deadline and is reaped:
        // the live publisher is still counted, once.
        let until = Instant::now() + PAST_CONNECT_DEADLINE;
        while Instant::now() < until {
            let n = publishers(&base).await?;
            ensure!(n == 1.0, "{n} publishers counted with one live");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        publisher.close().await?;
        ghost.peer.close().await?;
        wait_for_no_sessions(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}
