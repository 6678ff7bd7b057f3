//! # signaling — who may publish and play, and the control-plane data
//!
//! JWT claims and their verification (`jsonwebtoken`, HS256), and the
//! control-plane database ([`db`]: SQLite by default, PostgreSQL by URL,
//! one set of queries through `sqlx`'s `Any` driver): stream keys and API
//! keys kept hashed, accounts (argon2id passwords), streams, entitlements,
//! stream sessions. The HTTP edge asks [`Store::authorize_publish`] /
//! [`Store::authorize_play`] and gets a typed answer; nothing here touches
//! RTP.
//!
//! Other modules that need tables of their own take the pool from
//! [`Store::db`] and follow the rules in [`db`].
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

pub mod access;
mod accounts;
mod bus;
mod chat;
pub mod db;
mod entitlements;
pub mod media_token;
mod message;
mod sessions;
mod store;
mod streams;
pub mod testing;
mod token;

pub use accounts::{valid_password, valid_username, ApiKeyInfo, User, API_KEY_PREFIX};
pub use bus::{
    body_hash, unix_ms, Author, Bus, BusError, EventError, EventFeed, Joined, Lagged, PostError,
    ViewerSource, MAX_EVENT_BYTES,
};
pub use chat::{ChatError, ChatLimits, ChatRules};
pub use entitlements::{
    Entitlement, EntitlementKind, NewEntitlement, PaymentAction, PaymentOutcome, Target,
};
pub use message::{ChatMessage, IntegratorEvent, MediaStamp, Message, StreamStatus};
pub use sessions::StreamSession;
pub use streams::{KeyInfo, NewStream, StreamUpdate, MAX_TITLE};

pub use access::{GeoIp, Visibility};
pub use db::{Backend, Db};
pub use media_token::{MediaTokenError, MediaTokens};
pub use store::{valid_stream_name, Store, StoreError, StreamInfo, Viewer};
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
    /// The token was revoked (logout or an administrator).
    #[error("token revoked")]
    Revoked,
    /// The viewer's address is outside the stream's or token's rules.
    #[error("{reason}")]
    Location { reason: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// A credential was presented and is not good (unknown, badly signed,
    /// expired, revoked): what a guesser sees, and what the edge counts
    /// against the client's address. A missing credential, or a valid one
    /// that does not allow the action, is not.
    pub fn is_bad_credential(&self) -> bool {
        matches!(
            self,
            AuthError::Invalid | AuthError::Expired | AuthError::Revoked
        )
    }
}
