//! The tokio driver: listeners (UDP, TCP, TLS), one relay socket per
//! allocation, and a once-a-second sweep. It only moves bytes and time;
//! every decision is the [`Engine`]'s.
//!
//! The engine sits behind one mutex, taken once per datagram and never
//! across an await. Relay sockets wait for readiness and then read into a
//! per-thread buffer, so an idle allocation costs a socket and a parked
//! task, not a receive buffer.
//!
//! All UDP (the UDP listener and every relay socket) runs on threads of its
//! own (one per core by default), each a single-threaded tokio runtime with
//! the I/O driver only: a woken socket is polled on the thread that saw it
//! ready, with no work stealing, no cross-thread wake-ups, no timer wheel or
//! signal driver on each park. Relay sockets are spread over the threads by
//! allocation; the UDP listener runs on the first. TCP/TLS connections, the
//! sweep and the caller's own work stay on the caller's runtime.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use crate::auth::{rest_credentials, Authenticator};
use crate::certificate::{ReloadingCertificate, TlsFiles};
use crate::engine::{
    AllocationId, ClientOutcome, Engine, EngineConfig, Family, FiveTuple, Now, RelayProvider,
    Transport,
};
use crate::error::TurnError;
use crate::message::stream_record_len;
use crate::metrics::Metrics;
use crate::peer_policy::PeerPolicy;

/// Everything a TURN server needs.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// UDP listen address (`--turn-udp`).
    pub udp: Option<SocketAddr>,
    /// TCP listen address (`--turn-tcp`).
    pub tcp: Option<SocketAddr>,
    /// TLS listen address and its certificate (`--turn-tls`), reloaded on
    /// SIGHUP and when the files change.
    pub tls: Option<(SocketAddr, TlsFiles)>,
    /// Shared secret of the TURN REST API credentials.
    pub secret: String,
    pub realm: String,
    /// Address put in relayed addresses and `turn:` URLs; by default the
    /// listener's address.
    pub public_ip: Option<IpAddr>,
    /// DNS name put in `turn:`/`turns:` URLs instead of the address
    /// (`--turn-host`); a `turns:` URL must name its certificate's host.
    pub host: Option<String>,
    /// IPv6 address that IPv6 relays bind to and advertise
    /// (`--turn-relay-ipv6`). Without one (and without an IPv6 listener),
    /// allocations asking for IPv6 get 440 Address Family not Supported.
    pub relay_ipv6: Option<Ipv6Addr>,
    /// Relay ports (`--turn-relay-ports 49152-65535`).
    pub relay_ports: RangeInclusive<u16>,
    /// Allow relaying to loopback peers (tests on one machine).
    pub allow_loopback_peers: bool,
    pub user_quota: usize,
    pub total_quota: usize,
    /// Failed credential checks per client address before its
    /// credentialed requests are dropped for the rest of the window.
    pub auth_fail_limits: throttle::Limits,
    /// Threads that run the UDP listener and the relay sockets (default:
    /// one per core).
    pub udp_threads: usize,
}

