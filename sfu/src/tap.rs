//! Taps and stream events: how the rest of relaycast (the LL-HLS transcoder,
//! webhooks, analytics) sees a stream without ever slowing the forwarder.
//!
//! A [`Tap`] receives every frame the stream's viewers get (audio and the top
//! video layer) through a bounded queue. The publisher's worker only ever
//! `try_send`s: when the tap's consumer falls behind, frames are dropped and
//! counted, and the consumer sees the gap in [`Frame::index`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::frame::Frame;

/// Receiving end of a stream tap. Dropping it detaches the tap.
pub struct Tap {
    rx: mpsc::Receiver<Arc<Frame>>,
    dropped: Arc<AtomicU64>,
}

impl Tap {
    /// Next frame; `None` once the forwarder shut down.
    pub async fn recv(&mut self) -> Option<Arc<Frame>> {
        self.rx.recv().await
    }

    /// A frame if one is queued now.
    pub fn try_recv(&mut self) -> Option<Arc<Frame>> {
        self.rx.try_recv().ok()
    }

    /// Frames dropped because this tap's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

pub(crate) struct TapSender {
    tx: mpsc::Sender<Arc<Frame>>,
    dropped: Arc<AtomicU64>,
}

pub(crate) fn tap_channel(capacity: usize) -> (TapSender, Tap) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        TapSender {
            tx,
            dropped: dropped.clone(),
        },
        Tap { rx, dropped },
    )
}

/// Outcome of offering a frame to a tap.
pub(crate) enum Offered {
    Sent,
    Dropped,
    Closed,
}

impl TapSender {
    pub fn offer(&self, frame: &Arc<Frame>) -> Offered {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => Offered::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Offered::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offered::Closed,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What happened to a stream, as seen by the forwarder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEventKind {
    /// A publisher session's first frame arrived.
    Live,
    /// The live publisher sent nothing for [`STALL_AFTER`].
    Stalled,
    /// Media flows again after a stall.
    Resumed,
    /// The publisher left (DELETE, timeout or disconnect) and nobody replaced it.
    Ended,
}

#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub stream: String,
    pub kind: StreamEventKind,
    pub at: SystemTime,
}

/// Silence after which a live publisher counts as stalled. With the worker's
/// idle tick this reports a stall well within a second of the last frame.
pub const STALL_AFTER: std::time::Duration = std::time::Duration::from_millis(600);
