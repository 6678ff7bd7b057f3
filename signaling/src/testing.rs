//! Scratch databases for tests, so one test body runs on both backends:
//!
//! ```ignore
//! async fn body(url: &str) { let store = Store::connect(url).await?; … }
//! #[tokio::test] async fn on_sqlite() { body(TestDb::sqlite().url()).await }
//! #[tokio::test] async fn on_postgres() {
//!     let Some(db) = TestDb::postgres().await else { return };
//!     body(db.url()).await
//! }
//! ```
//!
//! [`TestDb::postgres`] creates a database `relaycast_test_<random>` on the
//! server named by `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and drops it when the
//! `TestDb` is dropped. If the server cannot be reached it panics when
//! `CI=true` (a CI run must not pass by skipping) and otherwise returns
//! `None` after saying so on stderr.

use std::path::PathBuf;

use sqlx::{Connection, Executor};

/// The PostgreSQL server tests use when `DATABASE_URL` is not set.
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh, empty database that disappears when dropped.
pub struct TestDb {
    url: String,
    sqlite_dir: Option<PathBuf>,
    postgres: Option<(String, String)>,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> Option<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://")? + 3;
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

impl TestDb {
    /// A new SQLite file in a new temporary directory.
    pub fn sqlite() -> TestDb {
        let dir =
            std::env::temp_dir().join(format!("relaycast-test-{:016x}", rand::random::<u64>()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("creating {}: {e}", dir.display());
        }
        TestDb {
            url: crate::db::sqlite_url(&dir),
            sqlite_dir: Some(dir),
            postgres: None,
        }
    }

    /// A new database on the test PostgreSQL server (see the module docs).
    pub async fn postgres() -> Option<TestDb> {
        let admin =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_string());
        let name = format!("relaycast_test_{:016x}", rand::random::<u64>());
        let url = match with_database(&admin, &name) {
            Some(u) => u,
            None => panic!("DATABASE_URL is not a postgres:// URL"),
        };
        let created = async {
            let mut conn = sqlx::postgres::PgConnection::connect(&admin).await?;
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await?;
            conn.close().await
        }
        .await;
        match created {
            Ok(()) => Some(TestDb {
                url,
                sqlite_dir: None,
                postgres: Some((admin, name)),
            }),
            Err(e) if in_ci() => {
                panic!("PostgreSQL at DATABASE_URL is required in CI and unusable: {e}")
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: PostgreSQL test (no usable server at DATABASE_URL, default {DEFAULT_TEST_POSTGRES}): {e}"
                );
                None
            }
        }
    }

    /// The database URL to connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database now (also done on drop; this form reports errors).
    pub async fn drop_database(mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            if let Err(e) = drop_pg(&admin, &name).await {
                eprintln!("dropping test database {name}: {e}");
            }
        }
    }
}

async fn drop_pg(admin: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::postgres::PgConnection::connect(admin).await?;
    // FORCE: pools of the test may still hold connections.
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    conn.close().await
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin, name)) = self.postgres.take() {
            // Drop cannot await; a thread with its own runtime can, even
            // inside a running runtime (and during a panic).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    if let Err(e) = rt.block_on(drop_pg(&admin, &name)) {
                        eprintln!("dropping test database {name}: {e}");
                    }
                }
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/x")
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x").as_deref(),
            Some("postgres://u:p@h/x?sslmode=disable")
        );
        assert_eq!(
            with_database("postgres://h", "x").as_deref(),
            Some("postgres://h/x")
        );
    }
}
