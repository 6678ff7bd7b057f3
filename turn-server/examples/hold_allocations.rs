//! Load tool: opens N UDP clients against a TURN server on loopback, makes
//! one authenticated allocation each (REST credentials from the shared
//! secret), holds them, and reports how many succeeded and how long it
//! took. Works against relaycast and coturn alike.
//!
//! `cargo run --release -p turn-server --example hold_allocations -- \
//!     127.0.0.1:3478 SECRET 10000 [HOLD_SECS] [CONCURRENCY]`
//!
//! Loopback only: it refuses any other server address.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{ErrorCode, MessageIntegrity, Nonce, Realm, Username};
use stun_codec::rfc5766::attributes::{Lifetime, RequestedTransport, XorRelayAddress};
use stun_codec::rfc5766::methods::{ALLOCATE, REFRESH};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, Method, TransactionId};
use tokio::net::UdpSocket;

stun_codec::define_attribute_enums!(
    Attr,
    AttrDecoder,
    AttrEncoder,
    [
        Username,
        Realm,
        Nonce,
        MessageIntegrity,
        ErrorCode,
        RequestedTransport,
        XorRelayAddress,
        Lifetime
    ]
);

type Msg = Message<Attr>;

fn tid() -> TransactionId {
    TransactionId::new(rand::random())
}

async fn round_trip(sock: &UdpSocket, bytes: &[u8]) -> Option<Msg> {
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        sock.send(bytes).await.ok()?;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
            return MessageDecoder::<Attr>::new()
                .decode_from_bytes(&buf[..n])
                .ok()?
                .ok();
        }
    }
    None
}

struct Auth {
    username: Username,
    realm: Realm,
    password: String,
    nonce: String,
}

fn signed(method: Method, auth: &Auth, extra: Vec<Attr>) -> Option<Vec<u8>> {
    let mut m = Msg::new(MessageClass::Request, method, tid());
    for a in extra {
        m.add_attribute(a);
    }
    m.add_attribute(auth.username.clone());
    m.add_attribute(auth.realm.clone());
    m.add_attribute(Nonce::new(auth.nonce.clone()).ok()?);
    let mi =
        MessageIntegrity::new_long_term_credential(&m, &auth.username, &auth.realm, &auth.password)
            .ok()?;
    m.add_attribute(mi);
    MessageEncoder::new().encode_into_bytes(m).ok()
}

/// One client: returns its socket (kept open to hold the allocation) and auth.
async fn allocate(server: SocketAddr, secret: &str, i: usize) -> Option<(UdpSocket, Auth)> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.ok()?;
    sock.connect(server).await.ok()?;
    let mut m = Msg::new(MessageClass::Request, ALLOCATE, tid());
    m.add_attribute(RequestedTransport::new(17));
    let challenge = round_trip(&sock, &MessageEncoder::new().encode_into_bytes(m).ok()?).await?;
    let realm = challenge.get_attribute::<Realm>()?.clone();
    let nonce = challenge.get_attribute::<Nonce>()?.value().to_string();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        + 3600;
    let name = format!("{expiry}:load{}", i % 1000);
    let password = turn_server::rest_password(secret.as_bytes(), &name);
    let auth = Auth {
        username: Username::new(name).ok()?,
        realm,
        password,
        nonce,
    };
    let req = signed(ALLOCATE, &auth, vec![RequestedTransport::new(17).into()])?;
    let r = round_trip(&sock, &req).await?;
    (r.class() == MessageClass::SuccessResponse && r.get_attribute::<XorRelayAddress>().is_some())
        .then_some((sock, auth))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server: SocketAddr = args.first().ok_or("server address")?.parse()?;
    if !server.ip().is_loopback() {
        return Err("hold_allocations only targets loopback servers".into());
    }
    let secret = args.get(1).ok_or("secret")?.clone();
    let n: usize = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let hold: u64 = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let concurrency: usize = args.get(4).map_or(Ok(100), |s| s.parse())?;

    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = Arc::clone(&next);
        let secret = secret.clone();
        workers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return held;
                }
                if let Some(c) = allocate(server, &secret, i).await {
                    held.push(c);
                }
            }
        }));
    }
    let mut held = Vec::new();
    for w in workers {
        held.extend(w.await?);
    }
    let took = start.elapsed();
    println!(
        "allocated {} of {n} in {:.2} s ({:.0}/s)",
        held.len(),
        took.as_secs_f64(),
        held.len() as f64 / took.as_secs_f64()
    );
    println!("holding for {hold} s");
    tokio::time::sleep(Duration::from_secs(hold)).await;
    // Release them (Refresh lifetime 0) so the server's count drops back.
    let mut released = 0usize;
    for (sock, auth) in &held {
        if let Some(req) = signed(REFRESH, auth, vec![Lifetime::from_u32(0).into()]) {
            if sock.send(&req).await.is_ok() {
                released += 1;
            }
        }
    }
    println!("released {released}");
    Ok(())
}
