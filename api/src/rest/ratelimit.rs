//! Login attempt limits: failed logins per account and attempts per
//! client address, each within a sliding window. Over a limit, login
//! answers 429 with `Retry-After` (when the oldest counted attempt leaves
//! the window) without checking the password.
//!
//! Hand-written rather than a token-bucket crate (`governor`): what is
//! limited here is *failures per account*, cleared by a success, which a
//! rate limiter of requests does not model. State is per process; several
//! nodes each apply the limits (documented in `docs/architecture.md`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed logins of one account within `window`.
    pub per_account: usize,
    /// Login attempts (failed or not) from one address within `window`.
    pub per_ip: usize,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_account: 5,
            per_ip: 30,
            window: Duration::from_secs(300),
        }
    }
}

/// Keys tracked before old entries are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug)]
pub struct LoginLimiter {
    limits: Limits,
    accounts: Mutex<HashMap<String, VecDeque<Instant>>>,
    ips: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
}

/// `Some(wait)` if `q` is at `limit` within `window`.
fn over(
    q: Option<&mut VecDeque<Instant>>,
    limit: usize,
    now: Instant,
    window: Duration,
) -> Option<Duration> {
    let q = q?;
    prune(q, now, window);
    if q.len() >= limit {
        q.front()
            .map(|oldest| window.saturating_sub(now.duration_since(*oldest)))
    } else {
        None
    }
}

impl LoginLimiter {
    pub fn new(limits: Limits) -> LoginLimiter {
        LoginLimiter {
            limits,
            accounts: Mutex::new(HashMap::new()),
            ips: Mutex::new(HashMap::new()),
        }
    }

    /// Called before a login is checked: counts the attempt against `ip`
    /// and answers `Err(retry_after)` if the account or the address is
    /// over its limit.
    pub fn attempt(&self, account: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let w = self.limits.window;
        let account_wait = {
            let mut accounts = self.accounts.lock();
            over(accounts.get_mut(account), self.limits.per_account, now, w)
        };
        let ip_wait = match ip {
            Some(ip) => {
                let mut ips = self.ips.lock();
                if ips.len() > SWEEP_AT {
                    ips.retain(|_, q| {
                        prune(q, now, w);
                        !q.is_empty()
                    });
                }
                let q = ips.entry(ip).or_default();
                let wait = over(Some(q), self.limits.per_ip, now, w);
                if wait.is_none() {
                    q.push_back(now);
                }
                wait
            }
            None => None,
        };
        match account_wait.max(ip_wait) {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// A failed login of `account`.
    pub fn failed(&self, account: &str, now: Instant) {
        let mut accounts = self.accounts.lock();
        if accounts.len() > SWEEP_AT {
            let w = self.limits.window;
            accounts.retain(|_, q| {
                prune(q, now, w);
                !q.is_empty()
            });
        }
        accounts
            .entry(account.to_string())
            .or_default()
            .push_back(now);
    }

    /// A successful login clears the account's failures.
    pub fn succeeded(&self, account: &str) {
        self.accounts.lock().remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_an_account_until_the_window_passes() {
        let l = LoginLimiter::new(Limits {
            per_account: 2,
            per_ip: 100,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert!(l.attempt("a", ip, t0).is_ok());
        l.failed("a", t0);
        assert!(l.attempt("a", ip, t0).is_ok());
        l.failed("a", t0 + Duration::from_secs(10));
        let wait = l
            .attempt("a", ip, t0 + Duration::from_secs(20))
            .expect_err("locked");
        assert_eq!(wait, Duration::from_secs(40));
        assert!(
            l.attempt("b", ip, t0).is_ok(),
            "other accounts are not locked"
        );
        assert!(l.attempt("a", ip, t0 + Duration::from_secs(61)).is_ok());
        l.succeeded("a");
        assert!(l.accounts.lock().get("a").is_none());
    }

    #[test]
    fn one_address_is_limited_across_accounts() {
        let l = LoginLimiter::new(Limits {
            per_account: 100,
            per_ip: 3,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for i in 0..3 {
            assert!(l.attempt(&format!("u{i}"), ip, t0).is_ok());
        }
        assert!(l.attempt("u9", ip, t0).is_err());
        assert!(l
            .attempt("u9", Some(IpAddr::from([10, 0, 0, 2])), t0)
            .is_ok());
    }
}
