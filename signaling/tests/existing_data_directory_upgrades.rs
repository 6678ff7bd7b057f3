//! A data directory made before accounts existed (only the first SQLite
//! migration applied, a private stream and a key in it) upgrades in place:
//! the key still publishes and the private stream becomes `entitled`.

use base64::Engine;
use sha2::{Digest, Sha256};
use signaling::testing::TestDb;
use signaling::{AuthError, Store, Tokens, Viewer, Visibility};
use sqlx::sqlite::SqlitePoolOptions;

#[tokio::test]
async fn a_data_directory_from_before_accounts_upgrades() {
    let db = TestDb::sqlite();
    let first_only = std::env::temp_dir().join(format!("relaycast-m1-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&first_only).expect("dir");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_streams_and_keys.sql"
        ),
        first_only.join("0001_streams_and_keys.sql"),
    )
    .expect("copy");
    let old = sqlx::migrate::Migrator::new(first_only.as_path())
        .await
        .expect("migrator");
    let pool = SqlitePoolOptions::new()
        .connect(db.url())
        .await
        .expect("connect");
    old.run(&pool).await.expect("old schema");
    let key = "rk_from_an_old_release";
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(key));
    sqlx::query(
        "INSERT INTO streams(name, private, created_at) VALUES ('vip', 1, 1), ('open', 0, 1)",
    )
    .execute(&pool)
    .await
    .expect("streams");
    sqlx::query("INSERT INTO stream_keys(key_hash, stream, created_at) VALUES (?, 'vip', 1)")
        .bind(&hash)
        .execute(&pool)
        .await
        .expect("key");
    pool.close().await;
    let _ = std::fs::remove_dir_all(&first_only);

    let store = Store::connect(db.url()).await.expect("upgrade");
    let tokens = Tokens::new(b"s");
    let vip = store.stream("vip").await.expect("q").expect("kept");
    assert_eq!(vip.visibility, Visibility::Entitled);
    assert_eq!(
        store.stream("open").await.expect("q").map(|s| s.visibility),
        Some(Visibility::Public)
    );
    store
        .authorize_publish(&tokens, "vip", Some(key))
        .await
        .expect("the old key still publishes");
    assert!(matches!(
        store
            .authorize_play(&tokens, &vip, None, Viewer::default())
            .await,
        Err(AuthError::Missing)
    ));
    let keys = store.list_stream_keys("vip").await.expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, &hash[..16]);
    store
        .create_key("vip", None)
        .await
        .expect("the CLI still adds keys");
    store.close().await;
}
