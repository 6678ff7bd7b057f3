//! Streams (owned by a broadcaster) and their keys.

use crate::access::{normalize_cidrs, normalize_countries, Visibility};
use crate::store::{hash_secret, new_secret, unix_now, valid_stream_name};
use crate::{Store, StoreError, StreamInfo};
use sqlx::Row;

const STREAM_COLUMNS: &str = "name, owner_id, title, visibility, allowed_countries, \
     allowed_cidrs, created_at, updated_at, scheduled_at";

/// A stream to create.
#[derive(Debug, Clone)]
pub struct NewStream {
    pub name: String,
    pub title: String,
    pub visibility: Visibility,
    pub allowed_countries: Vec<String>,
    pub allowed_cidrs: Vec<String>,
}

/// Changes to a stream; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StreamUpdate {
    pub title: Option<String>,
    pub visibility: Option<Visibility>,
    pub allowed_countries: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<String>>,
    /// `Some(None)` clears the schedule.
    pub scheduled_at: Option<Option<i64>>,
}

/// A stream key as listed (the secret itself is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub stream: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Latest schedule accepted (Unix seconds, 3000-01-01).
pub const MAX_SCHEDULED_AT: i64 = 32_503_680_000;

/// Longest stream title accepted.
pub const MAX_TITLE: usize = 200;

fn check_title(t: &str) -> Result<(), StoreError> {
    if t.chars().count() > MAX_TITLE {
        Err(StoreError::Invalid("title longer than 200 characters"))
    } else {
        Ok(())
    }
}

fn rules(countries: &[String], cidrs: &[String]) -> Result<(String, String), StoreError> {
    let c = normalize_countries(countries)
        .map_err(|_| StoreError::Invalid("country codes are two letters (ISO 3166-1 alpha-2)"))?;
    let n = normalize_cidrs(cidrs).map_err(|_| {
        StoreError::Invalid("invalid CIDR range (e.g. 203.0.113.0/24 or 2001:db8::/32)")
    })?;
    Ok((c.join(","), n.join(",")))
}

