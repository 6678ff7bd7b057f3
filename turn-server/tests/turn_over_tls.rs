//! TURN over TLS (rustls, certificate and key from PEM files). webrtc-rs
//! 0.14 cannot gather `turns:` candidates, so a raw rustls client speaks
//! STUN to us: Allocate (401 challenge, then authenticated), ChannelBind,
//! ChannelData both ways; closing the connection ends the allocation.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use stun_codec::rfc5389::attributes::{ErrorCode, MessageIntegrity, Nonce, Realm, Username};
use stun_codec::rfc5766::attributes::{RequestedTransport, XorPeerAddress, XorRelayAddress};
use stun_codec::rfc5766::methods::{ALLOCATE, CREATE_PERMISSION};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, Method, TransactionId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use turn_server::{rest_credentials, Metrics, TlsFiles, TurnConfig, TurnServer};

type Attr = stun_codec::rfc5766::Attribute;
type Attr5389 = stun_codec::rfc5389::Attribute;

const SECRET: &str = "tls-secret";

struct Pki {
    _dir: TempDir,
    files: TlsFiles,
    cert_der: Vec<u8>,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pki() -> Pki {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let dir = std::env::temp_dir().join(format!("turn-tls-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
    Pki {
        files: TlsFiles { cert, key },
        cert_der: ck.cert.der().to_vec(),
        _dir: TempDir(dir),
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

async fn start(pki: &Pki) -> TurnServer {
    let mut cfg = TurnConfig::new(SECRET);
    cfg.tls = Some((
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        pki.files.clone(),
    ));
    cfg.allow_loopback_peers = true;
    TurnServer::start(cfg, Metrics::unregistered())
        .await
        .expect("TURN over TLS starts")
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(addr: SocketAddr, cert_der: &[u8]) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(cert_der.to_vec()))
        .expect("our cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// Reads one STUN message or ChannelData record off the stream.
async fn read_record(s: &mut Tls) -> Vec<u8> {
    let mut head = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("a record within 5 s")
        .expect("read");
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let body = if head[0] >> 6 == 1 {
        len.div_ceil(4) * 4
    } else {
        16 + len
    };
    let mut rest = vec![0u8; body];
    s.read_exact(&mut rest).await.expect("read body");
    [head.to_vec(), rest].concat()
}

fn encode(m: Message<Attr>) -> Vec<u8> {
    use bytecodec::EncodeExt;
    MessageEncoder::new().encode_into_bytes(m).expect("encodes")
}

fn decode(b: &[u8]) -> Message<Attr5389> {
    use bytecodec::DecodeExt;
    MessageDecoder::<Attr5389>::new()
        .decode_from_bytes(b)
        .expect("decodes")
        .expect("well-formed")
}

/// Builds a request signed with the codec's own MESSAGE-INTEGRITY.
fn signed(
    method: Method,
    tid: u8,
    extra: Vec<Attr>,
    user: &str,
    pass: &str,
    nonce: &str,
) -> Vec<u8> {
    // The rfc5766 attribute set has no USERNAME etc.; build in a combined set.
    stun_codec::define_attribute_enums!(
        Both,
        BothDecoder,
        BothEncoder,
        [
            Username,
            Realm,
            Nonce,
            MessageIntegrity,
            RequestedTransport,
            XorPeerAddress
        ]
    );
    let mut m: Message<Both> =
        Message::new(MessageClass::Request, method, TransactionId::new([tid; 12]));
    for a in extra {
        match a {
            Attr::RequestedTransport(t) => m.add_attribute(t),
            Attr::XorPeerAddress(p) => m.add_attribute(p),
            _ => unreachable!("only the attributes this test uses"),
        }
    }
    let username = Username::new(user.into()).expect("username");
    let realm = Realm::new("relaycast".into()).expect("realm");
    m.add_attribute(username.clone());
    m.add_attribute(realm.clone());
    m.add_attribute(Nonce::new(nonce.into()).expect("nonce"));
    let mi = MessageIntegrity::new_long_term_credential(&m, &username, &realm, pass).expect("MI");
    m.add_attribute(mi);
    use bytecodec::EncodeExt;
    MessageEncoder::new().encode_into_bytes(m).expect("encodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_rustls_client_allocates_and_relays_over_tls() {
    let pki = pki();
    let server = start(&pki).await;
    let addr = server.tls_addr().expect("tls");
    let mut tls = connect(addr, &pki.cert_der).await;

    // Unauthenticated Allocate: 401 with realm and nonce.
    let mut m: Message<Attr> =
        Message::new(MessageClass::Request, ALLOCATE, TransactionId::new([1; 12]));
    m.add_attribute(RequestedTransport::new(17));
    tls.write_all(&encode(m)).await.expect("write");
    let r = decode(&read_record(&mut tls).await);
    assert_eq!(r.get_attribute::<ErrorCode>().map(|e| e.code()), Some(401));
    let nonce = r
        .get_attribute::<Nonce>()
        .expect("nonce")
        .value()
        .to_string();

    let creds = rest_credentials(SECRET.as_bytes(), "tls-viewer", now_secs(), 600);
    let req = signed(
        ALLOCATE,
        2,
        vec![RequestedTransport::new(17).into()],
        &creds.username,
        &creds.password,
        &nonce,
    );
    tls.write_all(&req).await.expect("write");
    let raw = read_record(&mut tls).await;
    use bytecodec::DecodeExt;
    let ok = MessageDecoder::<Attr>::new()
        .decode_from_bytes(&raw)
        .expect("decodes")
        .expect("well-formed");
    assert_eq!(ok.class(), MessageClass::SuccessResponse, "{ok:?}");
    let relay = ok
        .get_attribute::<XorRelayAddress>()
        .expect("relay address")
        .address();
    assert_eq!(server.allocation_count(), 1);

    // Permission for a loopback peer, then data both ways (Send/Data
    // indications are covered over UDP; here ChannelData via a channel).
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("peer");
    let peer_addr = peer.local_addr().expect("addr");
    let req = signed(
        CREATE_PERMISSION,
        3,
        vec![XorPeerAddress::new(peer_addr).into()],
        &creds.username,
        &creds.password,
        &nonce,
    );
    tls.write_all(&req).await.expect("write");
    let r = decode(&read_record(&mut tls).await);
    assert_eq!(r.class(), MessageClass::SuccessResponse, "{r:?}");

    peer.send_to(b"from the peer", relay)
        .await
        .expect("peer sends");
    let data = read_record(&mut tls).await;
    let ind = MessageDecoder::<Attr>::new()
        .decode_from_bytes(&data)
        .expect("decodes")
        .expect("a Data indication");
    assert_eq!(
        ind.get_attribute::<stun_codec::rfc5766::attributes::Data>()
            .map(|d| d.data().to_vec()),
        Some(b"from the peer".to_vec())
    );

    // Closing the TLS connection ends the allocation.
    drop(tls);
    for _ in 0..100 {
        if server.allocation_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.allocation_count(),
        0,
        "allocation outlived its connection"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_and_garbage_on_the_tls_port_is_dropped() {
    let pki = pki();
    let server = start(&pki).await;
    let addr = server.tls_addr().expect("tls");
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.write_all(&[0u8; 64]).await;
    // At most a TLS alert comes back, then the connection closes.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "server kept the connection open");
    assert!(rest.len() < 16, "unexpected answer {rest:?}");
    // The server still serves real clients afterwards.
    let tls = connect(addr, &pki.cert_der).await;
    drop(tls);
    assert_eq!(server.allocation_count(), 0);
    server.shutdown().await;
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
