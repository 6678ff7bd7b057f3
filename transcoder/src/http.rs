//! `/hls/…`: the multivariant playlist at a stable URL, and per publisher
//! run (`{run}`) the renditions' media playlists (blocking reload, delta
//! updates, rendition reports, `EXT-X-DATERANGE` integrator events), init
//! segments, segments and parts (the preload-hinted part streamed while it
//! is written).
//!
//! Caching is CDN-shaped: playlists and blocking answers `max-age=1`;
//! init, segments and parts are immutable (a new publisher run gets new
//! URLs). Every answer carries `Access-Control-Allow-Origin: *`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;

use crate::hls::{Hls, StreamEntry};
use crate::record::safe_component;
use crate::stream::StreamPackager;
use crate::track::{PartLookup, Readiness, Track};
use crate::uri_query::UriQuery;

const PLAYLIST: &str = "application/vnd.apple.mpegurl";
const SHORT: &str = "max-age=1";
const THUMBNAIL_CACHE: &str = "max-age=5";
const IMMUTABLE: &str = "max-age=31536000, immutable";

/// The renditions of a stream: the source video, the audio, the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rendition {
    Video,
    Audio,
    Rung(usize),
}

impl Rendition {
    fn parse(s: &str, st: &StreamPackager) -> Option<Rendition> {
        match s {
            "video" => Some(Rendition::Video),
            "audio" => Some(Rendition::Audio),
            name => st
                .rungs()
                .iter()
                .position(|r| r.rung.name == name)
                .map(Rendition::Rung),
        }
    }

    fn name(self, st: &StreamPackager) -> &str {
        match self {
            Rendition::Video => "video",
            Rendition::Audio => "audio",
            Rendition::Rung(i) => st.rungs().get(i).map_or("", |r| r.rung.name.as_str()),
        }
    }

    fn track(self, st: &StreamPackager) -> Option<&Track> {
        match self {
            Rendition::Video => st.video(),
            Rendition::Audio => st.audio(),
            Rendition::Rung(i) => st.rungs().get(i)?.track.as_ref(),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Rendition::Audio => "audio/mp4",
            _ => "video/mp4",
        }
    }

    fn all(st: &StreamPackager) -> Vec<Rendition> {
        let mut v = vec![Rendition::Video, Rendition::Audio];
        v.extend((0..st.rungs().len()).map(Rendition::Rung));
        v
    }

    /// `EXT-X-RENDITION-REPORT`s: every other rendition that has media.
    fn reports(self, st: &StreamPackager) -> Vec<(String, u64, Option<usize>)> {
        Rendition::all(st)
            .into_iter()
            .filter(|r| *r != self)
            .filter_map(|r| {
                let (msn, part) = r.track(st)?.last_msn_part()?;
                Some((format!("../{}/index.m3u8", r.name(st)), msn, part))
            })
            .collect()
    }
}

/// The `/hls` routes.
pub fn router(hls: Hls) -> Router {
    Router::new()
        .route("/hls/{stream}/index.m3u8", get(multivariant))
        .route("/hls/{stream}/{run}/{rendition}/{file}", get(media))
        .route("/hls/{stream}/thumbnail.jpg", get(thumbnail))
        .route("/vod/{stream}", get(vod_list))
        .route("/vod/{stream}/{run}/index.m3u8", get(vod_multivariant))
        .route("/vod/{stream}/{run}/poster.jpg", get(vod_poster))
        .route("/vod/{stream}/{run}/{rendition}/{file}", get(vod_file))
        .with_state(hls)
        .layer(axum::middleware::map_response(cors))
}

async fn cors(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, SHORT)],
        axum::Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

fn ok(content_type: &'static str, cache: &'static str, body: impl Into<Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body.into(),
    )
        .into_response()
}

fn unsupported(codec: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("LL-HLS is available for H.264 streams only; this stream's video is {codec}"),
    )
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such stream or resource")
}

