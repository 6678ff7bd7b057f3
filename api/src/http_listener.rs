//! The HTTP listener: accepts TCP connections and serves an axum [`Router`]
//! on them with the limits a public listener needs.
//!
//! * **Header timeout** ([`HttpLimits::header_timeout`]): a new connection
//!   must send a complete request head within it, and so must a kept-alive
//!   one once the first byte of its next request has arrived; else it is
//!   closed.
//! * **Idle timeout** ([`HttpLimits::idle_timeout`]): a kept-alive
//!   connection with no request in flight is closed after this long without
//!   the start of a new request.
//! * **Connections per client address** ([`HttpLimits::max_conns_per_ip`];
//!   IPv6 counted per /64, IPv4-mapped addresses as IPv4): beyond it a new
//!   connection is closed at once, before any byte is read, and counted in
//!   `relaycast_http_connections_refused_total`. A connection upgraded to a
//!   WebSocket keeps its place until the socket closes.
//!
//! Neither timer runs while a request is in flight: a blocking LL-HLS
//! playlist reload, a chunked preload-hinted part or a slow handler is
//! bounded by its handler, and an upgraded connection (WebSocket) leaves
//! these timers altogether.
//!
//! hyper's own `http1::Builder::header_read_timeout` is switched off here
//! on purpose: in hyper 1.12 (`proto/h1/conn.rs`, `State::idle`) the timer
//! also starts when a kept-alive connection goes idle, so it would close
//! idle connections after the header timeout, not the idle one, and it
//! cannot tell the two waits apart.
//!
//! **TLS** (`--tls-cert`/`--tls-key`, [`ListenerOptions::tls`]): the
//! handshake happens on the connection's own task, within the header
//! timeout counted from accept, so a client that opens TCP and never
//! finishes (or never starts) the handshake is closed like one that never
//! sends a request head. A connection whose first byte is not a TLS
//! handshake record is refused before rustls sees it: one that starts like
//! a plain HTTP request gets a `400` JSON answer saying the port speaks
//! HTTPS, anything else is closed. Both, failed handshakes and timeouts
//! are counted in `relaycast_http_tls_refused_total{reason}`. ALPN offers
//! `h2` then `http/1.1`: a client that picks `h2` is served HTTP/2, any
//! other HTTP/1.1. On an HTTP/2 connection requests are multiplexed, so
//! after its first request bytes without a request in flight (window
//! updates, pings, a stream's frames) start no header timer; the idle
//! timeout still closes it when no request is in flight. Without TLS,
//! HTTP/1.1 is served, and HTTP/2 with prior knowledge (h2c) as hyper
//! detects it.
//!
//! Handlers see the client address as `ConnectInfo<SocketAddr>`, as with
//! `Router::into_make_service_with_connect_info`: the TCP peer, or behind
//! a trusted proxy the address `X-Forwarded-For` gives (see
//! [`crate::client_addr`]). Shutdown stops accepting,
//! asks every connection to finish its request in flight and close, and
//! drops what is still open after [`HttpLimits::shutdown_grace`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::client_addr::TrustedProxies;

/// Limits of one HTTP listener (`--http-header-timeout`,
/// `--http-idle-timeout`, `--http-max-conns-per-ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to send a complete request head: from accept for the first
    /// request, from its first byte for later ones.
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait, no request in flight, for
    /// the next request to start.
    pub idle_timeout: Duration,
    /// Connections one client address (IPv6: one /64) may hold open.
    pub max_conns_per_ip: usize,
    /// How long shutdown waits for requests in flight before it drops
    /// their connections.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_conns_per_ip: 256,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The listener's Prometheus instruments.
#[derive(Clone)]
pub struct HttpMetrics {
    open: IntGauge,
    refused: IntCounter,
    timed_out: IntCounterVec,
    tls_refused: IntCounterVec,
}

