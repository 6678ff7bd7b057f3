//! Streams: create/list/get/update/delete (owned by a broadcaster; admins
//! see all, integrators read all), live streams with viewer counts, stream
//! keys (create, rotate, revoke), recorded sessions, and play tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use signaling::access::{normalize_cidrs, normalize_countries};
use signaling::{Claims, NewStream, Role, StreamInfo, StreamUpdate, Visibility};

use super::{unix_now, ApiError, JsonBody, JsonOrEmpty, Principal, QueryParams, RestState};

/// Names that would collide with fixed routes under `/api/streams/`.
const RESERVED: &[&str] = &["live"];

/// A stream as the API shows it: the stored record plus live state.
fn view(state: &RestState, s: &StreamInfo) -> serde_json::Value {
    json!({
        "id": s.name,
        "name": s.name,
        "owner_id": s.owner_id,
        "title": s.title,
        "visibility": s.visibility,
        "allowed_countries": s.allowed_countries,
        "allowed_cidrs": s.allowed_cidrs,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "scheduled_at": s.scheduled_at,
        "live": state.sfu.is_live(&s.name),
        "viewers": state.viewers.total(&s.name),
        "whip_url": format!("/whip/{}", s.name),
        "whep_url": format!("/whep/{}", s.name),
    })
}

/// Loads stream `id` for `who`: 404 if absent; 403 unless the caller owns
/// it or is an admin (and, for reading, an integrator).
async fn load(
    state: &RestState,
    who: &Principal,
    id: &str,
    write: bool,
) -> Result<StreamInfo, ApiError> {
    let s = state
        .store
        .stream(id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let owner = s.owner_id.as_deref() == Some(who.subject.as_str());
    let allowed = owner || who.is_admin() || (!write && who.role == Role::Integrator);
    if allowed {
        Ok(s)
    } else {
        Err(ApiError::forbidden("not your stream"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    #[serde(default)]
    pub allowed_countries: Vec<String>,
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
}

/// `POST /api/streams` (broadcaster, admin)
pub async fn create(
    State(state): State<RestState>,
    who: Principal,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    who.require(&[Role::Broadcaster, Role::Admin])?;
    if RESERVED.contains(&body.name.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "the name {:?} is reserved",
            body.name
        )));
    }
    let owner = state.store.user(&who.subject).await?;
    if owner.is_none() && !who.is_admin() {
        return Err(ApiError::forbidden(
            "the token's subject is not a user account",
        ));
    }
    let s = state
        .store
        .create_stream(
            owner.as_ref().map(|u| u.id.as_str()),
            &NewStream {
                name: body.name,
                title: body.title,
                visibility: body.visibility.unwrap_or(Visibility::Public),
                allowed_countries: body.allowed_countries,
                allowed_cidrs: body.allowed_cidrs,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, &s))).into_response())
}

/// `GET /api/streams`: the caller's streams (admins and integrators: all).
pub async fn list(
    State(state): State<RestState>,
    who: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let owner = match who.role {
        Role::Admin | Role::Integrator => None,
        Role::Broadcaster => Some(who.subject.as_str()),
        _ => return Err(ApiError::forbidden("your role does not allow this")),
    };
    let streams = state.store.list_streams(owner).await?;
    let views: Vec<_> = streams.iter().map(|s| view(&state, s)).collect();
    Ok(Json(json!({ "streams": views })))
}

