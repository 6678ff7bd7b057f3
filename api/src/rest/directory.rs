//! The viewer site's read side (`/` and `/watch/{stream}`), open to
//! anonymous visitors: what is live (with viewer counts and a thumbnail
//! URL), what is scheduled, what was live lately and its recordings, and
//! for one stream whether the caller may watch it and, if not, what would
//! let them (sign in, buy, subscribe: the checkout hand-off).
//!
//! Everything here is what a stream's public page shows anyway: titles,
//! broadcaster names, visibility, live state and counts. Media stays
//! behind its own doors (WHEP, `media_access`): a thumbnail URL is listed
//! only for streams anyone may watch, and a non-public stream's
//! recordings are listed by run without a way to open them.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use signaling::{StreamInfo, Visibility};

use super::{unix_now, ApiError, MaybePrincipal, Principal, QueryParams, RestState};

/// Streams the catalogue looks at per request.
const CATALOGUE_LIMIT: i64 = 200;
/// Longest search text.
const MAX_SEARCH: usize = 100;
/// Recent (ended) streams listed.
const RECENT: usize = 24;
/// A scheduled start this far in the past still counts as upcoming (a
/// show that starts late).
const SCHEDULE_GRACE_SECS: i64 = 3600;
/// How long a catalogue answer is reused: every open home page asks every
/// 10 s, and an answer looks at up to [`CATALOGUE_LIMIT`] streams and
/// their recordings on disk.
const REUSE: std::time::Duration = std::time::Duration::from_secs(2);
/// Searches remembered at once (beyond, the memory starts over).
const REUSE_CAP: usize = 64;

/// Recent catalogue answers by search text. The catalogue is the same for
/// every caller, so one answer serves all of them for [`REUSE`].
#[derive(Default)]
pub struct Recent(
    parking_lot::Mutex<std::collections::HashMap<String, (std::time::Instant, Value)>>,
);

impl Recent {
    fn get(&self, key: &str, now: std::time::Instant) -> Option<Value> {
        let map = self.0.lock();
        let (at, v) = map.get(key)?;
        (now.duration_since(*at) < REUSE).then(|| v.clone())
    }

