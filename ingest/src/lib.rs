//! # ingest — encoders that do not speak WHIP
//!
//! Accepts publishers over RTMP (OBS's default custom service, ffmpeg,
//! hardware encoders) and SRT (caller mode, MPEG-TS) and hands their media
//! to the SFU as a publisher of
//! the stream, under the same stream keys and publish rules as WHIP
//! (`signaling::Store`; the same credential replaces a live publisher,
//! another is refused). From there a stream is a stream: WebRTC viewers,
//! LL-HLS, recording, events and webhooks do not know how it arrived.
//!
//! ## Layers
//! - [`flv`]: the FLV tag headers RTMP video and audio messages carry
//!   (pure parsing, total);
//! - [`avc`]: AVCC → Annex B, parameter sets before every IDR;
//! - [`aac_to_opus`]: AAC → Opus once per stream (WebRTC has no AAC);
//! - [`rtmp`]: the tokio driver around `rml_rtmp`'s sans-IO handshake and
//!   server session: one task per connection, bytes in, packets out,
//!   session events acted on;
//! - [`ts`]: MPEG-TS demultiplexing (`mpeg2ts-reader`) and ADTS splitting;
//! - [`srt`]: the `srt-tokio` listener: `streamid` checked before a caller
//!   is accepted, then one task per connection feeding [`ts`];
//! - [`media_in`]: what both do with H.264 and AAC once unwrapped (wall
//!   clock, Opus, [`sfu::Ingest::push`]);
//! - [`error`]: why a connection ended, the causes both protocols share.
//!
//! ## Why `rml_rtmp`
//! It is the RTMP crate on crates.io that is a protocol state machine and
//! nothing else: `Handshake::process_bytes` and `ServerSession::handle_input`
//! take bytes and return bytes to send and typed events (connect, publish,
//! audio/video data with their timestamps), with no sockets, runtime or
//! threads of its own, the shape the rest of relaycast has (sans-IO cores,
//! thin drivers). The other maintained candidate, `rtmp` (xiu), is a tokio
//! server with its own stream hub, GOP cache and sessions bound to its own
//! channels: we would have bridged two SFUs.
//!
//! ## Why `srt-tokio` and `mpeg2ts-reader`
//! `srt-tokio` is the maintained pure-Rust SRT stack (no libsrt to build
//! and link; listener, HSv5 handshake with `streamid`, live receive buffer,
//! AES) and parses the `#!::` access-control syntax; `mpeg2ts-reader` is
//! the maintained MPEG-TS demultiplexer, by the author of `h264-reader`.
//!
//! ## Bad input
//! Garbage instead of a handshake, a protocol error, a wrong key, an
//! unsupported codec (Enhanced RTMP FourCCs, non-AVC video, non-AAC audio),
//! a publisher that sends nothing for [`RtmpConfig::stall_timeout`]: the
//! connection is closed with one log line and counted in
//! `relaycast_ingest_drops_total{protocol,reason}`. Bad keys count against
//! the client's address in the same table as WHIP's (`throttle::AuthThrottle`,
//! kind `rtmp`). Nothing else is affected: each connection is its own task.
//!
//! ## Time
//! Container timestamps (RTMP's millisecond clock, extended past its
//! 32-bit wrap) become the frames' media time (90 kHz video presentation
//! time, 48 kHz Opus); the first media message maps that clock to the wall
//! clock, which the frames carry as their capture time (what sender
//! reports give a WebRTC publisher), so LL-HLS program date-times and
//! integrator events line up.

pub mod aac_to_opus;
pub mod avc;
pub mod error;
pub mod flv;
pub mod media_in;
pub mod metrics;
pub mod rtmp;
pub mod srt;
pub mod ts;

use std::sync::Arc;

pub use crate::error::IngestError;
pub use crate::metrics::{IngestMetrics, Protocol};
pub use crate::rtmp::{RtmpConfig, RtmpServer};
pub use crate::srt::{SrtConfig, SrtServer};

/// What a listener needs from the rest of relaycast.
#[derive(Clone)]
pub struct IngestContext {
    pub sfu: sfu::Sfu,
    pub store: signaling::Store,
    pub tokens: signaling::Tokens,
    /// Failed credentials per client address, shared with WHIP/WHEP/REST.
    pub auth_throttle: Arc<throttle::AuthThrottle>,
    pub metrics: IngestMetrics,
}
