//! Stream sessions: one row per time a stream went live, with when it
//! ended, its peak viewer count and how often it stalled. The API's
//! recorder (`sfu::Sfu::events()` → these calls) fills it.

use sqlx::Row;

use crate::db::new_id;
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamSession {
    pub id: String,
    pub stream: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub peak_viewers: i64,
    pub stalls: i64,
}

impl Store {
    /// Records that `stream` went live at `at_ms`; returns the session id.
    /// A session of the stream still open (the server stopped without an
    /// end event) is closed at the same moment.
    pub async fn session_started(&self, stream: &str, at_ms: i64) -> Result<String, StoreError> {
        let id = new_id();
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "UPDATE stream_sessions SET ended_at_ms = $1 WHERE stream = $2 AND ended_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(stream)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO stream_sessions(id, stream, started_at_ms) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(stream)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Raises the session's peak viewer count to `viewers` if higher.
    pub async fn session_viewers(&self, id: &str, viewers: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE stream_sessions SET peak_viewers = $1 WHERE id = $2 AND peak_viewers < $1",
        )
        .bind(viewers)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn session_stalled(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE stream_sessions SET stalls = stalls + 1 WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    pub async fn session_ended(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE stream_sessions SET ended_at_ms = $1 WHERE id = $2 AND ended_at_ms IS NULL",
        )
        .bind(at_ms)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Closes every open session at `at_ms` (at start: the previous run
    /// may have stopped without recording ends).
    pub async fn close_open_sessions(&self, at_ms: i64) -> Result<u64, StoreError> {
        let r =
            sqlx::query("UPDATE stream_sessions SET ended_at_ms = $1 WHERE ended_at_ms IS NULL")
                .bind(at_ms)
                .execute(self.db.pool())
                .await?;
        Ok(r.rows_affected())
    }

    /// Per stream, when its latest session started and ended (Unix ms;
    /// no end while it is live).
    pub async fn last_sessions(
        &self,
    ) -> Result<std::collections::HashMap<String, (i64, Option<i64>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.stream, s.started_at_ms, s.ended_at_ms FROM stream_sessions s \
             JOIN (SELECT stream, MAX(started_at_ms) AS latest FROM stream_sessions \
             GROUP BY stream) l ON l.stream = s.stream AND l.latest = s.started_at_ms",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("stream")?,
                    (r.try_get("started_at_ms")?, r.try_get("ended_at_ms")?),
                ))
            })
            .collect()
    }

    /// The latest `limit` sessions of a stream, newest first.
    pub async fn stream_sessions(
        &self,
        stream: &str,
        limit: i64,
    ) -> Result<Vec<StreamSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, stream, started_at_ms, ended_at_ms, peak_viewers, stalls \
             FROM stream_sessions WHERE stream = $1 ORDER BY started_at_ms DESC, id LIMIT $2",
        )
        .bind(stream)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StreamSession {
                    id: r.try_get("id")?,
                    stream: r.try_get("stream")?,
                    started_at_ms: r.try_get("started_at_ms")?,
                    ended_at_ms: r.try_get("ended_at_ms")?,
                    peak_viewers: r.try_get("peak_viewers")?,
                    stalls: r.try_get("stalls")?,
                })
            })
            .collect()
    }
}
