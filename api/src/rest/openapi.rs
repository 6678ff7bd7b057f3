//! The OpenAPI 3.1 document served at `GET /api/openapi.json`.
//!
//! Written out here rather than derived (`utoipa`) because the handlers
//! answer `serde_json::Value` views and the document is small; a test
//! checks that its operations are exactly [`super::ROUTES`], so a route
//! added without documentation (or the reverse) fails the build's tests.

use axum::Json;
use serde_json::{json, Map, Value};

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    /// Bearer required (`None`: no authentication; `Some(false)`: optional).
    auth: Option<bool>,
    body: Option<Value>,
    ok: (u16, &'static str, Option<Value>),
    errors: &'static [u16],
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn list_of(field: &str, item: &str) -> Value {
    json!({ "type": "object", "properties": { field: { "type": "array", "items": schema(item) } } })
}

fn ops() -> Vec<Op> {
    let key_created = json!({ "type": "object", "properties": {
        "key": schema("StreamKey"), "secret": { "type": "string", "description": "shown once" } } });
    vec![
        Op { method: "post", path: "/api/auth/register", summary: "Create an account (viewer or broadcaster; admin and integrator accounts need an admin's token) and get a session token", tag: "auth", auth: Some(false),
             body: Some(schema("RegisterRequest")), ok: (201, "Account created", Some(schema("Session"))), errors: &[400, 401, 403, 409, 413, 415, 422] },
        Op { method: "post", path: "/api/auth/login", summary: "Exchange username and password for a session token (rate limited per account and per address)", tag: "auth", auth: None,
             body: Some(schema("LoginRequest")), ok: (200, "Logged in", Some(schema("Session"))), errors: &[400, 401, 413, 415, 422, 429] },
        Op { method: "post", path: "/api/auth/logout", summary: "Revoke the calling token", tag: "auth", auth: Some(true),
             body: None, ok: (204, "Revoked", None), errors: &[401, 422] },
        Op { method: "get", path: "/api/auth/me", summary: "Who the bearer is", tag: "auth", auth: Some(true),
             body: None, ok: (200, "The caller", Some(json!({ "type": "object" }))), errors: &[401, 403] },
        Op { method: "post", path: "/api/auth/revoke", summary: "Revoke any token by value or by id (admin)", tag: "auth", auth: Some(true),
             body: Some(schema("RevokeRequest")), ok: (204, "Revoked", None), errors: &[400, 401, 403, 422] },
        Op { method: "post", path: "/api/api-keys", summary: "Create an API key, usable as a bearer credential (integrator, admin)", tag: "auth", auth: Some(true),
             body: Some(json!({ "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } })),
             ok: (201, "Key created", Some(json!({ "type": "object", "properties": { "key": schema("ApiKey"), "secret": { "type": "string", "description": "shown once" } } }))), errors: &[401, 403, 422] },
        Op { method: "get", path: "/api/api-keys", summary: "The caller's API keys", tag: "auth", auth: Some(true),
             body: None, ok: (200, "Keys", Some(list_of("keys", "ApiKey"))), errors: &[401, 403] },
        Op { method: "delete", path: "/api/api-keys/{id}", summary: "Revoke one of the caller's API keys", tag: "auth", auth: Some(true),
             body: None, ok: (204, "Revoked", None), errors: &[401, 403, 404] },
        Op { method: "post", path: "/api/streams", summary: "Create a stream owned by the caller (broadcaster, admin)", tag: "streams", auth: Some(true),
             body: Some(schema("StreamCreate")), ok: (201, "Created", Some(schema("Stream"))), errors: &[400, 401, 403, 409, 413, 415, 422] },
        Op { method: "get", path: "/api/streams", summary: "The caller's streams (admins and integrators: all)", tag: "streams", auth: Some(true),
             body: None, ok: (200, "Streams", Some(list_of("streams", "Stream"))), errors: &[401, 403] },
        Op { method: "get", path: "/api/streams/live", summary: "Streams live now, with viewer counts", tag: "streams", auth: Some(true),
             body: None, ok: (200, "Live streams", Some(list_of("streams", "LiveStream"))), errors: &[401] },
        Op { method: "get", path: "/api/streams/{id}", summary: "One stream (owner, admin, integrator)", tag: "streams", auth: Some(true),
             body: None, ok: (200, "The stream", Some(schema("Stream"))), errors: &[401, 403, 404] },
        Op { method: "patch", path: "/api/streams/{id}", summary: "Change title, visibility, address rules or the scheduled start (owner, admin)", tag: "streams", auth: Some(true),
             body: Some(schema("StreamUpdate")), ok: (200, "Updated", Some(schema("Stream"))), errors: &[400, 401, 403, 404, 413, 415, 422] },
        Op { method: "delete", path: "/api/streams/{id}", summary: "Delete a stream with its keys and entitlements (owner, admin)", tag: "streams", auth: Some(true),
             body: None, ok: (204, "Deleted", None), errors: &[401, 403, 404] },
        Op { method: "post", path: "/api/streams/{id}/keys", summary: "A new stream key (WHIP bearer)", tag: "keys", auth: Some(true),
             body: None, ok: (201, "Key created", Some(key_created.clone())), errors: &[401, 403, 404] },
        Op { method: "get", path: "/api/streams/{id}/keys", summary: "The stream's keys (without secrets)", tag: "keys", auth: Some(true),
             body: None, ok: (200, "Keys", Some(list_of("keys", "StreamKey"))), errors: &[401, 403, 404] },
        Op { method: "post", path: "/api/streams/{id}/keys/rotate", summary: "Revoke every key of the stream and create one", tag: "keys", auth: Some(true),
             body: None, ok: (201, "Key created", Some(key_created)), errors: &[401, 403, 404] },
        Op { method: "delete", path: "/api/streams/{id}/keys/{key_id}", summary: "Revoke one stream key", tag: "keys", auth: Some(true),
             body: None, ok: (204, "Revoked", None), errors: &[401, 403, 404] },
        Op { method: "get", path: "/api/streams/{id}/sessions", summary: "When the stream was live: start, end, peak viewers, stalls", tag: "streams", auth: Some(true),
             body: None, ok: (200, "Sessions", Some(list_of("sessions", "StreamSession"))), errors: &[401, 403, 404, 422] },
        Op { method: "post", path: "/api/streams/{id}/play-token", summary: "A WHEP play token for the stream (entitlement checked for entitled streams)", tag: "streams", auth: Some(true),
             body: Some(schema("PlayTokenRequest")), ok: (201, "Token", Some(schema("PlayToken"))), errors: &[400, 401, 403, 404, 415, 422] },
        Op { method: "post", path: "/api/entitlements", summary: "Grant a subscription or pay-per-view (admin, integrator)", tag: "entitlements", auth: Some(true),
             body: Some(schema("EntitlementGrant")), ok: (201, "Granted", Some(schema("Entitlement"))), errors: &[400, 401, 403, 415, 422] },
        Op { method: "get", path: "/api/entitlements", summary: "Entitlements (admins and integrators: all or ?user_id=; others: their own)", tag: "entitlements", auth: Some(true),
             body: None, ok: (200, "Entitlements", Some(list_of("entitlements", "Entitlement"))), errors: &[401, 403] },
        Op { method: "delete", path: "/api/entitlements/{id}", summary: "Revoke an entitlement (admin, integrator)", tag: "entitlements", auth: Some(true),
             body: None, ok: (204, "Revoked", None), errors: &[401, 403, 404] },
        Op { method: "post", path: "/api/payments/webhook", summary: "Payment-provider events (Stripe-Signature: t=…,v1=HMAC-SHA256 over \"{t}.{body}\", 5 min tolerance)", tag: "payments", auth: None,
             body: Some(json!({ "type": "object", "description": "A Stripe-style event: id, type, data.object (metadata.user_id, metadata.stream or metadata.broadcaster_id)" })),
             ok: (200, "Received", Some(json!({ "type": "object" }))), errors: &[400, 413, 422, 503] },
        Op { method: "get", path: "/api/streams/{id}/ws", summary: "WebSocket (upgrade): chat, moderation, viewer counts, stream status and integrator events as JSON messages; token (header or ?token=) optional for reading public streams, required for chatting", tag: "realtime", auth: Some(false),
             body: None, ok: (101, "Switching Protocols", None), errors: &[401, 403, 404] },
        Op { method: "post", path: "/api/streams/{id}/events", summary: "Post an integrator event (JSON, at most 4 KiB; Idempotency-Key: same key and body give the first event with 200, another body 409) (integrator, admin)", tag: "realtime", auth: Some(true),
             body: Some(json!({ "type": "object", "description": "any JSON value, delivered as the event's payload" })), ok: (201, "Event accepted", Some(schema("IntegratorEvent"))), errors: &[400, 401, 403, 404, 409, 413, 415] },
        Op { method: "post", path: "/api/webhooks", summary: "Register a webhook endpoint for a stream (its owner's account, admin; stream tokens get 403); the URL must reach public addresses only (422 otherwise, unless the server runs with --webhook-allow-private); the signing secret is shown once", tag: "webhooks", auth: Some(true),
             body: Some(schema("WebhookCreate")), ok: (201, "Registered", Some(schema("Webhook"))), errors: &[400, 401, 403, 409, 413, 415, 422] },
        Op { method: "get", path: "/api/webhooks", summary: "The webhook endpoints of the caller's streams (broadcaster; admin: all)", tag: "webhooks", auth: Some(true),
             body: None, ok: (200, "Endpoints", Some(list_of("webhooks", "Webhook"))), errors: &[401, 403] },
        Op { method: "get", path: "/api/webhooks/{id}", summary: "One webhook endpoint (the stream's owner, admin)", tag: "webhooks", auth: Some(true),
             body: None, ok: (200, "The endpoint", Some(schema("Webhook"))), errors: &[401, 403, 404] },
        Op { method: "delete", path: "/api/webhooks/{id}", summary: "Remove a webhook endpoint and its delivery log (the stream's owner, admin)", tag: "webhooks", auth: Some(true),
             body: None, ok: (204, "Removed", None), errors: &[401, 403, 404] },
        Op { method: "get", path: "/api/webhooks/{id}/deliveries", summary: "Delivery attempts, newest first: outcome, the receiver's HTTP status when it answered, else a coarse reason (the stream's owner, admin)", tag: "webhooks", auth: Some(true),
             body: None, ok: (200, "Attempts", Some(list_of("deliveries", "WebhookDelivery"))), errors: &[401, 403, 404] },
        Op { method: "post", path: "/api/qoe", summary: "A player's QoE beacon (startup, rebuffering, watch time, exit before start); validated, 30 per minute per address", tag: "analytics", auth: None,
             body: Some(schema("QoeBeacon")), ok: (202, "Accepted", None), errors: &[400, 413, 415, 429] },
        Op { method: "get", path: "/api/streams/{id}/stats", summary: "Viewer sessions, QoE and health of the last 24 hours (owner, publish token, integrator, admin)", tag: "analytics", auth: Some(true),
             body: None, ok: (200, "Summary", Some(schema("StreamStats"))), errors: &[401, 403, 404] },
        Op { method: "get", path: "/api/directory", summary: "The viewer site's catalogue, open to anonymous callers: live streams (most watched first, thumbnail URL for streams anyone may watch), upcoming (scheduled) and recent streams with their recordings; ?q= filters by title or name", tag: "directory", auth: None,
             body: None, ok: (200, "Catalogue", Some(schema("Directory"))), errors: &[400, 422] },
        Op { method: "get", path: "/api/directory/{stream}", summary: "A stream page's data: state (live, offline, ended), schedule, recent sessions, recordings, and whether the caller may watch (else what would let them: sign in, or buy / subscribe through the checkout URLs)", tag: "directory", auth: Some(false),
             body: None, ok: (200, "The stream page", Some(schema("StreamPage"))), errors: &[401, 404] },
        Op { method: "get", path: "/api/openapi.json", summary: "This document", tag: "meta", auth: None,
             body: None, ok: (200, "OpenAPI 3.1", Some(json!({ "type": "object" }))), errors: &[] },
    ]
}

fn components() -> Value {
    let string = json!({ "type": "string" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let int = json!({ "type": "integer" });
    let opt_int = json!({ "type": ["integer", "null"] });
    let opt_string = json!({ "type": ["string", "null"] });
    let visibility = json!({ "type": "string", "enum": ["public", "authenticated", "entitled"] });
    let role =
        json!({ "type": "string", "enum": ["viewer", "broadcaster", "admin", "integrator"] });
    let mut c = json!({
        "securitySchemes": {
            "bearer": { "type": "http", "scheme": "bearer", "description": "A session JWT from login/register, or an integrator API key (rci_…)" }
        },
        "schemas": {
            "Error": { "type": "object", "required": ["error"], "properties": { "error": string } },
            "RegisterRequest": { "type": "object", "required": ["username", "password"], "properties": {
                "username": { "type": "string", "pattern": "^[A-Za-z0-9_.@-]{3,64}$" },
                "password": { "type": "string", "minLength": 8, "maxLength": 256 },
                "role": role } },
            "LoginRequest": { "type": "object", "required": ["username", "password"], "properties": { "username": string, "password": string } },
            "RevokeRequest": { "type": "object", "properties": { "token": string, "jti": string }, "description": "exactly one of token, jti" },
            "User": { "type": "object", "properties": { "id": string, "username": string, "role": role, "created_at": int } },
            "Session": { "type": "object", "properties": { "token": string, "token_type": { "const": "Bearer" }, "expires_at": int, "user": schema("User") } },
            "ApiKey": { "type": "object", "properties": { "id": string, "user_id": string, "name": string, "created_at": int, "revoked_at": opt_int } },
            "StreamCreate": { "type": "object", "required": ["name"], "properties": {
                "name": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" }, "title": string, "visibility": visibility,
                "allowed_countries": strings, "allowed_cidrs": strings } },
            "StreamUpdate": { "type": "object", "properties": { "title": string, "visibility": visibility, "allowed_countries": strings, "allowed_cidrs": strings,
                "scheduled_at": { "type": ["integer", "null"], "description": "planned start, Unix seconds; null clears it" } } },
            "DirectoryCard": { "type": "object", "properties": {
                "name": string, "title": string, "broadcaster": opt_string, "visibility": visibility, "live": { "type": "boolean" }, "viewers": int,
                "thumbnail": opt_string, "scheduled_at": opt_int, "last_started_at_ms": opt_int, "last_ended_at_ms": opt_int,
                "recordings": { "type": "array", "items": schema("Recording") } } },
            "Recording": { "type": "object", "properties": { "run": string, "started_at_ms": opt_int } },
            "Directory": { "type": "object", "properties": {
                "live": { "type": "array", "items": schema("DirectoryCard") },
                "upcoming": { "type": "array", "items": schema("DirectoryCard") },
                "recent": { "type": "array", "items": schema("DirectoryCard") } } },
            "StreamPage": { "type": "object", "properties": {
                "name": string, "title": string, "broadcaster": opt_string, "broadcaster_id": opt_string, "visibility": visibility,
                "state": { "type": "string", "enum": ["live", "offline", "ended"] }, "live": { "type": "boolean" }, "viewers": int,
                "thumbnail": opt_string, "scheduled_at": opt_int,
                "sessions": { "type": "array", "items": { "type": "object" } },
                "recordings": { "type": "array", "items": schema("Recording") },
                "access": { "type": "object", "properties": { "can_watch": { "type": "boolean" },
                    "needs": { "type": ["string", "null"], "enum": ["sign_in", "purchase", null] },
                    "checkout": { "type": ["object", "null"], "properties": { "ppv": string, "subscription": opt_string } } } } } },
            "Stream": { "type": "object", "properties": {
                "id": string, "name": string, "owner_id": opt_string, "title": string, "visibility": visibility,
                "allowed_countries": strings, "allowed_cidrs": strings, "created_at": int, "updated_at": int, "scheduled_at": opt_int,
                "live": { "type": "boolean" }, "viewers": int, "whip_url": string, "whep_url": string } },
            "LiveStream": { "type": "object", "properties": { "id": string, "name": string, "title": string, "owner_id": opt_string, "visibility": visibility, "viewers": int, "whep_url": string } },
            "StreamKey": { "type": "object", "properties": { "id": string, "stream": string, "created_at": int, "revoked_at": opt_int } },
            "StreamSession": { "type": "object", "properties": { "id": string, "stream": string, "started_at_ms": int, "ended_at_ms": opt_int, "peak_viewers": int, "stalls": int } },
            "PlayTokenRequest": { "type": "object", "properties": { "ttl_secs": int, "user_id": string, "countries": strings, "cidrs": strings } },
            "PlayToken": { "type": "object", "properties": { "token": string, "expires_at": int, "whep_url": string } },
            "EntitlementGrant": { "type": "object", "required": ["user_id", "kind"], "properties": {
                "user_id": string, "kind": { "type": "string", "enum": ["subscription", "ppv"] }, "stream": string, "broadcaster_id": string,
                "expires_at": int, "external_ref": string } },
            "Entitlement": { "type": "object", "properties": {
                "id": string, "user_id": string, "kind": { "type": "string", "enum": ["subscription", "ppv"] },
                "broadcaster_id": opt_string,
                "broadcaster_name": { "type": ["string", "null"], "description": "the broadcaster's username (in listings)" },
                "stream": opt_string, "external_ref": opt_string,
                "created_at": int, "expires_at": opt_int, "revoked_at": opt_int } }
        }
    });
    if let (Some(schemas), Value::Object(more)) = (c["schemas"].as_object_mut(), realtime_schemas())
    {
        schemas.extend(more);
    }
    c
}

/// Schemas of the realtime, webhook and analytics routes.
fn realtime_schemas() -> Value {
    let string = json!({ "type": "string" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let int = json!({ "type": "integer" });
    let opt_int = json!({ "type": ["integer", "null"] });
    json!({
            "IntegratorEvent": { "type": "object", "properties": {
                "stream": string, "seq": int, "id": string, "at_ms": int, "payload": {},
                "media": { "type": ["object", "null"], "properties": { "rtp_time": int, "clock_rate": int, "capture_ms": int } } } },
            "WebhookCreate": { "type": "object", "required": ["url", "stream", "events"], "properties": {
                "url": string, "stream": string,
                "events": { "type": "array", "items": { "type": "string", "enum": crate::webhooks::EVENT_TYPES } },
                "viewer_thresholds": { "type": "array", "items": int } } },
            "Webhook": { "type": "object", "properties": {
                "id": string, "stream": string, "url": string, "events": strings, "viewer_thresholds": { "type": "array", "items": int },
                "created_at": int, "secret": { "type": "string", "description": "only in the answer to POST" } } },
            "QoeBeacon": { "type": "object", "required": ["stream"], "properties": {
                "stream": string, "startup_ms": int, "rebuffer_ms": int, "watched_ms": int, "exited_before_start": { "type": "boolean" } } },
            "StreamStats": { "type": "object", "properties": { "stream": string, "since_ms": int, "stats": { "type": "object", "properties": {
                "sessions": int, "watch_ms_total": int, "watch_ms_avg": int, "bytes_total": int, "packets_lost_total": int, "qoe_beacons": int, "startup_ms_avg": opt_int,
                "exits_before_start": int, "rebuffer_ratio": { "type": ["number", "null"] }, "health_seconds": int,
                "stalled_seconds": int, "peak_viewers": int } } } },
            "WebhookDelivery": { "type": "object", "properties": {
                "event_id": string, "event_type": string, "attempt": int, "at_ms": int,
                "outcome": { "type": "string", "enum": ["delivered", "failed"] },
                "status_code": { "type": ["integer", "null"], "description": "the receiver's HTTP status; null when it did not answer" },
                "error": { "type": ["string", "null"], "enum": crate::webhooks::Failure::MESSAGES,
                    "description": "why there was no answer; null when there was one" } } }
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Malformed request",
        401 => "Missing, invalid, expired or revoked credential",
        403 => "Not allowed for this caller",
        404 => "Not found",
        409 => "Already exists",
        413 => "Body too large",
        415 => "Content-Type must be application/json",
        422 => "Breaks a rule of the data",
        429 => "Too many attempts (see Retry-After)",
        503 => "Not configured",
        _ => "Error",
    }
}

/// The whole document.
pub fn spec() -> Value {
    let mut paths = Map::new();
    for op in ops() {
        let mut o = Map::new();
        o.insert("summary".into(), json!(op.summary));
        o.insert("tags".into(), json!([op.tag]));
        o.insert(
            "operationId".into(),
            json!(format!(
                "{}{}",
                op.method,
                op.path.replace(['/', '{', '}', '-', '.'], "_")
            )),
        );
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        match op.auth {
            Some(true) => {
                o.insert("security".into(), json!([{ "bearer": [] }]));
            }
            Some(false) => {
                o.insert("security".into(), json!([{}, { "bearer": [] }]));
            }
            None => {
                o.insert("security".into(), json!([]));
            }
        }
        if let Some(body) = op.body {
            o.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": body } } }),
            );
        }
        let mut responses = Map::new();
        let (code, desc, body) = op.ok;
        let mut ok = json!({ "description": desc });
        if let Some(b) = body {
            ok["content"] = json!({ "application/json": { "schema": b } });
        }
        responses.insert(code.to_string(), ok);
        for e in op.errors {
            responses.insert(
                e.to_string(),
                json!({ "description": reason(*e), "content": { "application/json": { "schema": schema("Error") } } }),
            );
        }
        o.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(op.method.to_string(), Value::Object(o));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "relaycast control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts, streams, stream keys, entitlements, payments, realtime (WebSocket, integrator events) and webhooks. Errors are {\"error\": \"…\"}."
        },
        "paths": paths,
        "components": components(),
    })
}

/// `GET /api/openapi.json`
pub async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_document_describes_exactly_the_registered_routes() {
        let doc = spec();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let registered: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .chain(crate::realtime::ROUTES)
            .chain(crate::webhooks::ROUTES)
            .chain(crate::analytics::ROUTES)
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, registered);
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = spec();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "unresolved $ref {name}");
        }
    }
}
