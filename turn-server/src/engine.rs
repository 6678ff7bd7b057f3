//! The sans-IO TURN server: allocations, permissions, channels, auth and
//! quotas. It is fed `(now, input)` by the driver and answers with what to
//! send; it holds no sockets and never reads the clock. The only thing it
//! asks of the outside world is a relay transport address for a new
//! allocation, through [`RelayProvider`]; the handle it gets back (`R`) is
//! opaque to it and dropped when the allocation ends.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use foldhash::HashMap as FastMap;
use stun_codec::rfc5389::attributes::{
    ErrorCode, Fingerprint, MessageIntegrity, Nonce, Realm, Software, UnknownAttributes, Username,
    XorMappedAddress,
};
use stun_codec::rfc5389::methods::BINDING;
use stun_codec::rfc5766::attributes::{
    Lifetime, RequestedTransport, ReservationToken, XorPeerAddress, XorRelayAddress,
};
use stun_codec::rfc5766::methods::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};
use stun_codec::rfc8656::attributes::{
    AdditionalAddressFamily, AddressFamily, RequestedAddressFamily,
};
use stun_codec::{Attribute as _, AttributeType, Message, MessageClass, TransactionId};

use crate::auth::{long_term_key, quota_user, Authenticator, Nonces, Refusal};
use crate::channel_number::ChannelNumber;
use crate::message::{
    self, classify, integrity_ok, write_channel_data, write_data_indication, Attribute, Framing,
    StunMessage,
};
use crate::metrics::Metrics;
use crate::peer_policy::PeerPolicy;
use throttle::{ClientKey, FailureLimiter};

/// Permission lifetime (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Permissions one allocation may hold; more is a client gone wild.
pub const MAX_PERMISSIONS: usize = 1024;
const UDP: u8 = 17;

/// The transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// Client address, server address and transport: an allocation's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
}

/// Identifies an allocation for the driver's relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId(pub u64);

/// Both clocks the engine needs: monotonic for timers, wall-clock seconds
/// for REST credential expiry and nonces.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix_secs: u64,
}

/// The address family of a relayed transport address (RFC 8656 §18.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }
}

impl From<AddressFamily> for Family {
    fn from(f: AddressFamily) -> Family {
        match f {
            AddressFamily::V4 => Family::V4,
            AddressFamily::V6 => Family::V6,
        }
    }
}

/// Binds relay transport addresses for new allocations.
pub trait RelayProvider<R> {
    /// Whether this server has relay addresses of `family` at all; an
    /// Allocate for a family it has not is answered 440.
    fn supports(&self, family: Family) -> bool;
    /// A relay address of `family` for allocation `id` of `tuple`, with the
    /// driver's handle for it, or `None` if no port is free.
    fn bind(
        &mut self,
        tuple: &FiveTuple,
        id: AllocationId,
        family: Family,
    ) -> Option<(R, SocketAddr)>;
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub realm: String,
    pub auth: Authenticator,
    pub peer_policy: PeerPolicy,
    /// Allocations one user may hold at once.
    pub user_quota: usize,
    /// Allocations the server holds at once.
    pub total_quota: usize,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub nonce_lifetime_secs: u64,
    /// Key for nonces; random per process.
    pub nonce_key: [u8; 32],
    pub software: Option<String>,
    /// Failed credential checks one client address (IPv4, or IPv6 /64) may
    /// have in a window before its credentialed requests are dropped for
    /// the rest of the window.
    pub auth_fail_limits: throttle::Limits,
}

impl EngineConfig {
    pub fn new(realm: &str, auth: Authenticator, nonce_key: [u8; 32]) -> EngineConfig {
        EngineConfig {
            realm: realm.into(),
            auth,
            peer_policy: PeerPolicy::default(),
            user_quota: 100,
            total_quota: 50_000,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            nonce_lifetime_secs: 600,
            nonce_key,
            software: Some("relaycast".into()),
            auth_fail_limits: throttle::Limits::DEFAULT,
        }
    }
}

/// What to do with one input from a client.
#[derive(Debug)]
pub enum ClientOutcome<R> {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Send `input[payload]` from the allocation's relay to `peer`.
    Relay {
        relay: R,
        peer: SocketAddr,
        payload: Range<usize>,
    },
    /// Nothing to send (indication without permission, garbage, …).
    Nothing,
}

