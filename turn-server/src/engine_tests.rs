//! The engine in simulated time: a scripted client, a fake relay provider.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::channel_number::ChannelNumber;
use stun_codec::rfc5389::attributes::{ErrorCode, Nonce, Realm, Username, XorMappedAddress};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5766::attributes::{
    Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};
use stun_codec::{Message, MessageClass, Method, TransactionId};

use crate::auth::{long_term_key, rest_credentials, Authenticator, Credentials};
use crate::engine::*;
use crate::message::{self, write_channel_data, StunMessage};
use crate::metrics::Metrics;
use crate::peer_policy::PeerPolicy;

const SECRET: &[u8] = b"north";
const T0: u64 = 1_700_000_000;

struct FakeRelays {
    next_port: u16,
    refuse: bool,
    ipv6: bool,
}

impl RelayProvider<u16> for FakeRelays {
    fn supports(&self, family: Family) -> bool {
        family == Family::V4 || self.ipv6
    }

    fn bind(
        &mut self,
        _: &FiveTuple,
        _: AllocationId,
        family: Family,
    ) -> Option<(u16, SocketAddr)> {
        if self.refuse {
            return None;
        }
        self.next_port += 1;
        let ip: std::net::IpAddr = match family {
            Family::V4 => [192, 0, 2, 1].into(),
            Family::V6 => [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1].into(),
        };
        Some((self.next_port, SocketAddr::new(ip, self.next_port)))
    }
}

struct Harness {
    engine: Engine<u16>,
    relays: FakeRelays,
    start: Instant,
    elapsed: Duration,
    metrics: Metrics,
    tid: u8,
}

fn tuple(port: u16) -> FiveTuple {
    FiveTuple {
        client: SocketAddr::from(([198, 51, 100, 9], port)),
        server: SocketAddr::from(([192, 0, 2, 1], 3478)),
        transport: Transport::Udp,
    }
}

fn peer() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 5], 5000))
}

