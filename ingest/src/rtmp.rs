//! The RTMP listener: a tokio accept loop and one task per connection
//! driving `rml_rtmp`'s handshake and server session (sans-IO: bytes in,
//! bytes to send and events out).
//!
//! A connection may publish one stream: app `live` (`rtmp://HOST/live`),
//! and as the stream key either a stream key alone (the stream is the one
//! the key belongs to: OBS's "Server" + "Stream Key") or
//! `NAME?key=CREDENTIAL` (a stream key or a publish JWT for `NAME`), so
//! `rtmp://HOST/live/KEY` and `rtmp://HOST/live/NAME?key=KEY` both work.
//! Playing over RTMP is refused.
//!
//! RTMPS is the same listener behind a TLS handshake (`RtmpConfig::tls`,
//! the HTTP listener's certificate in relaycast), done within the stall
//! timeout: `rtmps://HOST/live/KEY`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use sfu::{Ingest, SfuError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;

use crate::avc::AvccToAnnexB;
use crate::error::IngestError;
use crate::flv::{self, Audio, Video};
use crate::media_in::{MediaError, MediaIn};
use crate::{IngestContext, Protocol};

const PROTO: Protocol = Protocol::Rtmp;
/// The one RTMP application name served.
const APP: &str = "live";
/// Added to container times so a small negative composition offset at the
/// very start cannot make a media time negative.
const TIME_OFFSET_MS: i64 = 1_000;
const READ_BUFFER: usize = 64 * 1024;

/// Limits of the RTMP listener.
#[derive(Debug, Clone)]
pub struct RtmpConfig {
    /// A connection that sends nothing for this long — during the handshake
    /// and setup, or no media once publishing — is closed.
    pub stall_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// RTMPS: each connection starts with a TLS handshake with this
    /// configuration (a certificate resolver that reloads serves the next
    /// connections the new certificate).
    pub tls: Option<Arc<ServerConfig>>,
}

impl Default for RtmpConfig {
    fn default() -> RtmpConfig {
        RtmpConfig {
            stall_timeout: Duration::from_secs(10),
            max_connections: 256,
            tls: None,
        }
    }
}

/// The running listener; dropping it stops accepting (connections being
/// served finish on their own).
pub struct RtmpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RtmpServer {
    /// Serves RTMP on an already-bound listener.
    pub fn start(
        listener: TcpListener,
        cfg: RtmpConfig,
        ctx: IngestContext,
    ) -> std::io::Result<RtmpServer> {
        let addr = listener.local_addr()?;
        let scheme = if cfg.tls.is_some() { "RTMPS" } else { "RTMP" };
        tracing::info!(%addr, "{scheme} ingest listening");
        let task = tokio::spawn(accept_loop(listener, cfg, ctx));
        Ok(RtmpServer { addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, cfg: RtmpConfig, ctx: IngestContext) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!("RTMP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        ctx.metrics.connection(PROTO);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                "RTMP connection refused: {} connections open",
                cfg.max_connections
            );
            ctx.metrics.drop(PROTO, "limit");
            continue;
        };
        let ctx = ctx.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = socket.set_nodelay(true);
            let tls = cfg.tls.clone();
            let stall = cfg.stall_timeout;
            let mut conn = Connection::new(ctx.clone(), cfg, peer.ip());
            let result = match tls {
                None => conn.run(socket).await,
                Some(tls) => {
                    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(socket);
                    match tokio::time::timeout(stall, accept).await {
                        Ok(Ok(socket)) => conn.run(socket).await,
                        Ok(Err(e)) => Err(ConnError::Handshake(format!("TLS: {e}"))),
                        Err(_) => Err(ConnError::Handshake("TLS handshake timed out".into())),
                    }
                }
            };
            let stream = conn.stream_name();
            match result {
                Ok(()) => tracing::info!(stream, "RTMP publisher finished"),
                Err(e) => {
                    tracing::warn!(stream, reason = e.reason(), "RTMP connection closed: {e}");
                    ctx.metrics.drop(PROTO, e.reason());
                }
            }
            if let Some(media) = conn.media.take() {
                media.end();
                ctx.metrics.publisher_ended(PROTO);
            }
        });
    }
}