struct Allocation<R> {
    tuple: FiveTuple,
    username: String,
    user: String,
    /// Relay sockets by family (IPv4, IPv6): one, or both for a dual
    /// allocation (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY).
    relays: [Option<(R, SocketAddr)>; 2],
    expires: Instant,
    allocate_tid: TransactionId,
    permissions: FastMap<IpAddr, Instant>,
    channels: FastMap<u16, (SocketAddr, Instant)>,
    channel_of_peer: FastMap<SocketAddr, u16>,
}

impl<R> Allocation<R> {
    fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|e| *e > now)
    }

    /// The relay that reaches `peer`, if the allocation has one of its family.
    fn relay_for(&self, peer: SocketAddr) -> Option<&R> {
        self.relays[Family::of(peer.ip()).index()]
            .as_ref()
            .map(|(r, _)| r)
    }

    fn relay_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.relays.iter().flatten().map(|(_, a)| *a)
    }
}

struct Authenticated {
    username: String,
    key: [u8; 16],
}

/// The TURN server state machine.
pub struct Engine<R> {
    cfg: EngineConfig,
    nonces: Nonces,
    by_tuple: FastMap<FiveTuple, AllocationId>,
    allocations: FastMap<AllocationId, Allocation<R>>,
    per_user: FastMap<String, usize>,
    next_id: u64,
    tid_counter: u64,
    metrics: Metrics,
    /// Failed credential checks per client address.
    failed_auth_by_addr: FailureLimiter<ClientKey>,
}

type Reject = Box<StunMessage>;

impl<R: Clone> Engine<R> {
    pub fn new(cfg: EngineConfig, metrics: Metrics) -> Engine<R> {
        Engine {
            nonces: Nonces::new(cfg.nonce_key, cfg.nonce_lifetime_secs),
            failed_auth_by_addr: FailureLimiter::new(cfg.auth_fail_limits),
            cfg,
            by_tuple: FastMap::default(),
            allocations: FastMap::default(),
            per_user: FastMap::default(),
            next_id: 1,
            tid_counter: 0,
            metrics,
        }
    }

    /// Allocations alive.
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// Whether `tuple` holds an allocation.
    pub fn has_allocation(&self, tuple: &FiveTuple) -> bool {
        self.by_tuple.contains_key(tuple)
    }

    /// Handles one datagram (UDP) or one framed record (TCP/TLS) from a
    /// client. `relays` is asked for a relay address on Allocate.
    pub fn handle_client(
        &mut self,
        now: Now,
        tuple: FiveTuple,
        input: &[u8],
        relays: &mut dyn RelayProvider<R>,
    ) -> ClientOutcome<R> {
        match classify(input) {
            Framing::ChannelData => self.channel_data(now.instant, &tuple, input),
            Framing::Stun => match message::decode(input) {
                Some(msg) => self.stun(now, tuple, input, msg, relays),
                None => {
                    tracing::debug!(len = input.len(), "undecodable STUN message");
                    self.metrics.malformed.inc();
                    ClientOutcome::Nothing
                }
            },
            Framing::Other => {
                self.metrics.malformed.inc();
                ClientOutcome::Nothing
            }
        }
    }