impl Store {
    /// The stream named `name`, if registered.
    pub async fn stream(&self, name: &str) -> Result<Option<StreamInfo>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STREAM_COLUMNS} FROM streams WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(StreamInfo::from_row).transpose()
    }

    /// Registers a stream owned by `owner` (a user id; `None` for
    /// unowned, admin-managed streams). [`StoreError::Duplicate`] if the
    /// name is taken.
    pub async fn create_stream(
        &self,
        owner: Option<&str>,
        new: &NewStream,
    ) -> Result<StreamInfo, StoreError> {
        if !valid_stream_name(&new.name) {
            return Err(StoreError::BadName);
        }
        check_title(&new.title)?;
        let (countries, cidrs) = rules(&new.allowed_countries, &new.allowed_cidrs)?;
        let now = unix_now();
        sqlx::query(
            "INSERT INTO streams(name, owner_id, title, visibility, allowed_countries, \
             allowed_cidrs, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&new.name)
        .bind(owner)
        .bind(&new.title)
        .bind(new.visibility.as_str())
        .bind(&countries)
        .bind(&cidrs)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(|e| StoreError::unique(e, "stream"))?;
        self.stream(&new.name)
            .await?
            .ok_or(StoreError::Corrupt("stream vanished after insert"))
    }

    /// Streams owned by `owner`, or every stream with `None`; by name.
    pub async fn list_streams(&self, owner: Option<&str>) -> Result<Vec<StreamInfo>, StoreError> {
        let rows = match owner {
            Some(o) => {
                sqlx::query(&format!(
                    "SELECT {STREAM_COLUMNS} FROM streams WHERE owner_id = $1 ORDER BY name"
                ))
                .bind(o)
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {STREAM_COLUMNS} FROM streams ORDER BY name"
                ))
                .fetch_all(self.db.pool())
                .await?
            }
        };
        rows.iter().map(StreamInfo::from_row).collect()
    }

    /// The viewer site's catalogue: streams whose title or name contains
    /// `search` (any case; every stream without one), each with its
    /// owner's username; at most `limit`, by name.
    pub async fn catalogue(
        &self,
        search: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(StreamInfo, Option<String>)>, StoreError> {
        let pattern = format!(
            "%{}%",
            search
                .unwrap_or("")
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows = sqlx::query(
            "SELECT s.name, s.owner_id, s.title, s.visibility, s.allowed_countries, \
             s.allowed_cidrs, s.created_at, s.updated_at, s.scheduled_at, u.username AS owner_name \
             FROM streams s LEFT JOIN users u ON u.id = s.owner_id \
             WHERE LOWER(s.title) LIKE $1 ESCAPE '\\' OR LOWER(s.name) LIKE $1 ESCAPE '\\' \
             ORDER BY s.name LIMIT $2",
        )
        .bind(&pattern)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((StreamInfo::from_row(r)?, r.try_get("owner_name")?)))
            .collect()
    }

    /// Applies `update`; `None` if there is no such stream.
    pub async fn update_stream(
        &self,
        name: &str,
        update: &StreamUpdate,
    ) -> Result<Option<StreamInfo>, StoreError> {
        let Some(cur) = self.stream(name).await? else {
            return Ok(None);
        };
        let title = update.title.clone().unwrap_or(cur.title);
        check_title(&title)?;
        let visibility = update.visibility.unwrap_or(cur.visibility);
        let (countries, cidrs) = rules(
            update
                .allowed_countries
                .as_deref()
                .unwrap_or(&cur.allowed_countries),
            update
                .allowed_cidrs
                .as_deref()
                .unwrap_or(&cur.allowed_cidrs),
        )?;
        let scheduled_at = update.scheduled_at.unwrap_or(cur.scheduled_at);
        if scheduled_at.is_some_and(|t| !(0..=MAX_SCHEDULED_AT).contains(&t)) {
            return Err(StoreError::Invalid(
                "scheduled_at must be Unix seconds before the year 3000",
            ));
        }
        sqlx::query(
            "UPDATE streams SET title = $1, visibility = $2, allowed_countries = $3, \
             allowed_cidrs = $4, updated_at = $5, scheduled_at = $6 WHERE name = $7",
        )
        .bind(&title)
        .bind(visibility.as_str())
        .bind(&countries)
        .bind(&cidrs)
        .bind(unix_now())
        .bind(scheduled_at)
        .bind(name)
        .execute(self.db.pool())
        .await?;
        self.stream(name).await
    }

    /// Deletes a stream with its keys and entitlements; whether it existed.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM streams WHERE name = $1")
            .bind(name)
            .execute(self.db.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// A new key for a registered stream: its listing and the secret
    /// (shown once; only its hash is kept).
    pub async fn create_stream_key(&self, stream: &str) -> Result<(KeyInfo, String), StoreError> {
        let key = new_secret("rk_");
        let key_hash = hash_secret(&key);
        let id = key_hash[..16].to_string();
        let now = unix_now();
        sqlx::query(
            "INSERT INTO stream_keys(id, key_hash, stream, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(&key_hash)
        .bind(stream)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok((
            KeyInfo {
                id,
                stream: stream.to_string(),
                created_at: now,
                revoked_at: None,
            },
            key,
        ))
    }

    /// Keys of a stream, newest first, revoked ones included.
    pub async fn list_stream_keys(&self, stream: &str) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, stream, created_at, revoked_at FROM stream_keys WHERE stream = $1 \
             ORDER BY created_at DESC, id",
        )
        .bind(stream)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    id: r.try_get("id")?,
                    stream: r.try_get("stream")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes one key of a stream; whether a live key was revoked.
    pub async fn revoke_stream_key(&self, stream: &str, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE stream_keys SET revoked_at = $1 WHERE stream = $2 AND id = $3 \
             AND revoked_at IS NULL",
        )
        .bind(unix_now())
        .bind(stream)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Revokes every live key of a stream and creates a new one, in one
    /// transaction (a leaked key stops working the moment this returns).
    pub async fn rotate_stream_keys(&self, stream: &str) -> Result<(KeyInfo, String), StoreError> {
        let key = new_secret("rk_");
        let key_hash = hash_secret(&key);
        let id = key_hash[..16].to_string();
        let now = unix_now();
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "UPDATE stream_keys SET revoked_at = $1 WHERE stream = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(stream)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO stream_keys(id, key_hash, stream, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(&key_hash)
        .bind(stream)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((
            KeyInfo {
                id,
                stream: stream.to_string(),
                created_at: now,
                revoked_at: None,
            },
            key,
        ))
    }
}
