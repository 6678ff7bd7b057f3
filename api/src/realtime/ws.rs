//! `GET /api/streams/{id}/ws`: the stream's realtime channel.
//!
//! Server → client (JSON text frames, `type`-tagged): first
//! `{"type":"hello","stream","user","can_chat","moderator","slow_mode","viewers","history":[…]}`,
//! then every [`signaling::Message`] of the stream (`chat`, `deleted`,
//! `banned`, `slow_mode`, `viewers`, `status`, `event`) and
//! `{"type":"error","code","error"}` answers to refused requests.
//!
//! Client → server: `{"type":"chat","text"}`; moderators (a publish token
//! of the stream, or admin) also `{"type":"delete","id"}`,
//! `{"type":"ban","user","seconds"?}`, `{"type":"slow_mode","seconds"}`.
//! Reading follows the stream's play rules (public streams need no token);
//! writing needs a signed-in account's token (chatting under its
//! username) or a play token of the stream, whose subject is the chat user
//! name. The stream's owner, its publish tokens and admins moderate.

use std::collections::HashMap;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use signaling::{Author, ChatError, PostError, Role, Viewer, Visibility};
use tokio::sync::broadcast::error::RecvError;

use super::{auth_error, bearer, check_stream_name, ApiError, RealtimeState};

/// Largest frame a client may send.
const MAX_CLIENT_FRAME: usize = 8 * 1024;
/// Longest ban a moderator may set (longer means permanent: omit seconds).
const MAX_BAN_SECS: u64 = 365 * 24 * 3600;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Chat { text: String },
    Delete { id: String },
    Ban { user: String, seconds: Option<u64> },
    SlowMode { seconds: u32 },
    Ping,
}

pub(super) async fn upgrade(
    State(st): State<RealtimeState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    check_stream_name(&id)?;
    let bearer = bearer(&headers, query.get("token").map(String::as_str));
    let claims = match bearer.as_deref() {
        None => None,
        Some(b) => Some(
            st.store
                .verify_token(&st.tokens, b)
                .await
                .map_err(auth_error)?,
        ),
    };
    let info = st
        .store
        .stream(&id)
        .await
        .map_err(|e| ApiError::Internal(format!("realtime: {e}")))?;
    // Reading follows the play rules of the stream (visibility,
    // entitlements, address rules); public streams need nothing.
    if let Some(info) = info.as_ref().filter(|i| i.visibility != Visibility::Public) {
        st.store
            .authorize_play(
                &st.tokens,
                info,
                bearer.as_deref(),
                Viewer {
                    ip: Some(peer.ip()),
                },
            )
            .await
            .map_err(auth_error)?;
    }
    let mut author = None;
    if let Some(c) = claims {
        let owner = info
            .as_ref()
            .and_then(|i| i.owner_id.as_deref())
            .is_some_and(|o| o == c.sub);
        let moderator = owner || c.allows(&id, Role::Publish);
        // Signed-in accounts and play-token holders of the stream chat.
        let can_chat = moderator || c.role.is_account() || c.allows(&id, Role::Play);
        if can_chat {
            // An account's token, and a play token the API minted for an
            // account (`POST /api/streams/{id}/play-token`, the viewer
            // site's way in to a non-public stream), name the account by
            // id: it chats under its username. Another token's subject is
            // the chat name itself.
            let user = st
                .store
                .user(&c.sub)
                .await
                .map_err(|e| ApiError::Internal(format!("realtime: {e}")))?
                .map_or(c.sub, |u| u.username);
            author = Some(Author { user, moderator });
        }
    }
    Ok(ws
        .max_message_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| session(st, id, author, socket)))
}