/// A playlist answer, its URIs carrying the edge's query if it gave one.
fn playlist(cache: &'static str, text: String, query: Option<&UriQuery>) -> Response {
    let text = match query {
        Some(q) => q.sign_playlist(&text),
        None => text,
    };
    ok(PLAYLIST, cache, text)
}

type EdgeQuery = Option<Extension<UriQuery>>;

async fn multivariant(
    State(hls): State<Hls>,
    Path(stream): Path<String>,
    query: EdgeQuery,
) -> Response {
    let query = query.map(|Extension(q)| q);
    let Some(entry) = hls.stream(&stream) else {
        return error(StatusCode::NOT_FOUND, "stream is not live");
    };
    let mut changed = entry.subscribe();
    let deadline = tokio::time::Instant::now() + hls.config().timing.block_limit();
    let grace = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        {
            let st = entry.state.lock();
            if let Some(codec) = st.unsupported() {
                return unsupported(codec);
            }
            // The ladder's renditions follow the source within a frame or
            // two; they are listed once they have media (or after a grace).
            let rungs_ready = st
                .rungs()
                .iter()
                .all(|r| r.track.as_ref().is_some_and(Track::has_media));
            // A player starts from here: answer once the source lists a
            // whole segment (hls.js treats a parts-only live playlist as
            // empty and gives up after a few reloads).
            if st.video().is_some_and(Track::has_segment)
                && (rungs_ready || tokio::time::Instant::now() >= grace)
            {
                let prefix = format!("{}/", entry.session);
                return playlist(SHORT, multivariant_text(&prefix, &st, true), query.as_ref());
            }
            if st.is_ended() {
                return error(StatusCode::NOT_FOUND, "stream ended without video");
            }
        }
        if !wait(&mut changed, deadline).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no video keyframe from the publisher yet",
            );
        }
    }
}

/// The multivariant playlist; rendition URIs are `{prefix}{name}/index.m3u8`.
pub(crate) fn multivariant_text(prefix: &str, st: &StreamPackager, with_rungs: bool) -> String {
    let run = prefix;
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n");
    let mut codecs = st
        .params()
        .map(|p| p.codecs())
        .unwrap_or_else(|| "avc1.42e01f".into());
    let bandwidth = st.video().map_or(0, peak_bandwidth) + st.audio().map_or(0, peak_bandwidth);
    let audio_codec = st.audio().and_then(Track::audio_codec);
    let audio = audio_codec.is_some();
    if let Some(ac) = audio_codec {
        codecs.push(',');
        codecs.push_str(ac);
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"{run}audio/index.m3u8\""
        );
    }
    let audio_bw = st.audio().map_or(0, peak_bandwidth);
    let fps = st.frame_rate();
    let variant = |out: &mut String, bw: u64, codecs: &str, size: Option<(u32, u32)>, uri: &str| {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{codecs}\"",
            bw.max(64_000)
        );
        if let Some((w, h)) = size {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = fps {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if audio {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{run}{uri}/index.m3u8");
    };
    variant(
        &mut out,
        bandwidth,
        &codecs,
        st.params().map(|p| (p.width, p.height)),
        "video",
    );
    for r in st.rungs().iter().filter(|_| with_rungs) {
        let (Some(track), Some(params)) = (&r.track, &r.params) else {
            continue;
        };
        if !track.has_media() {
            continue;
        }
        let mut c = params.codecs();
        if let Some(ac) = audio_codec {
            c.push(',');
            c.push_str(ac);
        }
        let bw = peak_bandwidth(track).max(u64::from(r.rung.bitrate)) + audio_bw;
        variant(&mut out, bw, &c, Some((r.width, r.height)), &r.rung.name);
    }
    out
}

/// Bits per second of the richest finished segment (or of what exists
/// so far), with 10 % headroom.
fn peak_bandwidth(t: &Track) -> u64 {
    t.peak_bitrate().map_or(0, |b| (b * 1.1) as u64)
}

/// Waits for a change until `deadline`; false on timeout or when the
/// packager is gone.
async fn wait(
    changed: &mut tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, changed.changed()).await,
        Ok(Ok(()))
    )
}