    /// Handles a datagram that arrived on allocation `id`'s relay from
    /// `peer`. Returns whether `out` now holds a message for the client.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        id: AllocationId,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(a) = self.allocations.get(&id) else {
            return false;
        };
        if a.expires <= now || !a.permitted(peer.ip(), now) {
            return false;
        }
        match a.channel_of_peer.get(&peer) {
            Some(ch) if a.channels.get(ch).is_some_and(|(_, e)| *e > now) => {
                write_channel_data(out, *ch, payload, a.tuple.transport.is_stream());
            }
            _ => {
                self.tid_counter = self.tid_counter.wrapping_add(1);
                let mut tid = [0u8; 12];
                tid[..8].copy_from_slice(&self.tid_counter.to_be_bytes());
                tid[8..].copy_from_slice(&id.0.to_be_bytes()[4..]);
                write_data_indication(out, tid, peer, payload);
            }
        }
        self.metrics.relayed_bytes.inc_by(payload.len() as u64);
        true
    }

    /// Ends allocations and bindings whose time is up; returns how many
    /// allocations ended.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let expired: Vec<AllocationId> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.remove(*id);
        }
        for a in self.allocations.values_mut() {
            a.permissions.retain(|_, e| *e > now);
            let before = a.channels.len();
            a.channels.retain(|_, (_, e)| *e > now);
            if a.channels.len() != before {
                let channels = &a.channels;
                a.channel_of_peer.retain(|_, ch| channels.contains_key(ch));
            }
        }
        expired.len()
    }

    /// A stream transport closed: its allocation ends with it (RFC 8656 §3.1).
    pub fn handle_connection_closed(&mut self, tuple: &FiveTuple) {
        if let Some(id) = self.by_tuple.get(tuple).copied() {
            self.remove(id);
        }
    }

    /// Ends every allocation (shutdown).
    pub fn clear(&mut self) {
        let ids: Vec<_> = self.allocations.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: AllocationId) {
        if let Some(a) = self.allocations.remove(&id) {
            self.by_tuple.remove(&a.tuple);
            if let Some(n) = self.per_user.get_mut(&a.user) {
                *n -= 1;
                if *n == 0 {
                    self.per_user.remove(&a.user);
                }
            }
            self.metrics.allocations.dec();
        }
    }

    fn channel_data(&mut self, now: Instant, tuple: &FiveTuple, input: &[u8]) -> ClientOutcome<R> {
        if input.len() < 4 {
            self.metrics.malformed.inc();
            return ClientOutcome::Nothing;
        }
        let ch = u16::from_be_bytes([input[0], input[1]]);
        let len = usize::from(u16::from_be_bytes([input[2], input[3]]));
        if input.len() < 4 + len {
            self.metrics.malformed.inc();
            return ClientOutcome::Nothing;
        }
        let Some(a) = self
            .by_tuple
            .get(tuple)
            .and_then(|id| self.allocations.get(id))
        else {
            return ClientOutcome::Nothing;
        };
        let Some((peer, expires)) = a.channels.get(&ch) else {
            return ClientOutcome::Nothing;
        };
        if *expires <= now || a.expires <= now || !a.permitted(peer.ip(), now) {
            return ClientOutcome::Nothing;
        }
        let Some(relay) = a.relay_for(*peer) else {
            return ClientOutcome::Nothing;
        };
        self.metrics.relayed_bytes.inc_by(len as u64);
        ClientOutcome::Relay {
            relay: relay.clone(),
            peer: *peer,
            payload: 4..4 + len,
        }
    }

    fn stun(
        &mut self,
        now: Now,
        tuple: FiveTuple,
        raw: &[u8],
        msg: StunMessage,
        relays: &mut dyn RelayProvider<R>,
    ) -> ClientOutcome<R> {
        match msg.class() {
            MessageClass::Indication if msg.method() == SEND => {
                self.send_indication(now, &tuple, raw, &msg)
            }
            MessageClass::Request => {
                // A credential check from an address that failed too many
                // is not made at all. STUN has no "too many requests"
                // (RFC 8489 §14.8 lists no such error code, RFC 8656 adds
                // none), and answering 401 again would keep reflecting
                // traffic and let the client tell nothing apart anyway; so
                // the request is dropped, as a server under load may do
                // (RFC 8489 §6.3: the client retransmits, backs off and
                // gives up). Only requests that carry MESSAGE-INTEGRITY
                // are dropped: the first, unauthenticated Allocate still
                // gets its cheap 401 challenge, and Binding requests and
                // relayed data of existing allocations are untouched.
                if msg.get_attribute::<MessageIntegrity>().is_some()
                    && self
                        .failed_auth_by_addr
                        .check(&ClientKey::from(tuple.client.ip()), now.instant)
                        .is_err()
                {
                    self.metrics.auth_throttled.inc();
                    return ClientOutcome::Nothing;
                }
                let unknown: Vec<AttributeType> = msg
                    .unknown_attributes()
                    .map(|a| a.get_type())
                    .filter(|t| t.is_comprehension_required())
                    .collect();
                if !unknown.is_empty() {
                    let mut r = error(&msg, 420, "Unknown Attribute");
                    r.add_attribute(UnknownAttributes::new(unknown));
                    return ClientOutcome::Reply(message::encode(r));
                }
                let mut reply = match msg.method() {
                    BINDING => self.binding(&tuple, &msg),
                    ALLOCATE => self.allocate(now, tuple, raw, &msg, relays),
                    REFRESH => self.refresh(now, &tuple, raw, &msg),
                    CREATE_PERMISSION => self.create_permission(now, &tuple, raw, &msg),
                    CHANNEL_BIND => self.channel_bind(now, &tuple, raw, &msg),
                    _ => message::encode(error(&msg, 400, "Bad Request")),
                };
                // Clients that fingerprint their requests (browsers do) get
                // fingerprinted answers, as coturn does.
                if msg.get_attribute::<Fingerprint>().is_some() {
                    message::append_fingerprint(&mut reply);
                }
                ClientOutcome::Reply(reply)
            }
            _ => ClientOutcome::Nothing,
        }
    }

    fn binding(&self, tuple: &FiveTuple, msg: &StunMessage) -> Vec<u8> {
        let mut r = Message::new(MessageClass::SuccessResponse, BINDING, msg.transaction_id());
        r.add_attribute(XorMappedAddress::new(tuple.client));
        self.add_software(&mut r);
        message::encode(r)
    }

    fn send_indication(
        &mut self,
        now: Now,
        tuple: &FiveTuple,
        raw: &[u8],
        msg: &StunMessage,
    ) -> ClientOutcome<R> {
        let Some(peer) = msg.get_attribute::<XorPeerAddress>().map(|a| a.address()) else {
            return ClientOutcome::Nothing;
        };
        let Some(payload) = message::attribute_value(raw, message::DATA) else {
            return ClientOutcome::Nothing;
        };
        let Some(a) = self
            .by_tuple
            .get(tuple)
            .and_then(|id| self.allocations.get(id))
        else {
            return ClientOutcome::Nothing;
        };
        if a.expires <= now.instant || !a.permitted(peer.ip(), now.instant) {
            return ClientOutcome::Nothing;
        }
        let Some(relay) = a.relay_for(peer) else {
            return ClientOutcome::Nothing;
        };
        self.metrics
            .relayed_bytes
            .inc_by((payload.end - payload.start) as u64);
        ClientOutcome::Relay {
            relay: relay.clone(),
            peer,
            payload,
        }
    }

    /// Long-term credential check (RFC 8489 §9.2.4).
    fn authenticate(
        &mut self,
        now: Now,
        client: IpAddr,
        raw: &[u8],
        msg: &StunMessage,
    ) -> Result<Authenticated, Reject> {
        if msg.get_attribute::<MessageIntegrity>().is_none() {
            return Err(self.challenge(msg, 401, "Unauthorized", now.unix_secs));
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            msg.get_attribute::<Username>(),
            msg.get_attribute::<Realm>(),
            msg.get_attribute::<Nonce>(),
        ) else {
            return Err(Box::new(error(msg, 400, "Bad Request")));
        };
        if !self.nonces.is_fresh(nonce.value(), now.unix_secs) {
            return Err(self.challenge(msg, 438, "Stale Nonce", now.unix_secs));
        }
        let password = match self.cfg.auth.password(username.name(), now.unix_secs) {
            Ok(p) => p,
            Err(Refusal::Unknown | Refusal::Expired) => {
                return Err(self.refuse_credential(msg, client, now));
            }
        };
        if realm.text() != self.cfg.realm {
            return Err(self.refuse_credential(msg, client, now));
        }
        let key = long_term_key(username.name(), realm.text(), &password);
        if !integrity_ok(raw, &key) {
            return Err(self.refuse_credential(msg, client, now));
        }
        Ok(Authenticated {
            username: username.name().to_string(),
            key,
        })
    }

    /// 401 for a credential that was checked and failed; counted against
    /// the client's address.
    fn refuse_credential(&mut self, msg: &StunMessage, client: IpAddr, now: Now) -> Reject {
        self.metrics.auth_failures.inc();
        self.failed_auth_by_addr
            .failed(ClientKey::from(client), now.instant);
        self.challenge(msg, 401, "Unauthorized", now.unix_secs)
    }

    /// An error carrying REALM and a fresh NONCE.
    fn challenge(&self, msg: &StunMessage, code: u16, reason: &str, unix_secs: u64) -> Reject {
        let mut r = error(msg, code, reason);
        // Realm and nonce are our own short ASCII strings.
        if let Ok(realm) = Realm::new(self.cfg.realm.clone()) {
            r.add_attribute(realm);
        }
        // Our nonces are 32 hex digits, well inside NONCE's limits.
        r.add_attribute(Nonce::new(self.nonces.issue(unix_secs)).expect("nonce is short ASCII"));
        Box::new(r)
    }

    fn add_software(&self, m: &mut StunMessage) {
        if let Some(s) = &self.cfg.software {
            if let Ok(s) = Software::new(s.clone()) {
                m.add_attribute(s);
            }
        }
    }

    fn signed(&self, mut m: StunMessage, key: &[u8; 16]) -> Vec<u8> {
        self.add_software(&mut m);
        message::encode_with_integrity(m, key)
    }

    /// Authenticates a request on an existing allocation.
    fn on_allocation(
        &mut self,
        now: Now,
        tuple: &FiveTuple,
        raw: &[u8],
        msg: &StunMessage,
    ) -> Result<(AllocationId, [u8; 16]), Vec<u8>> {
        let auth = self
            .authenticate(now, tuple.client.ip(), raw, msg)
            .map_err(|r| message::encode(*r))?;
        let Some(id) = self.by_tuple.get(tuple).copied() else {
            return Err(self.signed(error(msg, 437, "Allocation Mismatch"), &auth.key));
        };
        let Some(a) = self.allocations.get(&id) else {
            return Err(self.signed(error(msg, 437, "Allocation Mismatch"), &auth.key));
        };
        if a.username != auth.username {
            self.metrics.auth_failures.inc();
            return Err(self.signed(error(msg, 441, "Wrong Credentials"), &auth.key));
        }
        Ok((id, auth.key))
    }

    fn lifetime(&self, msg: &StunMessage) -> Duration {
        match msg.get_attribute::<Lifetime>() {
            Some(l) => l
                .lifetime()
                .min(self.cfg.max_lifetime)
                .max(self.cfg.default_lifetime),
            None => self.cfg.default_lifetime,
        }
    }

    fn allocate(
        &mut self,
        now: Now,
        tuple: FiveTuple,
        raw: &[u8],
        msg: &StunMessage,
        relays: &mut dyn RelayProvider<R>,
    ) -> Vec<u8> {
        let auth = match self.authenticate(now, tuple.client.ip(), raw, msg) {
            Ok(a) => a,
            Err(r) => return message::encode(*r),
        };
        let key = auth.key;
        if let Some(a) = self
            .by_tuple
            .get(&tuple)
            .and_then(|id| self.allocations.get(id))
        {
            // A retransmitted Allocate gets the same answer again.
            if a.allocate_tid == msg.transaction_id() && a.username == auth.username {
                let remaining = a.expires.saturating_duration_since(now.instant);
                let ok = allocate_success(msg, a.relay_addrs(), tuple.client, remaining);
                return self.signed(ok, &key);
            }
            return self.signed(error(msg, 437, "Allocation Mismatch"), &key);
        }
        match msg.get_attribute::<RequestedTransport>() {
            None => return self.signed(error(msg, 400, "Bad Request"), &key),
            Some(t) if t.protocol() != UDP => {
                return self.signed(error(msg, 442, "Unsupported Transport Protocol"), &key)
            }
            Some(_) => {}
        }
        // RFC 8656 §7.2: IPv4 unless asked otherwise; ADDITIONAL-ADDRESS-FAMILY
        // (IPv6 only) asks for an IPv6 relay besides the IPv4 one.
        let requested = msg
            .get_attribute::<RequestedAddressFamily>()
            .map(|f| Family::from(f.address_family()));
        let additional = msg
            .get_attribute::<AdditionalAddressFamily>()
            .map(|f| Family::from(f.address_family()));
        let families: &[Family] = match (requested, additional) {
            (Some(_), Some(_)) | (None, Some(Family::V4)) => {
                return self.signed(error(msg, 400, "Bad Request"), &key)
            }
            (None, Some(Family::V6)) => &[Family::V4, Family::V6],
            (Some(Family::V6), None) => &[Family::V6],
            (Some(Family::V4), None) | (None, None) => &[Family::V4],
        };
        if families.iter().any(|f| !relays.supports(*f)) {
            return self.signed(error(msg, 440, "Address Family not Supported"), &key);
        }
        if msg.get_attribute::<ReservationToken>().is_some() {
            return self.signed(error(msg, 508, "Insufficient Capacity"), &key);
        }
        let user = quota_user(&auth.username).to_string();
        let held = self.per_user.get(&user).copied().unwrap_or(0);
        if held >= self.cfg.user_quota || self.allocations.len() >= self.cfg.total_quota {
            self.metrics.quota_rejections.inc();
            return self.signed(error(msg, 486, "Allocation Quota Reached"), &key);
        }
        let id = AllocationId(self.next_id);
        let mut bound: [Option<(R, SocketAddr)>; 2] = [None, None];
        for f in families {
            // A half-made dual allocation is dropped whole, closing its socket.
            let Some(relay) = relays.bind(&tuple, id, *f) else {
                return self.signed(error(msg, 508, "Insufficient Capacity"), &key);
            };
            bound[f.index()] = Some(relay);
        }
        self.next_id += 1;
        let addrs: Vec<SocketAddr> = bound.iter().flatten().map(|(_, a)| *a).collect();
        let lifetime = self.lifetime(msg);
        self.allocations.insert(
            id,
            Allocation {
                tuple,
                username: auth.username,
                user: user.clone(),
                relays: bound,
                expires: now.instant + lifetime,
                allocate_tid: msg.transaction_id(),
                permissions: FastMap::default(),
                channels: FastMap::default(),
                channel_of_peer: FastMap::default(),
            },
        );
        self.by_tuple.insert(tuple, id);
        *self.per_user.entry(user).or_default() += 1;
        self.metrics.allocations.inc();
        let ok = allocate_success(msg, addrs.into_iter(), tuple.client, lifetime);
        self.signed(ok, &key)
    }

    fn refresh(&mut self, now: Now, tuple: &FiveTuple, raw: &[u8], msg: &StunMessage) -> Vec<u8> {
        let (id, key) = match self.on_allocation(now, tuple, raw, msg) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        // RFC 8656 §7.3: a Refresh naming a family must name the allocation's.
        if let Some(f) = msg.get_attribute::<RequestedAddressFamily>() {
            let f = Family::from(f.address_family());
            if self
                .allocations
                .get(&id)
                .is_some_and(|a| a.relays[f.index()].is_none())
            {
                return self.signed(error(msg, 443, "Peer Address Family Mismatch"), &key);
            }
        }
        let requested_zero = msg
            .get_attribute::<Lifetime>()
            .is_some_and(|l| l.lifetime().is_zero());
        let lifetime = if requested_zero {
            self.remove(id);
            Duration::ZERO
        } else {
            let lifetime = self.lifetime(msg);
            if let Some(a) = self.allocations.get_mut(&id) {
                a.expires = now.instant + lifetime;
            }
            lifetime
        };
        let mut r = Message::new(MessageClass::SuccessResponse, REFRESH, msg.transaction_id());
        r.add_attribute(lifetime_attr(lifetime));
        self.signed(r, &key)
    }

    fn create_permission(
        &mut self,
        now: Now,
        tuple: &FiveTuple,
        raw: &[u8],
        msg: &StunMessage,
    ) -> Vec<u8> {
        let (id, key) = match self.on_allocation(now, tuple, raw, msg) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let peers: Vec<SocketAddr> = msg
            .attributes()
            .filter_map(|a| match a {
                Attribute::XorPeerAddress(p) => Some(p.address()),
                _ => None,
            })
            .collect();
        if peers.is_empty() {
            return self.signed(error(msg, 400, "Bad Request"), &key);
        }
        if let Some(reply) = self.check_peers(msg, id, &peers, &key) {
            return reply;
        }
        let Some(a) = self.allocations.get_mut(&id) else {
            return self.signed(error(msg, 437, "Allocation Mismatch"), &key);
        };
        let fits = peers
            .iter()
            .filter(|p| !a.permissions.contains_key(&p.ip()))
            .count()
            + a.permissions.len()
            <= MAX_PERMISSIONS;
        if !fits {
            return self.signed(error(msg, 508, "Insufficient Capacity"), &key);
        }
        for p in peers {
            a.permissions
                .insert(p.ip(), now.instant + PERMISSION_LIFETIME);
        }
        let r = Message::new(
            MessageClass::SuccessResponse,
            CREATE_PERMISSION,
            msg.transaction_id(),
        );
        self.signed(r, &key)
    }

    /// 403 for denied peers, 443 for a family the relay cannot reach.
    fn check_peers(
        &self,
        msg: &StunMessage,
        id: AllocationId,
        peers: &[SocketAddr],
        key: &[u8; 16],
    ) -> Option<Vec<u8>> {
        let a = self.allocations.get(&id);
        for p in peers {
            if a.is_none_or(|a| a.relay_for(*p).is_none()) {
                return Some(self.signed(error(msg, 443, "Peer Address Family Mismatch"), key));
            }
            if !self.cfg.peer_policy.allows(p.ip()) {
                return Some(self.signed(error(msg, 403, "Forbidden"), key));
            }
        }
        None
    }

    fn channel_bind(
        &mut self,
        now: Now,
        tuple: &FiveTuple,
        raw: &[u8],
        msg: &StunMessage,
    ) -> Vec<u8> {
        let (id, key) = match self.on_allocation(now, tuple, raw, msg) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let (Some(ch), Some(peer)) = (
            msg.get_attribute::<ChannelNumber>().map(|c| c.value()),
            msg.get_attribute::<XorPeerAddress>().map(|p| p.address()),
        ) else {
            return self.signed(error(msg, 400, "Bad Request"), &key);
        };
        if !ChannelNumber::new(ch).is_valid() {
            return self.signed(error(msg, 400, "Bad Request"), &key);
        }
        if let Some(reply) = self.check_peers(msg, id, &[peer], &key) {
            return reply;
        }
        let Some(a) = self.allocations.get_mut(&id) else {
            return self.signed(error(msg, 437, "Allocation Mismatch"), &key);
        };
        let channel_taken = a.channels.get(&ch).is_some_and(|(p, _)| *p != peer);
        let peer_taken = a.channel_of_peer.get(&peer).is_some_and(|c| *c != ch);
        if channel_taken || peer_taken {
            return self.signed(error(msg, 400, "Bad Request"), &key);
        }
        if !a.permissions.contains_key(&peer.ip()) && a.permissions.len() >= MAX_PERMISSIONS {
            return self.signed(error(msg, 508, "Insufficient Capacity"), &key);
        }
        a.channels
            .insert(ch, (peer, now.instant + CHANNEL_LIFETIME));
        a.channel_of_peer.insert(peer, ch);
        a.permissions
            .insert(peer.ip(), now.instant + PERMISSION_LIFETIME);
        let r = Message::new(
            MessageClass::SuccessResponse,
            CHANNEL_BIND,
            msg.transaction_id(),
        );
        self.signed(r, &key)
    }
}

fn error(msg: &StunMessage, code: u16, reason: &str) -> StunMessage {
    tracing::debug!(method = msg.method().as_u16(), code, "TURN error response");
    let mut r = Message::new(
        MessageClass::ErrorResponse,
        msg.method(),
        msg.transaction_id(),
    );
    // Codes are our own constants in 300..700.
    r.add_attribute(ErrorCode::new(code, reason.into()).expect("valid error code"));
    r
}

fn lifetime_attr(d: Duration) -> Lifetime {
    Lifetime::from_u32(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn allocate_success(
    msg: &StunMessage,
    relays: impl Iterator<Item = SocketAddr>,
    client: SocketAddr,
    lifetime: Duration,
) -> StunMessage {
    let mut r = Message::new(
        MessageClass::SuccessResponse,
        ALLOCATE,
        msg.transaction_id(),
    );
    for relay in relays {
        r.add_attribute(XorRelayAddress::new(relay));
    }
    r.add_attribute(lifetime_attr(lifetime));
    r.add_attribute(XorMappedAddress::new(client));
    r
}
