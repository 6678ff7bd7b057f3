//! The tokio driver: one packager per live stream, fed from an SFU tap on
//! its own task, started on `Live` and finished on `Ended`.
//!
//! Date ranges ([`Hls::add_event`]) wait in a small queue of the stream's
//! entry, so the caller never waits for the packager; the stream task
//! moves them into the packager (and the recording) with the next frame,
//! or at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, Registry};
use sfu::{Sfu, StreamEventKind};
use tokio::sync::{broadcast, watch, Notify};

use crate::daterange::{DateRange, MAX_LIVE_DATE_RANGES};
use crate::ladder::{LadderHandle, Rung};
use crate::record::{RecordEvent, Recorder, RecordingConfig, RecordingReady};
use crate::stream::{AudioOut, StreamPackager};
use crate::track::TrackSample;

/// Settings of the LL-HLS side.
#[derive(Debug, Clone)]
pub struct HlsConfig {
    pub timing: crate::track::Timing,
    /// Frames the tap queue holds before it drops (a few seconds of media).
    pub tap_capacity: usize,
    /// How long an ended stream's playlists (with `EXT-X-ENDLIST`) stay.
    pub ended_linger: Duration,
    /// AAC (default) or Opus passthrough for the audio rendition.
    pub audio: AudioOut,
    /// ABR ladder below the source (rungs at or above the source height
    /// are left out); empty: source rendition only.
    pub ladder: Vec<Rung>,
    /// Source frames queued for the ladder thread before it drops.
    pub ladder_capacity: usize,
    /// Keep ended streams' source video and audio as VOD (off: `None`).
    pub recordings: Option<RecordingConfig>,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            timing: crate::track::Timing::default(),
            tap_capacity: 512,
            ended_linger: Duration::from_secs(120),
            audio: AudioOut::default(),
            ladder: crate::ladder::default_rungs(),
            ladder_capacity: 30,
            recordings: None,
        }
    }
}

/// Instruments of the LL-HLS side, registered on the registry the binary
/// serves at `/metrics`.
#[derive(Clone)]
pub struct HlsMetrics {
    pub tap_drops: IntCounter,
    pub part_publish_delay: Histogram,
    /// Scale + encode time per frame, by ladder rendition.
    pub encode_seconds: HistogramVec,
    pub ladder_drops: IntCounter,
}

impl HlsMetrics {
    pub fn new(registry: &Registry) -> Result<HlsMetrics, prometheus::Error> {
        let tap_drops = IntCounter::new(
            "relaycast_hls_tap_drops_total",
            "Frames the LL-HLS packager lost because its tap queue was full",
        )?;
        let part_publish_delay = Histogram::with_opts(
            HistogramOpts::new(
                "relaycast_hls_part_publish_delay_seconds",
                "From the arrival of a part's last frame to the part being listed",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0,
            ]),
        )?;
        let encode_seconds = HistogramVec::new(
            HistogramOpts::new(
                "relaycast_hls_encode_seconds",
                "Scaling and openh264 encoding of one frame, per ladder rendition",
            )
            .buckets(vec![
                0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.1, 0.2, 0.5,
            ]),
            &["rendition"],
        )?;
        let ladder_drops = IntCounter::new(
            "relaycast_hls_ladder_drops_total",
            "Source frames the ABR ladder skipped because its encoders fell behind",
        )?;
        registry.register(Box::new(tap_drops.clone()))?;
        registry.register(Box::new(part_publish_delay.clone()))?;
        registry.register(Box::new(encode_seconds.clone()))?;
        registry.register(Box::new(ladder_drops.clone()))?;
        Ok(HlsMetrics {
            tap_drops,
            part_publish_delay,
            encode_seconds,
            ladder_drops,
        })
    }
}

/// One stream's packager as the HTTP side sees it.
pub struct StreamEntry {
    /// Distinguishes publisher runs of the same stream name in URLs, so
    /// immutable resources of one run are never confused with another's.
    pub session: String,
    pub state: Mutex<StreamPackager>,
    changed: watch::Sender<u64>,
    end: Notify,
    /// `Ended` was seen; a `Live` after it starts a new packager.
    ending: AtomicBool,
    /// Date ranges not yet in the packager.
    inbox: Mutex<Vec<Arc<DateRange>>>,
    /// Clients reloading this run's media playlists.
    pub audience: crate::audience::Audience,
    /// The last thumbnail made: keyframe serial, when, JPEG.
    thumbnail: Mutex<Option<(u64, Instant, Bytes)>>,
}

