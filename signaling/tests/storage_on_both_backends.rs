//! The storage layer's behaviour, one body per concern, each run on a
//! fresh SQLite file and on a fresh PostgreSQL database.

use signaling::testing::TestDb;
use signaling::{
    AuthError, EntitlementKind, NewEntitlement, NewStream, PaymentAction, PaymentOutcome, Role,
    Store, StoreError, StreamUpdate, Target, Tokens, Viewer, Visibility,
};

macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $body() {
                    let db = signaling::testing::TestDb::sqlite();
                    super::$body(db.url()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $body() {
                    let Some(db) = signaling::testing::TestDb::postgres().await else {
                        return;
                    };
                    super::$body(db.url()).await;
                    db.drop_database().await;
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_are_idempotent,
    accounts_hash_passwords_and_refuse_duplicates,
    api_keys_authenticate_until_revoked,
    streams_crud_and_keys,
    visibility_and_rules_decide_play,
    entitlements_cover_streams_and_owners,
    payment_events_apply_once,
    stream_sessions_record_peaks_and_ends,
);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn stream(name: &str, visibility: Visibility) -> NewStream {
    NewStream {
        name: name.into(),
        title: format!("{name} title"),
        visibility,
        allowed_countries: vec![],
        allowed_cidrs: vec![],
    }
}

async fn migrations_are_idempotent(url: &str) {
    let store = Store::connect(url).await.expect("first connect migrates");
    store
        .db()
        .migrate()
        .await
        .expect("second migrate is a no-op");
    let again = Store::connect(url).await.expect("reconnect");
    assert_eq!(again.user_count().await.expect("count"), 0);
    again.close().await;
    store.close().await;
}

async fn accounts_hash_passwords_and_refuse_duplicates(url: &str) {
    let store = Store::connect(url).await.expect("open");
    let alice = store
        .create_user("Alice", "correct horse", Role::Broadcaster)
        .await
        .expect("create");
    assert_eq!(alice.username, "alice");
    assert!(matches!(
        store.create_user("alice", "another pw", Role::Viewer).await,
        Err(StoreError::Duplicate("user"))
    ));
    assert!(matches!(
        store.create_user("bob", "short", Role::Viewer).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create_user("bob", "long enough", Role::Play).await,
        Err(StoreError::Invalid(_))
    ));
    let found = store
        .check_password("ALICE", "correct horse")
        .await
        .expect("query");
    assert_eq!(found.as_ref().map(|u| &u.id), Some(&alice.id));
    assert!(store
        .check_password("alice", "wrong horse")
        .await
        .expect("query")
        .is_none());
    assert!(store
        .check_password("nobody", "correct horse")
        .await
        .expect("query")
        .is_none());
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(&alice.id)
        .fetch_one(store.db().pool())
        .await
        .expect("row");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("correct horse"));
    assert_eq!(
        store.user(&alice.id).await.expect("q").map(|u| u.role),
        Some(Role::Broadcaster)
    );
    store.close().await;
}

async fn api_keys_authenticate_until_revoked(url: &str) {
    let store = Store::connect(url).await.expect("open");
    let int = store
        .create_user("bookmaker", "integrator pw", Role::Integrator)
        .await
        .expect("user");
    let (info, secret) = store
        .create_api_key(&int.id, "odds feed")
        .await
        .expect("key");
    assert!(secret.starts_with("rci_"));
    let (owner, key_id) = store
        .user_by_api_key(&secret)
        .await
        .expect("q")
        .expect("valid key");
    assert_eq!(
        (owner.id.as_str(), key_id.as_str()),
        (int.id.as_str(), info.id.as_str())
    );
    assert_eq!(store.list_api_keys(&int.id).await.expect("list").len(), 1);
    assert!(!store
        .revoke_api_key("someone-else", &info.id)
        .await
        .expect("q"));
    assert!(store.revoke_api_key(&int.id, &info.id).await.expect("q"));
    assert!(!store.revoke_api_key(&int.id, &info.id).await.expect("q"));
    assert!(store.user_by_api_key(&secret).await.expect("q").is_none());
    assert!(store.list_api_keys(&int.id).await.expect("list")[0]
        .revoked_at
        .is_some());
    store.close().await;
}

async fn streams_crud_and_keys(url: &str) {
    let store = Store::connect(url).await.expect("open");
    let tokens = Tokens::new(b"secret");
    let b = store
        .create_user("caster", "broadcaster pw", Role::Broadcaster)
        .await
        .expect("user");
    let s = store
        .create_stream(Some(&b.id), &stream("show", Visibility::Public))
        .await
        .expect("create");
    assert_eq!(s.owner_id.as_deref(), Some(b.id.as_str()));
    assert!(matches!(
        store
            .create_stream(Some(&b.id), &stream("show", Visibility::Public))
            .await,
        Err(StoreError::Duplicate("stream"))
    ));
    assert!(matches!(
        store
            .create_stream(Some(&b.id), &stream("bad name", Visibility::Public))
            .await,
        Err(StoreError::BadName)
    ));
    store
        .create_stream(None, &stream("cli-made", Visibility::Public))
        .await
        .expect("unowned");
    assert_eq!(
        store.list_streams(Some(&b.id)).await.expect("list").len(),
        1
    );
    assert_eq!(store.list_streams(None).await.expect("list").len(), 2);

    let updated = store
        .update_stream(
            "show",
            &StreamUpdate {
                title: Some("Finals".into()),
                visibility: Some(Visibility::Entitled),
                allowed_cidrs: Some(vec!["10.1.2.3/8".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.title, "Finals");
    assert_eq!(updated.visibility, Visibility::Entitled);
    assert_eq!(updated.allowed_cidrs, vec!["10.0.0.0/8".to_string()]);
    assert!(matches!(
        store
            .update_stream(
                "show",
                &StreamUpdate {
                    allowed_countries: Some(vec!["France".into()]),
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store
        .update_stream("nope", &StreamUpdate::default())
        .await
        .expect("q")
        .is_none());

    let (k1, secret1) = store.create_stream_key("show").await.expect("key");
    store
        .authorize_publish(&tokens, "show", Some(&secret1))
        .await
        .expect("key publishes");
    let (k2, secret2) = store.rotate_stream_keys("show").await.expect("rotate");
    assert_ne!(k1.id, k2.id);
    assert!(matches!(
        store
            .authorize_publish(&tokens, "show", Some(&secret1))
            .await,
        Err(AuthError::Invalid)
    ));
    store
        .authorize_publish(&tokens, "show", Some(&secret2))
        .await
        .expect("new key publishes");
    assert!(store.revoke_stream_key("show", &k2.id).await.expect("q"));
    assert!(!store.revoke_stream_key("show", &k2.id).await.expect("q"));
    assert!(matches!(
        store
            .authorize_publish(&tokens, "show", Some(&secret2))
            .await,
        Err(AuthError::Invalid)
    ));
    let keys = store.list_stream_keys("show").await.expect("list");
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.revoked_at.is_some()));

    // The CLI path still works and keeps its stream.
    let cli_key = store.create_key("show", None).await.expect("cli key");
    store
        .authorize_publish(&tokens, "show", Some(&cli_key))
        .await
        .expect("cli key publishes");

    assert!(store.delete_stream("show").await.expect("delete"));
    assert!(!store.delete_stream("show").await.expect("delete again"));
    assert!(store
        .list_stream_keys("show")
        .await
        .expect("list")
        .is_empty());
    assert!(store.stream("show").await.expect("q").is_none());
    store.close().await;
}

async fn visibility_and_rules_decide_play(url: &str) {
    let store = Store::connect(url).await.expect("open");
    let tokens = Tokens::new(b"secret");
    let here = Viewer {
        ip: Some("10.9.8.7".parse().expect("ip")),
    };
    let elsewhere = Viewer {
        ip: Some("192.0.2.1".parse().expect("ip")),
    };
    let public = store
        .create_stream(None, &stream("pub", Visibility::Public))
        .await
        .expect("s");
    let authed = store
        .create_stream(None, &stream("auth", Visibility::Authenticated))
        .await
        .expect("s");
    let entitled = store
        .create_stream(None, &stream("paid", Visibility::Entitled))
        .await
        .expect("s");
    let session = tokens
        .issue("u1", None, Role::Viewer, now(), 600)
        .expect("sign");
    let play_paid = tokens
        .issue("u1", Some("paid"), Role::Play, now(), 600)
        .expect("sign");

    assert_eq!(
        store
            .authorize_play(&tokens, &public, None, here)
            .await
            .expect("public"),
        None
    );
    assert_eq!(
        store
            .authorize_play(&tokens, &public, Some("stale-or-garbage"), here)
            .await
            .expect("a public stream ignores the bearer"),
        None
    );
    assert!(matches!(
        store.authorize_play(&tokens, &authed, None, here).await,
        Err(AuthError::Missing)
    ));
    store
        .authorize_play(&tokens, &authed, Some(&session), here)
        .await
        .expect("signed-in user plays an authenticated stream");
    assert!(matches!(
        store
            .authorize_play(&tokens, &entitled, Some(&session), here)
            .await,
        Err(AuthError::Forbidden { .. })
    ));
    store
        .authorize_play(&tokens, &entitled, Some(&play_paid), here)
        .await
        .expect("play token plays the entitled stream");

    // Token rules: CIDR.
    let mut claims = tokens.verify(&play_paid).expect("valid");
    claims.jti = "with-rules".into();
    claims.cidrs = vec!["10.0.0.0/8".into()];
    let ruled = tokens.sign(&claims).expect("sign");
    store
        .authorize_play(&tokens, &entitled, Some(&ruled), here)
        .await
        .expect("inside the range");
    assert!(matches!(
        store
            .authorize_play(&tokens, &entitled, Some(&ruled), elsewhere)
            .await,
        Err(AuthError::Location { .. })
    ));
    // Country rules without a GeoIP database fail closed.
    claims.cidrs.clear();
    claims.countries = vec!["FR".into()];
    let by_country = tokens.sign(&claims).expect("sign");
    assert!(matches!(
        store
            .authorize_play(&tokens, &entitled, Some(&by_country), here)
            .await,
        Err(AuthError::Location { .. })
    ));

    // Stream rules apply even to public streams without a token.
    let fenced = store
        .update_stream(
            "pub",
            &StreamUpdate {
                allowed_cidrs: Some(vec!["10.0.0.0/8".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    store
        .authorize_play(&tokens, &fenced, None, here)
        .await
        .expect("inside");
    assert!(matches!(
        store
            .authorize_play(&tokens, &fenced, None, elsewhere)
            .await,
        Err(AuthError::Location { .. })
    ));

    // Revocation is checked on play too.
    let c = tokens.verify(&play_paid).expect("valid");
    store
        .revoke_token(&c.jti, c.exp as i64)
        .await
        .expect("revoke");
    assert!(matches!(
        store
            .authorize_play(&tokens, &entitled, Some(&play_paid), here)
            .await,
        Err(AuthError::Revoked)
    ));
    // An expired token.
    let old = tokens
        .issue("u1", Some("paid"), Role::Play, now() - 1000, 60)
        .expect("sign");
    assert!(matches!(
        store
            .authorize_play(&tokens, &entitled, Some(&old), here)
            .await,
        Err(AuthError::Expired)
    ));
    store.close().await;
}

async fn entitlements_cover_streams_and_owners(url: &str) {
    let store = Store::connect(url).await.expect("open");
    let caster = store
        .create_user("caster", "broadcaster pw", Role::Broadcaster)
        .await
        .expect("u");
    let fan = store
        .create_user("fan", "viewer pw!", Role::Viewer)
        .await
        .expect("u");
    let a = store
        .create_stream(Some(&caster.id), &stream("a", Visibility::Entitled))
        .await
        .expect("s");
    let b = store
        .create_stream(Some(&caster.id), &stream("b", Visibility::Entitled))
        .await
        .expect("s");
    let orphan = store
        .create_stream(None, &stream("c", Visibility::Entitled))
        .await
        .expect("s");
    assert!(!store.is_entitled(&fan.id, &a).await.expect("q"));

    let ppv = store
        .grant_entitlement(&NewEntitlement {
            user_id: fan.id.clone(),
            kind: EntitlementKind::Ppv,
            target: Target::Stream("a".into()),
            external_ref: None,
            expires_at: None,
        })
        .await
        .expect("grant");
    assert!(store.is_entitled(&fan.id, &a).await.expect("q"));
    assert!(!store.is_entitled(&fan.id, &b).await.expect("q"));

    let sub = store
        .grant_entitlement(&NewEntitlement {
            user_id: fan.id.clone(),
            kind: EntitlementKind::Subscription,
            target: Target::Broadcaster(caster.id.clone()),
            external_ref: Some("sub_123".into()),
            expires_at: None,
        })
        .await
        .expect("grant");
    assert!(store.is_entitled(&fan.id, &b).await.expect("q"));
    assert!(!store.is_entitled(&fan.id, &orphan).await.expect("q"));

    assert!(store.revoke_entitlement(&sub.id).await.expect("q"));
    assert!(!store.is_entitled(&fan.id, &b).await.expect("q"));
    assert!(store.is_entitled(&fan.id, &a).await.expect("q"));

    // Expired grants do not count.
    store
        .grant_entitlement(&NewEntitlement {
            user_id: fan.id.clone(),
            kind: EntitlementKind::Ppv,
            target: Target::Stream("b".into()),
            external_ref: None,
            expires_at: Some(1),
        })
        .await
        .expect("grant");
    assert!(!store.is_entitled(&fan.id, &b).await.expect("q"));

    assert!(matches!(
        store
            .grant_entitlement(&NewEntitlement {
                user_id: "no-such-user".into(),
                kind: EntitlementKind::Ppv,
                target: Target::Stream("a".into()),
                external_ref: None,
                expires_at: None,
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .list_entitlements(Some(&fan.id))
            .await
            .expect("list")
            .len(),
        3
    );
    assert_eq!(
        store.entitlement(&ppv.id).await.expect("q").map(|e| e.kind),
        Some(EntitlementKind::Ppv)
    );
    store.close().await;
}

async fn payment_events_apply_once(url: &str) {
    let store = Store::connect(url).await.expect("open");
    let caster = store
        .create_user("caster", "broadcaster pw", Role::Broadcaster)
        .await
        .expect("u");
    let fan = store
        .create_user("fan", "viewer pw!", Role::Viewer)
        .await
        .expect("u");
    let s = store
        .create_stream(Some(&caster.id), &stream("s", Visibility::Entitled))
        .await
        .expect("s");
    let grant = PaymentAction::Grant(NewEntitlement {
        user_id: fan.id.clone(),
        kind: EntitlementKind::Subscription,
        target: Target::Broadcaster(caster.id.clone()),
        external_ref: Some("sub_9".into()),
        expires_at: None,
    });
    assert!(matches!(
        store
            .apply_payment_event("evt_1", "checkout.session.completed", &grant)
            .await
            .expect("apply"),
        PaymentOutcome::Granted(_)
    ));
    assert_eq!(
        store
            .apply_payment_event("evt_1", "checkout.session.completed", &grant)
            .await
            .expect("apply"),
        PaymentOutcome::AlreadyProcessed
    );
    assert_eq!(store.list_entitlements(None).await.expect("l").len(), 1);
    assert!(store.is_entitled(&fan.id, &s).await.expect("q"));
    assert_eq!(
        store
            .apply_payment_event(
                "evt_2",
                "customer.subscription.deleted",
                &PaymentAction::RevokeByRef("sub_9".into())
            )
            .await
            .expect("apply"),
        PaymentOutcome::Revoked(1)
    );
    assert!(!store.is_entitled(&fan.id, &s).await.expect("q"));
    store.close().await;
}

async fn stream_sessions_record_peaks_and_ends(url: &str) {
    let store = Store::connect(url).await.expect("open");
    let first = store.session_started("live", 1_000).await.expect("start");
    store.session_viewers(&first, 3).await.expect("v");
    store.session_viewers(&first, 7).await.expect("v");
    store.session_viewers(&first, 2).await.expect("v");
    store.session_stalled(&first).await.expect("stall");
    store.session_ended(&first, 5_000).await.expect("end");
    // A second start while one is open closes the dangling one.
    let second = store.session_started("live", 6_000).await.expect("start");
    let third = store.session_started("live", 9_000).await.expect("start");
    let sessions = store.stream_sessions("live", 10).await.expect("list");
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0].id, third);
    assert_eq!(sessions[1].id, second);
    assert_eq!(sessions[1].ended_at_ms, Some(9_000));
    assert_eq!(sessions[2].peak_viewers, 7);
    assert_eq!(sessions[2].stalls, 1);
    assert_eq!(sessions[2].ended_at_ms, Some(5_000));
    assert_eq!(store.close_open_sessions(10_000).await.expect("close"), 1);
    assert_eq!(
        store.stream_sessions("live", 1).await.expect("l")[0].ended_at_ms,
        Some(10_000)
    );
    store.close().await;
}

#[test]
fn test_db_urls_differ() {
    let a = TestDb::sqlite();
    let b = TestDb::sqlite();
    assert_ne!(a.url(), b.url());
}
