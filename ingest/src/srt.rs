//! The SRT listener (`srt-tokio`): encoders call it (caller mode) with a
//! `streamid` naming the stream and its credential, and send MPEG-TS with
//! H.264 and AAC (ADTS).
//!
//! `streamid` forms:
//! - access-control syntax, `#!::r=NAME,m=publish,s=CREDENTIAL` (`s`, the
//!   session id, carries a stream key or a publish JWT for `NAME`; `m` must
//!   be `publish` when given); parsed by the SRT crate;
//! - plain, as RTMP's stream key: `KEY` (a stream key names its stream) or
//!   `NAME?key=CREDENTIAL`.
//!
//! The credential is checked before the connection is accepted: a refused
//! caller gets an SRT rejection (401 unauthorized, 409 busy, 400 bad
//! request, 405 not publishing).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sfu::{Ingest, SfuError};
use srt_tokio::access::{
    AccessControlList, ConnectionMode, RejectReason, ServerRejectReason, StandardAccessControlEntry,
};
use srt_tokio::{ConnectionRequest, SrtListener};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::avc::AnnexBParams;
use crate::error::IngestError;
use crate::media_in::MediaIn;
use crate::ts::{adts_frames, PesKind, TsDemux};
use crate::{IngestContext, Protocol};

const PROTO: Protocol = Protocol::Srt;
/// Added to container times so the first ones are never negative after
/// re-basing (see [`Clock90k`]).
const TIME_OFFSET_MS: i64 = 1_000;

/// Settings of the SRT listener.
#[derive(Debug, Clone)]
pub struct SrtConfig {
    /// Receive latency (SRT's buffer for retransmissions).
    pub latency: Duration,
    /// AES passphrase (10–79 characters) callers must use; `None`: no
    /// encryption.
    pub passphrase: Option<String>,
    /// A publisher that sends nothing for this long is closed.
    pub stall_timeout: Duration,
    /// Connections served at once; more are rejected.
    pub max_connections: usize,
}

impl Default for SrtConfig {
    fn default() -> SrtConfig {
        SrtConfig {
            latency: Duration::from_millis(120),
            passphrase: None,
            stall_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// The running SRT listener; dropping it stops accepting.
pub struct SrtServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SrtServer {
    /// Binds `addr` (UDP) and serves SRT callers.
    pub async fn start(
        addr: SocketAddr,
        cfg: SrtConfig,
        ctx: IngestContext,
    ) -> std::io::Result<SrtServer> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let mut builder = SrtListener::builder().latency(cfg.latency).socket(socket);
        if let Some(p) = &cfg.passphrase {
            if !(10..=79).contains(&p.len()) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the SRT passphrase must have 10 to 79 characters",
                ));
            }
            builder = builder.encryption(16, p.clone());
        }
        let (listener, incoming) = builder.bind(local).await?;
        tracing::info!(addr = %local, "SRT ingest listening");
        let task = tokio::spawn(accept_loop(listener, incoming, cfg, ctx));
        Ok(SrtServer { addr: local, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SrtServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    _listener: SrtListener,
    mut incoming: srt_tokio::SrtIncoming,
    cfg: SrtConfig,
    ctx: IngestContext,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    while let Some(request) = incoming.incoming().next().await {
        ctx.metrics.connection(PROTO);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                "SRT caller rejected: {} connections open",
                cfg.max_connections
            );
            ctx.metrics.drop(PROTO, "limit");
            let _ = request
                .reject(RejectReason::Server(ServerRejectReason::Overload))
                .await;
            continue;
        };
        let (ctx, cfg) = (ctx.clone(), cfg.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (stream, result) = serve(&ctx, &cfg, request).await;
            match result {
                Ok(()) => tracing::info!(stream, "SRT publisher finished"),
                Err(e) => {
                    tracing::warn!(stream, reason = e.reason(), "SRT connection closed: {e}");
                    ctx.metrics.drop(PROTO, e.reason());
                }
            }
        });
    }
}

/// What a `streamid` asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The stream, when named (else the key names it).
    pub name: Option<String>,
    pub credential: String,
}