/// `GET /api/streams/live`: streams being published now, most watched
/// first, with viewer counts (any signed-in caller).
pub async fn live(
    State(state): State<RestState>,
    _who: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut out = Vec::new();
    for name in state.sfu.live_streams() {
        let info = match state.store.stream(&name).await? {
            Some(s) => s,
            None => StreamInfo::unregistered(&name),
        };
        out.push((state.viewers.total(&name), info));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let live: Vec<_> = out
        .iter()
        .map(|(viewers, s)| {
            json!({
                "id": s.name,
                "name": s.name,
                "title": s.title,
                "owner_id": s.owner_id,
                "visibility": s.visibility,
                "viewers": viewers,
                "whep_url": format!("/whep/{}", s.name),
            })
        })
        .collect();
    Ok(Json(json!({ "streams": live })))
}

/// `GET /api/streams/{id}`
pub async fn get_one(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = load(&state, &who, &id, false).await?;
    Ok(Json(view(&state, &s)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub title: Option<String>,
    pub visibility: Option<Visibility>,
    pub allowed_countries: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<String>>,
    /// When the stream is planned to go live (Unix seconds); `null`
    /// clears it.
    #[serde(default, deserialize_with = "present")]
    pub scheduled_at: Option<Option<i64>>,
}

/// A field that is present (even as `null`) is `Some`; absent is `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `PATCH /api/streams/{id}` (owner, admin)
pub async fn update(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    load(&state, &who, &id, true).await?;
    let s = state
        .store
        .update_stream(
            &id,
            &StreamUpdate {
                title: body.title,
                visibility: body.visibility,
                allowed_countries: body.allowed_countries,
                allowed_cidrs: body.allowed_cidrs,
                scheduled_at: body.scheduled_at,
            },
        )
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    Ok(Json(view(&state, &s)))
}

/// `DELETE /api/streams/{id}` (owner, admin): the stream, its keys and
/// entitlements. A live publisher keeps its session until it leaves.
pub async fn delete_one(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    load(&state, &who, &id, true).await?;
    if state.store.delete_stream(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("stream"))
    }
}

/// `POST /api/streams/{id}/keys`: a new key; the secret is shown once.
pub async fn create_key(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    load(&state, &who, &id, true).await?;
    let (info, secret) = state.store.create_stream_key(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": info, "secret": secret })),
    )
        .into_response())
}

/// `GET /api/streams/{id}/keys`
pub async fn list_keys(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    load(&state, &who, &id, true).await?;
    let keys = state.store.list_stream_keys(&id).await?;
    Ok(Json(json!({ "keys": keys })))
}

/// `POST /api/streams/{id}/keys/rotate`: revokes every key, makes one.
pub async fn rotate_keys(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    load(&state, &who, &id, true).await?;
    let (info, secret) = state.store.rotate_stream_keys(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": info, "secret": secret })),
    )
        .into_response())
}

/// `DELETE /api/streams/{id}/keys/{key_id}`
pub async fn revoke_key(
    State(state): State<RestState>,
    who: Principal,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    load(&state, &who, &id, true).await?;
    if state.store.revoke_stream_key(&id, &key_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("stream key"))
    }
}

#[derive(Debug, Deserialize)]
pub struct SessionsQuery {
    pub limit: Option<i64>,
}

/// `GET /api/streams/{id}/sessions`: when the stream was live, its peak
/// viewers and stalls, newest first.
pub async fn sessions(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SessionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    load(&state, &who, &id, false).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::Unprocessable("limit must be 1-500".into()));
    }
    let sessions = state.store.stream_sessions(&id, limit).await?;
    Ok(Json(json!({ "sessions": sessions })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayTokenBody {
    /// Lifetime in seconds (default and maximum: the server's limit).
    pub ttl_secs: Option<u64>,
    /// Admins and integrators mint for this user (default: the caller).
    pub user_id: Option<String>,
    /// Countries (ISO 3166-1 alpha-2) the viewer must be in.
    #[serde(default)]
    pub countries: Vec<String>,
    /// CIDR ranges the viewer's address must be in.
    #[serde(default)]
    pub cidrs: Vec<String>,
}

/// `POST /api/streams/{id}/play-token`: a WHEP token for the stream, after
/// the entitlement check when the stream is `entitled`.
pub async fn play_token(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<PlayTokenBody>,
) -> Result<Response, ApiError> {
    let s = state
        .store
        .stream(&id)
        .await?
        .ok_or(ApiError::NotFound("stream"))?;
    let subject = match body.user_id {
        Some(u) => {
            who.require(&[Role::Admin, Role::Integrator])?;
            if state.store.user(&u).await?.is_none() {
                return Err(ApiError::Unprocessable("unknown user_id".into()));
            }
            u
        }
        None => who.subject.clone(),
    };
    let allowed = match s.visibility {
        Visibility::Public | Visibility::Authenticated => true,
        Visibility::Entitled => {
            who.is_admin()
                || s.owner_id.as_deref() == Some(subject.as_str())
                || state.store.is_entitled(&subject, &s).await?
        }
    };
    if !allowed {
        return Err(ApiError::forbidden("no entitlement to this stream"));
    }
    let max = state.config.max_play_ttl.as_secs();
    let ttl = body.ttl_secs.unwrap_or(max);
    if ttl == 0 || ttl > max {
        return Err(ApiError::Unprocessable(format!("ttl_secs must be 1-{max}")));
    }
    let countries =
        normalize_countries(&body.countries).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let cidrs = normalize_cidrs(&body.cidrs).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let now = unix_now();
    let claims = Claims {
        sub: subject,
        stream: Some(s.name.clone()),
        role: Role::Play,
        iat: now,
        exp: now + ttl,
        jti: format!("{:032x}", rand::random::<u128>()),
        countries,
        cidrs,
    };
    let token = state
        .tokens
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": claims.exp,
            "whep_url": format!("/whep/{}", s.name),
        })),
    )
        .into_response())
}