impl Harness {
    fn new(tweak: impl FnOnce(&mut EngineConfig)) -> Harness {
        let mut cfg = EngineConfig::new("relaycast", Authenticator::rest(SECRET), [9; 32]);
        cfg.peer_policy = PeerPolicy::default();
        tweak(&mut cfg);
        let metrics = Metrics::unregistered();
        Harness {
            engine: Engine::new(cfg, metrics.clone()),
            relays: FakeRelays {
                next_port: 50000,
                refuse: false,
                ipv6: true,
            },
            start: Instant::now(),
            elapsed: Duration::ZERO,
            metrics,
            tid: 0,
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.start + self.elapsed,
            unix_secs: T0 + self.elapsed.as_secs(),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.elapsed += d;
        let now = self.now().instant;
        self.engine.handle_timeout(now);
    }

    fn request(&mut self, method: Method) -> StunMessage {
        self.tid += 1;
        Message::new(
            MessageClass::Request,
            method,
            TransactionId::new([self.tid; 12]),
        )
    }

    fn send(&mut self, t: FiveTuple, bytes: &[u8]) -> ClientOutcome<u16> {
        let now = self.now();
        self.engine.handle_client(now, t, bytes, &mut self.relays)
    }

    fn reply(&mut self, t: FiveTuple, bytes: &[u8]) -> StunMessage {
        match self.send(t, bytes) {
            ClientOutcome::Reply(b) => message::decode(&b).expect("our replies decode"),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Sends `m` signed with `creds` and `nonce`.
    fn signed(
        &mut self,
        t: FiveTuple,
        m: StunMessage,
        creds: &Credentials,
        nonce: &str,
    ) -> StunMessage {
        let bytes = sign(m, creds, nonce);
        self.reply(t, &bytes)
    }

    fn nonce(&mut self, t: FiveTuple) -> String {
        let m = self.allocate_request();
        let r = self.reply(t, &message::encode(m));
        assert_eq!(code(&r), Some(401));
        r.get_attribute::<Nonce>()
            .expect("challenge has a nonce")
            .value()
            .to_string()
    }

    fn allocate_request(&mut self) -> StunMessage {
        let mut m = self.request(ALLOCATE);
        m.add_attribute(RequestedTransport::new(17));
        m
    }

    fn creds(&self, user: &str) -> Credentials {
        rest_credentials(SECRET, user, T0, 3600)
    }

    /// Allocates for `user` on `t`; returns the relay port and the nonce.
    fn allocate(&mut self, t: FiveTuple, user: &str) -> (StunMessage, String) {
        let nonce = self.nonce(t);
        let creds = self.creds(user);
        let m = self.allocate_request();
        (self.signed(t, m, &creds, &nonce), nonce)
    }
}

/// `m` with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY for `creds`.
fn sign(mut m: StunMessage, creds: &Credentials, nonce: &str) -> Vec<u8> {
    m.add_attribute(Username::new(creds.username.clone()).expect("short"));
    m.add_attribute(Realm::new("relaycast".into()).expect("short"));
    m.add_attribute(Nonce::new(nonce.into()).expect("short"));
    let key = long_term_key(&creds.username, "relaycast", &creds.password);
    message::encode_with_integrity(m, &key)
}

fn code(m: &StunMessage) -> Option<u16> {
    m.get_attribute::<ErrorCode>().map(|e| e.code())
}

#[test]
fn binding_request_reflects_the_client_address() {
    let mut h = Harness::new(|_| {});
    let m = h.request(BINDING);
    let r = h.reply(tuple(1000), &message::encode(m));
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    assert_eq!(
        r.get_attribute::<XorMappedAddress>().map(|a| a.address()),
        Some(tuple(1000).client)
    );
}

#[test]
fn fingerprinted_requests_get_fingerprinted_answers() {
    use stun_codec::rfc5389::attributes::Fingerprint;
    let mut h = Harness::new(|_| {});
    let mut m = h.request(BINDING);
    let fp = Fingerprint::new(&m).expect("crc");
    m.add_attribute(fp);
    let r = h.reply(tuple(1000), &message::encode(m));
    assert!(r.get_attribute::<Fingerprint>().is_some());
    let plain = h.request(BINDING);
    let r = h.reply(tuple(1000), &message::encode(plain));
    assert!(r.get_attribute::<Fingerprint>().is_none());
}

#[test]
fn allocate_without_credentials_is_challenged_with_realm_and_nonce() {
    let mut h = Harness::new(|_| {});
    let m = h.allocate_request();
    let r = h.reply(tuple(1), &message::encode(m));
    assert_eq!(code(&r), Some(401));
    assert!(r.get_attribute::<Realm>().is_some());
    assert!(r.get_attribute::<Nonce>().is_some());
    assert_eq!(
        h.metrics.auth_failures.get(),
        0,
        "a challenge is not a failure"
    );
}

#[test]
fn allocate_with_rest_credentials_gets_a_relay_address() {
    let mut h = Harness::new(|_| {});
    let (r, _) = h.allocate(tuple(1), "alice");
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");
    assert_eq!(
        r.get_attribute::<XorRelayAddress>().map(|a| a.address()),
        Some(SocketAddr::from(([192, 0, 2, 1], 50001)))
    );
    assert_eq!(
        r.get_attribute::<Lifetime>().map(|l| l.lifetime()),
        Some(Duration::from_secs(600))
    );
    assert_eq!(h.engine.allocation_count(), 1);
    assert_eq!(h.metrics.allocations.get(), 1);
}

#[test]
fn wrong_password_gets_401_with_a_fresh_nonce() {
    let mut h = Harness::new(|_| {});
    let nonce = h.nonce(tuple(1));
    let mut creds = h.creds("alice");
    creds.password = "not-it".into();
    let m = h.allocate_request();
    let r = h.signed(tuple(1), m, &creds, &nonce);
    assert_eq!(code(&r), Some(401));
    assert!(r.get_attribute::<Nonce>().is_some());
    assert_eq!(h.metrics.auth_failures.get(), 1);
    assert_eq!(h.engine.allocation_count(), 0);
}

#[test]
fn expired_rest_credentials_are_refused() {
    let mut h = Harness::new(|_| {});
    let nonce = h.nonce(tuple(1));
    let creds = rest_credentials(SECRET, "alice", T0 - 7200, 3600);
    let m = h.allocate_request();
    let r = h.signed(tuple(1), m, &creds, &nonce);
    assert_eq!(code(&r), Some(401));
    assert_eq!(h.metrics.auth_failures.get(), 1);
}

#[test]
fn an_address_guessing_passwords_is_dropped_until_its_window_ends() {
    let mut h = Harness::new(|c| {
        c.auth_fail_limits = throttle::Limits {
            failures: 5,
            window: Duration::from_secs(60),
            capacity: 1000,
        }
    });
    let attacker = tuple(1);
    let nonce = h.nonce(attacker);
    let mut wrong = h.creds("alice");
    wrong.password = "guess".into();
    for _ in 0..5 {
        let m = h.allocate_request();
        assert_eq!(code(&h.signed(attacker, m, &wrong, &nonce)), Some(401));
    }
    assert_eq!(h.metrics.auth_failures.get(), 5);
    for _ in 0..100 {
        let bytes = sign(h.allocate_request(), &wrong, &nonce);
        assert!(matches!(h.send(attacker, &bytes), ClientOutcome::Nothing));
    }
    assert_eq!(h.metrics.auth_throttled.get(), 100);
    assert_eq!(
        h.metrics.auth_failures.get(),
        5,
        "dropped requests are not checked"
    );

    // The right password from the same address (another port) is not even
    // checked, so a guess cannot be confirmed while throttled.
    let right = h.creds("alice");
    let bytes = sign(h.allocate_request(), &right, &nonce);
    assert!(matches!(h.send(tuple(2), &bytes), ClientOutcome::Nothing));
    assert_eq!(h.engine.allocation_count(), 0);

    // Unauthenticated requests are still answered: the challenge, Binding.
    let challenge = h.nonce(attacker);
    let m = h.request(BINDING);
    assert_eq!(
        h.reply(attacker, &message::encode(m)).class(),
        MessageClass::SuccessResponse
    );

    // Another address is not affected.
    let other = FiveTuple {
        client: SocketAddr::from(([198, 51, 100, 10], 1)),
        ..attacker
    };
    let (r, _) = h.allocate(other, "bob");
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");

    // Once the window is over, the right password works again.
    h.advance(Duration::from_secs(60));
    let m = h.allocate_request();
    let r = h.signed(attacker, m, &right, &challenge);
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");
    assert_eq!(h.engine.allocation_count(), 2);
}

#[test]
fn an_ipv6_client_is_counted_by_its_slash_64() {
    let mut h = Harness::new(|c| {
        c.auth_fail_limits = throttle::Limits {
            failures: 2,
            window: Duration::from_secs(60),
            capacity: 1000,
        }
    });
    let at = |host: u16| FiveTuple {
        client: SocketAddr::new(
            std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, host).into(),
            4000,
        ),
        server: SocketAddr::from(([192, 0, 2, 1], 3478)),
        transport: Transport::Udp,
    };
    let nonce = h.nonce(at(1));
    let mut wrong = h.creds("alice");
    wrong.password = "guess".into();
    for host in 1..=2 {
        let m = h.allocate_request();
        assert_eq!(code(&h.signed(at(host), m, &wrong, &nonce)), Some(401));
    }
    let bytes = sign(h.allocate_request(), &wrong, &nonce);
    assert!(
        matches!(h.send(at(3), &bytes), ClientOutcome::Nothing),
        "a new interface identifier in the same /64 is the same client"
    );
    assert_eq!(h.metrics.auth_throttled.get(), 1);
}

#[test]
fn stale_nonce_gets_438_with_a_new_nonce() {
    let mut h = Harness::new(|c| c.nonce_lifetime_secs = 60);
    let nonce = h.nonce(tuple(1));
    h.advance(Duration::from_secs(61));
    let creds = h.creds("alice");
    let m = h.allocate_request();
    let r = h.signed(tuple(1), m, &creds, &nonce);
    assert_eq!(code(&r), Some(438));
    let fresh = r
        .get_attribute::<Nonce>()
        .expect("new nonce")
        .value()
        .to_string();
    assert_ne!(fresh, nonce);
    let m = h.allocate_request();
    let r = h.signed(tuple(1), m, &creds, &fresh);
    assert_eq!(r.class(), MessageClass::SuccessResponse);
}

#[test]
fn user_quota_gives_486_and_frees_up_when_an_allocation_ends() {
    let mut h = Harness::new(|c| c.user_quota = 2);
    assert_eq!(
        h.allocate(tuple(1), "bob").0.class(),
        MessageClass::SuccessResponse
    );
    assert_eq!(
        h.allocate(tuple(2), "bob").0.class(),
        MessageClass::SuccessResponse
    );
    let (r, _) = h.allocate(tuple(3), "bob");
    assert_eq!(code(&r), Some(486));
    assert_eq!(h.metrics.quota_rejections.get(), 1);
    // Another user is not affected.
    assert_eq!(
        h.allocate(tuple(4), "carol").0.class(),
        MessageClass::SuccessResponse
    );
    // Bob releases one (Refresh lifetime 0) and may allocate again.
    let nonce = h.nonce(tuple(1));
    let creds = h.creds("bob");
    let mut m = h.request(REFRESH);
    m.add_attribute(Lifetime::from_u32(0));
    let r = h.signed(tuple(1), m, &creds, &nonce);
    assert_eq!(r.class(), MessageClass::SuccessResponse);
    assert_eq!(
        h.allocate(tuple(3), "bob").0.class(),
        MessageClass::SuccessResponse
    );
    assert_eq!(h.engine.allocation_count(), 3);
}

#[test]
fn total_quota_gives_486() {
    let mut h = Harness::new(|c| c.total_quota = 1);
    assert_eq!(
        h.allocate(tuple(1), "a").0.class(),
        MessageClass::SuccessResponse
    );
    assert_eq!(code(&h.allocate(tuple(2), "b").0), Some(486));
}

#[test]
fn no_free_relay_port_gives_508() {
    let mut h = Harness::new(|_| {});
    h.relays.refuse = true;
    assert_eq!(code(&h.allocate(tuple(1), "a").0), Some(508));
    assert_eq!(h.engine.allocation_count(), 0);
}

fn permit(h: &mut Harness, t: FiveTuple, user: &str, nonce: &str, p: SocketAddr) -> StunMessage {
    let creds = h.creds(user);
    let mut m = h.request(CREATE_PERMISSION);
    m.add_attribute(XorPeerAddress::new(p));
    h.signed(t, m, &creds, nonce)
}

fn peer_data(h: &mut Harness, from: SocketAddr) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let now = h.now().instant;
    h.engine
        .handle_peer(now, AllocationId(1), from, b"media", &mut out)
        .then_some(out)
}

#[test]
fn data_flows_only_through_a_permission_and_it_expires_after_300s() {
    let mut h = Harness::new(|_| {});
    let (_, nonce) = h.allocate(tuple(1), "a");
    assert!(peer_data(&mut h, peer()).is_none(), "no permission yet");
    let r = permit(&mut h, tuple(1), "a", &nonce, peer());
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");
    let out = peer_data(&mut h, peer()).expect("permitted");
    let ind = message::decode(&out).expect("a Data indication");
    assert_eq!(ind.method(), stun_codec::rfc5766::methods::DATA);
    assert_eq!(
        ind.get_attribute::<Data>().map(|d| d.data().to_vec()),
        Some(b"media".to_vec())
    );
    // The client sends with a Send indication.
    let mut send = Message::new(MessageClass::Indication, SEND, TransactionId::new([1; 12]));
    send.add_attribute(XorPeerAddress::new(peer()));
    send.add_attribute(Data::new(b"up".to_vec()).expect("small"));
    let bytes = message::encode(send);
    match h.send(tuple(1), &bytes) {
        ClientOutcome::Relay {
            peer: p, payload, ..
        } => {
            assert_eq!(p, peer());
            assert_eq!(&bytes[payload], b"up");
        }
        other => panic!("expected a relay, got {other:?}"),
    }
    h.advance(Duration::from_secs(301));
    assert!(peer_data(&mut h, peer()).is_none(), "permission expired");
    assert!(matches!(h.send(tuple(1), &bytes), ClientOutcome::Nothing));
}

#[test]
fn channel_bind_switches_to_channel_data_and_expires_after_600s() {
    let mut h = Harness::new(|c| {
        c.default_lifetime = Duration::from_secs(3000);
        c.nonce_lifetime_secs = 10_000;
    });
    let (_, nonce) = h.allocate(tuple(1), "a");
    let creds = h.creds("a");
    let mut m = h.request(CHANNEL_BIND);
    m.add_attribute(ChannelNumber::new(0x4001));
    m.add_attribute(XorPeerAddress::new(peer()));
    let r = h.signed(tuple(1), m, &creds, &nonce);
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");
    let out = peer_data(&mut h, peer()).expect("bound");
    assert_eq!(&out[..4], &[0x40, 0x01, 0, 5]);
    let mut cd = Vec::new();
    write_channel_data(&mut cd, 0x4001, b"hello", false);
    match h.send(tuple(1), &cd) {
        ClientOutcome::Relay {
            peer: p, payload, ..
        } => {
            assert_eq!(p, peer());
            assert_eq!(&cd[payload], b"hello");
        }
        other => panic!("expected a relay, got {other:?}"),
    }
    // Keep the permission alive, let the channel lapse.
    for _ in 0..3 {
        h.advance(Duration::from_secs(200));
        let r = permit(&mut h, tuple(1), "a", &nonce, peer());
        assert_eq!(r.class(), MessageClass::SuccessResponse);
    }
    assert!(
        matches!(h.send(tuple(1), &cd), ClientOutcome::Nothing),
        "channel expired"
    );
    let out = peer_data(&mut h, peer()).expect("permission still there");
    assert!(
        message::decode(&out).is_some(),
        "falls back to a Data indication"
    );
}

#[test]
fn denied_peers_get_403_unless_allowed() {
    let mut h = Harness::new(|_| {});
    let (_, nonce) = h.allocate(tuple(1), "a");
    let lo = SocketAddr::from(([127, 0, 0, 1], 9));
    assert_eq!(code(&permit(&mut h, tuple(1), "a", &nonce, lo)), Some(403));
    let private = SocketAddr::from(([10, 0, 0, 1], 9));
    assert_eq!(
        code(&permit(&mut h, tuple(1), "a", &nonce, private)),
        Some(403)
    );

    let mut h = Harness::new(|c| c.peer_policy.allow_loopback = true);
    let (_, nonce) = h.allocate(tuple(1), "a");
    let r = permit(&mut h, tuple(1), "a", &nonce, lo);
    assert_eq!(r.class(), MessageClass::SuccessResponse);
}

#[test]
fn another_users_credentials_cannot_touch_an_allocation() {
    let mut h = Harness::new(|_| {});
    let (_, nonce) = h.allocate(tuple(1), "a");
    let r = permit(&mut h, tuple(1), "mallory", &nonce, peer());
    assert_eq!(code(&r), Some(441));
}

#[test]
fn allocation_expires_without_refresh() {
    let mut h = Harness::new(|_| {});
    h.allocate(tuple(1), "a");
    h.advance(Duration::from_secs(599));
    assert_eq!(h.engine.allocation_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.engine.allocation_count(), 0);
    assert_eq!(h.metrics.allocations.get(), 0);
}

#[test]
fn retransmitted_allocate_gets_the_same_answer_and_a_new_one_437() {
    let mut h = Harness::new(|_| {});
    let nonce = h.nonce(tuple(1));
    let creds = h.creds("a");
    let m = h.allocate_request();
    let first = h.signed(tuple(1), m.clone(), &creds, &nonce);
    let again = h.signed(tuple(1), m, &creds, &nonce);
    assert_eq!(
        first.get_attribute::<XorRelayAddress>(),
        again.get_attribute::<XorRelayAddress>()
    );
    let m = h.allocate_request();
    assert_eq!(code(&h.signed(tuple(1), m, &creds, &nonce)), Some(437));
    assert_eq!(h.engine.allocation_count(), 1);
}

#[test]
fn garbage_and_truncated_input_is_dropped_without_panicking() {
    let mut h = Harness::new(|_| {});
    let (ok, nonce) = h.allocate(tuple(1), "a");
    assert_eq!(ok.class(), MessageClass::SuccessResponse);
    let creds = h.creds("a");
    let mut m = h.request(CHANNEL_BIND);
    m.add_attribute(ChannelNumber::new(0x4000));
    m.add_attribute(XorPeerAddress::new(peer()));
    m.add_attribute(Username::new(creds.username.clone()).expect("short"));
    m.add_attribute(Realm::new("relaycast".into()).expect("short"));
    m.add_attribute(Nonce::new(nonce).expect("short"));
    let key = long_term_key(&creds.username, "relaycast", &creds.password);
    let valid = message::encode_with_integrity(m, &key);
    for cut in 0..valid.len() {
        let _ = h.send(tuple(1), &valid[..cut]);
    }
    // Every byte flipped in turn.
    for i in 0..valid.len() {
        let mut bad = valid.clone();
        bad[i] ^= 0xff;
        let _ = h.send(tuple(1), &bad);
    }
    let mut seed = 0x1234_5678_u32;
    for len in 0..300 {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = h.send(tuple(2), &junk);
        let mut stunish = junk.clone();
        if stunish.len() >= 20 {
            stunish[0] &= 0x3f;
            stunish[4..8].copy_from_slice(&message::MAGIC_COOKIE.to_be_bytes());
            let _ = h.send(tuple(2), &stunish);
        }
        let mut cd = junk;
        if !cd.is_empty() {
            cd[0] = 0x40;
            let _ = h.send(tuple(1), &cd);
        }
    }
    assert!(h.metrics.malformed.get() > 0);
    assert_eq!(h.engine.allocation_count(), 1, "nothing leaked or was lost");
}

fn peer6() -> SocketAddr {
    SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 5], 5000))
}

