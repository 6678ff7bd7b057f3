//! Chat rules of one stream: per-user rate limit (token bucket), slow mode
//! and bans. Pure state with time passed in, so the rules are tested
//! without a clock; [`crate::Bus`] keeps one [`ChatRules`] per stream and
//! node (a user's rate budget is per node they are connected to).
//!
//! The bucket is written here rather than taken from `governor` because it
//! is a dozen lines, shares the slow-mode bookkeeping and its clock is the
//! caller's `now_ms`.

use std::collections::HashMap;

/// Limits applied to every chatter who is not a moderator.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    /// Messages a user may send in a burst.
    pub burst: u32,
    /// Sustained messages per second once the burst is spent.
    pub per_second: f64,
    /// Longest message, in characters.
    pub max_chars: usize,
    /// Chat lines kept per stream and sent to a client when it connects.
    pub history: usize,
}

impl Default for ChatLimits {
    fn default() -> ChatLimits {
        ChatLimits {
            burst: 5,
            per_second: 0.5,
            max_chars: 500,
            history: 50,
        }
    }
}

/// Why a chat message was refused.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Empty, or only whitespace.
    #[error("empty message")]
    Empty,
    /// Longer than [`ChatLimits::max_chars`].
    #[error("message longer than {max} characters")]
    TooLong { max: usize },
    /// The user's rate budget is spent; retry after `retry_after_ms`.
    #[error("rate limited, retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    /// Slow mode is on and the user posted less than its interval ago.
    #[error("slow mode is on ({seconds} s between messages), retry in {retry_after_ms} ms")]
    SlowMode { seconds: u32, retry_after_ms: u64 },
    /// A moderator banned the user.
    #[error("you are banned from this chat")]
    Banned,
}

impl ChatError {
    /// Short machine-readable code sent to clients beside the message.
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::Empty | ChatError::TooLong { .. } => "bad_message",
            ChatError::RateLimited { .. } => "rate_limited",
            ChatError::SlowMode { .. } => "slow_mode",
            ChatError::Banned => "banned",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Moderation state and rate budgets of one stream's chat.
#[derive(Debug, Default)]
pub struct ChatRules {
    slow_mode_secs: u32,
    /// User → ban end (Unix ms), `None` for a permanent ban.
    bans: HashMap<String, Option<u64>>,
    buckets: HashMap<String, Bucket>,
    last_post_ms: HashMap<String, u64>,
}

impl ChatRules {
    pub fn slow_mode(&self) -> u32 {
        self.slow_mode_secs
    }

    pub fn set_slow_mode(&mut self, seconds: u32) {
        self.slow_mode_secs = seconds;
    }

    pub fn ban(&mut self, user: &str, until_ms: Option<u64>) {
        self.bans.insert(user.to_string(), until_ms);
    }

    pub fn is_banned(&self, user: &str, now_ms: u64) -> bool {
        match self.bans.get(user) {
            Some(None) => true,
            Some(Some(until)) => now_ms < *until,
            None => false,
        }
    }

    /// Decides whether `user` may post `text` now, and if so spends the
    /// budget. Moderators skip rate limit and slow mode (not the size
    /// limit). Returns the trimmed text.
    pub fn admit<'t>(
        &mut self,
        limits: &ChatLimits,
        user: &str,
        moderator: bool,
        text: &'t str,
        now_ms: u64,
    ) -> Result<&'t str, ChatError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ChatError::Empty);
        }
        if text.chars().count() > limits.max_chars {
            return Err(ChatError::TooLong {
                max: limits.max_chars,
            });
        }
        if moderator {
            return Ok(text);
        }
        if self.is_banned(user, now_ms) {
            return Err(ChatError::Banned);
        }
        if self.slow_mode_secs > 0 {
            if let Some(last) = self.last_post_ms.get(user) {
                let next = last.saturating_add(u64::from(self.slow_mode_secs) * 1000);
                if now_ms < next {
                    return Err(ChatError::SlowMode {
                        seconds: self.slow_mode_secs,
                        retry_after_ms: next - now_ms,
                    });
                }
            }
        }
        let burst = f64::from(limits.burst.max(1));
        let b = self.buckets.entry(user.to_string()).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * limits.per_second).min(burst);
        b.at_ms = now_ms;
        if b.tokens < 1.0 {
            let wait = if limits.per_second > 0.0 {
                ((1.0 - b.tokens) / limits.per_second * 1000.0).ceil() as u64
            } else {
                u64::MAX
            };
            return Err(ChatError::RateLimited {
                retry_after_ms: wait,
            });
        }
        b.tokens -= 1.0;
        self.last_post_ms.insert(user.to_string(), now_ms);
        Ok(text)
    }

    /// Forgets budgets of users idle for a minute and bans that ended, so a
    /// long-lived stream's state stays bounded by its active chatters.
    pub fn prune(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(60_000);
        let slow_ms = u64::from(self.slow_mode_secs) * 1000;
        self.buckets.retain(|_, b| b.at_ms >= horizon);
        self.last_post_ms
            .retain(|_, t| t.saturating_add(slow_ms) >= now_ms || *t >= horizon);
        self.bans
            .retain(|_, until| until.is_none_or(|u| u > now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies() {
        let limits = ChatLimits {
            burst: 3,
            per_second: 1.0,
            ..ChatLimits::default()
        };
        let mut r = ChatRules::default();
        for _ in 0..3 {
            assert!(r.admit(&limits, "a", false, "hi", 1000).is_ok());
        }
        assert!(matches!(
            r.admit(&limits, "a", false, "hi", 1000),
            Err(ChatError::RateLimited {
                retry_after_ms: 1000
            })
        ));
        // Another user has their own budget; a moderator has none.
        assert!(r.admit(&limits, "b", false, "hi", 1000).is_ok());
        for _ in 0..10 {
            assert!(r.admit(&limits, "mod", true, "hi", 1000).is_ok());
        }
        assert!(r.admit(&limits, "a", false, "hi", 2000).is_ok());
    }

    #[test]
    fn slow_mode_spaces_messages_and_bans_block() {
        let limits = ChatLimits::default();
        let mut r = ChatRules::default();
        r.set_slow_mode(10);
        assert!(r.admit(&limits, "a", false, "one", 0).is_ok());
        assert_eq!(
            r.admit(&limits, "a", false, "two", 4000),
            Err(ChatError::SlowMode {
                seconds: 10,
                retry_after_ms: 6000
            })
        );
        assert!(r.admit(&limits, "a", false, "two", 10_000).is_ok());
        r.ban("a", Some(20_000));
        assert_eq!(
            r.admit(&limits, "a", false, "x", 15_000),
            Err(ChatError::Banned)
        );
        assert!(r.admit(&limits, "a", false, "x", 21_000).is_ok());
        r.ban("b", None);
        assert_eq!(
            r.admit(&limits, "b", false, "x", u64::MAX / 2),
            Err(ChatError::Banned)
        );
    }

    #[test]
    fn bad_text_is_refused() {
        let limits = ChatLimits {
            max_chars: 4,
            ..ChatLimits::default()
        };
        let mut r = ChatRules::default();
        assert_eq!(
            r.admit(&limits, "a", false, "   ", 0),
            Err(ChatError::Empty)
        );
        assert_eq!(
            r.admit(&limits, "a", false, "hello", 0),
            Err(ChatError::TooLong { max: 4 })
        );
        assert_eq!(r.admit(&limits, "a", false, " héé ", 0), Ok("héé"));
    }
}
