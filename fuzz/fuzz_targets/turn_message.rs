//! STUN and TURN messages (and ChannelData) into the TURN server's sans-IO
//! engine, `Engine::handle_client` and `Engine::handle_peer`, over UDP and
//! TCP tuples, with the clock moving. A message the input marks `signed`
//! gets USERNAME, REALM, the latest NONCE the engine handed out and a
//! MESSAGE-INTEGRITY for valid TURN REST credentials appended, so the
//! fuzzer reaches past the 401 challenge into Allocate, Refresh,
//! CreatePermission, ChannelBind and Send with attributes of its choosing.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha1::Sha1;
use turn_server::{
    long_term_key, rest_credentials, AllocationId, Authenticator, ClientOutcome, Engine,
    EngineConfig, Family, FiveTuple, Now, RelayProvider, Transport,
};

const SECRET: &[u8] = b"fuzz";
const REALM: &str = "relaycast";
const T0: u64 = 1_700_000_000;

/// One record of the input (`relaycast_fuzz::records`): its tag's low two
/// bits say which.
#[derive(Debug)]
enum Op<'a> {
    /// A datagram or framed record from client `client` (tag bits 2..3),
    /// over TCP when bit 4 is set, signed when bit 5 is.
    Client {
        client: u8,
        tcp: bool,
        signed: bool,
        bytes: &'a [u8],
    },
    /// A datagram from `peer` on allocation `id`'s relay (tag bits 2..4 and 5..7).
    Peer { id: u8, peer: u8, payload: &'a [u8] },
    /// The clock moves (the tag's upper six bits, in seconds times 16), timers run.
    Advance { secs: u16 },
}

impl<'a> Op<'a> {
    fn of((tag, bytes): (u8, &'a [u8])) -> Op<'a> {
        match tag & 3 {
            0 | 3 => Op::Client {
                client: (tag >> 2) & 3,
                tcp: tag & 0x10 != 0,
                signed: tag & 0x20 != 0,
                bytes,
            },
            1 => Op::Peer {
                id: (tag >> 2) & 7,
                peer: tag >> 5,
                payload: bytes,
            },
            _ => Op::Advance {
                secs: u16::from(tag >> 2) * 16,
            },
        }
    }
}

struct Relays(u16);

impl RelayProvider<u16> for Relays {
    fn supports(&self, _: Family) -> bool {
        true
    }

    fn bind(
        &mut self,
        _: &FiveTuple,
        _: AllocationId,
        family: Family,
    ) -> Option<(u16, SocketAddr)> {
        self.0 = self.0.wrapping_add(1);
        let ip: std::net::IpAddr = match family {
            Family::V4 => [192, 0, 2, 1].into(),
            Family::V6 => [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1].into(),
        };
        // Every 97th bind finds no free port: the 508 path.
        (!self.0.is_multiple_of(97)).then_some((self.0, SocketAddr::new(ip, self.0)))
    }
}

fuzz_target!(|data: &[u8]| {
    let start = relaycast_fuzz::epoch();
    let mut elapsed = Duration::ZERO;
    let cfg = EngineConfig::new(REALM, Authenticator::rest(SECRET), [7; 32]);
    let mut engine: Engine<u16> = Engine::new(cfg, turn_server::Metrics::unregistered());
    let mut relays = Relays(50_000);
    let mut nonce: Vec<u8> = b"none".to_vec();
    let mut out = Vec::new();
    for op in relaycast_fuzz::records(data).take(64).map(Op::of) {
        let now = Now {
            instant: start + elapsed,
            unix_secs: T0 + elapsed.as_secs(),
        };
        match op {
            Op::Client {
                client,
                tcp,
                signed,
                bytes,
            } => {
                let tuple = FiveTuple {
                    client: SocketAddr::from(([198, 51, 100, client % 4], 40_000)),
                    server: SocketAddr::from(([192, 0, 2, 1], 3478)),
                    transport: if tcp { Transport::Tcp } else { Transport::Udp },
                };
                let signed_bytes;
                let bytes = if signed {
                    signed_bytes = sign(bytes, &nonce, client % 2 == 0, now.unix_secs);
                    &signed_bytes[..]
                } else {
                    bytes
                };
                match engine.handle_client(now, tuple, bytes, &mut relays) {
                    ClientOutcome::Reply(reply) => {
                        if let Some(n) = attribute(&reply, 0x0015) {
                            nonce = n.to_vec();
                        }
                    }
                    ClientOutcome::Relay { payload, .. } => {
                        assert!(
                            payload.end <= bytes.len() && payload.start <= payload.end,
                            "relay range {payload:?} outside an input of {} bytes",
                            bytes.len()
                        );
                    }
                    ClientOutcome::Nothing => {}
                }
            }
            Op::Peer { id, peer, payload } => {
                let peer = SocketAddr::from(([203, 0, 113, peer % 4], 5000));
                out.clear();
                engine.handle_peer(
                    now.instant,
                    AllocationId(u64::from(id % 8)),
                    peer,
                    payload,
                    &mut out,
                );
            }
            Op::Advance { secs } => {
                elapsed += Duration::from_secs(u64::from(secs));
                engine.handle_timeout(start + elapsed);
            }
        }
    }
});

/// The value of the first attribute of type `ty` in a STUN message.
fn attribute(msg: &[u8], ty: u16) -> Option<&[u8]> {
    let mut rest = msg.get(20..)?;
    while rest.len() >= 4 {
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if t == ty {
            return Some(value);
        }
        rest = rest.get(4 + len.next_multiple_of(4)..)?;
    }
    None
}

fn push_attribute(msg: &mut Vec<u8>, ty: u16, value: &[u8]) {
    msg.extend_from_slice(&ty.to_be_bytes());
    msg.extend_from_slice(&(value.len() as u16).to_be_bytes());
    msg.extend_from_slice(value);
    msg.resize(msg.len().next_multiple_of(4), 0);
}

/// `bytes` (a STUN header and attributes, as the fuzzer wrote them) with
/// USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (RFC 8489 §14.5) for a
/// valid TURN REST credential appended, the header's length fixed up.
fn sign(bytes: &[u8], nonce: &[u8], good_key: bool, unix_now: u64) -> Vec<u8> {
    if bytes.len() < 20 {
        return bytes.to_vec();
    }
    let creds = rest_credentials(SECRET, "fuzzer", unix_now, 3600);
    let mut msg = bytes[..20].to_vec();
    msg.extend_from_slice(&bytes[20..bytes.len().min(20 + 600)]);
    msg.resize(msg.len().next_multiple_of(4), 0);
    push_attribute(&mut msg, 0x0006, creds.username.as_bytes());
    push_attribute(&mut msg, 0x0014, REALM.as_bytes());
    push_attribute(&mut msg, 0x0015, nonce);
    // The length covers MESSAGE-INTEGRITY, which is not yet written.
    let len = (msg.len() - 20 + 24) as u16;
    msg[2..4].copy_from_slice(&len.to_be_bytes());
    let password = if good_key {
        creds.password.as_str()
    } else {
        "wrong"
    };
    let key = long_term_key(&creds.username, REALM, password);
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(&msg);
    let tag = mac.finalize().into_bytes();
    push_attribute(&mut msg, 0x0008, &tag);
    msg
}