/// Why the server closed an RTMP connection: RTMP's own handshake and
/// protocol failures, or a cause every protocol shares.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// Not an RTMP handshake (garbage on the port).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer broke the RTMP protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl From<MediaError> for ConnError {
    fn from(e: MediaError) -> ConnError {
        ConnError::Ingest(e.into())
    }
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> ConnError {
        ConnError::Ingest(e.into())
    }
}

impl ConnError {
    /// The `reason` label of `relaycast_ingest_drops_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnError::Handshake(_) => "handshake",
            ConnError::Protocol(_) => "protocol",
            ConnError::Ingest(e) => e.reason(),
        }
    }
}

fn refused(reason: &'static str, what: impl Into<String>) -> ConnError {
    IngestError::refused(reason, what).into()
}

/// RTMP's 32-bit millisecond timestamps extended past their wrap.
#[derive(Default)]
struct Extend {
    last: Option<(u32, i64)>,
}

impl Extend {
    fn ms(&mut self, raw: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(raw),
            Some((prev, ext)) => ext + i64::from(raw.wrapping_sub(prev) as i32),
        };
        self.last = Some((raw, ext));
        ext
    }
}

struct Connection {
    ctx: IngestContext,
    cfg: RtmpConfig,
    ip: IpAddr,
    media: Option<MediaIn>,
    avc: AvccToAnnexB,
    video_clock: Extend,
    audio_clock: Extend,
    out: Vec<u8>,
}

impl Connection {
    fn new(ctx: IngestContext, cfg: RtmpConfig, ip: IpAddr) -> Connection {
        Connection {
            ctx,
            cfg,
            ip,
            media: None,
            avc: AvccToAnnexB::default(),
            video_clock: Extend::default(),
            audio_clock: Extend::default(),
            out: Vec::new(),
        }
    }