impl StreamEntry {
    fn new(session: String, config: &HlsConfig) -> StreamEntry {
        StreamEntry {
            session,
            state: Mutex::new(StreamPackager::new(
                config.timing,
                config.audio,
                config.ladder.clone(),
            )),
            changed: watch::channel(0).0,
            end: Notify::new(),
            ending: AtomicBool::new(false),
            inbox: Mutex::new(Vec::new()),
            audience: crate::audience::Audience::default(),
            thumbnail: Mutex::new(None),
        }
    }

    /// Queues a date range for every rendition's playlist; false once the
    /// stream is ending. Never waits for the packager.
    pub fn add_date_range(&self, range: DateRange) -> bool {
        if self.ending.load(Ordering::Acquire) {
            return false;
        }
        let mut inbox = self.inbox.lock();
        if inbox.len() >= MAX_LIVE_DATE_RANGES {
            inbox.remove(0);
        }
        inbox.push(Arc::new(range));
        true
    }

    fn take_date_ranges(&self) -> Vec<Arc<DateRange>> {
        std::mem::take(&mut *self.inbox.lock())
    }

    /// Wakes on every change of the packager.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Feeds one frame (as a tap would) and wakes waiting requests.
    pub fn feed(&self, frame: &sfu::Frame, arrival_wall: SystemTime) -> crate::stream::Handled {
        let ranges = self.take_date_ranges();
        let handled = {
            let mut st = self.state.lock();
            for r in ranges {
                st.add_date_range(r);
            }
            let handled = st.handle_frame(frame, arrival_wall);
            // No ladder thread for hand-fed streams.
            st.take_ladder_inputs();
            handled
        };
        self.notify();
        handled
    }

    /// Encoded ladder samples (one slot per rung) from the ladder thread.
    pub fn push_ladder(&self, samples: Vec<Option<TrackSample>>) {
        self.state.lock().push_rungs(samples);
        self.notify();
    }

    /// Ends the stream (`EXT-X-ENDLIST`) and wakes waiting requests.
    pub fn finish(&self) {
        let ranges = self.take_date_ranges();
        let mut st = self.state.lock();
        for r in ranges {
            st.add_date_range(r);
        }
        st.end();
        drop(st);
        self.notify();
    }
}

struct Inner {
    /// `None` for a detached packager fed by hand ([`Hls::detached`]).
    sfu: Option<Sfu>,
    config: HlsConfig,
    metrics: HlsMetrics,
    streams: Mutex<HashMap<String, Arc<StreamEntry>>>,
    /// Recordings complete on disk.
    ready: broadcast::Sender<RecordingReady>,
    /// Ended streams' memory handed back to the allocator.
    released: broadcast::Sender<Released>,
}

/// Memory an ended stream has handed back to the allocator. The library
/// only says when; a binary that wants the allocator to return the freed
/// pages to the OS (glibc keeps them in its arenas) acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Released {
    /// The stream's ladder thread has ended: its decoder, encoders and
    /// scaling buffers are freed (tens of MB for a 720p source).
    Ladder { stream: String },
    /// An ended stream's packager left the table after the linger: its
    /// segment window (every rendition's last `Timing::window`) is freed
    /// once the last request holding it finishes.
    Packager { stream: String },
}

/// Notices a slow listener may fall behind by before it misses some.
const READY_CAPACITY: usize = 64;

/// The LL-HLS side of relaycast: packagers of the live streams.
#[derive(Clone)]
pub struct Hls {
    inner: Arc<Inner>,
}

