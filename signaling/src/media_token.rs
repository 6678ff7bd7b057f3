//! Media tokens: short signed grants that open a non-public stream's LL-HLS
//! and VOD files (`/hls/{stream}/…`, `/vod/{stream}/…`) to a viewer who has
//! already passed [`crate::Store::authorize_play`].
//!
//! A player asks for the multivariant playlist with its play credential
//! (the same one WHEP takes); the answer's URIs carry `hls_token=EXP.SIG`
//! and every later request (media playlists, blocking reloads, parts,
//! segments, init, recordings) is checked against that token alone: no
//! database, no JWT parsing, so blocking reloads stay cheap.
//!
//! The token is made so a CDN edge can check it and keep it out of the
//! cache key (`docs/architecture.md`, "Paywalled LL-HLS and VOD"):
//!
//! - `SIG` = base64url (no padding) of HMAC-SHA256(key, `"{stream}/{EXP}"`),
//!   `EXP` in unix seconds;
//! - it names the stream, not the viewer, and `EXP` is rounded up to a
//!   [`BUCKET_SECS`] boundary, so every viewer admitted in the same ten
//!   minutes gets the same token: playlist URLs stay identical across
//!   viewers and a CDN shares (and collapses) them even with the query in
//!   its cache key;
//! - the key is [`MediaTokens::derive`]d from the JWT secret (or set on
//!   its own), so an edge that holds it can check media tokens but cannot
//!   mint API tokens.
//!
//! Like a WHEP session, which is checked once when it starts, a media
//! token outlives the play token that obtained it (by at most its TTL):
//! an LL-HLS player keeps polling the URL it was given for the whole
//! session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Expiries are rounded up to this many seconds.
pub const BUCKET_SECS: u64 = 600;

/// The query parameter that carries a media token.
pub const QUERY_PARAM: &str = "hls_token";

/// Why a media token was refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaTokenError {
    /// Not `EXP.SIG`, or the signature does not match (another stream,
    /// another key, a changed expiry).
    #[error("invalid media token")]
    Invalid,
    /// Well signed, but past its expiry.
    #[error("media token expired")]
    Expired,
}

/// Issues and checks media tokens with one key.
#[derive(Clone)]
pub struct MediaTokens {
    key: [u8; 32],
    ttl_secs: u64,
}