/// Allocates for `user` on `t` with `tweak` applied to the request.
fn allocate_with(
    h: &mut Harness,
    t: FiveTuple,
    user: &str,
    tweak: impl FnOnce(&mut StunMessage),
) -> (StunMessage, String) {
    let nonce = h.nonce(t);
    let creds = h.creds(user);
    let mut m = h.allocate_request();
    tweak(&mut m);
    (h.signed(t, m, &creds, &nonce), nonce)
}

fn relayed(r: &StunMessage) -> Vec<SocketAddr> {
    r.attributes()
        .filter_map(|a| match a {
            message::Attribute::XorRelayAddress(x) => Some(x.address()),
            _ => None,
        })
        .collect()
}

fn send_to(h: &mut Harness, t: FiveTuple, p: SocketAddr) -> Option<u16> {
    let mut send = Message::new(MessageClass::Indication, SEND, TransactionId::new([3; 12]));
    send.add_attribute(XorPeerAddress::new(p));
    send.add_attribute(Data::new(b"up".to_vec()).expect("small"));
    match h.send(t, &message::encode(send)) {
        ClientOutcome::Relay { relay, peer, .. } if peer == p => Some(relay),
        _ => None,
    }
}

#[test]
fn requested_ipv6_gets_an_ipv6_relay_that_reaches_only_ipv6_peers() {
    use stun_codec::rfc8656::attributes::{AddressFamily, RequestedAddressFamily};
    let mut h = Harness::new(|_| {});
    let (r, nonce) = allocate_with(&mut h, tuple(1), "a", |m| {
        m.add_attribute(RequestedAddressFamily::new(AddressFamily::V6))
    });
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");
    let relays = relayed(&r);
    assert_eq!(relays.len(), 1);
    assert!(relays[0].is_ipv6(), "{relays:?}");
    assert_eq!(
        code(&permit(&mut h, tuple(1), "a", &nonce, peer())),
        Some(443)
    );
    let ok = permit(&mut h, tuple(1), "a", &nonce, peer6());
    assert_eq!(ok.class(), MessageClass::SuccessResponse, "{ok:?}");
    assert_eq!(send_to(&mut h, tuple(1), peer6()), Some(relays[0].port()));
    let out = peer_data(&mut h, peer6()).expect("permitted");
    let ind = message::decode(&out).expect("a Data indication");
    assert_eq!(
        ind.get_attribute::<XorPeerAddress>().map(|a| a.address()),
        Some(peer6())
    );
}

