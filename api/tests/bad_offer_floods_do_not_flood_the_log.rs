//! 1000 anonymous malformed offers (each makes str0m write a WARN line)
//! write a bounded number of log lines: the sampler the `relaycast` binary
//! installs lets a few through per call site and counts the rest in
//! `relaycast_log_suppressed_total`; its report names what was suppressed.
//! This test binary installs the same layer as the process's subscriber,
//! with a budget per hour instead of per second so the bound does not
//! depend on how fast the machine is.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, StatusCode};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

const LINES_PER_SITE: u32 = 5;

/// Counts the lines that reach the formatter (INFO and above) and the call
/// sites they come from.
#[derive(Clone, Default)]
struct Lines {
    count: Arc<AtomicU64>,
    sites: Arc<Mutex<HashSet<String>>>,
    summaries: Arc<AtomicU64>,
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO {
            return;
        }
        if meta.target() == "relaycast::log_sampling" {
            self.summaries.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.sites.lock() {
            s.insert(format!(
                "{}:{}",
                meta.file().unwrap_or("?"),
                meta.line().unwrap_or(0)
            ));
        }
    }
}

/// An offer str0m rejects with a WARN: its m-line has no `a=mid`.
const MALFORMED: &str = "v=0\r\n\
o=- 1 1 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=sendrecv\r\n\
a=rtpmap:111 opus/48000/2\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_offers_write_a_bounded_log() -> Result<()> {
    let lines = Lines::default();
    let sampling = api::log_sampling::LogSampling::new(LINES_PER_SITE, Duration::from_secs(3600));
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info,str0m=warn"))
        .with(sampling.clone())
        .with(lines.clone());
    tracing::subscriber::set_global_default(subscriber).context("one subscriber per binary")?;

    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "log-flood-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = api::start(api::Config::for_test(dir.clone()), listener).await?;
    let base = format!("http://{}", server.http_addr());
    server.create_stream("public", false).await?;
    let before = lines.count.load(Ordering::Relaxed);

    let http = Client::new();
    let url = format!("{base}/whep/public");
    for i in 0..1000 {
        let resp = http
            .post(&url)
            .header(CONTENT_TYPE, "application/sdp")
            .body(MALFORMED)
            .send()
            .await?;
        ensure!(
            resp.status() == StatusCode::BAD_REQUEST,
            "offer {i}: {}",
            resp.status()
        );
    }

    let written = lines.count.load(Ordering::Relaxed) - before;
    let sites = lines.sites.lock().map(|s| s.len()).unwrap_or(0) as u64;
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let suppressed: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("relaycast_log_suppressed_total ")?
                .parse()
                .ok()
        })
        .context("relaycast_log_suppressed_total in /metrics")?;
    ensure!(
        suppressed >= 1000.0,
        "every offer would have written at least one line; suppressed {suppressed}"
    );
    ensure!(
        written <= u64::from(LINES_PER_SITE) * sites && sites <= 10,
        "{written} lines from {sites} call sites"
    );
    ensure!(sampling.report() >= 1000);
    ensure!(
        lines.summaries.load(Ordering::Relaxed) >= 1,
        "no summary line"
    );

    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