impl HttpMetrics {
    pub fn new(registry: &Registry) -> Result<HttpMetrics, prometheus::Error> {
        let m = HttpMetrics {
            open: IntGauge::new(
                "relaycast_http_connections",
                "Open HTTP connections (upgraded WebSockets included)",
            )?,
            refused: IntCounter::new(
                "relaycast_http_connections_refused_total",
                "HTTP connections closed at accept: their client address already held \
                 --http-max-conns-per-ip",
            )?,
            timed_out: IntCounterVec::new(
                Opts::new(
                    "relaycast_http_connections_timed_out_total",
                    "HTTP connections closed by the listener's timers",
                ),
                &["reason"],
            )?,
            tls_refused: IntCounterVec::new(
                Opts::new(
                    "relaycast_http_tls_refused_total",
                    "HTTPS connections closed before their TLS handshake completed: \
                     plain_http (a plain HTTP request, answered 400), not_tls (other bytes), \
                     handshake (the handshake failed), timeout (not done within the header timeout)",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.tls_refused.clone()))?;
        registry.register(Box::new(m.open.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.timed_out.clone()))?;
        Ok(m)
    }
}

/// The ALPN names an HTTPS listener offers, most preferred first (give
/// them to `ReloadingCertificate::server_config`).
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What a listener is besides its limits.
#[derive(Clone, Default)]
pub struct ListenerOptions {
    /// Every connection is HTTPS (the config should offer [`ALPN`]).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Whose `X-Forwarded-For` names the client (see [`crate::client_addr`]).
    pub trusted_proxies: TrustedProxies,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see
/// the module docs). Returns when every connection is gone.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    options: ListenerOptions,
    metrics: HttpMetrics,
    shutdown: impl Future<Output = ()> + Send,
) {
    let per_ip = Arc::new(PerIp {
        limit: limits.max_conns_per_ip,
        open: Mutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("HTTP connection task panicked: {e}");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let Some(slot) = PerIp::enter(&per_ip, remote.ip()) else {
                        metrics.refused.inc();
                        // Dropped unread: the client sees the close at once.
                        drop(stream);
                        continue;
                    };
                    let open = OpenGuard::new(&metrics.open);
                    conns.spawn(serve_connection(
                        stream,
                        remote,
                        app.clone(),
                        limits,
                        metrics.clone(),
                        stop_rx.clone(),
                        (slot, open),
                        options.clone(),
                    ));
                }
                // The peer gave up between SYN and accept: nothing to do.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Typically EMFILE/ENFILE: accepting again at once would
                    // spin; connections closing meanwhile free descriptors.
                    tracing::error!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async {
        while let Some(done) = conns.join_next().await {
            if let Err(e) = done {
                if e.is_panic() {
                    tracing::error!("HTTP connection task panicked: {e}");
                }
            }
        }
    };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            "HTTP connections still busy after the shutdown grace; closing them"
        );
        conns.shutdown().await;
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Why the listener closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimedOut {
    Header,
    Idle,
}

impl TimedOut {
    fn label(self) -> &'static str {
        match self {
            TimedOut::Header => "header",
            TimedOut::Idle => "idle",
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    limits: HttpLimits,
    metrics: HttpMetrics,
    mut stop: watch::Receiver<bool>,
    places: (IpSlot, OpenGuard),
    options: ListenerOptions,
) {
    let ListenerOptions {
        tls,
        trusted_proxies,
    } = options;
    let accepted = Instant::now();
    // Small request/response exchanges (WHIP, REST) should not wait for
    // Nagle; failing to set it only costs latency.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        let conn = Conn {
            remote,
            trusted_proxies,
            accepted,
            multiplexed: false,
        };
        return serve_http(stream, conn, app, limits, metrics, stop, places).await;
    };
    let handshake = tokio::time::timeout_at(
        accepted + limits.header_timeout,
        tls_handshake(&acceptor, stream, &metrics),
    );
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Some(stream)) => stream,
            Ok(None) => return,
            Err(_) => {
                metrics.tls_refused.with_label_values(&["timeout"]).inc();
                tracing::debug!("closing HTTPS connection: no TLS handshake in time");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    let conn = Conn {
        remote,
        trusted_proxies,
        accepted,
        multiplexed: stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()),
    };
    serve_http(stream, conn, app, limits, metrics, stop, places).await
}

/// A TLS record's first byte when it carries a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain HTTP request on the HTTPS port is told.
const PLAIN_HTTP_BODY: &str = r#"{"error":"this port speaks HTTPS; use https://"}"#;