fn json(v: &impl serde::Serialize) -> WsMessage {
    WsMessage::Text(
        serde_json::to_string(v)
            .unwrap_or_else(|_| r#"{"type":"error","code":"internal","error":"encoding"}"#.into())
            .into(),
    )
}

fn error_frame(code: &str, message: &str) -> WsMessage {
    json(&serde_json::json!({"type": "error", "code": code, "error": message}))
}

async fn session(st: RealtimeState, stream: String, author: Option<Author>, mut socket: WebSocket) {
    let mut joined = match st.bus.join(&stream).await {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(stream, "joining the stream channel: {e}");
            let _ = socket
                .send(error_frame("unavailable", "chat is unavailable, try again"))
                .await;
            return;
        }
    };
    let hello = serde_json::json!({
        "type": "hello",
        "stream": stream,
        "user": author.as_ref().map(|a| a.user.as_str()),
        "can_chat": author.is_some(),
        "moderator": author.as_ref().is_some_and(|a| a.moderator),
        "slow_mode": joined.slow_mode,
        "viewers": joined.viewers,
        "history": joined.history,
    });
    if socket.send(json(&hello)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(WsMessage::Binary(_))) => {
                        if socket.send(error_frame("bad_request", "send JSON text frames")).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                if let Some(reply) = handle(&st, &stream, author.as_ref(), text.as_str()).await {
                    if socket.send(reply).await.is_err() {
                        return;
                    }
                }
            }
            out = joined.rx.recv() => {
                let msg = match out {
                    Ok(m) => m,
                    // A slow client loses the oldest messages, never slows others.
                    Err(RecvError::Lagged(n)) => {
                        if socket.send(json(&serde_json::json!({"type": "lagged", "missed": n}))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                if socket.send(json(&*msg)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Applies one client request; returns a frame for this client only
/// (errors, pong). Accepted chat comes back through the channel.
async fn handle(
    st: &RealtimeState,
    stream: &str,
    author: Option<&Author>,
    text: &str,
) -> Option<WsMessage> {
    let req: ClientMessage = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return Some(error_frame("bad_request", &format!("invalid message: {e}"))),
    };
    if let ClientMessage::Ping = req {
        return Some(json(&serde_json::json!({"type": "pong"})));
    }
    let Some(author) = author else {
        return Some(error_frame(
            "forbidden",
            "chatting needs a play token for this stream",
        ));
    };
    let moderation = !matches!(req, ClientMessage::Chat { .. });
    if moderation && !author.moderator {
        return Some(error_frame(
            "forbidden",
            "only the stream's owner or an admin may moderate",
        ));
    }
    let result = match req {
        ClientMessage::Chat { text } => match st.bus.post_chat(stream, author, &text).await {
            Ok(_) => Ok(()),
            Err(PostError::Chat(e)) => return Some(chat_error(&e)),
            Err(e) => Err(e.to_string()),
        },
        ClientMessage::Delete { id } => st
            .bus
            .delete_chat(stream, &id)
            .await
            .map_err(|e| e.to_string()),
        ClientMessage::Ban { user, seconds } => {
            if seconds.is_some_and(|s| s == 0 || s > MAX_BAN_SECS) {
                return Some(error_frame(
                    "bad_request",
                    "ban seconds must be 1..=31536000 (omit for a permanent ban)",
                ));
            }
            st.bus
                .ban(stream, &user, seconds)
                .await
                .map_err(|e| e.to_string())
        }
        ClientMessage::SlowMode { seconds } => {
            if seconds > 3600 {
                return Some(error_frame(
                    "bad_request",
                    "slow mode seconds must be 0..=3600",
                ));
            }
            st.bus
                .set_slow_mode(stream, seconds)
                .await
                .map_err(|e| e.to_string())
        }
        ClientMessage::Ping => Ok(()),
    };
    match result {
        Ok(()) => None,
        Err(cause) => {
            tracing::error!(stream, "realtime request failed: {cause}");
            Some(error_frame(
                "unavailable",
                "could not apply the request, try again",
            ))
        }
    }
}

fn chat_error(e: &ChatError) -> WsMessage {
    let mut v = serde_json::json!({"type": "error", "code": e.code(), "error": e.to_string()});
    match e {
        ChatError::RateLimited { retry_after_ms } | ChatError::SlowMode { retry_after_ms, .. } => {
            v["retry_after_ms"] = (*retry_after_ms).into();
        }
        _ => {}
    }
    json(&v)
}
