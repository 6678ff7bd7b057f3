//! Log sampling: anonymous bad input must not buy log lines. Every INFO,
//! WARN and ERROR call site (ours and our dependencies': str0m writes a
//! WARN per inconsistent m-line of an offer it cannot parse) may write
//! [`LINES_PER_SITE`] lines per [`PERIOD`]; the rest are dropped, counted in
//! `relaycast_log_suppressed_total`, and summed up by [`LogSampling::report`]
//! as one "suppressed K similar messages" line per call site. DEBUG and
//! TRACE are not sampled: they are on only when someone asked for them.
//!
//! A [`Layer`] that only filters (`event_enabled`), put in front of the
//! formatter; the budget itself is [`throttle::LogSampler`], which takes
//! `now` — this layer is its driver and reads the clock.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::IntCounter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines one call site may write per [`PERIOD`].
pub const LINES_PER_SITE: u32 = 10;
pub const PERIOD: Duration = Duration::from_secs(1);
/// How often `relaycast serve` writes the suppressed-lines summary.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Target of the summary lines, which are never sampled themselves.
const REPORT_TARGET: &str = "relaycast::log_sampling";

/// Lines dropped by every [`LogSampling`] of the process (one counter, as
/// the subscriber is one per process; each server's registry exports it).
pub fn suppressed_counter() -> &'static IntCounter {
    static COUNTER: OnceLock<IntCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        // Name and help are constants: creation cannot fail.
        IntCounter::new(
            "relaycast_log_suppressed_total",
            "Log lines dropped by the per-call-site sampler",
        )
        .expect("valid metric")
    })
}

/// A call site, compared by identity.
#[derive(Clone, Copy)]
struct Site(&'static Metadata<'static>);

impl PartialEq for Site {
    fn eq(&self, other: &Site) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for Site {}
impl Hash for Site {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state)
    }
}

/// The sampling layer; clones share one budget.
#[derive(Clone)]
pub struct LogSampling {
    sampler: Arc<Mutex<throttle::LogSampler<Site>>>,
}

impl Default for LogSampling {
    fn default() -> LogSampling {
        LogSampling::new(LINES_PER_SITE, PERIOD)
    }
}

impl LogSampling {
    /// `per_period` lines per call site per `period`.
    pub fn new(per_period: u32, period: Duration) -> LogSampling {
        LogSampling {
            sampler: Arc::new(Mutex::new(throttle::LogSampler::new(per_period, period))),
        }
    }

    /// Writes one line per call site with lines suppressed since the last
    /// report; returns how many lines those were.
    pub fn report(&self) -> u64 {
        let suppressed = self.sampler.lock().take_suppressed();
        let mut total = 0;
        for (site, n) in suppressed {
            total += n;
            tracing::warn!(
                target: REPORT_TARGET,
                "suppressed {n} similar messages from {} ({}:{})",
                site.0.target(),
                site.0.file().unwrap_or("?"),
                site.0.line().unwrap_or(0),
            );
        }
        total
    }

    /// Reports every `every`, forever (a task of `relaycast serve`).
    pub async fn report_every(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.report();
        }
    }
}

impl<S: Subscriber> Layer<S> for LogSampling {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || meta.target() == REPORT_TARGET {
            return true;
        }
        let admitted = self.sampler.lock().admit(&Site(meta), Instant::now());
        if !admitted {
            suppressed_counter().inc();
        }
        admitted
    }
}