/// The TLS handshake, or `None` (counted) when the client does not speak
/// TLS or the handshake fails.
async fn tls_handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    mut stream: TcpStream,
    metrics: &HttpMetrics,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1..) => {}
        // Closed before a byte: nothing to refuse.
        Ok(0) | Err(_) => return None,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        // Request methods are upper-case tokens; a plain HTTP client gets
        // told what is wrong, in the API's error shape.
        if first[0].is_ascii_uppercase() {
            metrics.tls_refused.with_label_values(&["plain_http"]).inc();
            tracing::debug!("plain HTTP request on the HTTPS listener: refused");
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_BODY}",
                PLAIN_HTTP_BODY.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_ok() && stream.shutdown().await.is_ok()
            {
                // Closing with the request unread would reset the
                // connection and could discard the answer before the
                // client reads it: read on until the client closes (the
                // caller's timeout bounds this).
                let mut sink = [0u8; 4096];
                let mut left: usize = 64 * 1024;
                while left > 0 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            }
        } else {
            metrics.tls_refused.with_label_values(&["not_tls"]).inc();
            tracing::debug!("bytes that are not TLS on the HTTPS listener: closed");
        }
        return None;
    }
    match acceptor.accept(stream).await {
        Ok(s) => Some(s),
        Err(e) => {
            metrics.tls_refused.with_label_values(&["handshake"]).inc();
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
    }
}

/// What the HTTP layer needs to know of an accepted connection.
struct Conn {
    remote: SocketAddr,
    trusted_proxies: TrustedProxies,
    /// When TCP accepted it: the first request head is due a header
    /// timeout after this, the TLS handshake included.
    accepted: Instant,
    /// HTTP/2 (ALPN `h2`): requests may overlap and control frames flow
    /// between them.
    multiplexed: bool,
}

async fn serve_http<S>(
    stream: S,
    conn: Conn,
    app: Router,
    limits: HttpLimits,
    metrics: HttpMetrics,
    mut stop: watch::Receiver<bool>,
    places: (IpSlot, OpenGuard),
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        remote,
        trusted_proxies,
        accepted,
        multiplexed,
    } = conn;
    let activity = Arc::new(Activity::new(accepted, multiplexed));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
        _places: places,
    });
    let act = Arc::clone(&activity);
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let busy = Busy::begin(&act);
        let mut req = req.map(Body::new);
        let client = trusted_proxies.client_addr(remote, req.headers());
        req.extensions_mut().insert(ConnectInfo(client));
        let app = app.clone();
        async move {
            let response = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // The request stays in flight until hyper drops the response
            // body, i.e. until the last byte of a streamed body is written.
            Ok::<_, Infallible>(response.map(move |body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &busy;
                    frame
                }))
            }))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Our own timers below replace hyper's (see the module docs).
    builder.http1().header_read_timeout(None);
    let mut conn =
        pin!(builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service)));
    let mut stopping = false;
    loop {
        let due = activity.deadline(&limits);
        let sleep = async {
            match due {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!("HTTP connection ended: {e}");
                }
                return;
            }
            () = sleep => {
                if let Some((at, why)) = activity.deadline(&limits) {
                    if at <= Instant::now() {
                        metrics.timed_out.with_label_values(&[why.label()]).inc();
                        tracing::debug!(reason = why.label(), "closing HTTP connection");
                        // No request is in flight (else there is no
                        // deadline): dropping the connection closes the socket.
                        return;
                    }
                }
            }
            () = activity.wake.notified() => {}
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What the timers of one connection look at. Times are milliseconds since
/// `base`. On HTTP/1.1 everything is touched from the connection's own task
/// (hyper polls the service and the body there); HTTP/2 runs each request
/// on a task of its own, which ends a request (and notifies `wake`) from
/// there.
struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Whether a request was ever started on this connection.
    served: AtomicBool,
    /// When the last request in flight finished.
    idle_since: AtomicU64,
    /// When the first byte arrived after `idle_since`; [`NONE`] if none has.
    head_since: AtomicU64,
    /// Woken when the deadline may have moved earlier.
    wake: Notify,
    /// HTTP/2: see [`Activity::on_read`].
    multiplexed: bool,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new(now: Instant, multiplexed: bool) -> Activity {
        Activity {
            multiplexed,
            base: now,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            wake: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_millis()
            .try_into()
            .unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64, plus: Duration) -> Instant {
        self.base + Duration::from_millis(ms) + plus
    }

    /// When the connection is to be closed, and why; `None` while a request
    /// is in flight.
    fn deadline(&self, limits: &HttpLimits) -> Option<(Instant, TimedOut)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_since.load(Ordering::Relaxed);
        if head != NONE {
            return Some((self.at(head, limits.header_timeout), TimedOut::Header));
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        if self.served.load(Ordering::Relaxed) {
            Some((self.at(idle, limits.idle_timeout), TimedOut::Idle))
        } else {
            // A new connection owes its first request head from accept on.
            Some((self.at(idle, limits.header_timeout), TimedOut::Header))
        }
    }

    /// Bytes arrived: with no request in flight they start a request head,
    /// except on an HTTP/2 connection that has had its first request:
    /// there they may be control frames (window updates, pings, settings)
    /// that no request follows, and the idle timer bounds the wait.
    fn on_read(&self) {
        if self.multiplexed && self.served.load(Ordering::Relaxed) {
            return;
        }
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(self.now_ms(), Ordering::Relaxed);
            self.wake.notify_one();
        }
    }
}

