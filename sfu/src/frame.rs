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
    /// Changes whenever timestamps may jump: a new publisher session or a
    /// switch to another simulcast layer. Viewers rebase their timeline on it.
    pub epoch: u64,
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
