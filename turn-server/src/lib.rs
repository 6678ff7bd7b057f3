//! # turn-server — TURN (RFC 8656) for viewers behind strict NATs
//!
//! Relays UDP for WebRTC clients that cannot reach the SFU directly. Clients
//! talk to it over UDP, TCP or TLS (`rustls`); relayed traffic to peers is
//! always UDP. Answers STUN Binding (RFC 8489) too.
//!
//! **Credentials** are long-term credentials in the time-limited "TURN REST
//! API" scheme (coturn's `use-auth-secret`): username `expiry:user`,
//! password `base64(HMAC-SHA1(secret, username))`; [`rest_credentials`]
//! mints them. Nonces are stateless (expiry plus an HMAC tag), so a stale
//! one gets 438 and a fresh one, wrong credentials 401 and a fresh one.
//!
//! **Core and driver.** [`Engine`] is the sans-IO state machine —
//! allocations, permissions (300 s), channels (600 s), lifetimes, quotas
//! (486), denied peer ranges (403) — fed `(now, input)`; it never reads the
//! clock or touches a socket. [`TurnServer`] is the thin tokio driver: a
//! UDP listener loop and a parked task per relay socket (read on readiness
//! into a per-thread buffer), both on UDP threads of their own (one
//! current-thread runtime per core, I/O driver only); a task per TCP/TLS
//! connection and a sweep once a second that ends what has expired, on the
//! caller's runtime.
//!
//! **Address families.** IPv4 relays by default, IPv6 on request
//! (REQUESTED-ADDRESS-FAMILY) or both at once (ADDITIONAL-ADDRESS-FAMILY),
//! where the server has a relay address of the family; else 440.
//!
//! **Time model.** Monotonic `Instant` for every timer; Unix seconds only
//! for REST credential expiry and nonces. Both are passed in ([`Now`]).
//!
//! STUN messages are parsed and built with the `stun_codec` crate;
//! MESSAGE-INTEGRITY is checked on the received bytes, and the two hot-path
//! messages (ChannelData, Data indication) are written by hand without
//! allocating.

mod auth;
pub mod certificate;
mod channel_number;
mod engine;
mod error;
mod message;
mod metrics;
mod peer_policy;
mod server;

#[cfg(test)]
mod engine_tests;

pub use auth::{long_term_key, rest_credentials, rest_password, Authenticator, Credentials};
pub use certificate::TlsFiles;
pub use engine::{
    AllocationId, ClientOutcome, Engine, EngineConfig, Family, FiveTuple, Now, RelayProvider,
    Transport, CHANNEL_LIFETIME, PERMISSION_LIFETIME,
};
pub use error::TurnError;
pub use metrics::Metrics;
pub use peer_policy::PeerPolicy;
pub use server::{parse_port_range, parse_turn_host, IceServer, TurnConfig, TurnServer};