async fn media(
    State(hls): State<Hls>,
    Path((stream, run, rendition, file)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    edge: EdgeQuery,
    headers: HeaderMap,
) -> Response {
    let edge = edge.map(|Extension(q)| q);
    let Some(entry) = hls.stream(&stream) else {
        return not_found();
    };
    if entry.session != run {
        return not_found();
    }
    let parsed = {
        let st = entry.state.lock();
        match st.unsupported() {
            Some(codec) => Err(unsupported(codec)),
            None => Ok(Rendition::parse(&rendition, &st)),
        }
    };
    let rendition = match parsed {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(r) => return r,
    };
    if file == "index.m3u8" {
        if let Some(Extension(ConnectInfo(addr))) = client {
            let agent = headers
                .get(header::USER_AGENT)
                .map_or(&b""[..], |v| v.as_bytes());
            entry
                .audience
                .note(addr.ip(), agent, std::time::Instant::now());
        }
        return media_playlist(&hls, &entry, rendition, &query, edge.as_ref()).await;
    }
    if file == "init.mp4" {
        let st = entry.state.lock();
        return match rendition.track(&st) {
            Some(t) => ok(rendition.content_type(), IMMUTABLE, t.init()),
            None => not_found(),
        };
    }
    if let Some(msn) = file
        .strip_prefix("seg")
        .and_then(|s| s.strip_suffix(".m4s"))
        .and_then(|s| s.parse::<u64>().ok())
    {
        let st = entry.state.lock();
        return match rendition.track(&st).and_then(|t| t.segment(msn)) {
            Some(b) => ok(rendition.content_type(), IMMUTABLE, b),
            None => not_found(),
        };
    }
    if let Some((msn, part)) = file
        .strip_prefix("part")
        .and_then(|s| s.strip_suffix(".m4s"))
        .and_then(|s| s.split_once('.'))
        .and_then(|(m, p)| Some((m.parse::<u64>().ok()?, p.parse::<usize>().ok()?)))
    {
        return part_response(&hls, entry, rendition, msn, part);
    }
    not_found()
}

/// A numeric directive; `Err` names it when it is not a number.
fn parse_u64(
    query: &HashMap<String, String>,
    key: &'static str,
) -> Result<Option<u64>, &'static str> {
    match query.get(key) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| key),
    }
}

async fn media_playlist(
    hls: &Hls,
    entry: &Arc<StreamEntry>,
    rendition: Rendition,
    query: &HashMap<String, String>,
    edge: Option<&UriQuery>,
) -> Response {
    let (msn, part) = match (parse_u64(query, "_HLS_msn"), parse_u64(query, "_HLS_part")) {
        (Ok(m), Ok(p)) => (m, p),
        (Err(key), _) | (_, Err(key)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{key} must be a non-negative integer"),
            )
        }
    };
    if part.is_some() && msn.is_none() {
        return error(StatusCode::BAD_REQUEST, "_HLS_part requires _HLS_msn");
    }
    // `v2` (skip date ranges too) is answered like `YES`: the playlists do
    // not advertise CAN-SKIP-DATERANGES, so date ranges always stay.
    let skip = match query.get("_HLS_skip").map(String::as_str) {
        None => false,
        Some("YES") | Some("v2") => true,
        Some(_) => return error(StatusCode::BAD_REQUEST, "_HLS_skip must be YES or v2"),
    };
    let mut changed = entry.subscribe();
    let deadline = tokio::time::Instant::now() + hls.config().timing.block_limit();
    loop {
        {
            let st = entry.state.lock();
            let track = rendition.track(&st);
            if track.is_none()
                && (st.is_ended() || (rendition == Rendition::Audio && st.video().is_some()))
            {
                return not_found();
            }
            if let Some(track) = track {
                let ready = if track.is_ended() {
                    // Directives are ignored once the playlist ended.
                    Readiness::Ready
                } else {
                    match msn {
                        Some(m) => track.readiness(m, part),
                        None if track.has_media() => Readiness::Ready,
                        None => Readiness::Wait,
                    }
                };
                match ready {
                    Readiness::TooFarAhead => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "_HLS_msn is more than two segments ahead of the playlist",
                        )
                    }
                    Readiness::Ready => {
                        let reports = rendition.reports(&st);
                        let skip = skip && !track.is_ended();
                        let ranges = st.date_ranges();
                        return playlist(SHORT, track.playlist(skip, &reports, ranges), edge);
                    }
                    Readiness::Wait => {}
                }
            }
        }
        if !wait(&mut changed, deadline).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the requested segment or part did not appear in time",
            );
        }
    }
}

