//! A WebSocket client of `/api/streams/{id}/ws` (tokio-tungstenite) for
//! the realtime tests.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one expected message.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(20);

pub enum Auth<'a> {
    None,
    /// `?token=…`
    Query(&'a str),
    /// `Authorization: Bearer …`
    Header(&'a str),
}

pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    /// The `hello` frame the server sent first.
    pub hello: Value,
}

fn ws_url(base_url: &str, stream: &str, auth: &Auth<'_>) -> String {
    let base = base_url.replacen("http://", "ws://", 1);
    match auth {
        Auth::Query(t) => format!("{base}/api/streams/{stream}/ws?token={t}"),
        _ => format!("{base}/api/streams/{stream}/ws"),
    }
}

fn request(
    base_url: &str,
    stream: &str,
    auth: &Auth<'_>,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    let mut req = ws_url(base_url, stream, auth)
        .into_client_request()
        .context("building the WebSocket request")?;
    if let Auth::Header(t) = auth {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}"))?,
        );
    }
    Ok(req)
}

impl WsClient {
    pub async fn connect(base_url: &str, stream: &str, auth: Auth<'_>) -> Result<WsClient> {
        let (ws, _) = tokio_tungstenite::connect_async(request(base_url, stream, &auth)?)
            .await
            .context("WebSocket connect")?;
        let mut c = WsClient {
            ws,
            hello: Value::Null,
        };
        let hello = c.next().await?;
        if hello["type"] != "hello" {
            bail!("first frame is not hello: {hello}");
        }
        c.hello = hello;
        Ok(c)
    }

    pub async fn send(&mut self, v: Value) -> Result<()> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .context("WebSocket send")
    }

    pub async fn send_raw(&mut self, m: Message) -> Result<()> {
        self.ws.send(m).await.context("WebSocket send")
    }

    /// The next JSON frame.
    pub async fn next(&mut self) -> Result<Value> {
        loop {
            let m = tokio::time::timeout(MESSAGE_TIMEOUT, self.ws.next())
                .await
                .context("no WebSocket message in time")?
                .ok_or_else(|| anyhow!("WebSocket closed"))??;
            match m {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).context("frame is not JSON")
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => bail!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next frame of `type`, skipping others (viewer counts, status…).
    pub async fn next_of(&mut self, ty: &str) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + MESSAGE_TIMEOUT;
        loop {
            let v = tokio::time::timeout_at(deadline, self.next())
                .await
                .with_context(|| format!("no {ty:?} frame in time"))??;
            if v["type"] == ty {
                return Ok(v);
            }
        }
    }

    /// Skips frames until `pred` holds for one, which is returned.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + MESSAGE_TIMEOUT * 3;
        loop {
            let v = tokio::time::timeout_at(deadline, self.next())
                .await
                .with_context(|| format!("waiting for {what}"))??;
            if pred(&v) {
                return Ok(v);
            }
        }
    }

    pub async fn chat(&mut self, text: &str) -> Result<()> {
        self.send(serde_json::json!({"type": "chat", "text": text}))
            .await
    }
}

/// The HTTP status of a WebSocket upgrade the server refuses (and its JSON body).
pub async fn refused_upgrade(base_url: &str, stream: &str, auth: Auth<'_>) -> Result<(u16, Value)> {
    match tokio_tungstenite::connect_async(request(base_url, stream, &auth)?).await {
        Ok(_) => bail!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            Ok((resp.status().as_u16(), body))
        }
        Err(e) => Err(e).context("upgrade failed without an HTTP answer"),
    }
}
