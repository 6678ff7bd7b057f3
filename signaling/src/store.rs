//! Streams and stream keys in the embedded SQLite database. The file is
//! opened in WAL mode so `relaycast keys create` can write while a server
//! reads the same data directory.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use crate::token::{looks_like_jwt, Role, TokenError, Tokens};
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub private: bool,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

pub fn valid_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens (creating if needed) `relaycast.db` in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join("relaycast.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Creates the stream if it does not exist and returns a new key for it.
    pub async fn create_key(
        &self,
        stream: &str,
        private: Option<bool>,
    ) -> Result<String, StoreError> {
        if !valid_stream_name(stream) {
            return Err(StoreError::BadName);
        }
        let now = unix_now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO streams(name, private, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING")
            .bind(stream)
            .bind(private.unwrap_or(false))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(private) = private {
            sqlx::query("UPDATE streams SET private = ? WHERE name = ?")
                .bind(private)
                .bind(stream)
                .execute(&mut *tx)
                .await?;
        }
        let key = format!(
            "rk_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        sqlx::query("INSERT INTO stream_keys(key_hash, stream, created_at) VALUES (?, ?, ?)")
            .bind(hash_key(&key))
            .bind(stream)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(key)
    }

    pub async fn stream(&self, name: &str) -> Result<Option<StreamInfo>, StoreError> {
        let row = sqlx::query("SELECT name, private FROM streams WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| StreamInfo {
            name: r.get("name"),
            private: r.get::<bool, _>("private"),
        }))
    }

    async fn key_matches(&self, stream: &str, key: &str) -> Result<Option<String>, StoreError> {
        let h = hash_key(key);
        let row = sqlx::query(
            "SELECT 1 FROM stream_keys WHERE key_hash = ? AND stream = ? AND revoked_at IS NULL",
        )
        .bind(&h)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|_| h))
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
            return verify_token(tokens, bearer, stream, Role::Publish, "publish");
        }
        match self.key_matches(stream, bearer).await? {
            Some(key_hash) => Ok(Grant::StreamKey { key_hash }),
            None => Err(AuthError::Invalid),
        }
    }

    /// Decides whether a viewer may play `stream` (which exists and is
    /// described by `info`): public streams need nothing; private ones a
    /// play JWT (or the stream's key, for the broadcaster's own preview).
    pub async fn authorize_play(
        &self,
        tokens: &Tokens,
        info: &StreamInfo,
        bearer: Option<&str>,
    ) -> Result<Option<Grant>, AuthError> {
        if !info.private {
            return Ok(None);
        }
        let bearer = bearer.ok_or(AuthError::Missing)?;
        if looks_like_jwt(bearer) {
            return verify_token(tokens, bearer, &info.name, Role::Play, "play").map(Some);
        }
        match self.key_matches(&info.name, bearer).await? {
            Some(key_hash) => Ok(Some(Grant::StreamKey { key_hash })),
            None => Err(AuthError::Invalid),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn verify_token(
    tokens: &Tokens,
    bearer: &str,
    stream: &str,
    role: Role,
    action: &'static str,
) -> Result<Grant, AuthError> {
    let claims = tokens.verify(bearer).map_err(|e| match e {
        TokenError::Expired => AuthError::Expired,
        _ => AuthError::Invalid,
    })?;
    if claims.allows(stream, role) {
        Ok(Grant::Token {
            subject: claims.sub,
            token_id: claims.jti,
        })
    } else {
        Err(AuthError::Forbidden { action })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_authorize_only_their_stream_and_are_not_stored_in_clear() {
        let dir = std::env::temp_dir().join(format!("relaycast-store-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = Store::open(&dir).await.expect("open");
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
            .fetch_all(&store.pool)
            .await
            .expect("query");
        assert!(raw.iter().all(|h| h != &key));
        assert!(matches!(
            store.create_key("bad/name", None).await,
            Err(StoreError::BadName)
        ));
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