    fn put(&self, key: String, now: std::time::Instant, v: Value) {
        let mut map = self.0.lock();
        if map.len() >= REUSE_CAP {
            map.clear();
        }
        map.insert(key, (now, v));
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryQuery {
    /// Text the title or name must contain (any case).
    pub q: Option<String>,
}

/// Anyone may watch it without a credential.
fn is_open(s: &StreamInfo) -> bool {
    s.visibility == Visibility::Public
        && s.allowed_cidrs.is_empty()
        && s.allowed_countries.is_empty()
}

/// A run name is its start in Unix milliseconds, in hex.
fn run_started_ms(run: &str) -> Option<i64> {
    i64::from_str_radix(run, 16).ok()
}

/// The stream's complete recordings, newest first; each with its poster's
/// URL when it has one and anyone may watch the stream.
async fn recordings(state: &RestState, s: &StreamInfo) -> Vec<Value> {
    let Some(base) = state.viewers.hls.as_ref().and_then(|h| h.recordings_dir()) else {
        return Vec::new();
    };
    let mut runs = transcoder::record::recorded_runs(&base, &s.name).await;
    runs.reverse();
    let mut out = Vec::with_capacity(runs.len());
    for r in &runs {
        let poster = is_open(s)
            && tokio::fs::metadata(base.join(&s.name).join(r).join(transcoder::record::POSTER))
                .await
                .is_ok();
        out.push(json!({
            "run": r,
            "started_at_ms": run_started_ms(r),
            "poster": poster.then(|| format!("/vod/{}/{r}/{}", s.name, transcoder::record::POSTER)),
        }));
    }
    out
}

/// A picture of the stream for anyone: the live thumbnail, else the
/// newest recording's poster (streams anyone may watch only).
fn thumbnail(
    state: &RestState,
    s: &StreamInfo,
    live: bool,
    recordings: &[Value],
) -> Option<String> {
    let has = live
        && is_open(s)
        && state
            .viewers
            .hls
            .as_ref()
            .is_some_and(|h| h.has_picture(&s.name));
    if has {
        return Some(format!("/hls/{}/thumbnail.jpg", s.name));
    }
    if live {
        return None;
    }
    recordings
        .first()
        .and_then(|r| r["poster"].as_str())
        .map(str::to_string)
}

/// What a card on the home page shows.
async fn card(
    state: &RestState,
    s: &StreamInfo,
    broadcaster: Option<&str>,
    last: Option<&(i64, Option<i64>)>,
) -> Value {
    let live = state.sfu.is_live(&s.name);
    let recordings = recordings(state, s).await;
    json!({
        "name": s.name,
        "title": s.title,
        "broadcaster": broadcaster,
        "visibility": s.visibility,
        "live": live,
        "viewers": if live { state.viewers.total(&s.name) } else { 0 },
        "thumbnail": thumbnail(state, s, live, &recordings),
        "scheduled_at": s.scheduled_at,
        "last_started_at_ms": last.map(|l| l.0),
        "last_ended_at_ms": last.and_then(|l| l.1),
        "recordings": recordings,
    })
}

/// `GET /api/directory?q=`: `live` (most watched first), `upcoming`
/// (soonest first), `recent` (ended, latest first, with recordings).
pub async fn list(
    State(state): State<RestState>,
    QueryParams(q): QueryParams<DirectoryQuery>,
) -> Result<Response, ApiError> {
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > MAX_SEARCH) {
        return Err(ApiError::Unprocessable(format!(
            "q is at most {MAX_SEARCH} characters"
        )));
    }
    let needle = search.map(str::to_lowercase);
    let key = needle.clone().unwrap_or_default();
    let started = std::time::Instant::now();
    if let Some(v) = state.directory.get(&key, started) {
        return Ok(([(header::CACHE_CONTROL, "no-cache")], Json(v)).into_response());
    }
    let streams = state.store.catalogue(search, CATALOGUE_LIMIT).await?;
    let last = state.store.last_sessions().await?;
    let now = unix_now() as i64;
    let mut live = Vec::new();
    let mut upcoming = Vec::new();
    let mut recent = Vec::new();
    let mut registered = std::collections::HashSet::new();
    for (s, owner) in &streams {
        registered.insert(s.name.clone());
        let c = card(&state, s, owner.as_deref(), last.get(&s.name)).await;
        if c["live"] == true {
            live.push(c);
        } else if s
            .scheduled_at
            .is_some_and(|t| t >= now - SCHEDULE_GRACE_SECS)
        {
            upcoming.push(c);
        } else if last.contains_key(&s.name)
            || c["recordings"].as_array().is_some_and(|r| !r.is_empty())
        {
            recent.push(c);
        }
    }
    // Live without registration (a CLI key or an admin token): public.
    for name in state.sfu.live_streams() {
        if registered.contains(&name) {
            continue;
        }
        if needle
            .as_ref()
            .is_some_and(|n| !name.to_lowercase().contains(n))
        {
            continue;
        }
        if state.store.stream(&name).await?.is_some() {
            continue; // registered, but beyond the catalogue's page
        }
        let s = StreamInfo::unregistered(&name);
        live.push(card(&state, &s, None, last.get(&name)).await);
    }
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    live.sort_by_key(|c| std::cmp::Reverse(n(c, "viewers")));
    upcoming.sort_by_key(|c| n(c, "scheduled_at"));
    let activity = |c: &Value| {
        let rec = c["recordings"][0]["started_at_ms"].as_i64().unwrap_or(0);
        n(c, "last_ended_at_ms")
            .max(n(c, "last_started_at_ms"))
            .max(rec)
    };
    recent.sort_by_key(|c| std::cmp::Reverse(activity(c)));
    recent.truncate(RECENT);
    let body = json!({ "live": live, "upcoming": upcoming, "recent": recent });
    state.directory.put(key, started, body.clone());
    Ok(([(header::CACHE_CONTROL, "no-cache")], Json(body)).into_response())
}

/// Whether `who` may watch `s`, and if not, what would let them.
async fn access(
    state: &RestState,
    s: &StreamInfo,
    who: Option<&Principal>,
) -> Result<Value, ApiError> {
    let (can_watch, needs) = match (s.visibility, who) {
        (Visibility::Public, _) => (true, None),
        (_, None) => (false, Some("sign_in")),
        (Visibility::Authenticated, Some(_)) => (true, None),
        (Visibility::Entitled, Some(p)) => {
            let ok = p.is_admin()
                || s.owner_id.as_deref() == Some(p.subject.as_str())
                || state.store.is_entitled(&p.subject, s).await?;
            if ok {
                (true, None)
            } else {
                (false, Some("purchase"))
            }
        }
    };
    let checkout = match (&state.config.checkout_url, who, needs) {
        (Some(base), Some(p), Some("purchase")) => {
            let back = format!("/watch/{}", s.name);
            let ppv = checkout_url(base, "ppv", &p.subject, ("stream", &s.name), &back);
            let sub = s.owner_id.as_deref().map(|b| {
                checkout_url(
                    base,
                    "subscription",
                    &p.subject,
                    ("broadcaster_id", b),
                    &back,
                )
            });
            json!({ "ppv": ppv, "subscription": sub })
        }
        _ => Value::Null,
    };
    Ok(json!({ "can_watch": can_watch, "needs": needs, "checkout": checkout }))
}

/// The provider's checkout page with what its webhook must send back in
/// the session's metadata.
fn checkout_url(
    base: &url::Url,
    kind: &str,
    user: &str,
    target: (&str, &str),
    back: &str,
) -> String {
    let mut u = base.clone();
    u.query_pairs_mut()
        .append_pair("kind", kind)
        .append_pair("user_id", user)
        .append_pair(target.0, target.1)
        .append_pair("return_to", back);
    u.to_string()
}

/// `GET /api/directory/{stream}`: the stream page's data: state (`live`,
/// `offline`, `ended`), schedule, recent sessions, recordings, and the
/// caller's access.
pub async fn one(
    State(state): State<RestState>,
    MaybePrincipal(who): MaybePrincipal,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if !signaling::valid_stream_name(&name) {
        return Err(ApiError::NotFound("stream"));
    }
    let live = state.sfu.is_live(&name);
    let (s, broadcaster) = match state.store.stream(&name).await? {
        Some(s) => {
            let owner = match &s.owner_id {
                Some(id) => state.store.user(id).await?.map(|u| u.username),
                None => None,
            };
            (s, owner)
        }
        None if live => (StreamInfo::unregistered(&name), None),
        None => return Err(ApiError::NotFound("stream")),
    };
    let sessions = state.store.stream_sessions(&name, 5).await?;
    let now = unix_now() as i64;
    let scheduled = s.scheduled_at.filter(|t| *t >= now - SCHEDULE_GRACE_SECS);
    let page_state = if live {
        "live"
    } else if scheduled.is_none() && sessions.first().is_some_and(|x| x.ended_at_ms.is_some()) {
        "ended"
    } else {
        "offline"
    };
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|x| json!({ "started_at_ms": x.started_at_ms, "ended_at_ms": x.ended_at_ms, "peak_viewers": x.peak_viewers }))
        .collect();
    let recordings = recordings(&state, &s).await;
    let body = json!({
        "name": s.name,
        "title": s.title,
        "broadcaster": broadcaster,
        "broadcaster_id": s.owner_id,
        "visibility": s.visibility,
        "state": page_state,
        "live": live,
        "viewers": if live { state.viewers.total(&name) } else { 0 },
        "thumbnail": thumbnail(&state, &s, live, &recordings),
        "scheduled_at": scheduled,
        "sessions": sessions,
        "recordings": recordings,
        "access": access(&state, &s, who.as_ref()).await?,
    });
    Ok(([(header::CACHE_CONTROL, "no-cache")], Json(body)).into_response())
}

/// What a registered stream's HTML head says about it (the watch page's
/// `<title>` and Open Graph tags); `None` for unknown streams.
pub async fn page_facts(state: &RestState, name: &str) -> Option<PageFacts> {
    let s = state.store.stream(name).await.ok()??;
    let live = state.sfu.is_live(name);
    let broadcaster = match &s.owner_id {
        Some(id) => state
            .store
            .user(id)
            .await
            .ok()
            .flatten()
            .map(|u| u.username),
        None => None,
    };
    let recordings = recordings(state, &s).await;
    Some(PageFacts {
        picture: thumbnail(state, &s, live, &recordings),
        title: s.title,
        broadcaster,
        live,
    })
}

/// What a stream's HTML head says about it.
#[derive(Debug, Clone)]
pub struct PageFacts {
    pub title: String,
    pub broadcaster: Option<String>,
    pub live: bool,
    /// A picture anyone may fetch (path): the live thumbnail, else the
    /// newest recording's poster; none for non-public streams.
    pub picture: Option<String>,
}