    fn stream_name(&self) -> Option<String> {
        self.media.as_ref().map(|m| m.stream().to_string())
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut socket: S,
    ) -> Result<(), ConnError> {
        let mut buf = vec![0u8; READ_BUFFER];
        let stall = self.cfg.stall_timeout;

        // Handshake.
        let mut handshake = Handshake::new(PeerType::Server);
        let leftover = loop {
            let n = read(&mut socket, &mut buf, stall).await?;
            if n == 0 {
                return Err(ConnError::Handshake("closed during the handshake".into()));
            }
            match handshake.process_bytes(&buf[..n]) {
                Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                    write(&mut socket, &response_bytes, stall).await?;
                }
                Ok(HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                }) => {
                    write(&mut socket, &response_bytes, stall).await?;
                    break remaining_bytes;
                }
                Err(e) => return Err(ConnError::Handshake(e.to_string())),
            }
        };

        let (mut session, results) = ServerSession::new(ServerSessionConfig::new())
            .map_err(|e| ConnError::Protocol(e.to_string()))?;
        self.handle_results(&mut session, results).await?;
        self.flush(&mut socket, stall).await?;
        let results = session
            .handle_input(&leftover)
            .map_err(|e| ConnError::Protocol(e.to_string()))?;
        if self.handle_results(&mut session, results).await? {
            return Ok(());
        }
        self.flush(&mut socket, stall).await?;

        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last_progress = Instant::now();
        loop {
            tokio::select! {
                read = socket.read(&mut buf) => {
                    let n = read?;
                    if n == 0 {
                        // The encoder hung up without unpublishing: as
                        // final as a publish finished.
                        return Ok(());
                    }
                    let publishing = self.media.is_some();
                    let results = session
                        .handle_input(&buf[..n])
                        .map_err(|e| ConnError::Protocol(e.to_string()))?;
                    let (done, media) = self.handle_results_media(&mut session, results).await?;
                    if done {
                        self.flush(&mut socket, stall).await?;
                        return Ok(());
                    }
                    if media || !publishing {
                        last_progress = Instant::now();
                    }
                    self.flush(&mut socket, stall).await?;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if let Some(media) = self.media.as_mut() {
                        media.tick(now)?;
                    }
                    if now.saturating_duration_since(last_progress) >= stall {
                        return Err(IngestError::Stalled(stall).into());
                    }
                }
            }
        }
    }

    async fn flush<S: AsyncWrite + Unpin>(
        &mut self,
        socket: &mut S,
        limit: Duration,
    ) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = write(socket, &self.out, limit).await;
        self.out.clear();
        r
    }

    /// Acts on a batch of session results; true when the publisher
    /// finished.
    async fn handle_results(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<bool, ConnError> {
        Ok(self.handle_results_media(session, results).await?.0)
    }

    /// Like [`Connection::handle_results`]; also says whether media came.
    async fn handle_results_media(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(bool, bool), ConnError> {
        let mut pending = std::collections::VecDeque::from(results);
        let mut media = false;
        while let Some(r) = pending.pop_front() {
            let event = match r {
                ServerSessionResult::OutboundResponse(p) => {
                    self.out.extend_from_slice(&p.bytes);
                    continue;
                }
                ServerSessionResult::RaisedEvent(e) => e,
                ServerSessionResult::UnhandleableMessageReceived(_) => continue,
            };
            match event {
                ServerSessionEvent::ConnectionRequested {
                    request_id,
                    app_name,
                } => {
                    if app_name.trim_matches('/') != APP {
                        let _ = session.reject_request(
                            request_id,
                            "NetConnection.Connect.Rejected",
                            "unknown application",
                        );
                        return Err(refused(
                            "app",
                            format!("application {app_name:?} refused (publish to /{APP})"),
                        ));
                    }
                    pending.extend(accept(session, request_id)?);
                }
                ServerSessionEvent::ReleaseStreamRequested { request_id, .. } => {
                    pending.extend(accept(session, request_id)?);
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    stream_key,
                    ..
                } => {
                    if self.media.is_some() {
                        return Err(ConnError::Protocol(
                            "a second publish on one connection".into(),
                        ));
                    }
                    match claim(&self.ctx, self.ip, &stream_key).await {
                        Ok(ingest) => {
                            tracing::info!(stream = ingest.stream(), "RTMP publisher accepted");
                            self.ctx.metrics.publisher_started(PROTO);
                            self.media = Some(MediaIn::new(ingest));
                            pending.extend(accept(session, request_id)?);
                        }
                        Err(e) => {
                            if let Ok(r) = session.reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                "publish refused",
                            ) {
                                for p in r {
                                    if let ServerSessionResult::OutboundResponse(p) = p {
                                        self.out.extend_from_slice(&p.bytes);
                                    }
                                }
                            }
                            return Err(e);
                        }
                    }
                }
                ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                    let _ = session.reject_request(
                        request_id,
                        "NetStream.Play.Failed",
                        "playing over RTMP is not served",
                    );
                    return Err(refused("play", "playing over RTMP is not served"));
                }
                ServerSessionEvent::PublishStreamFinished { .. } => return Ok((true, media)),
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => {
                    media = true;
                    self.video(&data, timestamp.value)?;
                }
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => {
                    media = true;
                    self.audio(&data, timestamp.value)?;
                }
                _ => {}
            }
        }
        Ok((false, media))
    }

    fn video(&mut self, body: &[u8], raw_ms: u32) -> Result<(), ConnError> {
        let Some(media) = self.media.as_mut() else {
            return Err(ConnError::Protocol("video before publish".into()));
        };
        match flv::parse_video(body).map_err(|e| IngestError::Media(e.to_string()))? {
            Video::AvcConfig(record) => self
                .avc
                .configure(record)
                .map_err(|e| IngestError::Media(e.to_string()).into()),
            Video::AvcFrame {
                composition_ms,
                data,
                ..
            } => {
                let (au, idr) = self
                    .avc
                    .convert(data)
                    .map_err(|e| IngestError::Media(e.to_string()))?;
                let dts = self.video_clock.ms(raw_ms) + TIME_OFFSET_MS;
                let pts = dts + i64::from(composition_ms);
                Ok(media.video(dts, pts, au, idr)?)
            }
            Video::Nothing => Ok(()),
            Video::Enhanced(f) => Err(IngestError::Codec(format!(
                "Enhanced RTMP video {} is not supported: publish H.264 (AVC)",
                flv::fourcc_text(f)
            ))
            .into()),
            Video::OtherCodec(id) => Err(IngestError::Codec(format!(
                "FLV video codec id {id} is not supported: publish H.264 (AVC, id 7)"
            ))
            .into()),
        }
    }

    fn audio(&mut self, body: &[u8], raw_ms: u32) -> Result<(), ConnError> {
        let Some(media) = self.media.as_mut() else {
            return Err(ConnError::Protocol("audio before publish".into()));
        };
        match flv::parse_audio(body).map_err(|e| IngestError::Media(e.to_string()))? {
            Audio::AacConfig(asc) => Ok(media.aac_config(asc)?),
            Audio::AacFrame(frame) => {
                let ms = self.audio_clock.ms(raw_ms) + TIME_OFFSET_MS;
                Ok(media.aac_frame(ms, frame)?)
            }
            Audio::Enhanced(f) => Err(IngestError::Codec(format!(
                "Enhanced RTMP audio {} is not supported: publish AAC",
                flv::fourcc_text(f)
            ))
            .into()),
            Audio::OtherCodec(id) => Err(IngestError::Codec(format!(
                "FLV sound format {id} is not supported: publish AAC (format 10)"
            ))
            .into()),
        }
    }
}

