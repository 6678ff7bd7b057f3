//! # transcoder — LL-HLS/CMAF side output of relaycast
//!
//! Owns everything between an SFU tap and an HLS player: it takes a live
//! stream's frames from [`sfu::Sfu::tap`] (a bounded queue the forwarder
//! never waits on; a full queue drops frames, which shows as a gap here and
//! in `relaycast_hls_tap_drops_total`), packs them into CMAF fragmented MP4
//! ([`fmp4`]), cuts parts and segments and writes LL-HLS playlists
//! ([`track`]), and serves them ([`router`]).
//!
//! Layers:
//! - [`fmp4`]: box writer (init segments, `moof`+`mdat` chunks).
//! - [`track::Track`]: one rendition, sans-IO: samples in, chunks, parts,
//!   segments and its media playlist out; blocking-reload readiness.
//! - [`stream::StreamPackager`]: one stream, sans-IO: SFU frames in, the
//!   source video (passed through, no re-encode) and audio (AAC-LC from
//!   the publisher's Opus via [`aac`], or Opus passed through) renditions
//!   out; timestamps rebased onto continuous decode timelines.
//! - [`ladder`]: the ABR ladder, on a thread per stream: one decode, then
//!   scale and `openh264` encode per rung, IDRs where the source has
//!   keyframes so segments line up.
//! - [`hls::Hls`]: the tokio driver: a packager per live stream, started on
//!   `Live` and ended (`EXT-X-ENDLIST`) on `Ended`; [`Hls::add_event`]
//!   attaches a date range to a live stream; [`Hls::released`] tells when
//!   an ended stream's ladder and packager memory is freed.
//! - [`daterange`]: `EXT-X-DATERANGE` (integrator events) at the matching
//!   `EXT-X-PROGRAM-DATE-TIME`, in the live and the VOD playlists.
//! - [`record`]: ended streams kept on disk as VOD, `/vod/{stream}/…`;
//!   [`Hls::recording_notices`] tells when one is complete.
//! - [`thumbnail`]: a JPEG of a live stream's latest keyframe, decoded
//!   only when asked for ([`Hls::thumbnail`], `/hls/{stream}/thumbnail.jpg`).
//! - [`http::router`]: `GET /hls/{stream}/index.m3u8` and the renditions
//!   under `/hls/{stream}/{run}/{video|audio|720p…}/`; the thumbnail; the
//!   recordings.
//!
//! Time model: the cores never read a clock. Media time comes from the
//! publisher's RTP timestamps; `EXT-X-PROGRAM-DATE-TIME` from each frame's
//! sender-report wall clock, or its arrival time when there is none yet.

pub mod aac;
pub mod audience;
pub mod daterange;
pub mod fmp4;
pub mod h264_params;
pub mod hls;
pub mod http;
pub mod ladder;
pub mod record;
pub mod stream;
pub mod thumbnail;
pub mod track;
pub mod uri_query;

pub use daterange::DateRange;
pub use hls::{Hls, HlsConfig, HlsMetrics, Released};
pub use http::router;
pub use ladder::Rung;
pub use record::{RecordingConfig, RecordingReady};
pub use stream::AudioOut;
pub use track::Timing;
pub use uri_query::UriQuery;