impl TurnConfig {
    /// Defaults for `secret`: no listeners, realm `relaycast`, the IANA
    /// dynamic port range, loopback peers refused.
    pub fn new(secret: &str) -> TurnConfig {
        TurnConfig {
            udp: None,
            tcp: None,
            tls: None,
            secret: secret.into(),
            realm: "relaycast".into(),
            public_ip: None,
            host: None,
            relay_ipv6: None,
            relay_ports: 49152..=65535,
            allow_loopback_peers: false,
            user_quota: 100,
            total_quota: 50_000,
            auth_fail_limits: throttle::Limits::DEFAULT,
            udp_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Parses `LOW-HIGH` (inclusive).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("expected LOW-HIGH, got {s:?}"))?;
    let lo: u16 = lo.trim().parse().map_err(|_| format!("bad port {lo:?}"))?;
    let hi: u16 = hi.trim().parse().map_err(|_| format!("bad port {hi:?}"))?;
    if lo == 0 || lo > hi {
        return Err(format!("empty or invalid port range {s:?}"));
    }
    Ok(lo..=hi)
}

/// Checks a `--turn-host` value: a DNS name (letters, digits, `-`, dots
/// between labels of 1 to 63 characters, 253 at most), since it goes into
/// URLs and `Link` headers verbatim.
pub fn parse_turn_host(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{s:?} is not a DNS name (letters, digits, '-' and dots; e.g. turn.example.com)"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// One ICE server entry (the RTCIceServer shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// Where a relay sends to its client.
#[derive(Clone)]
enum ClientSink {
    Udp(Arc<UdpSocket>, SocketAddr),
    Stream(mpsc::Sender<Vec<u8>>),
}

/// The driver's per-allocation handle: the relay socket; dropping the last
/// clone (the engine's, when the allocation ends) stops its task.
#[derive(Clone)]
pub struct Relay(Arc<RelayInner>);

struct RelayInner {
    socket: Arc<UdpSocket>,
    task: AbortHandle,
}

impl Drop for RelayInner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    engine: Mutex<Engine<Relay>>,
    /// The UDP threads' runtimes: relay sockets register and run there.
    udp_rts: Vec<tokio::runtime::Handle>,
    ports: Mutex<PortCursor>,
    /// Relay addresses by family (IPv4, IPv6), where the server has one.
    relay_ips: [Option<RelayIp>; 2],
}

/// Where relay sockets of one family bind, and the address they advertise
/// (a NAT's public address may not be bindable here).
#[derive(Debug, Clone, Copy)]
struct RelayIp {
    bind: IpAddr,
    public: IpAddr,
}

/// Ports tried per Allocate before answering 508.
const MAX_BIND_ATTEMPTS: usize = 512;

struct PortCursor {
    range: RangeInclusive<u16>,
    next: u16,
}

impl PortCursor {
    /// Binds the next free port of the range. Gives up after a bounded
    /// number of ports in use: this runs under the engine's lock, and a
    /// nearly full range must not turn each Allocate into a scan of it.
    fn bind(&mut self, ip: IpAddr) -> Option<std::net::UdpSocket> {
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let span = usize::from(hi - lo) + 1;
        for _ in 0..span.min(MAX_BIND_ATTEMPTS) {
            let port = self.next;
            self.next = if port >= hi { lo } else { port + 1 };
            if let Ok(s) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                return Some(s);
            }
        }
        None
    }
}

struct Binder<'a> {
    shared: &'a Arc<Shared>,
    sink: SinkRef<'a>,
}

enum SinkRef<'a> {
    Udp(&'a Arc<UdpSocket>, SocketAddr),
    Stream(&'a mpsc::Sender<Vec<u8>>),
}

impl RelayProvider<Relay> for Binder<'_> {
    fn supports(&self, family: Family) -> bool {
        self.shared.relay_ips[family.index()].is_some()
    }

    fn bind(
        &mut self,
        _tuple: &FiveTuple,
        id: AllocationId,
        family: Family,
    ) -> Option<(Relay, SocketAddr)> {
        let ip = self.shared.relay_ips[family.index()]?;
        let std_socket = self.shared.ports.lock().bind(ip.bind)?;
        let port = std_socket.local_addr().ok()?.port();
        std_socket.set_nonblocking(true).ok()?;
        // `udp_rts` is never empty (see `TurnServer::start`).
        let rt = &self.shared.udp_rts[(id.0 as usize) % self.shared.udp_rts.len()];
        let socket = {
            let _rt = rt.enter();
            Arc::new(UdpSocket::from_std(std_socket).ok()?)
        };
        let sink = match &self.sink {
            SinkRef::Udp(s, to) => ClientSink::Udp(Arc::clone(s), *to),
            SinkRef::Stream(tx) => ClientSink::Stream((*tx).clone()),
        };
        let task = rt.spawn(relay_loop(
            Arc::clone(self.shared),
            id,
            Arc::clone(&socket),
            sink,
        ));
        let relay = Relay(Arc::new(RelayInner {
            socket,
            task: task.abort_handle(),
        }));
        Some((relay, SocketAddr::new(ip.public, port)))
    }
}

thread_local! {
    /// Receive and transmit buffers of the relay tasks running on this thread.
    static RELAY_BUFS: RefCell<(Vec<u8>, Vec<u8>)> = RefCell::new((vec![0; 65536], Vec::with_capacity(65536 + 64)));
}

/// Datagrams read per readiness wake-up before yielding to other tasks.
const RELAY_BATCH: usize = 64;

