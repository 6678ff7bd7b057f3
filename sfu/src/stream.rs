//! One live stream as the forwarder sees it: who publishes it, on which
//! workers its viewers sit, and what the bitstream told us about itself.
//!
//! The per-packet path only reads atomics here; the mutex guards the
//! publisher slot, touched on publish/unpublish and on (throttled) keyframe
//! requests.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::frame::{Epoch, Frame, StreamId};
use crate::h264::ProfileLevelId;
use crate::layers::LayerTable;
use crate::tap::{Offered, TapSender};
use crate::SessionId;

/// Another credential publishes the stream.
#[derive(Debug)]
pub(crate) struct Busy;

#[derive(Debug, Clone)]
pub(crate) struct PublisherSlot {
    pub session: SessionId,
    pub worker: usize,
    /// Identity of the credential that published (a replacement must match).
    pub owner: String,
}

pub(crate) struct StreamHub {
    pub id: StreamId,
    pub name: String,
    /// Number of viewers of this stream on each worker.
    viewers_per_worker: Box<[AtomicUsize]>,
    publisher: Mutex<Option<PublisherSlot>>,
    /// Epoch base of the current publisher session (0 when none).
    active_epoch: AtomicU64,
    /// H.264 profile read from the publisher's SPS (0 when unknown).
    h264_profile: AtomicU32,
    /// Consumers of the stream's frames beside viewers (the transcoder).
    taps: RwLock<Vec<TapSender>>,
    tap_count: AtomicUsize,
    /// The publisher's layers as last measured (read when viewers choose,
    /// not per packet).
    layers: RwLock<LayerTable>,
    /// Whether the current publisher sends simulcast.
    simulcast: AtomicBool,
}

impl StreamHub {
    pub fn new(id: StreamId, name: String, workers: usize) -> StreamHub {
        StreamHub {
            id,
            name,
            viewers_per_worker: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            publisher: Mutex::new(None),
            active_epoch: AtomicU64::new(0),
            h264_profile: AtomicU32::new(0),
            taps: RwLock::new(Vec::new()),
            tap_count: AtomicUsize::new(0),
            layers: RwLock::new(LayerTable::default()),
            simulcast: AtomicBool::new(false),
        }
    }

    pub fn viewers_on(&self, worker: usize) -> usize {
        self.viewers_per_worker
            .get(worker)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn viewer_total(&self) -> usize {
        self.viewers_per_worker
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn workers(&self) -> usize {
        self.viewers_per_worker.len()
    }

    pub fn add_viewer(&self, worker: usize) {
        if let Some(c) = self.viewers_per_worker.get(worker) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn remove_viewer(&self, worker: usize) {
        if let Some(c) = self.viewers_per_worker.get(worker) {
            // Saturating: a double removal must not wrap the count.
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    pub fn publisher(&self) -> Option<PublisherSlot> {
        self.publisher.lock().clone()
    }

    /// Installs a publisher unless another credential holds the stream
    /// (checked and swapped under one lock, so two credentials racing for an
    /// empty slot cannot both win). Returns the session it replaces.
    pub fn claim(
        &self,
        slot: PublisherSlot,
        epoch: Epoch,
        simulcast: bool,
    ) -> Result<Option<PublisherSlot>, Busy> {
        let mut guard = self.publisher.lock();
        if guard.as_ref().is_some_and(|cur| cur.owner != slot.owner) {
            return Err(Busy);
        }
        self.active_epoch.store(epoch.to_bits(), Ordering::Release);
        *self.layers.write() = LayerTable::default();
        self.simulcast.store(simulcast, Ordering::Relaxed);
        Ok(guard.replace(slot))
    }

    /// Whether a publisher other than `owner` holds the stream.
    pub fn held_by_other(&self, owner: &str) -> bool {
        self.publisher
            .lock()
            .as_ref()
            .is_some_and(|cur| cur.owner != owner)
    }

    /// Clears the publisher slot if `session` still holds it.
    pub fn clear_publisher(&self, session: SessionId) -> bool {
        let mut guard = self.publisher.lock();
        if guard.as_ref().is_some_and(|p| p.session == session) {
            *guard = None;
            self.active_epoch.store(0, Ordering::Release);
            true
        } else {
            false
        }
    }

    /// Whether `epoch`'s publisher session is the stream's current one.
    pub fn is_active_epoch(&self, epoch: Epoch) -> bool {
        self.active_epoch.load(Ordering::Acquire) == epoch.session().to_bits()
    }

    pub fn h264_profile(&self) -> Option<ProfileLevelId> {
        match self.h264_profile.load(Ordering::Relaxed) {
            0 => None,
            v => Some(ProfileLevelId(v)),
        }
    }

    pub fn set_h264_profile(&self, p: ProfileLevelId) {
        self.h264_profile.store(p.0, Ordering::Relaxed);
    }

    pub fn layers(&self) -> LayerTable {
        self.layers.read().clone()
    }

    /// Bitrate and keyframe size of the layer with the highest last
    /// measured bitrate; zeros when none was measured yet.
    pub fn largest_layer(&self) -> (u64, usize) {
        self.layers
            .read()
            .layers
            .iter()
            .max_by_key(|l| l.bitrate_bps)
            .map_or((0, 0), |l| (l.bitrate_bps, l.keyframe_bytes))
    }

    pub fn set_layers(&self, table: LayerTable) {
        self.simulcast
            .store(table.is_simulcast(), Ordering::Relaxed);
        *self.layers.write() = table;
    }

    /// Whether the publisher sends simulcast (viewers then get bandwidth
    /// estimation to choose a layer).
    pub fn is_simulcast(&self) -> bool {
        self.simulcast.load(Ordering::Relaxed)
    }

    pub fn add_tap(&self, tap: TapSender) {
        let mut taps = self.taps.write();
        taps.push(tap);
        self.tap_count.store(taps.len(), Ordering::Relaxed);
    }

    /// Offers a frame to every tap without waiting; returns how many were
    /// dropped because a tap was full. Taps whose receiver is gone are removed.
    pub fn offer_to_taps(&self, frame: &Arc<Frame>) -> usize {
        if self.tap_count.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut dropped = 0;
        let mut closed = false;
        for tap in self.taps.read().iter() {
            match tap.offer(frame) {
                Offered::Sent => {}
                Offered::Dropped => dropped += 1,
                Offered::Closed => closed = true,
            }
        }
        if closed {
            let mut taps = self.taps.write();
            taps.retain(|t| !t.is_closed());
            self.tap_count.store(taps.len(), Ordering::Relaxed);
        }
        dropped
    }
}