#[test]
fn ipv6_is_refused_with_440_when_the_server_has_no_ipv6_relay() {
    use stun_codec::rfc8656::attributes::{
        AdditionalAddressFamily, AddressFamily, RequestedAddressFamily,
    };
    let mut h = Harness::new(|_| {});
    h.relays.ipv6 = false;
    let (r, _) = allocate_with(&mut h, tuple(1), "a", |m| {
        m.add_attribute(RequestedAddressFamily::new(AddressFamily::V6))
    });
    assert_eq!(code(&r), Some(440));
    let (r, _) = allocate_with(&mut h, tuple(2), "a", |m| {
        m.add_attribute(AdditionalAddressFamily::new(AddressFamily::V6))
    });
    assert_eq!(code(&r), Some(440));
    assert_eq!(h.engine.allocation_count(), 0);
    let (r, _) = h.allocate(tuple(3), "a");
    assert_eq!(r.class(), MessageClass::SuccessResponse, "IPv4 still works");
}

#[test]
fn dual_allocation_relays_each_peer_through_the_relay_of_its_family() {
    use stun_codec::rfc8656::attributes::{
        AdditionalAddressFamily, AddressFamily, RequestedAddressFamily,
    };
    let mut h = Harness::new(|_| {});
    let (r, nonce) = allocate_with(&mut h, tuple(1), "a", |m| {
        m.add_attribute(AdditionalAddressFamily::new(AddressFamily::V6))
    });
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");
    let relays = relayed(&r);
    assert_eq!(relays.len(), 2, "{relays:?}");
    assert!(relays[0].is_ipv4() && relays[1].is_ipv6(), "{relays:?}");
    for p in [peer(), peer6()] {
        let ok = permit(&mut h, tuple(1), "a", &nonce, p);
        assert_eq!(ok.class(), MessageClass::SuccessResponse, "{ok:?}");
    }
    assert_eq!(send_to(&mut h, tuple(1), peer()), Some(relays[0].port()));
    assert_eq!(send_to(&mut h, tuple(1), peer6()), Some(relays[1].port()));
    // Asking for a family and an additional one at once, or an additional
    // IPv4, is malformed (RFC 8656 §7.2).
    let (r, _) = allocate_with(&mut h, tuple(2), "a", |m| {
        m.add_attribute(RequestedAddressFamily::new(AddressFamily::V4));
        m.add_attribute(AdditionalAddressFamily::new(AddressFamily::V6));
    });
    assert_eq!(code(&r), Some(400));
    let (r, _) = allocate_with(&mut h, tuple(3), "a", |m| {
        m.add_attribute(AdditionalAddressFamily::new(AddressFamily::V4))
    });
    assert_eq!(code(&r), Some(400));
}
