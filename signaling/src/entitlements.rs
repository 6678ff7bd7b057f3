//! Entitlements — a user's right to watch: a subscription to a broadcaster
//! (all their streams) or pay-per-view of one stream — and the payment
//! events that grant and revoke them.

use sqlx::Row;

use crate::db::new_id;
use crate::store::unix_now;
use crate::{Store, StoreError, StreamInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntitlementKind {
    /// Every stream of a broadcaster.
    Subscription,
    /// One stream.
    Ppv,
}

impl EntitlementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntitlementKind::Subscription => "subscription",
            EntitlementKind::Ppv => "ppv",
        }
    }
}

/// What an entitlement covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every stream owned by this user id.
    Broadcaster(String),
    /// One stream, by name.
    Stream(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entitlement {
    pub id: String,
    pub user_id: String,
    pub kind: EntitlementKind,
    pub broadcaster_id: Option<String>,
    pub stream: Option<String>,
    /// The payment provider's reference (subscription or checkout id).
    pub external_ref: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A grant to make.
#[derive(Debug, Clone)]
pub struct NewEntitlement {
    pub user_id: String,
    pub kind: EntitlementKind,
    pub target: Target,
    pub external_ref: Option<String>,
    pub expires_at: Option<i64>,
}

/// What a verified payment event asks for.
#[derive(Debug, Clone)]
pub enum PaymentAction {
    Grant(NewEntitlement),
    /// Revoke every live entitlement made with this external reference.
    RevokeByRef(String),
}

/// The result of [`Store::apply_payment_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Granted(String),
    Revoked(u64),
    /// The event id was seen before; nothing changed.
    AlreadyProcessed,
}

const COLUMNS: &str = "id, user_id, kind, broadcaster_id, stream, external_ref, created_at, \
     expires_at, revoked_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Entitlement, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(Entitlement {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        kind: match kind.as_str() {
            "subscription" => EntitlementKind::Subscription,
            "ppv" => EntitlementKind::Ppv,
            _ => return Err(StoreError::Corrupt("entitlement kind")),
        },
        broadcaster_id: r.try_get("broadcaster_id")?,
        stream: r.try_get("stream")?,
        external_ref: r.try_get("external_ref")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// Maps a foreign-key violation (unknown user, broadcaster or stream).
fn missing_reference(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::Invalid("unknown user, broadcaster or stream")
        }
        _ => StoreError::Db(e),
    }
}

async fn insert<'c, E>(exec: E, new: &NewEntitlement) -> Result<Entitlement, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let (broadcaster, stream) = match &new.target {
        Target::Broadcaster(b) => (Some(b.clone()), None),
        Target::Stream(s) => (None, Some(s.clone())),
    };
    let e = Entitlement {
        id: new_id(),
        user_id: new.user_id.clone(),
        kind: new.kind,
        broadcaster_id: broadcaster,
        stream,
        external_ref: new.external_ref.clone(),
        created_at: unix_now(),
        expires_at: new.expires_at,
        revoked_at: None,
    };
    sqlx::query(
        "INSERT INTO entitlements(id, user_id, kind, broadcaster_id, stream, external_ref, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&e.id)
    .bind(&e.user_id)
    .bind(e.kind.as_str())
    .bind(&e.broadcaster_id)
    .bind(&e.stream)
    .bind(&e.external_ref)
    .bind(e.created_at)
    .bind(e.expires_at)
    .execute(exec)
    .await
    .map_err(missing_reference)?;
    Ok(e)
}

impl Store {
    pub async fn grant_entitlement(&self, new: &NewEntitlement) -> Result<Entitlement, StoreError> {
        insert(self.db.pool(), new).await
    }

    /// Revokes one entitlement; whether a live one was revoked.
    pub async fn revoke_entitlement(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE entitlements SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(unix_now())
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn entitlement(&self, id: &str) -> Result<Option<Entitlement>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM entitlements WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Entitlements of one user (or all with `None`), newest first.
    pub async fn list_entitlements(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<Entitlement>, StoreError> {
        let rows = match user_id {
            Some(u) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM entitlements WHERE user_id = $1 ORDER BY created_at DESC, id"
                ))
                .bind(u)
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM entitlements ORDER BY created_at DESC, id"
                ))
                .fetch_all(self.db.pool())
                .await?
            }
        };
        rows.iter().map(from_row).collect()
    }

    /// Whether `user_id` holds a live entitlement to `stream` now: a
    /// pay-per-view of it or a subscription to its owner.
    pub async fn is_entitled(
        &self,
        user_id: &str,
        stream: &StreamInfo,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM entitlements WHERE user_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) \
             AND (stream = $3 OR (broadcaster_id IS NOT NULL AND broadcaster_id = $4)) LIMIT 1",
        )
        .bind(user_id)
        .bind(unix_now())
        .bind(&stream.name)
        // No owner: no subscription can cover it; '' matches no user id.
        .bind(stream.owner_id.clone().unwrap_or_default())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Applies a verified payment event once: the event id is recorded in
    /// the same transaction as its effect, so a retried delivery is
    /// [`PaymentOutcome::AlreadyProcessed`].
    pub async fn apply_payment_event(
        &self,
        event_id: &str,
        event_type: &str,
        action: &PaymentAction,
    ) -> Result<PaymentOutcome, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO payment_events(event_id, event_type, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT(event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !fresh {
            return Ok(PaymentOutcome::AlreadyProcessed);
        }
        let outcome = match action {
            PaymentAction::Grant(new) => PaymentOutcome::Granted(insert(&mut *tx, new).await?.id),
            PaymentAction::RevokeByRef(r) => PaymentOutcome::Revoked(
                sqlx::query(
                    "UPDATE entitlements SET revoked_at = $1 WHERE external_ref = $2 \
                     AND revoked_at IS NULL",
                )
                .bind(unix_now())
                .bind(r)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            ),
        };
        tx.commit().await?;
        Ok(outcome)
    }
}