/// A part: whole when complete; the preload-hinted part being written is
/// streamed (chunked) as its CMAF chunks are produced.
fn part_response(
    hls: &Hls,
    entry: Arc<StreamEntry>,
    rendition: Rendition,
    msn: u64,
    index: usize,
) -> Response {
    let first = {
        let st = entry.state.lock();
        match rendition.track(&st) {
            Some(t) => t.part(msn, index, 0),
            None => PartLookup::Missing,
        }
    };
    match first {
        PartLookup::Complete(b) => ok(rendition.content_type(), IMMUTABLE, b),
        PartLookup::Missing => not_found(),
        PartLookup::Open(b) => {
            let limit = hls.config().timing.block_limit();
            let changed = entry.subscribe();
            let sent = b.len();
            let head = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(b) });
            let state = Some((entry, changed, sent));
            let rest = futures_util::stream::unfold(state, move |state| async move {
                let (entry, mut changed, sent) = state?;
                let deadline = tokio::time::Instant::now() + limit;
                loop {
                    let next = {
                        let st = entry.state.lock();
                        match rendition.track(&st) {
                            Some(t) => t.part(msn, index, sent),
                            None => PartLookup::Missing,
                        }
                    };
                    match next {
                        PartLookup::Complete(b) => {
                            return if b.is_empty() {
                                None
                            } else {
                                Some((Ok(b), None))
                            };
                        }
                        PartLookup::Open(b) if !b.is_empty() => {
                            let sent = sent + b.len();
                            return Some((Ok(b), Some((entry, changed, sent))));
                        }
                        PartLookup::Open(_) => {}
                        PartLookup::Missing => return None,
                    }
                    if !wait(&mut changed, deadline).await {
                        return None;
                    }
                }
            });
            use futures_util::StreamExt as _;
            ok(
                rendition.content_type(),
                IMMUTABLE,
                Body::from_stream(head.chain(rest)),
            )
        }
    }
}

/// `GET /vod/{stream}`: the finished recordings of a stream.
/// `GET /hls/{stream}/thumbnail.jpg`: a JPEG of the live stream's latest
/// keyframe ([`crate::thumbnail`]), cacheable for its short life; 404 when
/// the stream is not live, 503 before its first keyframe.
async fn thumbnail(State(hls): State<Hls>, Path(stream): Path<String>) -> Response {
    if hls.stream(&stream).is_none() {
        return not_found();
    }
    match hls.thumbnail(&stream).await {
        Ok(Some(jpeg)) => ok("image/jpeg", THUMBNAIL_CACHE, jpeg),
        Ok(None) => error(StatusCode::SERVICE_UNAVAILABLE, "no picture yet"),
        Err(e) => {
            tracing::debug!("thumbnail of {stream}: {e}");
            error(StatusCode::SERVICE_UNAVAILABLE, "no picture yet")
        }
    }
}

