//! Records stream sessions: follows `sfu::Sfu::events()` and writes one
//! `stream_sessions` row per time a stream goes live (start, end, stalls),
//! sampling `Sfu::viewer_count` of live streams every
//! [`SAMPLE_EVERY`] for the peak viewer count.
//!
//! The recorder only reads the event broadcast; if it falls behind, the
//! broadcast drops events for it (logged), never slowing the forwarder.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sfu::StreamEventKind;

use crate::viewers::Viewers;
use signaling::Store;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// How often viewer counts of live streams are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts the recorder; abort the handle to stop it.
pub async fn spawn(viewers: Viewers, store: Store) -> JoinHandle<()> {
    // Sessions left open by a previous run ended when it stopped; their
    // real end is unknown, so they are closed now.
    if let Err(e) = store.close_open_sessions(ms(SystemTime::now())).await {
        tracing::warn!("closing stale stream sessions: {e}");
    }
    let mut events = viewers.sfu.events();
    tokio::spawn(async move {
        // stream name → (session id, last recorded peak)
        let mut live: HashMap<String, (String, usize)> = HashMap::new();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        if let Err(e) = record(&store, &viewers, &mut live, &ev.stream, ev.kind, ms(ev.at)).await {
                            tracing::warn!(stream = %ev.stream, "recording stream event: {e}");
                        }
                    }
                    Err(RecvError::Lagged(n)) => tracing::warn!("stream recorder missed {n} events"),
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    for (stream, (id, peak)) in live.iter_mut() {
                        let now = viewers.total(stream);
                        if now > *peak {
                            *peak = now;
                            if let Err(e) = store.session_viewers(id, now as i64).await {
                                tracing::warn!(%stream, "recording viewers: {e}");
                            }
                        }
                    }
                }
            }
        }
    })
}

async fn record(
    store: &Store,
    viewers: &Viewers,
    live: &mut HashMap<String, (String, usize)>,
    stream: &str,
    kind: StreamEventKind,
    at_ms: i64,
) -> Result<(), signaling::StoreError> {
    match kind {
        StreamEventKind::Live => {
            let id = store.session_started(stream, at_ms).await?;
            let viewers = viewers.total(stream);
            if viewers > 0 {
                store.session_viewers(&id, viewers as i64).await?;
            }
            live.insert(stream.to_string(), (id, viewers));
        }
        StreamEventKind::Stalled => {
            if let Some((id, _)) = live.get(stream) {
                store.session_stalled(id).await?;
            }
        }
        StreamEventKind::Ended => {
            if let Some((id, peak)) = live.remove(stream) {
                let viewers = viewers.total(stream);
                if viewers > peak {
                    store.session_viewers(&id, viewers as i64).await?;
                }
                store.session_ended(&id, at_ms).await?;
            }
        }
        // Resumed and kinds added later change nothing recorded here.
        _ => {}
    }
    Ok(())
}
