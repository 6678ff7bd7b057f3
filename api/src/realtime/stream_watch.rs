//! Follows the SFU's stream events: announces them on the bus as status
//! messages, hands them to other listeners (webhooks), and keeps a tap on
//! each live stream to know its current media time ([`MediaClock`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use sfu::{MediaKind, Sfu, StreamEvent, StreamEventKind};
use signaling::{Bus, IntegratorEvent, Lagged, MediaStamp, StreamStatus};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// Frames a media-clock tap buffers; it only keeps the newest time, so a
/// small queue is plenty (a full one drops, never slows the forwarder).
const CLOCK_TAP_CAPACITY: usize = 32;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Newest media time of each live stream.
#[derive(Default)]
pub struct MediaClock {
    stamps: Mutex<HashMap<String, (MediaStamp, bool)>>,
}

impl MediaClock {
    /// The stream's media time now, `None` when it is not live (or no
    /// frame arrived yet).
    pub fn stamp(&self, stream: &str) -> Option<MediaStamp> {
        self.stamps.lock().get(stream).map(|(s, _)| *s)
    }

    fn update(&self, stream: &str, frame: &sfu::Frame) {
        let video = frame.kind == MediaKind::Video;
        let mut stamps = self.stamps.lock();
        let entry = stamps.get(stream);
        // Video sets the clock; audio only while no video was seen.
        if !video && entry.is_some_and(|(_, had_video)| *had_video) {
            return;
        }
        let stamp = MediaStamp {
            rtp_time: frame.time.numer(),
            clock_rate: frame.time.denom(),
            capture_ms: frame.wallclock.map(unix_ms),
        };
        let had_video = video || entry.is_some_and(|(_, v)| *v);
        stamps.insert(stream.to_string(), (stamp, had_video));
    }

    fn clear(&self, stream: &str) {
        self.stamps.lock().remove(stream);
    }
}

/// Something else that wants the SFU's stream events (webhooks).
pub type StreamListener = Arc<dyn Fn(&StreamEvent) + Send + Sync>;

/// Something that wants a live stream's integrator events, in order (the
/// SFU's viewer data channels, the LL-HLS packager's `EXT-X-DATERANGE`).
/// Called on the watcher's task for the stream; it must not block.
pub type EventSink = Arc<dyn Fn(&Arc<IntegratorEvent>) + Send + Sync>;

/// The running watcher; aborts its tasks on drop.
pub struct StreamWatch {
    task: JoinHandle<()>,
    /// Per live stream: its media-clock tap and its event relay.
    taps: Arc<Mutex<HashMap<String, Vec<JoinHandle<()>>>>>,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        self.task.abort();
        for (_, tasks) in self.taps.lock().drain() {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

impl StreamWatch {
    pub fn start(
        sfu: Sfu,
        bus: Bus,
        clock: Arc<MediaClock>,
        listeners: Vec<StreamListener>,
        event_sinks: Vec<EventSink>,
    ) -> StreamWatch {
        let mut events = sfu.events();
        let event_sinks = Arc::new(event_sinks);
        let taps: Arc<Mutex<HashMap<String, Vec<JoinHandle<()>>>>> = Arc::default();
        let taps2 = Arc::clone(&taps);
        let task = tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!("stream watcher missed {n} stream events");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                for l in &listeners {
                    l(&ev);
                }
                let status = match ev.kind {
                    StreamEventKind::Live => StreamStatus::Live,
                    StreamEventKind::Stalled => StreamStatus::Stalled,
                    StreamEventKind::Resumed => StreamStatus::Resumed,
                    StreamEventKind::Ended => StreamStatus::Ended,
                };
                match status {
                    StreamStatus::Live => {
                        let mut taps = taps2.lock();
                        if let Some(old) = taps.remove(&ev.stream) {
                            old.iter().for_each(JoinHandle::abort);
                        }
                        let mut tap = sfu.tap(&ev.stream, CLOCK_TAP_CAPACITY);
                        let clock = Arc::clone(&clock);
                        let stream = ev.stream.clone();
                        let mut tasks = vec![tokio::spawn(async move {
                            while let Some(frame) = tap.recv().await {
                                clock.update(&stream, &frame);
                            }
                        })];
                        if !event_sinks.is_empty() {
                            tasks.push(tokio::spawn(relay_events(
                                bus.event_feed(&ev.stream),
                                ev.stream.clone(),
                                Arc::clone(&event_sinks),
                            )));
                        }
                        taps.insert(ev.stream.clone(), tasks);
                    }
                    StreamStatus::Ended => {
                        if let Some(tasks) = taps2.lock().remove(&ev.stream) {
                            tasks.iter().for_each(JoinHandle::abort);
                        }
                        clock.clear(&ev.stream);
                    }
                    _ => {}
                }
                bus.publish_status(&ev.stream, status, unix_ms(ev.at)).await;
            }
        });
        StreamWatch { task, taps }
    }
}

/// Hands each integrator event of a live stream to the sinks, in order.
async fn relay_events(mut feed: signaling::EventFeed, stream: String, sinks: Arc<Vec<EventSink>>) {
    loop {
        match feed.recv().await {
            Ok(Some(event)) => sinks.iter().for_each(|sink| sink(&event)),
            Ok(None) => return,
            Err(Lagged(n)) => {
                tracing::warn!(
                    stream,
                    "event relay fell behind: {n} integrator events not relayed"
                );
            }
        }
    }
}