/// Undoes URL encoding of a `streamid` that arrives encoded (ffmpeg before
/// 6.0 sends the `streamid=` value of its URL as written, so
/// `#!::r=…` has to be written `%23%21%3A%3Ar%3D…` there).
fn percent_decoded(sid: &str) -> String {
    if !sid.starts_with("%23") {
        return sid.to_string();
    }
    let b = sid.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a `streamid` (see the module documentation).
pub fn parse_stream_id(sid: &str) -> Result<Wanted, (&'static str, String)> {
    let sid = &percent_decoded(sid);
    if sid.starts_with("#!::") {
        let acl: AccessControlList = sid
            .parse()
            .map_err(|e| ("protocol", format!("stream id: {e:?}")))?;
        let (mut name, mut credential) = (None, None);
        for entry in acl.0 {
            match StandardAccessControlEntry::try_from(entry) {
                Ok(StandardAccessControlEntry::ResourceName(r)) => name = Some(r),
                Ok(StandardAccessControlEntry::SessionId(s)) => credential = Some(s),
                Ok(StandardAccessControlEntry::Mode(m)) if m != ConnectionMode::Publish => {
                    return Err(("mode", "only m=publish is served over SRT".into()));
                }
                _ => {}
            }
        }
        let credential =
            credential.ok_or(("auth", "no credential (s=) in the stream id".into()))?;
        return Ok(Wanted { name, credential });
    }
    match sid.split_once('?') {
        Some((name, query)) => {
            let credential = query
                .split('&')
                .find_map(|kv| {
                    kv.strip_prefix("key=")
                        .or_else(|| kv.strip_prefix("token="))
                })
                .ok_or(("auth", "no key= in the stream id".to_string()))?;
            Ok(Wanted {
                name: Some(name.to_string()),
                credential: credential.to_string(),
            })
        }
        None if sid.is_empty() => Err(("auth", "no stream id".into())),
        None => Ok(Wanted {
            name: None,
            credential: sid.to_string(),
        }),
    }
}

async fn authorize(
    ctx: &IngestContext,
    ip: IpAddr,
    wanted: &Wanted,
) -> Result<Ingest, IngestError> {
    let refused = IngestError::refused;
    let throttle = &ctx.auth_throttle;
    let kind = throttle::AuthKind::Rtmp;
    if throttle.check(Some(ip), kind, Instant::now()).is_err() {
        return Err(refused(
            "throttled",
            "too many failed credentials from this address".into(),
        ));
    }
    let verdict = match &wanted.name {
        Some(name) => {
            if !signaling::valid_stream_name(name) {
                return Err(refused("auth", "not a stream name".into()));
            }
            ctx.store
                .authorize_publish(&ctx.tokens, name, Some(&wanted.credential))
                .await
                .map(|g| (name.clone(), g))
        }
        None => ctx.store.authorize_publish_key(&wanted.credential).await,
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
        Ok(i) => Ok(i),
        Err(SfuError::StreamBusy) => Err(refused(
            "busy",
            format!("stream {stream} already has a publisher with another credential"),
        )),
        Err(e) => Err(refused("busy", format!("stream {stream}: {e}"))),
    }
}

fn reject_reason(e: &IngestError) -> ServerRejectReason {
    match e.reason() {
        "busy" => ServerRejectReason::Conflict,
        "mode" => ServerRejectReason::BadMode,
        "protocol" => ServerRejectReason::BadRequest,
        "throttled" => ServerRejectReason::Overload,
        _ => ServerRejectReason::Unauthorized,
    }
}

/// Serves one caller; returns the stream name (if it got that far) and how
/// it ended.
async fn serve(
    ctx: &IngestContext,
    cfg: &SrtConfig,
    request: ConnectionRequest,
) -> (Option<String>, Result<(), IngestError>) {
    let sid = request
        .stream_id()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let ip = request.remote().ip();
    tracing::debug!(stream_id = %sid, "SRT connection request");
    let claimed = match parse_stream_id(&sid) {
        Ok(wanted) => authorize(ctx, ip, &wanted).await,
        Err((reason, what)) => Err(IngestError::Refused { reason, what }),
    };
    let ingest = match claimed {
        Ok(i) => i,
        Err(e) => {
            let _ = request
                .reject(RejectReason::Server(reject_reason(&e)))
                .await;
            return (None, Err(e));
        }
    };
    let stream = ingest.stream().to_string();
    let socket = match request.accept(None).await {
        Ok(s) => s,
        Err(e) => return (Some(stream), Err(IngestError::Io(e))),
    };
    tracing::info!(stream, "SRT publisher accepted");
    ctx.metrics.publisher_started(PROTO);
    let mut media = MediaIn::new(ingest);
    let result = receive(cfg, socket, &mut media).await;
    media.end();
    ctx.metrics.publisher_ended(PROTO);
    (Some(stream), result)
}

/// MPEG-TS 90 kHz timestamps (33 bits) to container milliseconds,
/// extended past the wrap and re-based to the first one.
#[derive(Default)]
struct Clock90k {
    first: Option<u64>,
    last: Option<(u64, i64)>,
}

impl Clock90k {
    fn ms(&mut self, ts: u64) -> i64 {
        const WRAP: i64 = 1 << 33;
        let ext = match self.last {
            None => ts as i64,
            Some((prev, ext)) => {
                let mut d = ts as i64 - prev as i64;
                if d > WRAP / 2 {
                    d -= WRAP;
                } else if d < -WRAP / 2 {
                    d += WRAP;
                }
                ext + d
            }
        };
        self.last = Some((ts, ext));
        let first = *self.first.get_or_insert(ext as u64) as i64;
        (ext - first) / 90 + TIME_OFFSET_MS
    }
}

async fn receive(
    cfg: &SrtConfig,
    mut socket: srt_tokio::SrtSocket,
    media: &mut MediaIn,
) -> Result<(), IngestError> {
    let mut demux = TsDemux::default();
    let mut params = AnnexBParams::default();
    let mut clock = Clock90k::default();
    let mut asc: Option<[u8; 2]> = None;
    let mut pes = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_media = Instant::now();
    loop {
        tokio::select! {
            next = socket.next() => {
                let Some(next) = next else {
                    return Ok(());
                };
                let (_, bytes) = next?;
                demux.push(&bytes, &mut pes);
                for p in pes.drain(..) {
                    match p.kind {
                        PesKind::H264 => {
                            let dts = clock.ms(p.dts);
                            let pts = dts + (p.pts as i64 - p.dts as i64) / 90;
                            let (au, idr) = params.fix(p.data);
                            media.video(dts, pts, au, idr)?;
                        }
                        PesKind::Adts => {
                            let start = clock.ms(p.pts);
                            let frames = adts_frames(&p.data).map_err(|left| {
                                IngestError::Media(format!("{left} bytes of ADTS do not parse"))
                            })?;
                            for (i, f) in frames.iter().enumerate() {
                                if asc != Some(f.asc) {
                                    media.aac_config(&f.asc)?;
                                    asc = Some(f.asc);
                                }
                                let ms = start + (i as i64 * 1024 * 1000) / i64::from(f.rate);
                                media.aac_frame(ms, f.raw)?;
                            }
                        }
                        PesKind::Other(t) => {
                            return Err(IngestError::Codec(format!(
                                "MPEG-TS stream type 0x{t:02x} is not supported: publish H.264 (0x1b) and AAC in ADTS (0x0f)"
                            )));
                        }
                    }
                    last_media = Instant::now();
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                media.tick(now)?;
                if now.saturating_duration_since(last_media) >= cfg.stall_timeout {
                    return Err(IngestError::Stalled(cfg.stall_timeout));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_in_both_forms() {
        assert_eq!(
            parse_stream_id("#!::r=show,m=publish,s=rk_1"),
            Ok(Wanted {
                name: Some("show".into()),
                credential: "rk_1".into()
            })
        );
        assert_eq!(
            parse_stream_id("#!::m=request,r=show,s=rk_1").map_err(|e| e.0),
            Err("mode")
        );
        assert_eq!(parse_stream_id("#!::r=show").map_err(|e| e.0), Err("auth"));
        assert_eq!(
            parse_stream_id("rk_1"),
            Ok(Wanted {
                name: None,
                credential: "rk_1".into()
            })
        );
        assert_eq!(
            parse_stream_id("show?key=rk_1"),
            Ok(Wanted {
                name: Some("show".into()),
                credential: "rk_1".into()
            })
        );
        assert_eq!(
            parse_stream_id("%23%21%3A%3Ar%3Dshow%2Cm%3Dpublish%2Cs%3Drk_1"),
            parse_stream_id("#!::r=show,m=publish,s=rk_1")
        );
        assert!(parse_stream_id("").is_err());
        assert!(parse_stream_id("show?x=1").is_err());
    }

    #[test]
    fn ts_times_rebase_and_wrap() {
        let mut c = Clock90k::default();
        let near_wrap = (1u64 << 33) - 9_000;
        assert_eq!(c.ms(near_wrap), TIME_OFFSET_MS);
        assert_eq!(c.ms(9_000), TIME_OFFSET_MS + 200);
    }
}