impl Hls {
    /// Starts following the SFU's stream events (needs a tokio runtime).
    pub fn start(sfu: Sfu, config: HlsConfig, metrics: HlsMetrics) -> Hls {
        let events = sfu.events();
        let live = sfu.live_streams();
        let hls = Hls {
            inner: Arc::new(Inner {
                sfu: Some(sfu),
                config,
                metrics,
                streams: Mutex::new(HashMap::new()),
                ready: broadcast::channel(READY_CAPACITY).0,
                released: broadcast::channel(READY_CAPACITY).0,
            }),
        };
        tokio::spawn(follow_events(hls.clone(), events));
        if let Some(rec) = hls.inner.config.recordings.clone() {
            tokio::spawn(async move {
                loop {
                    crate::record::sweep(&rec.dir, rec.retention, SystemTime::now()).await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
        for s in live {
            hls.start_stream(&s);
        }
        hls
    }

    /// An LL-HLS side with no SFU: streams are opened with
    /// [`Hls::open_stream`] and fed with [`StreamEntry::feed`] (tests,
    /// ingest from elsewhere).
    pub fn detached(config: HlsConfig, metrics: HlsMetrics) -> Hls {
        Hls {
            inner: Arc::new(Inner {
                sfu: None,
                config,
                metrics,
                streams: Mutex::new(HashMap::new()),
                ready: broadcast::channel(READY_CAPACITY).0,
                released: broadcast::channel(READY_CAPACITY).0,
            }),
        }
    }

    /// Opens (or replaces) a stream's packager without a tap.
    pub fn open_stream(&self, stream: &str, run: &str) -> Arc<StreamEntry> {
        let entry = Arc::new(StreamEntry::new(run.to_string(), &self.inner.config));
        self.inner
            .streams
            .lock()
            .insert(stream.to_string(), entry.clone());
        entry
    }

    pub fn config(&self) -> &HlsConfig {
        &self.inner.config
    }

    /// Where recordings live, when recording is on.
    pub fn recordings_dir(&self) -> Option<std::path::PathBuf> {
        self.inner.config.recordings.as_ref().map(|r| r.dir.clone())
    }

    /// The packager of `stream`, if one runs or recently ended.
    pub fn stream(&self, stream: &str) -> Option<Arc<StreamEntry>> {
        self.inner.streams.lock().get(stream).cloned()
    }

    /// LL-HLS viewers of the live stream on this node (see
    /// [`crate::audience`]); 0 when it is not live here.
    pub fn audience(&self, stream: &str) -> usize {
        self.stream(stream)
            .filter(|e| !e.ending.load(Ordering::Acquire))
            .map_or(0, |e| e.audience.count(std::time::Instant::now()))
    }

    /// Whether the live stream has a picture for [`Hls::thumbnail`].
    pub fn has_picture(&self, stream: &str) -> bool {
        self.stream(stream)
            .filter(|e| !e.ending.load(Ordering::Acquire))
            .is_some_and(|e| e.state.lock().latest_keyframe().is_some())
    }

    /// A JPEG of the live stream's latest keyframe (see [`crate::thumbnail`]);
    /// `Ok(None)` when the stream is not live here or has no keyframe yet.
    /// One made less than [`crate::thumbnail::MAX_AGE`] ago is reused.
    pub async fn thumbnail(
        &self,
        stream: &str,
    ) -> Result<Option<Bytes>, crate::thumbnail::ThumbnailError> {
        let Some(entry) = self
            .stream(stream)
            .filter(|e| !e.ending.load(Ordering::Acquire))
        else {
            return Ok(None);
        };
        let Some(key) = entry.state.lock().latest_keyframe().cloned() else {
            return Ok(None);
        };
        let now = Instant::now();
        if let Some((serial, at, jpeg)) = &*entry.thumbnail.lock() {
            if *serial == key.serial || now.duration_since(*at) < crate::thumbnail::MAX_AGE {
                return Ok(Some(jpeg.clone()));
            }
        }
        let annex_b = key.annex_b.clone();
        let jpeg = tokio::task::spawn_blocking(move || {
            crate::thumbnail::jpeg_of_keyframe(&annex_b, crate::thumbnail::WIDTH)
        })
        .await
        // The decode task panicked (a decoder bug): no picture this time.
        .map_err(|_| crate::thumbnail::ThumbnailError::NoPicture)??;
        let jpeg = Bytes::from(jpeg);
        *entry.thumbnail.lock() = Some((key.serial, now, jpeg.clone()));
        Ok(Some(jpeg))
    }

    /// Attaches a date range (an integrator event) to the live stream's
    /// playlists and its recording; false when no packager of the stream
    /// is live. Never waits for the packager.
    pub fn add_event(&self, stream: &str, range: DateRange) -> bool {
        self.stream(stream).is_some_and(|e| e.add_date_range(range))
    }

    /// Hears of each recording once it is complete on disk (subscribe
    /// before streams end; a listener more than 64 notices behind misses
    /// some).
    pub fn recording_notices(&self) -> broadcast::Receiver<RecordingReady> {
        self.inner.ready.subscribe()
    }

    /// Hears when an ended stream has freed its ladder and, later, its
    /// packager (subscribe before streams end; a listener more than 64
    /// notices behind misses some).
    pub fn released(&self) -> broadcast::Receiver<Released> {
        self.inner.released.subscribe()
    }

    fn start_stream(&self, stream: &str) {
        let entry = {
            let mut streams = self.inner.streams.lock();
            if let Some(e) = streams.get(stream) {
                if !e.ending.load(Ordering::Acquire) && !e.state.lock().is_ended() {
                    return; // a replacing publisher: same packager, new epoch
                }
            }
            let session = format!(
                "{:x}",
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            );
            let entry = Arc::new(StreamEntry::new(session, &self.inner.config));
            streams.insert(stream.to_string(), entry.clone());
            entry
        };
        let Some(sfu) = &self.inner.sfu else { return };
        let tap = sfu.tap(stream, self.inner.config.tap_capacity);
        sfu.request_keyframe(stream);
        tokio::spawn(run_stream(
            self.clone(),
            sfu.clone(),
            stream.to_string(),
            entry,
            tap,
        ));
    }

    fn end_stream(&self, stream: &str) {
        if let Some(e) = self.stream(stream) {
            e.ending.store(true, Ordering::Release);
            e.end.notify_one();
        }
    }
}

async fn follow_events(hls: Hls, mut events: broadcast::Receiver<sfu::StreamEvent>) {
    loop {
        match events.recv().await {
            Ok(ev) => match ev.kind {
                StreamEventKind::Live | StreamEventKind::Resumed => hls.start_stream(&ev.stream),
                StreamEventKind::Ended => hls.end_stream(&ev.stream),
                StreamEventKind::Stalled => {}
            },
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "LL-HLS fell behind the stream events; resyncing"
                );
                let live = hls
                    .inner
                    .sfu
                    .as_ref()
                    .map(Sfu::live_streams)
                    .unwrap_or_default();
                for s in &live {
                    hls.start_stream(s);
                }
                let running: Vec<String> = hls.inner.streams.lock().keys().cloned().collect();
                for s in running.iter().filter(|s| !live.contains(s)) {
                    hls.end_stream(s);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn run_stream(
    hls: Hls,
    sfu: Sfu,
    stream: String,
    entry: Arc<StreamEntry>,
    mut tap: sfu::Tap,
) {
    let metrics = hls.inner.metrics.clone();
    let mut dropped_seen = 0;
    let mut last_video_arrival: Option<Instant> = None;
    let mut last_keyframe_ask: Option<Instant> = None;
    let mut ladder: Option<LadderHandle> = None;
    let mut ladder_dropped = 0;
    let recorder = hls.inner.config.recordings.as_ref().and_then(|r| {
        crate::record::safe_component(&stream)
            .then(|| Recorder::start(&r.dir, &stream, &entry.session, hls.inner.ready.clone()))
    });
    let mut recording_started = [false; 2];
    loop {
        let frame = tokio::select! {
            f = tap.recv() => f,
            () = entry.end.notified() => None,
        };
        let Some(frame) = frame else { break };
        let ranges = entry.take_date_ranges();
        let now = Instant::now();
        let wall_now = SystemTime::now();
        let arrival_wall = wall_now
            .checked_sub(now.saturating_duration_since(frame.network_time))
            .unwrap_or(wall_now);
        let (handled, published, inputs, sizes, fps) = {
            let mut st = entry.state.lock();
            add_date_ranges(&mut st, ranges, recorder.as_ref());
            let before = st.video().and_then(|t| t.last_msn_part());
            let handled = st.handle_frame(&frame, arrival_wall);
            let after = st.video().and_then(|t| t.last_msn_part());
            let inputs = st.take_ladder_inputs();
            let sizes = if ladder.is_none() && !inputs.is_empty() {
                st.rung_sizes()
            } else {
                Vec::new()
            };
            if let Some(rec) = &recorder {
                record(&mut st, rec, &mut recording_started);
            }
            (handled, before != after, inputs, sizes, st.frame_rate())
        };
        if !sizes.is_empty() {
            match crate::ladder::spawn(
                Arc::downgrade(&entry),
                sizes,
                fps.unwrap_or(30.0) as f32,
                metrics.encode_seconds.clone(),
                hls.inner.config.ladder_capacity,
            ) {
                Ok(h) => ladder = Some(h),
                Err(e) => tracing::error!(%stream, "ladder thread: {e}"),
            }
        }
        if let Some(l) = ladder.as_mut() {
            for input in inputs {
                l.offer(input);
            }
            if l.dropped > ladder_dropped {
                metrics.ladder_drops.inc_by(l.dropped - ladder_dropped);
                ladder_dropped = l.dropped;
            }
        }
        if frame.kind == sfu::MediaKind::Video {
            if published {
                if let Some(at) = last_video_arrival {
                    metrics
                        .part_publish_delay
                        .observe(now.saturating_duration_since(at).as_secs_f64());
                }
            }
            last_video_arrival = Some(frame.network_time);
        }
        if handled.want_keyframe
            && last_keyframe_ask.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            sfu.request_keyframe(&stream);
            last_keyframe_ask = Some(now);
        }
        let dropped = tap.dropped();
        if dropped > dropped_seen {
            metrics.tap_drops.inc_by(dropped - dropped_seen);
            dropped_seen = dropped;
        }
        entry.notify();
    }
    // Frames already queued belong to the stream that just ended.
    while let Some(frame) = tap.try_recv() {
        entry.state.lock().handle_frame(&frame, SystemTime::now());
    }
    drop(tap);
    let ladder = ladder.map(LadderHandle::close);
    {
        let ranges = entry.take_date_ranges();
        let mut st = entry.state.lock();
        add_date_ranges(&mut st, ranges, recorder.as_ref());
        st.end();
        if let Some(rec) = &recorder {
            record(&mut st, rec, &mut recording_started);
            if st.video().is_some() {
                rec.send(RecordEvent::End {
                    multivariant: crate::http::multivariant_text("", &st, false),
                    poster: st.latest_keyframe().map(|k| k.annex_b.clone()),
                });
            }
        }
    }
    entry.notify();
    tracing::info!(%stream, "LL-HLS stream ended");
    if let Some(thread) = ladder {
        // It finishes the frames still queued (at most `ladder_capacity`).
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {
                let _ = hls.inner.released.send(Released::Ladder {
                    stream: stream.clone(),
                });
            }
            _ => {
                tracing::error!(%stream, "the ladder thread did not end cleanly (panic or runtime shutdown)")
            }
        }
    }
    let linger = hls.inner.config.ended_linger;
    tokio::time::sleep(linger).await;
    {
        let mut streams = hls.inner.streams.lock();
        if streams.get(&stream).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            streams.remove(&stream);
        }
    }
    // Gone from the table (removed here, or replaced by a newer run).
    drop(entry);
    let _ = hls.inner.released.send(Released::Packager { stream });
}

/// Moves queued date ranges into the packager and the recording.
fn add_date_ranges(st: &mut StreamPackager, ranges: Vec<Arc<DateRange>>, rec: Option<&Recorder>) {
    for r in ranges {
        if let Some(rec) = rec {
            rec.send(RecordEvent::DateRange(r.clone()));
        }
        st.add_date_range(r);
    }
}

/// Hands new init segments and finished segments of the source video and
/// the audio to the recorder.
fn record(st: &mut StreamPackager, rec: &Recorder, started: &mut [bool; 2]) {
    for (i, name) in ["video", "audio"].into_iter().enumerate() {
        let track = if i == 0 {
            st.video_mut()
        } else {
            st.audio_mut()
        };
        let Some(track) = track else { continue };
        if !started[i] {
            started[i] = true;
            track.set_recording(true);
            rec.send(RecordEvent::Init {
                rendition: name,
                bytes: track.init(),
            });
        }
        for segment in track.take_finished() {
            rec.send(RecordEvent::Segment {
                rendition: name,
                segment,
            });
        }
    }
}
