//! # signaling — who may publish and play
//!
//! JWT claims and their verification (`jsonwebtoken`, HS256), and stream
//! keys kept hashed in the embedded SQLite database (`sqlx`). The HTTP edge
//! asks [`Store::authorize_publish`] / [`Store::authorize_play`] and gets a
//! typed answer; nothing here touches RTP.
//!
//! The realtime side lives here too: [`Bus`] carries each stream's chat,
//! moderation, viewer counts, status and integrator events to WebSocket
//! clients and [`EventFeed`]s, in-process or across nodes through Redis
//! pub/sub; [`ChatRules`] decides what a chatter may post (rate limit,
//! slow mode, bans) with time passed in.
//!
//! ## The per-stream event feed
//!
//! `bus.event_feed("show")` returns an [`EventFeed`]; `feed.recv().await`
//! yields each [`IntegratorEvent`] posted on the stream (on any node) from
//! then on, in `seq` order as posted on one node: `seq` (strictly
//! increasing per stream), `at_ms` (wall clock), `media` (RTP time, clock
//! rate and the capture wall clock of the newest frame when it was
//! accepted) and the integrator's JSON `payload`. A consumer that falls
//! more than 256 messages behind gets `Err(Lagged(n))` and continues with
//! the oldest kept event. The LL-HLS packager turns each into an
//! `EXT-X-DATERANGE` (start: `media.capture_ms`, else `at_ms`); the SFU
//! sends each as JSON on a WebRTC data channel.

mod bus;
mod chat;
mod message;
mod store;
mod token;

pub use bus::{
    body_hash, unix_ms, Author, Bus, BusError, EventError, EventFeed, Joined, Lagged, PostError,
    ViewerSource, MAX_EVENT_BYTES,
};
pub use chat::{ChatError, ChatLimits, ChatRules};
pub use message::{ChatMessage, IntegratorEvent, MediaStamp, Message, StreamStatus};
pub use store::{valid_stream_name, Store, StoreError, StreamInfo};
pub use token::{Claims, Role, TokenError, Tokens};

/// Who is allowed in, as decided from the request's bearer credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A stream key of the stream; carries the key's hash as owner identity.
    StreamKey { key_hash: String },
    /// A JWT whose claims allow the action.
    Token { subject: String, token_id: String },
}

impl Grant {
    /// Identity used to decide whether a second publisher replaces the first
    /// (same credential) or is refused.
    pub fn owner(&self) -> String {
        match self {
            Grant::StreamKey { key_hash } => format!("key:{key_hash}"),
            // The token itself, not just its subject: two tokens minted for
            // the same subject are two publishers (409), one token reconnecting
            // is the same publisher (replaces).
            Grant::Token { subject, token_id } => format!("jwt:{subject}:{token_id}"),
        }
    }
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer credential where one is required.
    #[error("missing bearer token")]
    Missing,
    /// The credential is not a key of this stream nor a valid token for it.
    #[error("invalid credential")]
    Invalid,
    /// A valid token that does not allow this action on this stream.
    #[error("token does not allow {action} on this stream")]
    Forbidden { action: &'static str },
    /// The token has expired.
    #[error("token expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}
