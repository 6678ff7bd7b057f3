//! Country rules with a real MaxMind-format database (`tests/data/
//! country-test.mmdb`: 192.0.2.0/24 FR, 198.51.100.0/24 DE, 2001:db8::/32
//! US; see the script beside it).

use std::net::IpAddr;
use std::path::Path;

use signaling::testing::TestDb;
use signaling::{AuthError, GeoIp, NewStream, Role, Store, Tokens, Viewer, Visibility};

fn geoip() -> GeoIp {
    GeoIp::open(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/country-test.mmdb"
    )))
    .expect("fixture opens")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn the_database_places_addresses_in_countries() {
    let g = geoip();
    assert_eq!(g.country(ip("192.0.2.77")).as_deref(), Some("FR"));
    assert_eq!(g.country(ip("198.51.100.1")).as_deref(), Some("DE"));
    assert_eq!(g.country(ip("2001:db8::5")).as_deref(), Some("US"));
    assert_eq!(g.country(ip("10.1.2.3")), None);
    assert!(GeoIp::open(Path::new("/nonexistent.mmdb")).is_err());
}

#[tokio::test]
async fn stream_and_token_country_rules_are_enforced_on_play() {
    let db = TestDb::sqlite();
    let store = Store::connect(db.url())
        .await
        .expect("open")
        .with_geoip(geoip());
    let tokens = Tokens::new(b"secret");
    let s = store
        .create_stream(
            None,
            &NewStream {
                name: "euro".into(),
                title: String::new(),
                visibility: Visibility::Public,
                allowed_countries: vec!["fr".into(), "DE".into()],
                allowed_cidrs: vec![],
            },
        )
        .await
        .expect("stream");
    let at = |a: &str| Viewer { ip: Some(ip(a)) };
    store
        .authorize_play(&tokens, &s, None, at("192.0.2.77"))
        .await
        .expect("France is allowed");
    store
        .authorize_play(&tokens, &s, None, at("::ffff:198.51.100.1"))
        .await
        .expect("Germany (IPv4-mapped) is allowed");
    for outside in ["2001:db8::5", "10.1.2.3"] {
        assert!(
            matches!(
                store.authorize_play(&tokens, &s, None, at(outside)).await,
                Err(AuthError::Location { .. })
            ),
            "{outside} must be refused"
        );
    }

    // On a stream that needs a token, a play token narrowing to Germany:
    // France is now refused. (Public streams ignore tokens.)
    let s = store
        .update_stream(
            "euro",
            &signaling::StreamUpdate {
                visibility: Some(Visibility::Entitled),
                ..Default::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    let jwt = tokens
        .issue("u", Some("euro"), Role::Play, 1, u64::MAX / 2)
        .expect("sign");
    let mut claims = tokens.verify(&jwt).expect("valid");
    claims.countries = vec!["DE".into()];
    let de_only = tokens.sign(&claims).expect("sign");
    store
        .authorize_play(&tokens, &s, Some(&de_only), at("198.51.100.1"))
        .await
        .expect("Germany");
    assert!(matches!(
        store
            .authorize_play(&tokens, &s, Some(&de_only), at("192.0.2.77"))
            .await,
        Err(AuthError::Location { .. })
    ));
    store.close().await;
}