impl std::fmt::Debug for MediaTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaTokens")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl MediaTokens {
    /// Tokens valid for at least `ttl_secs` (and less than `ttl_secs` +
    /// [`BUCKET_SECS`]), signed with a key given as 64 hex digits (what
    /// [`MediaTokens::key_hex`] prints); `None` if it is not that.
    pub fn from_hex(key_hex: &str, ttl_secs: u64) -> Option<MediaTokens> {
        let key_hex = key_hex.trim();
        if key_hex.len() != 64 || !key_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(MediaTokens { key, ttl_secs })
    }

    /// The media-token key derived from the JWT secret: HMAC-SHA256(jwt
    /// secret, `"relaycast-hls-token-v1"`). Knowing it does not reveal the
    /// JWT secret.
    pub fn derive(jwt_secret: &[u8], ttl_secs: u64) -> MediaTokens {
        MediaTokens {
            key: hmac_sha256(jwt_secret, b"relaycast-hls-token-v1"),
            ttl_secs,
        }
    }

    /// The key, hex-encoded, to configure a CDN edge with.
    pub fn key_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A token for `stream`, valid from `now_unix` for at least the TTL.
    pub fn issue(&self, stream: &str, now_unix: u64) -> String {
        let exp = (now_unix + self.ttl_secs).div_ceil(BUCKET_SECS) * BUCKET_SECS;
        self.sign(stream, exp)
    }

    fn sign(&self, stream: &str, exp: u64) -> String {
        let sig = hmac_sha256(&self.key, format!("{stream}/{exp}").as_bytes());
        format!("{exp}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Checks `token` for `stream` at `now_unix`.
    pub fn verify(&self, stream: &str, token: &str, now_unix: u64) -> Result<(), MediaTokenError> {
        let (exp, sig) = token.split_once('.').ok_or(MediaTokenError::Invalid)?;
        // Digits only: "+5" or " 5" would parse but sign differently.
        if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MediaTokenError::Invalid);
        }
        let exp_n: u64 = exp.parse().map_err(|_| MediaTokenError::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| MediaTokenError::Invalid)?;
        let mut mac = mac(&self.key);
        mac.update(format!("{stream}/{exp}").as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&sig)
            .map_err(|_| MediaTokenError::Invalid)?;
        if exp_n <= now_unix {
            return Err(MediaTokenError::Expired);
        }
        Ok(())
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = mac(key);
    m.update(msg);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_123;

    fn tokens() -> MediaTokens {
        MediaTokens::derive(b"jwt secret", 6 * 3600)
    }

    #[test]
    fn a_token_opens_its_stream_until_it_expires() {
        let t = tokens();
        let tok = t.issue("show", NOW);
        assert_eq!(t.verify("show", &tok, NOW), Ok(()));
        let exp: u64 = tok
            .split('.')
            .next()
            .and_then(|e| e.parse().ok())
            .expect("exp");
        assert!((NOW + 6 * 3600..NOW + 6 * 3600 + BUCKET_SECS).contains(&exp));
        assert_eq!(exp % BUCKET_SECS, 0);
        assert_eq!(t.verify("show", &tok, exp - 1), Ok(()));
        assert_eq!(t.verify("show", &tok, exp), Err(MediaTokenError::Expired));
    }

    #[test]
    fn viewers_admitted_in_one_bucket_share_a_token() {
        let t = tokens();
        let start = NOW.div_ceil(BUCKET_SECS) * BUCKET_SECS;
        assert_eq!(t.issue("show", start + 1), t.issue("show", start + 599));
        assert_ne!(t.issue("show", start + 1), t.issue("other", start + 1));
    }

    #[test]
    fn forged_moved_and_foreign_tokens_are_refused() {
        let t = tokens();
        let tok = t.issue("show", NOW);
        let (exp, sig) = tok.split_once('.').expect("shape");
        let later = format!("{}.{sig}", exp.parse::<u64>().expect("exp") + BUCKET_SECS);
        let other_key = MediaTokens::derive(b"another secret", 6 * 3600).issue("show", NOW);
        let padded = format!("+{exp}.{sig}");
        let mut flipped = tok.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        for bad in [
            "",
            ".",
            "abc",
            exp,
            &format!("{exp}."),
            &format!(".{sig}"),
            &later,
            &other_key,
            &padded,
            &flipped,
            &format!("{exp}.{sig}="),
            &"9".repeat(40),
        ] {
            assert_eq!(
                t.verify("show", bad, NOW),
                Err(MediaTokenError::Invalid),
                "{bad:?}"
            );
        }
        assert_eq!(t.verify("other", &tok, NOW), Err(MediaTokenError::Invalid));
    }

    #[test]
    fn the_derived_key_is_not_the_jwt_secret_and_is_stable() {
        let a = MediaTokens::derive(b"jwt secret", 60);
        let b = MediaTokens::derive(b"jwt secret", 60);
        assert_eq!(a.key_hex(), b.key_hex());
        assert_ne!(
            a.key_hex(),
            MediaTokens::derive(b"jwt secre7", 60).key_hex()
        );
        // The key given as hex is used as is: an edge configured with
        // `key_hex` checks the same signatures.
        let c = MediaTokens::from_hex(&a.key_hex(), 60).expect("64 hex digits");
        assert_eq!(c.verify("s", &a.issue("s", NOW), NOW), Ok(()));
        assert!(MediaTokens::from_hex("abc", 60).is_none());
        assert!(MediaTokens::from_hex(&"g".repeat(64), 60).is_none());
        assert!(MediaTokens::from_hex(&"é".repeat(32), 60).is_none());
    }
}
