//! # The database handle: one pool, two backends, one set of queries
//!
//! relaycast keeps its control-plane data (users, streams, keys,
//! entitlements, stream sessions, and whatever other modules add) in SQL:
//! an embedded SQLite file by default (`relaycast.db` in the data
//! directory, WAL mode so `relaycast keys create` can write while a server
//! runs), PostgreSQL when a `postgres://…` URL is given.
//!
//! [`Db`] wraps a `sqlx` [`AnyPool`]: the same query text runs on both
//! backends, so every query is written and tested once. The `Any` driver
//! was chosen over an enum of two typed pools because an enum doubles every
//! query site (or needs a macro to hide it) while buying nothing here: the
//! control plane's queries are plain, and both backends run the full test
//! suite against the same code.
//!
//! ## Adding a table or a query (rules that keep both backends working)
//!
//! 1. **Migrations come in pairs.** Add a file with the *same name* to
//!    `signaling/migrations/sqlite/` and `signaling/migrations/postgres/`
//!    (`NNNN_what.sql`, the next free number; never edit an applied file,
//!    its checksum is recorded). Keep the two equivalent: same tables,
//!    columns, constraints and indexes; only the type names differ.
//! 2. **Types**: use `TEXT` for strings and identifiers, `INTEGER`
//!    (SQLite) / `BIGINT` (PostgreSQL) for every integer, flag and time
//!    (unix seconds unless the column name says `_ms`), `DOUBLE PRECISION`
//!    / `REAL` for floats, `BLOB` / `BYTEA` for bytes. Bind and read them
//!    as `String`, `i64`, `f64`, `Vec<u8>` (or `Option<…>`). Do **not** use
//!    `BOOLEAN`: SQLite returns it as an integer and the `Any` driver will
//!    not decode that as `bool`; store 0/1 in an integer column.
//! 3. **Placeholders** are `$1, $2, …` (both backends accept them; `?`
//!    does not work on PostgreSQL).
//! 4. **Portable SQL only**: `INSERT … ON CONFLICT (…) DO NOTHING/UPDATE`,
//!    `RETURNING`, `COALESCE`, `CASE`, `LIMIT/OFFSET`, `substr`, `lower`
//!    exist in both; avoid `AUTOINCREMENT`/`SERIAL` (generate identifiers
//!    in Rust with [`new_id`]), `ILIKE`, `NOW()`, JSON operators, and
//!    backend-specific date functions (pass times in as parameters).
//! 5. **Tests**: run them on both backends with
//!    [`crate::testing::TestDb`], which hands out a fresh SQLite file or a
//!    fresh PostgreSQL database per test.

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;

use crate::store::StoreError;

/// Which SQL engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if relaycast supports it.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A connection pool to the control-plane database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never printed.
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The URL of the embedded database file in `data_dir`.
pub fn sqlite_url(data_dir: &Path) -> String {
    let path = data_dir.join("relaycast.db").display().to_string();
    // The driver percent-decodes the path; these would otherwise be read
    // as escapes, the query or a fragment.
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3F"),
            '#' => escaped.push_str("%23"),
            ' ' => escaped.push_str("%20"),
            c => escaped.push(c),
        }
    }
    format!("sqlite://{escaped}?mode=rwc")
}

/// A random 128-bit identifier, 32 lowercase hex digits; the primary key
/// of rows created by the control plane.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Db {
    /// Connects without migrating (see [`Db::migrate`]). `url` is
    /// `sqlite://path?mode=rwc` (see [`sqlite_url`]) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or(StoreError::UnsupportedUrl)?;
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        opts = match backend {
            // One writer at a time anyway; a few readers.
            Backend::Sqlite => opts.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    // The Any driver takes no SQLite options, so the pragmas
                    // the typed driver would set are set here. WAL lets the
                    // CLI write while a server reads; foreign keys are off
                    // by default in SQLite.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => opts.max_connections(10),
        };
        let pool = opts.connect(url).await?;
        Ok(Db { pool, backend })
    }

    /// Connects and applies pending migrations.
    pub async fn connect_and_migrate(url: &str) -> Result<Db, StoreError> {
        let db = Db::connect(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the backend's pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The pool, for modules that keep tables of their own (see the
    /// module documentation for the rules).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_data_directory_with_awkward_characters_works() {
        let dir = std::env::temp_dir().join(format!(
            "relaycast dir #1 ?x %41 {:x}",
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = Db::connect_and_migrate(&sqlite_url(&dir))
            .await
            .expect("connect");
        db.close().await;
        assert!(dir.join("relaycast.db").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
