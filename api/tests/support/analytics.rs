//! The analytics scenario every sink runs: QoE beacons (validated, rate
//! limited), a real WHEP viewer's session, and the stats summary with its
//! access rules. `configure` picks the sink (SQL database or ScyllaDB).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

pub async fn beacons_and_viewer_sessions_are_summarised(
    configure: impl FnOnce(&mut api::Config),
) -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(TEST_TIMEOUT * 2, async {
        let server = TestServer::start_with(configure).await?;
        let base = server.base_url().to_owned();
        server.create_stream("measured", false).await?;
        let s = server.server();
        let admin = s.token_for("ops", None, "admin", HOUR)?;
        let play = s.token_for("fan", Some("measured"), "play", HOUR)?;
        let http = http_client()?;
        let beacon = |body: Value| http.post(format!("{base}/api/qoe")).json(&body).send();

        // Valid beacons: one with a startup time, one that left before start.
        let r = beacon(
            json!({"stream": "measured", "startup_ms": 400, "rebuffer_ms": 100, "watched_ms": 900}),
        )
        .await?;
        ensure!(r.status() == 202, "{}", r.status());
        let r = beacon(json!({"stream": "measured", "exited_before_start": true})).await?;
        ensure!(r.status() == 202, "{}", r.status());
        // Invalid ones.
        for bad in [
            json!({"stream": "measured", "startup_ms": 500000}),
            json!({"stream": "measured", "startup_ms": 300, "exited_before_start": true}),
            json!({"stream": "no/such"}),
            json!({"stream": "measured", "startup_ms": -1}),
            json!({"stream": "measured", "extra": 1}),
        ] {
            let r = beacon(bad.clone()).await?;
            let st = r.status();
            let v: Value = r.json().await?;
            ensure!(st == 400 && v["error"].is_string(), "{bad}: {st} {v}");
        }
        let r = http
            .post(format!("{base}/api/qoe"))
            .header("content-type", "image/png")
            .body("x")
            .send()
            .await?;
        ensure!(r.status() == 415, "{}", r.status());
        let r = http
            .post(format!("{base}/api/qoe"))
            .header("content-type", "application/json")
            .body(vec![b' '; 4096])
            .send()
            .await?;
        ensure!(r.status() == 413, "{}", r.status());

        // Rate limit per address: 429 comes within two minutes' budget.
        let mut limited = false;
        for _ in 0..61 {
            let r = beacon(json!({"stream": "other", "watched_ms": 1})).await?;
            if r.status() == 429 {
                limited = true;
                break;
            }
            ensure!(r.status() == 202, "{}", r.status());
        }
        ensure!(limited, "beacons were never rate limited");

        // A viewer session: WHEP POST, then DELETE.
        let viewer = whep_view(
            &base,
            "measured",
            None,
            &ViewOptions::browser_like(VideoSink::None),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        viewer.close().await?;

        // The writer batches asynchronously: poll the summary.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let stats = loop {
            let v: Value = http
                .get(format!("{base}/api/streams/measured/stats"))
                .bearer_auth(&admin)
                .send()
                .await?
                .json()
                .await?;
            let st = v["stats"].clone();
            if st["sessions"] == 1 && st["qoe_beacons"] == 2 {
                break st;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "stats never caught up: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(
            stats["watch_ms_total"].as_u64().context("watch")? >= 300,
            "{stats}"
        );
        ensure!(
            stats["startup_ms_avg"] == 400 && stats["exits_before_start"] == 1,
            "{stats}"
        );
        ensure!(
            stats["rebuffer_ratio"]
                .as_f64()
                .is_some_and(|r| (r - 0.1).abs() < 1e-9),
            "{stats}"
        );

        let r = http
            .get(format!("{base}/api/streams/measured/stats"))
            .bearer_auth(&play)
            .send()
            .await?;
        ensure!(r.status() == 403, "{}", r.status());
        let r = http
            .get(format!("{base}/api/streams/measured/stats"))
            .send()
            .await?;
        ensure!(r.status() == 401, "{}", r.status());
        server.shutdown().await;
        Ok(())
    })
    .await
}