async fn relay_loop(
    shared: Arc<Shared>,
    id: AllocationId,
    socket: Arc<UdpSocket>,
    sink: ClientSink,
) {
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        // One clock read per wake-up: the datagrams of one batch arrive
        // within microseconds of each other.
        let now = Instant::now();
        let mut closed = false;
        let mut drained = false;
        RELAY_BUFS.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            let (buf, out) = &mut *bufs;
            for _ in 0..RELAY_BATCH {
                let (n, peer) = match socket.try_recv_from(buf) {
                    Ok(v) => v,
                    Err(_) => {
                        drained = true;
                        return;
                    }
                };
                let send = shared
                    .engine
                    .lock()
                    .handle_peer(now, id, peer, &buf[..n], out);
                if !send {
                    continue;
                }
                match &sink {
                    ClientSink::Udp(s, to) => {
                        // A full socket buffer drops the datagram, as the
                        // network would.
                        let _ = s.try_send_to(out, *to);
                    }
                    ClientSink::Stream(tx) => {
                        // A full queue drops the datagram; a closed one
                        // means the connection (and soon the allocation) is gone.
                        if tx.try_send(out.clone()).is_err() {
                            closed = tx.is_closed();
                        }
                    }
                }
            }
        });
        if closed {
            return;
        }
        // Only a socket that still had datagrams after a full batch gives
        // the other tasks a turn; a drained one just waits again.
        if !drained {
            tokio::task::yield_now().await;
        }
    }
}

fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix_secs: unix_secs(),
    }
}

/// [`Now`] for the UDP listener at one clock read per batch: wall-clock
/// seconds follow the monotonic clock from a base re-read once a minute
/// (credential expiry and nonces only need seconds).
struct BatchClock {
    base: Instant,
    base_unix: u64,
}

impl BatchClock {
    fn new() -> BatchClock {
        BatchClock {
            base: Instant::now(),
            base_unix: unix_secs(),
        }
    }

