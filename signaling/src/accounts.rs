//! Accounts (argon2id password hashes) and integrator API keys.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sqlx::Row;

use crate::db::new_id;
use crate::store::{hash_secret, new_secret, unix_now};
use crate::token::Role;
use crate::{Store, StoreError};

/// A user account (never carries the password hash out of this module).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub created_at: i64,
}

/// An integrator API key as listed (the secret is shown once).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Prefix of integrator API keys, so a bearer value tells what it is.
pub const API_KEY_PREFIX: &str = "rci_";

/// User names: 3–64 of `[A-Za-z0-9_.@-]`, compared case-insensitively
/// (stored lower-case).
pub fn valid_username(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// Passwords: 8–256 bytes (the upper bound keeps hashing cost bounded).
pub fn valid_password(pw: &str) -> bool {
    (8..=256).contains(&pw.len())
}

/// argon2id with the crate's default (OWASP-recommended) parameters.
fn hash_password(pw: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| StoreError::PasswordHash)
}

fn password_matches(pw: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the user does not exist, so a login
/// for an unknown name costs as much as one with a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("relaycast-no-such-user").unwrap_or_default())
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<User, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        role: role.parse().map_err(|_| StoreError::Corrupt("user role"))?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Creates an account. `role` must be an account role (viewer,
    /// broadcaster, admin, integrator). [`StoreError::Duplicate`] if the
    /// name is taken. Hashing runs on a blocking thread (argon2 is slow
    /// on purpose).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<User, StoreError> {
        if !valid_username(username) {
            return Err(StoreError::Invalid(
                "username must be 3-64 characters of A-Z a-z 0-9 _ . @ -",
            ));
        }
        if !valid_password(password) {
            return Err(StoreError::Invalid("password must be 8-256 bytes"));
        }
        if !role.is_account() {
            return Err(StoreError::Invalid(
                "role must be viewer, broadcaster, admin or integrator",
            ));
        }
        let pw = password.to_string();
        let phc = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .map_err(|_| StoreError::PasswordHash)??;
        let user = User {
            id: new_id(),
            username: username.to_ascii_lowercase(),
            role,
            created_at: unix_now(),
        };
        sqlx::query(
            "INSERT INTO users(id, username, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&phc)
        .bind(role.as_str())
        .bind(user.created_at)
        .execute(self.db.pool())
        .await
        .map_err(|e| StoreError::unique(e, "user"))?;
        Ok(user)
    }

    /// The user if `password` is theirs; `None` for an unknown name or a
    /// wrong password (the two cost the same).
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, role, created_at, password_hash FROM users WHERE username = $1",
        )
        .bind(username.to_ascii_lowercase())
        .fetch_optional(self.db.pool())
        .await?;
        let (user, phc) = match &row {
            Some(r) => (
                Some(user_from_row(r)?),
                r.try_get::<String, _>("password_hash")?,
            ),
            None => (None, dummy_hash().to_string()),
        };
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || password_matches(&pw, &phc))
            .await
            .unwrap_or(false);
        Ok(user.filter(|_| ok))
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, username, role, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT id, username, role, created_at FROM users WHERE username = $1")
                .bind(username.to_ascii_lowercase())
                .fetch_optional(self.db.pool())
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Number of accounts (the first one registered becomes admin).
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.db.pool())
            .await?;
        Ok(n)
    }

    /// A new API key for `user_id`: its listing and the secret (shown
    /// once; only its SHA-256 is kept).
    pub async fn create_api_key(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<(ApiKeyInfo, String), StoreError> {
        if name.is_empty() || name.chars().count() > 100 {
            return Err(StoreError::Invalid("key name must be 1-100 characters"));
        }
        let secret = new_secret(API_KEY_PREFIX);
        let info = ApiKeyInfo {
            id: new_id(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            created_at: unix_now(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys(id, user_id, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&info.id)
        .bind(&info.user_id)
        .bind(&info.name)
        .bind(hash_secret(&secret))
        .bind(info.created_at)
        .execute(self.db.pool())
        .await?;
        Ok((info, secret))
    }

    /// API keys of a user, newest first, revoked ones included.
    pub async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, created_at, revoked_at FROM api_keys WHERE user_id = $1 \
             ORDER BY created_at DESC, id",
        )
        .bind(user_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiKeyInfo {
                    id: r.try_get("id")?,
                    user_id: r.try_get("user_id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes a user's API key; whether a live key was revoked.
    pub async fn revoke_api_key(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE user_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(unix_now())
        .bind(user_id)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The owner of a live API key, with the key's id.
    pub async fn user_by_api_key(
        &self,
        secret: &str,
    ) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id AS id, u.username AS username, u.role AS role, u.created_at AS created_at, \
             k.id AS key_id FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(hash_secret(secret))
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            Some(r) => Ok(Some((user_from_row(&r)?, r.try_get("key_id")?))),
            None => Ok(None),
        }
    }
}
