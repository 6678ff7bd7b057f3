//! # throttle — slowing down credential guessing and log floods
//!
//! What it owns: the one implementation of "count failures per key in a
//! window and refuse the key for the rest of the window once it reaches a
//! limit" ([`FailureLimiter`]), the key HTTP and TURN use for a client
//! ([`ClientKey`]: an IPv4 address, or the /64 of an IPv6 one), the shared
//! limiter of the HTTP edge with its Prometheus counters ([`AuthThrottle`]:
//! WHIP, WHEP, REST bearer credentials), and the per-kind log sampler
//! ([`LogSampler`]) behind which lines that anonymous bad input can trigger
//! are written.
//!
//! Who uses it: `whip-whep` and `api` (one [`AuthThrottle`] per process,
//! shared by WHIP, WHEP and the REST API), `api`'s login limiter (two
//! [`FailureLimiter`]s), `turn-server`'s sans-IO `Engine` (a
//! [`FailureLimiter`] it owns), `api`'s tracing filter ([`LogSampler`]).
//!
//! Time model: the cores ([`FailureLimiter`], [`LogSampler`]) never read the
//! clock; every call takes `now: Instant`, so tests step time instead of
//! sleeping. [`AuthThrottle`] is the thin shared wrapper: a lock and
//! counters, still with `now` passed in.
//!
//! Memory: every table is capped. A flood of distinct addresses evicts the
//! entries whose window began first (they are the ones closest to expiring
//! anyway); an attacker who owns many addresses gains nothing from this he
//! did not already have from owning them.

mod auth_throttle;
mod client_key;
mod failure_limiter;
mod log_sampler;

pub use auth_throttle::{retry_after_secs, AuthKind, AuthThrottle};
pub use client_key::ClientKey;
pub use failure_limiter::{FailureLimiter, Limits};
pub use log_sampler::LogSampler;
