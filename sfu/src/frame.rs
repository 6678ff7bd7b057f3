//! A frame: what a publisher's depacketizer hands over, shared by
//! reference with every worker that has viewers of the stream and with the
//! stream's taps.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime};

/// A depacketized media frame from a publisher, shared by reference with
/// every worker that has viewers of the stream.
#[derive(Debug)]
pub struct Frame {
    pub kind: MediaKind,
    pub codec: Codec,
    /// Publisher's RTP time (extended), in the codec's clock rate.
    pub time: MediaTime,
    /// When the first packet of the frame arrived.
    pub network_time: Instant,
    /// When str0m handed over the complete frame (the forwarding delay
    /// metric starts here).
    pub ready_at: Instant,
    pub keyframe: bool,
    pub data: Arc<[u8]>,
    /// The frame cut into RTP payloads once for every viewer (H.264, Opus);
    /// `None` where each viewer's str0m packetizes it (see `rtp_out`).
    pub packets: Option<Vec<Arc<[u8]>>>,
    /// Position among the frames of its kind forwarded from this publisher
    /// session; a gap means a frame was lost on the way to a viewer.
    pub index: u64,
    /// False when packets of this frame or before it were lost at ingest.
    pub contiguous: bool,
    /// Viewers rebase their timeline when it changes (see [`Epoch`]).
    pub epoch: Epoch,
    /// Simulcast layer id (position of the rid among those the publisher
    /// session has sent; 0 without simulcast). Part of `epoch`.
    pub layer: u8,
    /// Whether the frame belongs to the stream's main layer (the largest
    /// one still sending): what taps receive.
    pub top: bool,
    /// Wall-clock capture time from the publisher's RTCP sender reports
    /// (RTP → NTP mapping); `None` until the first report arrives.
    pub wallclock: Option<SystemTime>,
}

/// Changes whenever timestamps may jump: a new publisher session, or a
/// switch to another simulcast layer. A session's epoch leaves the low bits
/// free for its layer ids ([`Epoch::of_layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// Bits below this count a session's layers.
    const LAYER_BITS: u32 = 20;

    /// The epoch of the `n`th publisher session (`n` ≥ 1).
    pub fn of_session(n: u64) -> Epoch {
        Epoch(n << Self::LAYER_BITS)
    }

    /// The epoch of layer `layer` of this session.
    pub fn of_layer(self, layer: u8) -> Epoch {
        Epoch(self.session().0 + u64::from(layer))
    }

    /// The publisher session this epoch belongs to (its layer cleared).
    pub fn session(self) -> Epoch {
        Epoch(self.0 & !((1u64 << Self::LAYER_BITS) - 1))
    }

    pub(crate) fn to_bits(self) -> u64 {
        self.0
    }

    #[cfg(test)]
    pub(crate) fn from_bits(bits: u64) -> Epoch {
        Epoch(bits)
    }
}

/// A stream's number inside one server (names are for humans; maps key on this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StreamId(pub u64);