/// A request in flight, from its parsed head to its dropped response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Busy {
        activity.served.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            a.idle_since.store(a.now_ms(), Ordering::Relaxed);
            a.head_since.store(NONE, Ordering::Relaxed);
            a.wake.notify_one();
        }
    }
}

/// The TCP (or TLS) stream as hyper sees it: reads are reported to the timers, and
/// it holds the connection's places (per-address slot, open gauge) for as
/// long as the socket lives, through a WebSocket upgrade too.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    _places: (IpSlot, OpenGuard),
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open connections per client address.
struct PerIp {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A place for one more connection from `ip`, or `None` at the limit.
    fn enter(this: &Arc<PerIp>, ip: IpAddr) -> Option<IpSlot> {
        let key = client_key(ip);
        let mut open = this.open.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= this.limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            owner: Arc::clone(this),
            key,
        })
    }
}

/// One connection's place in [`PerIp`]; given back on drop.
struct IpSlot {
    owner: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// One count in `relaycast_http_connections`, for the socket's life.
struct OpenGuard(IntGauge);

impl OpenGuard {
    fn new(gauge: &IntGauge) -> OpenGuard {
        gauge.inc();
        OpenGuard(gauge.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The address a connection is counted under: IPv4-mapped IPv6 as IPv4
/// (a dual-stack listener), other IPv6 by its /64, which one host usually
/// has whole.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_per_host() {
        let v4: IpAddr = "192.0.2.7".parse().expect("valid");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("valid");
        assert_eq!(client_key(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("valid");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("valid");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("valid");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
    }

    #[test]
    fn the_per_address_cap_frees_places_on_drop() {
        let per_ip = Arc::new(PerIp {
            limit: 2,
            open: Mutex::new(HashMap::new()),
        });
        let ip: IpAddr = "198.51.100.1".parse().expect("valid");
        let first = PerIp::enter(&per_ip, ip).expect("under the cap");
        let _second = PerIp::enter(&per_ip, ip).expect("under the cap");
        assert!(PerIp::enter(&per_ip, ip).is_none(), "third is over the cap");
        let elsewhere: IpAddr = "198.51.100.2".parse().expect("valid");
        assert!(PerIp::enter(&per_ip, elsewhere).is_some());
        drop(first);
        assert!(PerIp::enter(&per_ip, ip).is_some(), "a place was freed");
    }

    #[test]
    fn http2_control_frames_between_requests_start_no_header_timer() {
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        };
        let a = Arc::new(Activity::new(Instant::now(), true));
        let base = a.base;
        // The preface and first request head are due like on HTTP/1.1.
        a.on_read();
        assert_eq!(
            a.deadline(&limits).map(|(_, why)| why),
            Some(TimedOut::Header)
        );
        drop(Busy::begin(&a));
        // A window update or ping after the response: still idle.
        a.on_read();
        let (at, why) = a.deadline(&limits).expect("idle");
        assert_eq!(why, TimedOut::Idle);
        assert!(at >= base + limits.idle_timeout);
    }

    #[test]
    fn timers_follow_the_connection_state() {
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        };
        let a = Arc::new(Activity::new(Instant::now(), false));
        let base = a.base;
        assert_eq!(
            a.deadline(&limits),
            Some((base + limits.header_timeout, TimedOut::Header)),
            "a new connection owes a head"
        );
        let busy = Busy::begin(&a);
        assert_eq!(a.deadline(&limits), None, "no timer while in flight");
        a.on_read();
        assert_eq!(a.deadline(&limits), None, "body bytes start no head");
        drop(busy);
        let (at, why) = a.deadline(&limits).expect("idle");
        assert_eq!(why, TimedOut::Idle);
        assert!(at >= base + limits.idle_timeout);
        a.on_read();
        let (at, why) = a.deadline(&limits).expect("reading a head");
        assert_eq!(why, TimedOut::Header);
        assert!(at < base + limits.idle_timeout);
    }
}
