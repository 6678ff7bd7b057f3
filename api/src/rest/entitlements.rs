//! Entitlements by hand (admins, integrators): grant, list, revoke. The
//! payment webhook ([`super::payments`]) makes the same grants.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use signaling::{EntitlementKind, NewEntitlement, Role, Target};

use super::{ApiError, JsonBody, Principal, QueryParams, RestState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub user_id: String,
    pub kind: EntitlementKind,
    /// For `ppv`: the stream.
    #[serde(default)]
    pub stream: Option<String>,
    /// For `subscription`: the broadcaster's user id.
    #[serde(default)]
    pub broadcaster_id: Option<String>,
    /// Unix seconds; none = until revoked.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub external_ref: Option<String>,
}

/// The target an entitlement of `kind` names, or why the body is wrong.
pub fn target_of(
    kind: EntitlementKind,
    stream: Option<String>,
    broadcaster: Option<String>,
) -> Result<Target, &'static str> {
    match (kind, stream, broadcaster) {
        (EntitlementKind::Ppv, Some(s), None) => Ok(Target::Stream(s)),
        (EntitlementKind::Subscription, None, Some(b)) => Ok(Target::Broadcaster(b)),
        (EntitlementKind::Ppv, _, _) => {
            Err("a ppv entitlement names a stream (and no broadcaster_id)")
        }
        (EntitlementKind::Subscription, _, _) => {
            Err("a subscription names a broadcaster_id (and no stream)")
        }
    }
}

/// `POST /api/entitlements` (admin, integrator)
pub async fn grant(
    State(state): State<RestState>,
    who: Principal,
    JsonBody(body): JsonBody<GrantBody>,
) -> Result<Response, ApiError> {
    who.require(&[Role::Admin, Role::Integrator])?;
    let target = target_of(body.kind, body.stream, body.broadcaster_id)
        .map_err(|m| ApiError::Unprocessable(m.into()))?;
    let e = state
        .store
        .grant_entitlement(&NewEntitlement {
            user_id: body.user_id,
            kind: body.kind,
            target,
            external_ref: body.external_ref,
            expires_at: body.expires_at,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(e)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub user_id: Option<String>,
}

/// `GET /api/entitlements`: admins and integrators see all (or one user's
/// with `?user_id=`); everyone else sees their own.
pub async fn list(
    State(state): State<RestState>,
    who: Principal,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = match who.role {
        Role::Admin | Role::Integrator => q.user_id,
        _ => match q.user_id {
            Some(u) if u != who.subject => {
                return Err(ApiError::forbidden("not your entitlements"))
            }
            _ => Some(who.subject.clone()),
        },
    };
    let list = state.store.list_entitlements(user.as_deref()).await?;
    // A subscription names its broadcaster by id; people know the name.
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(list.len());
    for e in &list {
        let mut v = serde_json::to_value(e).map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Some(b) = &e.broadcaster_id {
            if !names.contains_key(b) {
                let name = state.store.user(b).await?.map(|u| u.username);
                names.insert(b.clone(), name);
            }
            v["broadcaster_name"] = json!(names.get(b).cloned().flatten());
        }
        out.push(v);
    }
    Ok(Json(json!({ "entitlements": out })))
}

/// `DELETE /api/entitlements/{id}` (admin, integrator)
pub async fn revoke(
    State(state): State<RestState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(&[Role::Admin, Role::Integrator])?;
    if state.store.revoke_entitlement(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("entitlement"))
    }
}