async fn vod_list(State(hls): State<Hls>, Path(stream): Path<String>, edge: EdgeQuery) -> Response {
    let Some(base) = hls.recordings_dir() else {
        return error(StatusCode::NOT_FOUND, "recording is off");
    };
    if !safe_component(&stream) {
        return not_found();
    }
    let runs = crate::record::recorded_runs(&base, &stream).await;
    let list: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let url = format!("/vod/{stream}/{r}/index.m3u8");
            let url = match &edge {
                Some(Extension(q)) => q.apply(&url),
                None => url,
            };
            serde_json::json!({ "run": r, "url": url })
        })
        .collect();
    (
        [(header::CACHE_CONTROL, SHORT)],
        axum::Json(serde_json::json!({ "recordings": list })),
    )
        .into_response()
}

async fn vod_multivariant(
    State(hls): State<Hls>,
    Path((stream, run)): Path<(String, String)>,
    edge: EdgeQuery,
) -> Response {
    let edge = edge.map(|Extension(q)| q);
    vod_read(
        &hls,
        &[&stream, &run],
        "index.m3u8",
        PLAYLIST,
        VOD_PLAYLIST,
        edge.as_ref(),
    )
    .await
}

async fn vod_file(
    State(hls): State<Hls>,
    Path((stream, run, rendition, file)): Path<(String, String, String, String)>,
    edge: EdgeQuery,
) -> Response {
    let edge = edge.map(|Extension(q)| q);
    let content = match rendition.as_str() {
        "video" => "video/mp4",
        "audio" => "audio/mp4",
        _ => return not_found(),
    };
    let (content, cache) = if file == "index.m3u8" {
        (PLAYLIST, VOD_PLAYLIST)
    } else if file == "init.mp4"
        || file
            .strip_prefix("seg")
            .and_then(|s| s.strip_suffix(".m4s"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        (content, IMMUTABLE)
    } else {
        return not_found();
    };
    vod_read(
        &hls,
        &[&stream, &run, &rendition],
        &file,
        content,
        cache,
        edge.as_ref(),
    )
    .await
}

/// A finished recording's playlists do not change, but a CDN should not
/// keep them past a retention sweep for long.
const VOD_PLAYLIST: &str = "max-age=60";

/// `GET /vod/{stream}/{run}/poster.jpg`: a JPEG of the recording's last
/// keyframe, written when it was closed.
async fn vod_poster(
    State(hls): State<Hls>,
    Path((stream, run)): Path<(String, String)>,
) -> Response {
    vod_read(
        &hls,
        &[&stream, &run],
        crate::record::POSTER,
        "image/jpeg",
        IMMUTABLE,
        None,
    )
    .await
}

async fn vod_read(
    hls: &Hls,
    dirs: &[&str],
    file: &str,
    content_type: &'static str,
    cache: &'static str,
    edge: Option<&UriQuery>,
) -> Response {
    let Some(base) = hls.recordings_dir() else {
        return error(StatusCode::NOT_FOUND, "recording is off");
    };
    let [stream, run, rest @ ..] = dirs else {
        return not_found();
    };
    if !dirs.iter().all(|d| safe_component(d)) {
        return not_found();
    }
    let run_dir = base.join(stream).join(run);
    // A run is served once it is complete (its multivariant exists).
    if tokio::fs::metadata(run_dir.join("index.m3u8"))
        .await
        .is_err()
    {
        return not_found();
    }
    let path = rest.iter().fold(run_dir, |p, d| p.join(d));
    match tokio::fs::read(path.join(file)).await {
        Ok(bytes) if content_type == PLAYLIST => match (edge, String::from_utf8(bytes)) {
            (Some(q), Ok(text)) => ok(content_type, cache, q.sign_playlist(&text)),
            (None, Ok(text)) => ok(content_type, cache, text),
            (_, Err(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "unreadable playlist"),
        },
        Ok(bytes) => ok(content_type, cache, bytes),
        Err(_) => not_found(),
    }
}
