//! JWTs minted by `relaycast token` and the API, verified on WHIP/WHEP.

use jsonwebtoken::{
    decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May publish (WHIP) the stream named in the token.
    Publish,
    /// May play (WHEP) the stream named in the token.
    Play,
    /// May do anything on any stream.
    Admin,
    /// A signed-in account that watches.
    Viewer,
    /// A signed-in account that owns and publishes streams.
    Broadcaster,
    /// A partner system driving the API (betting, auctions): reads streams,
    /// mints play tokens, manages entitlements.
    Integrator,
}

impl Role {
    /// The name used in tokens, the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publish => "publish",
            Role::Play => "play",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Broadcaster => "broadcaster",
            Role::Integrator => "integrator",
        }
    }

    /// Whether this is an account role (a user has one) rather than a
    /// capability on one stream (`publish`, `play`).
    pub fn is_account(self) -> bool {
        matches!(
            self,
            Role::Admin | Role::Viewer | Role::Broadcaster | Role::Integrator
        )
    }
}

impl std::str::FromStr for Role {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Role, TokenError> {
        match s {
            "publish" => Ok(Role::Publish),
            "play" => Ok(Role::Play),
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            "broadcaster" => Ok(Role::Broadcaster),
            "integrator" => Ok(Role::Integrator),
            _ => Err(TokenError::UnknownRole),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Stream the token is for; `None` (admin only) means every stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// Play tokens only: ISO 3166-1 alpha-2 countries the viewer must be in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Play tokens only: CIDR ranges the viewer's address must be in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
}

impl Claims {
    pub fn allows(&self, stream: &str, want: Role) -> bool {
        if self.role == Role::Admin {
            return self.stream.as_deref().is_none_or(|s| s == stream);
        }
        self.role == want && self.stream.as_deref() == Some(stream)
    }
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("unknown role (expected publish, play, admin, viewer, broadcaster or integrator)")]
    UnknownRole,
    #[error("signing failed")]
    Signing,
}

/// Signs and verifies tokens with one HS256 secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Tokens {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Mints a token valid from `now_unix` for `ttl_secs`.
    pub fn issue(
        &self,
        subject: &str,
        stream: Option<&str>,
        role: Role,
        now_unix: u64,
        ttl_secs: u64,
    ) -> Result<String, TokenError> {
        let claims = Claims {
            sub: subject.to_string(),
            stream: stream.map(str::to_string),
            role,
            iat: now_unix,
            exp: now_unix.saturating_add(ttl_secs),
            jti: format!("{:032x}", rand::random::<u128>()),
            countries: Vec::new(),
            cidrs: Vec::new(),
        };
        self.sign(&claims)
    }

    /// Signs prepared claims (play tokens with viewer rules).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|_| TokenError::Signing)
    }

    /// Verifies signature and expiry (no leeway: media sessions are short
    /// to start and tokens are minted by the same clock).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "sub"]);
        decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// Whether a bearer value looks like a JWT rather than a stream key.
pub fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3 && s.starts_with("eyJ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn a_token_allows_only_its_stream_and_role() {
        let t = Tokens::new(b"secret");
        let jwt = t
            .issue("alice", Some("show"), Role::Publish, now(), 60)
            .expect("sign");
        let c = t.verify(&jwt).expect("valid");
        assert!(c.allows("show", Role::Publish));
        assert!(!c.allows("show", Role::Play));
        assert!(!c.allows("other", Role::Publish));
        let admin = t.issue("ops", None, Role::Admin, now(), 60).expect("sign");
        assert!(t
            .verify(&admin)
            .expect("valid")
            .allows("anything", Role::Play));
    }

    #[test]
    fn expired_and_foreign_tokens_are_rejected() {
        let t = Tokens::new(b"secret");
        let old = t
            .issue("a", Some("s"), Role::Play, now() - 120, 60)
            .expect("sign");
        assert!(matches!(t.verify(&old), Err(TokenError::Expired)));
        let other = Tokens::new(b"other")
            .issue("a", Some("s"), Role::Play, now(), 60)
            .expect("sign");
        assert!(matches!(t.verify(&other), Err(TokenError::Invalid)));
        assert!(matches!(
            t.verify("eyJ.garbage.here"),
            Err(TokenError::Invalid)
        ));
    }
}
