//! Long-term credentials (RFC 8489 §9.2) with the time-limited "TURN REST
//! API" scheme (coturn's `use-auth-secret`): username `expiry:user`,
//! password `base64(HMAC-SHA1(secret, username))`; and stateless nonces.

use std::collections::HashMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A username/password pair for a TURN client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Mints REST credentials for `user` valid for `ttl_secs` from `unix_now`.
pub fn rest_credentials(secret: &[u8], user: &str, unix_now: u64, ttl_secs: u64) -> Credentials {
    let username = if user.is_empty() {
        format!("{}", unix_now + ttl_secs)
    } else {
        format!("{}:{user}", unix_now + ttl_secs)
    };
    let password = rest_password(secret, &username);
    Credentials { username, password }
}

/// `base64(HMAC-SHA1(secret, username))`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The long-term key: `MD5(username ":" realm ":" password)`.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Why a username was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
}

/// Where passwords come from.
#[derive(Clone, Default)]
pub struct Authenticator {
    secret: Option<Vec<u8>>,
    users: HashMap<String, String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("rest", &self.secret.is_some())
            .field("users", &self.users.len())
            .finish()
    }
}

impl Authenticator {
    /// REST credentials signed with `secret`.
    pub fn rest(secret: impl Into<Vec<u8>>) -> Authenticator {
        Authenticator {
            secret: Some(secret.into()),
            users: HashMap::new(),
        }
    }

    /// Adds a fixed long-term user.
    pub fn with_user(mut self, username: &str, password: &str) -> Authenticator {
        self.users.insert(username.into(), password.into());
        self
    }

    /// The password for `username` at `unix_now`.
    pub fn password(&self, username: &str, unix_now: u64) -> Result<String, Refusal> {
        if let Some(p) = self.users.get(username) {
            return Ok(p.clone());
        }
        let secret = self.secret.as_ref().ok_or(Refusal::Unknown)?;
        let expiry: u64 = username
            .split(':')
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or(Refusal::Unknown)?;
        if expiry < unix_now {
            return Err(Refusal::Expired);
        }
        Ok(rest_password(secret, username))
    }
}

/// The part of a username quotas are counted on: the user after the
/// expiry in REST usernames, the whole name otherwise.
pub fn quota_user(username: &str) -> &str {
    match username.split_once(':') {
        Some((t, user)) if t.bytes().all(|b| b.is_ascii_digit()) => user,
        _ => username,
    }
}

/// Stateless nonces: `hex(expiry) || hex(HMAC(key, expiry))[..16]`. A
/// nonce we did not make, or one past its expiry, is stale (438).
#[derive(Clone)]
pub struct Nonces {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl Nonces {
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Nonces {
        Nonces { key, lifetime_secs }
    }

    pub fn issue(&self, unix_now: u64) -> String {
        let expiry = unix_now + self.lifetime_secs;
        format!("{expiry:016x}{}", self.tag(expiry))
    }

    pub fn is_fresh(&self, nonce: &str, unix_now: u64) -> bool {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return false;
        }
        let (e, tag) = nonce.split_at(16);
        let Ok(expiry) = u64::from_str_radix(e, 16) else {
            return false;
        };
        expiry >= unix_now && self.tag(expiry) == tag
    }

    fn tag(&self, expiry: u64) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        mac.update(&expiry.to_be_bytes());
        mac.finalize().into_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_password_matches_coturn_scheme() {
        // echo -n "1700000000:alice" | openssl dgst -binary -sha1 -hmac secret | base64
        assert_eq!(
            rest_password(b"secret", "1700000000:alice"),
            "d8soP47RbdIKLDUOpnJPVQyq5Ts="
        );
    }

    #[test]
    fn expired_rest_usernames_are_refused() {
        let auth = Authenticator::rest("s");
        let c = rest_credentials(b"s", "bob", 1000, 60);
        assert_eq!(auth.password(&c.username, 1000), Ok(c.password.clone()));
        assert_eq!(auth.password(&c.username, 1061), Err(Refusal::Expired));
        assert_eq!(auth.password("bob", 1000), Err(Refusal::Unknown));
        assert_eq!(quota_user(&c.username), "bob");
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let n = Nonces::new([3; 32], 600);
        let nonce = n.issue(1000);
        assert!(n.is_fresh(&nonce, 1600));
        assert!(!n.is_fresh(&nonce, 1601));
        let forged = format!("{:016x}{}", 99_999u64, &nonce[16..]);
        assert!(!n.is_fresh(&forged, 1000));
        assert!(!n.is_fresh("short", 1000));
        assert!(!n.is_fresh("ééééééééééééééééé", 1000));
    }
}
