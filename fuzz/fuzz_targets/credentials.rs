//! Token and key parsing: the one bearer parser (`Authorization` header
//! or `key`/`token`/`access_token` query), JWT verification, LL-HLS media
//! tokens, session ids in URLs, and the name and password rules that
//! gate stream keys and accounts. None may panic; a token only verifies
//! when it was signed with our key.
#![no_main]

use arbitrary::Arbitrary;
use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use signaling::{MediaTokens, Tokens};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    authorization: Option<&'a [u8]>,
    query: Option<&'a str>,
    stream: &'a str,
    now_unix: u64,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    if let Some(value) = input.authorization {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(header::AUTHORIZATION, v);
        }
    }
    let parsed = whip_whep::authorization_bearer(&headers);
    if let Ok(Some(token)) = parsed {
        assert!(
            !token.is_empty() && token.trim() == token,
            "token {token:?}"
        );
    }
    let token = whip_whep::bearer(&headers, input.query);

    let jwt = Tokens::new(b"fuzz-jwt-secret");
    let media = MediaTokens::derive(b"fuzz-jwt-secret", 60);
    for t in token.iter().map(String::as_str).chain(input.query) {
        if jwt.verify(t).is_ok() {
            panic!("a token we did not sign verified: {t:?}");
        }
        let _ = media.verify(input.stream, t, input.now_unix);
        let _ = sfu::SessionId::parse(t);
        let _ = MediaTokens::from_hex(t, 60);
    }
    let _ = signaling::valid_stream_name(input.stream);
    let _ = signaling::valid_username(input.stream);
    let _ = signaling::valid_password(input.stream);

    // What we issue verifies for its stream only, until it expires.
    let now = input.now_unix % (1 << 40);
    let issued = media.issue(input.stream, now);
    assert!(media.verify(input.stream, &issued, now).is_ok(), "{issued}");
});