    fn now(&mut self) -> Now {
        let instant = Instant::now();
        let mut since = instant.saturating_duration_since(self.base);
        if since >= Duration::from_secs(60) {
            *self = BatchClock {
                base: instant,
                base_unix: unix_secs(),
            };
            since = Duration::ZERO;
        }
        Now {
            instant,
            unix_secs: self.base_unix + since.as_secs(),
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A running TURN server.
pub struct TurnServer {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Ends the UDP thread when sent or dropped.
    udp_stop: Mutex<Vec<oneshot::Sender<()>>>,
    udp_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    secret: String,
    public_ip: IpAddr,
    host: Option<String>,
}

impl TurnServer {
    /// Binds the configured listeners and starts serving.
    pub async fn start(cfg: TurnConfig, metrics: Metrics) -> Result<TurnServer, TurnError> {
        if cfg.udp.is_none() && cfg.tcp.is_none() && cfg.tls.is_none() {
            return Err(TurnError::NoListener);
        }
        let first_ip = cfg
            .udp
            .or(cfg.tcp)
            .or(cfg.tls.as_ref().map(|(a, _)| *a))
            .map(|a| a.ip())
            .ok_or(TurnError::NoListener)?;
        if let Some(h) = &cfg.host {
            parse_turn_host(h).map_err(|reason| TurnError::Host { reason })?;
        }
        let public_ip = cfg.public_ip.unwrap_or(first_ip);
        // Relay sockets bind where the listeners are and advertise the
        // public address (which may be a NAT's); IPv6 relays also where
        // --turn-relay-ipv6 says.
        let mut relay_ips = [None, None];
        relay_ips[Family::of(first_ip).index()] = Some(RelayIp {
            bind: first_ip,
            public: if Family::of(public_ip) == Family::of(first_ip) {
                public_ip
            } else {
                first_ip
            },
        });
        if let Some(v6) = cfg.relay_ipv6 {
            relay_ips[Family::V6.index()] = Some(RelayIp {
                bind: v6.into(),
                public: v6.into(),
            });
        }
        let mut ecfg = EngineConfig::new(
            &cfg.realm,
            Authenticator::rest(cfg.secret.as_bytes()),
            rand::random(),
        );
        ecfg.peer_policy = PeerPolicy {
            allow_loopback: cfg.allow_loopback_peers,
            allow_private: false,
        };
        ecfg.user_quota = cfg.user_quota;
        ecfg.total_quota = cfg.total_quota;
        ecfg.auth_fail_limits = cfg.auth_fail_limits;
        let mut udp_rts = Vec::new();
        let mut udp_stop = Vec::new();
        for i in 0..cfg.udp_threads.max(1) {
            let (rt, stop) = start_udp_thread(i).await?;
            udp_rts.push(rt);
            udp_stop.push(stop);
        }
        let shared = Arc::new(Shared {
            udp_rts,
            engine: Mutex::new(Engine::new(ecfg, metrics)),
            ports: Mutex::new(PortCursor {
                next: *cfg.relay_ports.start(),
                range: cfg.relay_ports.clone(),
            }),
            relay_ips,
        });
        let mut tasks = Vec::new();
        let mut udp_addr = None;
        if let Some(addr) = cfg.udp {
            let socket = {
                let _rt = shared.udp_rts[0].enter();
                bind_udp(addr)?
            };
            let local = socket
                .local_addr()
                .map_err(|e| TurnError::Bind { addr, source: e })?;
            udp_addr = Some(local);
            tasks.push(shared.udp_rts[0].spawn(udp_loop(
                Arc::clone(&shared),
                Arc::new(socket),
                local,
            )));
        }
        let mut tcp_addr = None;
        if let Some(addr) = cfg.tcp {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| TurnError::Bind { addr, source: e })?;
            let local = l
                .local_addr()
                .map_err(|e| TurnError::Bind { addr, source: e })?;
            tcp_addr = Some(local);
            tasks.push(tokio::spawn(accept_loop(Arc::clone(&shared), l, None)));
        }
        let mut tls_addr = None;
        if let Some((addr, files)) = &cfg.tls {
            let (acceptor, reloads) = tls_acceptor(files)?;
            tasks.push(reloads);
            let l = TcpListener::bind(*addr)
                .await
                .map_err(|e| TurnError::Bind {
                    addr: *addr,
                    source: e,
                })?;
            let local = l.local_addr().map_err(|e| TurnError::Bind {
                addr: *addr,
                source: e,
            })?;
            tls_addr = Some(local);
            tasks.push(tokio::spawn(accept_loop(
                Arc::clone(&shared),
                l,
                Some(acceptor),
            )));
        }
        let sweeper = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                sweeper.engine.lock().handle_timeout(Instant::now());
            }
        }));
        tracing::info!(udp = ?udp_addr, tcp = ?tcp_addr, tls = ?tls_addr, "TURN serving");
        Ok(TurnServer {
            shared,
            tasks: Mutex::new(tasks),
            udp_stop: Mutex::new(udp_stop),
            udp_addr,
            tcp_addr,
            tls_addr,
            secret: cfg.secret,
            public_ip,
            host: cfg.host.as_deref().and_then(|h| parse_turn_host(h).ok()),
        })
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Allocations alive now.
    pub fn allocation_count(&self) -> usize {
        self.shared.engine.lock().allocation_count()
    }

    /// Fresh REST credentials for `user`, valid `ttl`, with the `turn:` /
    /// `turns:` URLs of every listener.
    pub fn ice_server(&self, user: &str, ttl: Duration) -> IceServer {
        let c = rest_credentials(self.secret.as_bytes(), user, unix_secs(), ttl.as_secs());
        let host = match (&self.host, self.public_ip) {
            (Some(name), _) => name.clone(),
            (None, IpAddr::V6(v6)) => format!("[{v6}]"),
            (None, v4) => v4.to_string(),
        };
        let mut urls = Vec::new();
        if let Some(a) = self.udp_addr {
            urls.push(format!("turn:{host}:{}?transport=udp", a.port()));
        }
        if let Some(a) = self.tcp_addr {
            urls.push(format!("turn:{host}:{}?transport=tcp", a.port()));
        }
        if let Some(a) = self.tls_addr {
            urls.push(format!("turns:{host}:{}?transport=tcp", a.port()));
        }
        IceServer {
            urls,
            username: c.username,
            credential: c.password,
        }
    }

    /// Stops the listeners and ends every allocation.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.shared.engine.lock().clear();
        for stop in std::mem::take(&mut *self.udp_stop.lock()) {
            let _ = stop.send(());
        }
    }
}

/// Starts the UDP thread; returns its runtime's handle and the sender that
/// stops it (dropping the runtime closes every socket left on it).
async fn start_udp_thread(
    index: usize,
) -> Result<(tokio::runtime::Handle, oneshot::Sender<()>), TurnError> {
    let (handle_tx, handle_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("turn-udp-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = handle_tx.send(Err(e));
                    return;
                }
            };
            if handle_tx.send(Ok(rt.handle().clone())).is_err() {
                return;
            }
            rt.block_on(async {
                let _ = stop_rx.await;
            });
        })
        .map_err(TurnError::Thread)?;
    match handle_rx.await {
        Ok(Ok(h)) => Ok((h, stop_tx)),
        Ok(Err(e)) => Err(TurnError::Thread(e)),
        Err(_) => Err(TurnError::Thread(std::io::Error::other(
            "the TURN UDP thread ended while starting",
        ))),
    }
}

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, TurnError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |e| TurnError::Bind { addr, source: e };
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    // Bigger buffers ride out bursts from many clients; the kernel caps
    // them at its own maximum.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    UdpSocket::from_std(s.into()).map_err(err)
}

