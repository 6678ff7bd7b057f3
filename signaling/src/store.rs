//! [`Store`]: the control-plane data behind one [`Db`] handle, and the
//! publish/play authorisation decisions the WHIP/WHEP edge asks for.
//!
//! Queries are grouped by concept in sibling modules (`streams`,
//! `accounts`, `entitlements`, `sessions`), all as methods of [`Store`].

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::access::{self, GeoIp, Visibility};
use crate::db::{self, Db};
use crate::token::{looks_like_jwt, Claims, Role, TokenError, Tokens};
use crate::{AuthError, Grant};

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stream names are what URLs carry: 1–64 of `[A-Za-z0-9_-]`.
    #[error("invalid stream name (1-64 characters of A-Z a-z 0-9 _ -)")]
    BadName,
    /// The database URL is neither `sqlite:` nor `postgres://`.
    #[error("unsupported database URL (expected sqlite:… or postgres://…)")]
    UnsupportedUrl,
    /// A unique value (user name, stream name) is taken.
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// Input that breaks a rule of the data (message says which).
    #[error("{0}")]
    Invalid(&'static str),
    /// Hashing a password failed (argon2 parameters); not the user's fault.
    #[error("password hashing failed")]
    PasswordHash,
    /// A row read back does not fit the model (e.g. an unknown role).
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Duplicate`].
    pub(crate) fn unique(e: sqlx::Error, what: &'static str) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Duplicate(what),
            _ => StoreError::Db(e),
        }
    }
}

/// The control-plane data and the authorisation decisions; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    pub(crate) geoip: Option<Arc<GeoIp>>,
}

pub fn valid_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// SHA-256, base64url: how stream keys and API keys are stored. They are
/// 256-bit random values, so a fast hash is as strong as a slow one.
pub(crate) fn hash_secret(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// A fresh 256-bit secret with a recognisable prefix (`rk_`, `rci_`).
pub(crate) fn new_secret(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the edge knows about a viewer when it decides on play.
#[derive(Debug, Clone, Copy, Default)]
pub struct Viewer {
    /// The viewer's address (the TCP peer of the WHEP request).
    pub ip: Option<IpAddr>,
}

impl Store {
    /// Opens (creating if needed) `relaycast.db` in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::connect(&db::sqlite_url(data_dir)).await
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`) and migrates it.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Ok(Store::from_db(Db::connect_and_migrate(url).await?))
    }

    /// A store on an already connected (and migrated) database.
    pub fn from_db(db: Db) -> Store {
        Store { db, geoip: None }
    }

    /// Uses a GeoIP country database for country rules.
    pub fn with_geoip(mut self, geoip: GeoIp) -> Store {
        self.geoip = Some(Arc::new(geoip));
        self
    }

    /// The database handle, for modules with tables of their own.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates the stream if it does not exist and returns a new key for
    /// it (`relaycast keys create`). `private: Some(true)` makes it
    /// `entitled` (viewers need a play token), `Some(false)` public.
    pub async fn create_key(
        &self,
        stream: &str,
        private: Option<bool>,
    ) -> Result<String, StoreError> {
        if !valid_stream_name(stream) {
            return Err(StoreError::BadName);
        }
        let now = unix_now();
        let visibility = if private == Some(true) {
            Visibility::Entitled
        } else {
            Visibility::Public
        };
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO streams(name, visibility, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT(name) DO NOTHING",
        )
        .bind(stream)
        .bind(visibility.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if private.is_some() {
            sqlx::query("UPDATE streams SET visibility = $1, updated_at = $2 WHERE name = $3")
                .bind(visibility.as_str())
                .bind(now)
                .bind(stream)
                .execute(&mut *tx)
                .await?;
        }
        let key = new_secret("rk_");
        let key_hash = hash_secret(&key);
        sqlx::query(
            "INSERT INTO stream_keys(id, key_hash, stream, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key_hash[..16])
        .bind(&key_hash)
        .bind(stream)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn key_matches(&self, stream: &str, key: &str) -> Result<Option<String>, StoreError> {
        let h = hash_secret(key);
        let row = sqlx::query(
            "SELECT 1 AS one FROM stream_keys WHERE key_hash = $1 AND stream = $2 AND revoked_at IS NULL",
        )
        .bind(&h)
        .bind(stream)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|_| h))
    }

    /// Whether a token id is on the deny-list.
    pub async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM revoked_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Puts a token id on the deny-list until `expires_at` (unix seconds),
    /// when the token would have stopped working anyway.
    pub async fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_tokens(jti, expires_at, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT(jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(unix_now())
        .execute(self.db.pool())
        .await?;
        // Entries of expired tokens are dead weight.
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(unix_now() - 60)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Verifies a JWT: signature, expiry and the deny-list.
    pub async fn verify_token(&self, tokens: &Tokens, bearer: &str) -> Result<Claims, AuthError> {
        let claims = tokens.verify(bearer).map_err(|e| match e {
            TokenError::Expired => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        if self.is_revoked(&claims.jti).await? {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Decides whether `bearer` may publish `stream`: a live key of the
    /// stream, or a JWT allowing it.
    pub async fn authorize_publish(
        &self,
        tokens: &Tokens,
        stream: &str,
        bearer: Option<&str>,
    ) -> Result<Grant, AuthError> {
        let bearer = bearer.ok_or(AuthError::Missing)?;
        if looks_like_jwt(bearer) {
            let claims = self.verify_token(tokens, bearer).await?;
            return grant_for(claims, stream, Role::Publish, "publish");
        }
        match self.key_matches(stream, bearer).await? {
            Some(key_hash) => Ok(Grant::StreamKey { key_hash }),
            None => Err(AuthError::Invalid),
        }
    }

    /// Decides a publisher that presents a stream key without naming the
    /// stream (an RTMP or SRT encoder configured with a server URL and a
    /// key, as OBS is): the stream is the one the key was issued for.
    /// Stream keys are 256-bit random values, so the key alone identifies
    /// its stream; revoked keys are refused.
    pub async fn authorize_publish_key(&self, key: &str) -> Result<(String, Grant), AuthError> {
        if key.is_empty() {
            return Err(AuthError::Missing);
        }
        let h = hash_secret(key);
        let row = sqlx::query(
            "SELECT stream FROM stream_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&h)
        .fetch_optional(self.db.pool())
        .await
        .map_err(StoreError::from)?;
        match row {
            Some(r) => {
                let stream: String = r.try_get("stream").map_err(StoreError::from)?;
                Ok((stream, Grant::StreamKey { key_hash: h }))
            }
            None => Err(AuthError::Invalid),
        }
    }

    /// Decides whether a viewer may play `stream` (described by `info`):
    ///
    /// - `public`: anyone; a bearer, if sent, is ignored (as before
    ///   visibility existed: a stale token in a player must not lock
    ///   viewers out of a public stream).
    /// - `authenticated`: any valid, unrevoked token (a signed-in user's
    ///   or a play token for this stream), or the stream's key.
    /// - `entitled`: a play token for this stream (issued only after an
    ///   entitlement check), an admin token, or the stream's key (the
    ///   broadcaster's own preview).
    ///
    /// Then the stream's own address rules and the play token's rules
    /// (countries, CIDR ranges) must all hold for `viewer`.
    pub async fn authorize_play(
        &self,
        tokens: &Tokens,
        info: &StreamInfo,
        bearer: Option<&str>,
        viewer: Viewer,
    ) -> Result<Option<Grant>, AuthError> {
        let grant = match bearer {
            _ if info.visibility == Visibility::Public => None,
            None => return Err(AuthError::Missing),
            Some(b) if looks_like_jwt(b) => {
                let claims = self.verify_token(tokens, b).await?;
                let ok = match info.visibility {
                    Visibility::Authenticated => {
                        claims.role.is_account() || claims.allows(&info.name, Role::Play)
                    }
                    _ => claims.allows(&info.name, Role::Play),
                };
                if !ok {
                    return Err(AuthError::Forbidden { action: "play" });
                }
                let rules = access::Rules::parse(&claims.countries, &claims.cidrs)
                    .map_err(|_| AuthError::Invalid)?;
                self.check_rules(&rules, viewer)?;
                Some(Grant::Token {
                    subject: claims.sub,
                    token_id: claims.jti,
                })
            }
            Some(b) => match self.key_matches(&info.name, b).await? {
                Some(key_hash) => Some(Grant::StreamKey { key_hash }),
                None => return Err(AuthError::Invalid),
            },
        };
        let stream_rules = access::Rules::parse(&info.allowed_countries, &info.allowed_cidrs)
            .map_err(|_| AuthError::Store(StoreError::Corrupt("stream address rules")))?;
        self.check_rules(&stream_rules, viewer)?;
        Ok(grant)
    }

    fn check_rules(&self, rules: &access::Rules, viewer: Viewer) -> Result<(), AuthError> {
        rules
            .check(viewer.ip, self.geoip.as_deref())
            .map_err(|reason| AuthError::Location { reason })
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

fn grant_for(
    claims: Claims,
    stream: &str,
    role: Role,
    action: &'static str,
) -> Result<Grant, AuthError> {
    if claims.allows(stream, role) {
        Ok(Grant::Token {
            subject: claims.sub,
            token_id: claims.jti,
        })
    } else {
        Err(AuthError::Forbidden { action })
    }
}

/// A registered stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    /// The stream's name, also its identifier in URLs (`/whip/{name}`,
    /// `/api/streams/{name}`).
    pub name: String,
    /// The broadcaster who owns it; `None` for streams made by the CLI.
    pub owner_id: Option<String>,
    pub title: String,
    pub visibility: Visibility,
    /// ISO 3166-1 alpha-2 codes; empty = any country.
    pub allowed_countries: Vec<String>,
    /// CIDR ranges; empty = any address.
    pub allowed_cidrs: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the broadcaster plans to go live next (Unix seconds).
    pub scheduled_at: Option<i64>,
}

impl StreamInfo {
    /// A stream that is live (published with an admin or publish token)
    /// but was never registered: public, no rules, no owner.
    pub fn unregistered(name: &str) -> StreamInfo {
        StreamInfo {
            name: name.to_string(),
            owner_id: None,
            title: String::new(),
            visibility: Visibility::Public,
            allowed_countries: Vec::new(),
            allowed_cidrs: Vec::new(),
            created_at: 0,
            updated_at: 0,
            scheduled_at: None,
        }
    }

    pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<StreamInfo, StoreError> {
        let visibility: String = r.try_get("visibility")?;
        Ok(StreamInfo {
            name: r.try_get("name")?,
            owner_id: r.try_get("owner_id")?,
            title: r.try_get("title")?,
            visibility: visibility
                .parse()
                .map_err(|_| StoreError::Corrupt("stream visibility"))?,
            allowed_countries: split_list(&r.try_get::<String, _>("allowed_countries")?),
            allowed_cidrs: split_list(&r.try_get::<String, _>("allowed_cidrs")?),
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            scheduled_at: r.try_get("scheduled_at")?,
        })
    }
}

pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    async fn keys_authorize_only_their_stream_and_are_not_stored_in_clear(url: &str) {
        let store = Store::connect(url).await.expect("open");
        let tokens = Tokens::new(b"s");
        let key = store.create_key("show", None).await.expect("key");
        let grant = store
            .authorize_publish(&tokens, "show", Some(&key))
            .await
            .expect("allowed");
        assert!(matches!(grant, Grant::StreamKey { .. }));
        assert!(matches!(
            store.authorize_publish(&tokens, "other", Some(&key)).await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            store
                .authorize_publish(&tokens, "show", Some("rk_wrong"))
                .await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            store.authorize_publish(&tokens, "show", None).await,
            Err(AuthError::Missing)
        ));
        let raw: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM stream_keys")
            .fetch_all(store.db.pool())
            .await
            .expect("query");
        assert_eq!(raw.len(), 1);
        assert!(raw.iter().all(|h| h != &key));
        assert!(matches!(
            store.create_key("bad/name", None).await,
            Err(StoreError::BadName)
        ));
        store.close().await;
    }

    async fn a_revoked_token_no_longer_publishes(url: &str) {
        let store = Store::connect(url).await.expect("open");
        let tokens = Tokens::new(b"s");
        let jwt = tokens
            .issue("u", Some("show"), Role::Publish, unix_now() as u64, 600)
            .expect("sign");
        store
            .authorize_publish(&tokens, "show", Some(&jwt))
            .await
            .expect("allowed before revocation");
        let claims = tokens.verify(&jwt).expect("valid");
        store
            .revoke_token(&claims.jti, claims.exp as i64)
            .await
            .expect("revoke");
        store
            .revoke_token(&claims.jti, claims.exp as i64)
            .await
            .expect("revoking twice is fine");
        assert!(matches!(
            store.authorize_publish(&tokens, "show", Some(&jwt)).await,
            Err(AuthError::Revoked)
        ));
        store.close().await;
    }

    async fn a_key_alone_names_its_stream_until_revoked(url: &str) {
        let store = Store::connect(url).await.expect("open");
        let key = store.create_key("show", None).await.expect("key");
        store.create_key("other", None).await.expect("key");
        let (stream, grant) = store.authorize_publish_key(&key).await.expect("allowed");
        assert_eq!(stream, "show");
        // The same owner as a WHIP publish with that key: one replaces the other.
        let whip = store
            .authorize_publish(&Tokens::new(b"s"), "show", Some(&key))
            .await
            .expect("allowed");
        assert_eq!(grant.owner(), whip.owner());
        assert!(matches!(
            store.authorize_publish_key("rk_wrong").await,
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            store.authorize_publish_key("").await,
            Err(AuthError::Missing)
        ));
        let id: String = sqlx::query_scalar("SELECT id FROM stream_keys WHERE key_hash = $1")
            .bind(hash_secret(&key))
            .fetch_one(store.db.pool())
            .await
            .expect("key id");
        assert!(store.revoke_stream_key("show", &id).await.expect("revoke"));
        assert!(matches!(
            store.authorize_publish_key(&key).await,
            Err(AuthError::Invalid)
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn keys_on_sqlite() {
        let db = TestDb::sqlite();
        keys_authorize_only_their_stream_and_are_not_stored_in_clear(db.url()).await;
        a_revoked_token_no_longer_publishes(db.url()).await;
        a_key_alone_names_its_stream_until_revoked(db.url()).await;
    }

    #[tokio::test]
    async fn keys_on_postgres() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        keys_authorize_only_their_stream_and_are_not_stored_in_clear(db.url()).await;
        a_revoked_token_no_longer_publishes(db.url()).await;
        a_key_alone_names_its_stream_until_revoked(db.url()).await;
        db.drop_database().await;
    }
}
