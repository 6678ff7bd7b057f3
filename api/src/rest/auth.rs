//! Accounts and credentials: register, login (rate limited), logout and
//! administrative revocation (the JWT deny-list), integrator API keys.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use signaling::{Role, User};

use super::{unix_now, ApiError, ClientIp, JsonBody, MaybePrincipal, Principal, RestState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    pub username: String,
    pub password: String,
    /// viewer (default) or broadcaster; admin and integrator accounts are
    /// made by an admin.
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

/// A session token for `user`, with its expiry.
fn session(state: &RestState, user: &User) -> Result<serde_json::Value, ApiError> {
    let now = unix_now();
    let ttl = state.config.session_ttl.as_secs();
    let token = state
        .tokens
        .issue(&user.id, None, user.role, now, ttl)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_at": now + ttl,
        "user": user,
    }))
}

/// `POST /api/auth/register`
pub async fn register(
    State(state): State<RestState>,
    MaybePrincipal(caller): MaybePrincipal,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response, ApiError> {
    let role = match body.role.as_deref() {
        None => Role::Viewer,
        Some(r) => r
            .parse::<Role>()
            .ok()
            .filter(|r| r.is_account())
            .ok_or_else(|| {
                ApiError::Unprocessable(
                    "role must be viewer, broadcaster, admin or integrator".into(),
                )
            })?,
    };
    if matches!(role, Role::Admin | Role::Integrator)
        && !caller.as_ref().is_some_and(Principal::is_admin)
    {
        return Err(ApiError::forbidden(
            "only an admin can create admin and integrator accounts",
        ));
    }
    let user = state
        .store
        .create_user(&body.username, &body.password, role)
        .await?;
    Ok((StatusCode::CREATED, Json(session(&state, &user)?)).into_response())
}

/// `POST /api/auth/login`
pub async fn login(
    State(state): State<RestState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let account = body.username.to_ascii_lowercase();
    state
        .limiter
        .attempt(&account, ip, Instant::now())
        .map_err(ApiError::TooManyRequests)?;
    match state
        .store
        .check_password(&body.username, &body.password)
        .await?
    {
        Some(user) => {
            state.limiter.succeeded(&account);
            Ok(Json(session(&state, &user)?))
        }
        None => {
            state.limiter.failed(&account, Instant::now());
            Err(ApiError::InvalidToken("invalid username or password"))
        }
    }
}

/// `POST /api/auth/logout`: the calling token stops working.
pub async fn logout(
    State(state): State<RestState>,
    who: Principal,
) -> Result<StatusCode, ApiError> {
    let Some((jti, exp)) = who.token else {
        return Err(ApiError::Unprocessable(
            "an API key is revoked with DELETE /api/api-keys/{id}, not logged out".into(),
        ));
    };
    state.store.revoke_token(&jti, exp as i64).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/auth/me`
pub async fn me(
    State(state): State<RestState>,
    who: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = state.store.user(&who.subject).await?;
    Ok(Json(json!({
        "id": who.subject,
        "role": who.role,
        "username": user.map(|u| u.username),
        "authenticated_by": if who.api_key.is_some() { "api_key" } else { "token" },
        "expires_at": who.token.map(|(_, exp)| exp),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A token to revoke (its id is put on the deny-list until it expires).
    #[serde(default)]
    pub token: Option<String>,
    /// Or a token id (`jti`), kept on the deny-list for a year.
    #[serde(default)]
    pub jti: Option<String>,
}

/// How long a bare `jti` stays on the deny-list (its expiry is unknown).
const JTI_DENY_SECS: u64 = 366 * 24 * 3600;

/// `POST /api/auth/revoke` (admin)
pub async fn revoke(
    State(state): State<RestState>,
    who: Principal,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<StatusCode, ApiError> {
    who.require(&[Role::Admin])?;
    let (jti, exp) = match (body.token, body.jti) {
        (Some(t), None) => match state.tokens.verify(&t) {
            Ok(c) => (c.jti, c.exp),
            // Already dead: nothing to deny.
            Err(signaling::TokenError::Expired) => return Ok(StatusCode::NO_CONTENT),
            Err(_) => {
                return Err(ApiError::Unprocessable(
                    "not a token signed by this server".into(),
                ))
            }
        },
        (None, Some(j)) if !j.is_empty() && j.len() <= 128 => (j, unix_now() + JTI_DENY_SECS),
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of \"token\" or \"jti\"".into(),
            ))
        }
    };
    state.store.revoke_token(&jti, exp as i64).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyBody {
    pub name: String,
}

/// A stored user behind the principal (API keys and streams belong to one).
async fn stored_user(state: &RestState, who: &Principal) -> Result<User, ApiError> {
    state
        .store
        .user(&who.subject)
        .await?
        .ok_or(ApiError::forbidden(
            "the token's subject is not a user account",
        ))
}

/// `POST /api/api-keys` (integrator, admin)
pub async fn create_api_key(
    State(state): State<RestState>,
    who: Principal,
    JsonBody(body): JsonBody<ApiKeyBody>,
) -> Result<Response, ApiError> {
    who.require(&[Role::Integrator, Role::Admin])?;
    let user = stored_user(&state, &who).await?;
    let (info, secret) = state.store.create_api_key(&user.id, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": info, "secret": secret })),
    )
        .into_response())
}

/// `GET /api/api-keys`: the caller's keys.
pub async fn list_api_keys(
    State(state): State<RestState>,
    who: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.require(&[Role::Integrator, Role::Admin])?;
    let keys = state.store.list_api_keys(&who.subject).await?;
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /api/api-keys/{id}`
pub async fn revoke_api_key(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(&[Role::Integrator, Role::Admin])?;
    if state.store.revoke_api_key(&who.subject, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("API key"))
    }
}