/// Datagrams the listener reads per readiness wake-up before yielding.
const LISTENER_BATCH: usize = 64;

async fn udp_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, local: SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let mut clock = BatchClock::new();
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        // One clock read per batch, as in the relay loop.
        let now = clock.now();
        let mut drained = false;
        for _ in 0..LISTENER_BATCH {
            let (n, from) = match socket.try_recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                // ICMP errors surface here on some systems; they concern one
                // peer, not the listener.
                Err(_) => continue,
            };
            let tuple = FiveTuple {
                client: from,
                server: local,
                transport: Transport::Udp,
            };
            let outcome = {
                let mut binder = Binder {
                    shared: &shared,
                    sink: SinkRef::Udp(&socket, from),
                };
                shared
                    .engine
                    .lock()
                    .handle_client(now, tuple, &buf[..n], &mut binder)
            };
            match outcome {
                ClientOutcome::Reply(b) => {
                    let _ = socket.try_send_to(&b, from);
                }
                ClientOutcome::Relay {
                    relay,
                    peer,
                    payload,
                } => {
                    let _ = relay.0.socket.try_send_to(&buf[payload], peer);
                }
                ClientOutcome::Nothing => {}
            }
        }
        if !drained {
            tokio::task::yield_now().await;
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("TURN accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        match &tls {
            None => {
                let tuple = FiveTuple {
                    client,
                    server: local,
                    transport: Transport::Tcp,
                };
                tokio::spawn(serve_stream(shared, stream, tuple));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    let Ok(Ok(stream)) = handshake.await else {
                        return;
                    };
                    let tuple = FiveTuple {
                        client,
                        server: local,
                        transport: Transport::Tls,
                    };
                    serve_stream(shared, stream, tuple).await;
                });
            }
        }
    }
}

/// A TCP/TLS connection without an allocation is closed after this long
/// without input.
const UNALLOCATED_IDLE: Duration = Duration::from_secs(30);
/// With an allocation, the client must at least refresh it within its
/// lifetime (at most an hour), and relayed data flows the other way, so
/// reads may be idle that long.
const ALLOCATED_IDLE: Duration = Duration::from_secs(3600);

/// Messages queued to a stream client before relayed data is dropped.
const STREAM_QUEUE: usize = 1024;

async fn serve_stream<S>(shared: Arc<Shared>, stream: S, tuple: FiveTuple)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16384];
    'conn: loop {
        // A connection holding no allocation is only worth keeping while it
        // is about to make one.
        let idle = if shared.engine.lock().has_allocation(&tuple) {
            ALLOCATED_IDLE
        } else {
            UNALLOCATED_IDLE
        };
        let n = match tokio::time::timeout(idle, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(len) = stream_record_len(&buf[start..]) {
            if crate::message::classify(&buf[start..]) == crate::message::Framing::Other {
                break 'conn;
            }
            if buf.len() - start < len {
                break;
            }
            let record = &buf[start..start + len];
            let outcome = {
                let mut binder = Binder {
                    shared: &shared,
                    sink: SinkRef::Stream(&tx),
                };
                shared
                    .engine
                    .lock()
                    .handle_client(now(), tuple, record, &mut binder)
            };
            match outcome {
                ClientOutcome::Reply(b) => {
                    if tx.send(b).await.is_err() {
                        break 'conn;
                    }
                }
                ClientOutcome::Relay {
                    relay,
                    peer,
                    payload,
                } => {
                    let _ = relay.0.socket.try_send_to(&record[payload], peer);
                }
                ClientOutcome::Nothing => {}
            }
            start += len;
        }
        buf.drain(..start);
    }
    shared.engine.lock().handle_connection_closed(&tuple);
    drop(tx);
    let _ = writer.await;
}

/// How often the `turns:` certificate files are checked for changes.
const CERTIFICATE_POLL: Duration = Duration::from_secs(10);

/// The `turns:` acceptor and the task that reloads its certificate.
fn tls_acceptor(
    files: &TlsFiles,
) -> Result<(tokio_rustls::TlsAcceptor, JoinHandle<()>), TurnError> {
    let cert = ReloadingCertificate::load(files.clone())?;
    // TURN over TLS has no ALPN name of its own that clients send.
    let config = cert.server_config(&[])?;
    let watch = tokio::spawn(cert.watch("turns", Some(CERTIFICATE_POLL), |_| {}));
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), watch))
}