/// Checks the credential in the RTMP stream key and claims the stream.
async fn claim(ctx: &IngestContext, ip: IpAddr, stream_key: &str) -> Result<Ingest, ConnError> {
    let throttle = &ctx.auth_throttle;
    let kind = throttle::AuthKind::Rtmp;
    if throttle.check(Some(ip), kind, Instant::now()).is_err() {
        return Err(refused(
            "throttled",
            "too many failed credentials from this address",
        ));
    }
    let verdict = match stream_key.split_once('?') {
        Some((name, query)) => {
            let cred = query.split('&').find_map(|kv| {
                kv.strip_prefix("key=")
                    .or_else(|| kv.strip_prefix("token="))
            });
            if !signaling::valid_stream_name(name) {
                return Err(refused("auth", "not a stream name"));
            }
            ctx.store
                .authorize_publish(&ctx.tokens, name, cred)
                .await
                .map(|grant| (name.to_string(), grant))
        }
        None => ctx.store.authorize_publish_key(stream_key).await,
    };
    let (stream, grant) = match verdict {
        Ok(v) => v,
        Err(e) => {
            if e.is_bad_credential() {
                throttle.failed(Some(ip), kind, Instant::now());
            }
            return Err(refused("auth", format!("publish refused: {e}")));
        }
    };
    match ctx.sfu.ingest(&stream, &grant.owner()).await {
        Ok(ingest) => Ok(ingest),
        Err(SfuError::StreamBusy) => Err(refused(
            "busy",
            format!("stream {stream} already has a publisher with another credential"),
        )),
        Err(e) => Err(refused("busy", format!("stream {stream}: {e}"))),
    }
}

fn accept(
    session: &mut ServerSession,
    request_id: u32,
) -> Result<Vec<ServerSessionResult>, ConnError> {
    session
        .accept_request(request_id)
        .map_err(|e| ConnError::Protocol(e.to_string()))
}

async fn read<S: AsyncRead + Unpin>(
    socket: &mut S,
    buf: &mut [u8],
    limit: Duration,
) -> Result<usize, ConnError> {
    match tokio::time::timeout(limit, socket.read(buf)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(IngestError::Stalled(limit).into()),
    }
}

async fn write<S: AsyncWrite + Unpin>(
    socket: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), ConnError> {
    match tokio::time::timeout(limit, socket.write_all(bytes)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(IngestError::Stalled(limit).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_extend_past_the_32_bit_wrap() {
        let mut e = Extend::default();
        assert_eq!(e.ms(u32::MAX - 10), i64::from(u32::MAX) - 10);
        assert_eq!(e.ms(5), i64::from(u32::MAX) + 6);
        assert_eq!(
            e.ms(3),
            i64::from(u32::MAX) + 4,
            "a step back stays a step back"
        );
    }
}
