//! Shared pieces of the control-plane tests: [`on_both_backends!`] runs each
//! scenario on a fresh SQLite file and on a fresh PostgreSQL database
//! (`DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test;
//! unreachable PostgreSQL fails the run when `CI=true`), and [`Api`] is a
//! running relaycast on that database with a JSON client.
//!
//! Include it with `#[macro_use] mod control_plane;`.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signaling::testing::TestDb;

/// `on_both_backends!(scenario, …)`: for each `async fn scenario(db:
/// &TestDb) -> Result<()>`, a test `sqlite::scenario` and a test
/// `postgres::scenario` (which drops its database afterwards).
macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() -> anyhow::Result<()> {
                    let db = signaling::testing::TestDb::sqlite();
                    super::$body(&db).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() -> anyhow::Result<()> {
                    let Some(db) = signaling::testing::TestDb::postgres().await else {
                        return Ok(());
                    };
                    let r = super::$body(&db).await;
                    db.drop_database().await;
                    r
                }
            )*
        }
    };
}

/// The payment webhook secret every [`Api::start`] server is given.
pub const WEBHOOK_SECRET: &str = "whsec_test_secret";

pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn expect(self, status: u16) -> Result<Value> {
        ensure!(
            self.status.as_u16() == status,
            "expected {status}, got {} with {}",
            self.status,
            self.body
        );
        Ok(self.body)
    }

    /// An error answer: the status, a JSON `error`, and for 401 a
    /// `WWW-Authenticate` challenge; the message.
    pub fn error(self, status: u16) -> Result<String> {
        let is_401 = status == 401;
        let www = self.headers.contains_key("www-authenticate");
        let body = self.expect(status)?;
        let msg = body["error"]
            .as_str()
            .context("error body has an \"error\" string")?
            .to_string();
        ensure!(!is_401 || www, "401 without WWW-Authenticate");
        Ok(msg)
    }
}

/// A running relaycast on a test database, and a JSON client for it.
pub struct Api {
    server: Option<api::Server>,
    pub base: String,
    pub http: reqwest::Client,
    _dir: TempDir,
}

impl Api {
    /// The test configuration on `db`, with a payment webhook secret and
    /// login limits of 5 per account and 40 per address.
    pub async fn start(db: &TestDb) -> Result<Api> {
        Api::start_with(db, |_| {}).await
    }

    /// Like [`Api::start`], with `tweak` applied last.
    pub async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut api::Config)) -> Result<Api> {
        let dir =
            std::env::temp_dir().join(format!("relaycast-api-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        let mut config = api::Config::for_test(dir.clone());
        config.database_url = Some(db.url().to_string());
        config.rest.payment_webhook_secret = Some(WEBHOOK_SECRET.into());
        config.rest.login_limits = api::rest::ratelimit::Limits {
            per_account: 5,
            per_ip: 40,
            window: Duration::from_secs(600),
        };
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = api::start(config, listener).await?;
        let base = format!("http://{}", server.http_addr());
        Ok(Api {
            server: Some(server),
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            _dir: TempDir(dir),
        })
    }

    pub fn server(&self) -> &api::Server {
        self.server.as_ref().expect("running")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Result<Resp> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.context("request")?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)))?
        };
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Result<Resp> {
        self.call(Method::GET, path, bearer, None).await
    }
    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> Result<Resp> {
        self.call(Method::POST, path, bearer, Some(body)).await
    }
    pub async fn patch(&self, path: &str, bearer: Option<&str>, body: Value) -> Result<Resp> {
        self.call(Method::PATCH, path, bearer, Some(body)).await
    }
    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> Result<Resp> {
        self.call(Method::DELETE, path, bearer, None).await
    }

    /// Registers an account; returns (user id, session token).
    pub async fn register(
        &self,
        name: &str,
        role: &str,
        admin: Option<&str>,
    ) -> Result<(String, String)> {
        let body = self
            .post(
                "/api/auth/register",
                admin,
                json!({ "username": name, "password": "a good password", "role": role }),
            )
            .await?
            .expect(201)?;
        Ok((
            body["user"]["id"].as_str().context("user id")?.to_string(),
            body["token"].as_str().context("token")?.to_string(),
        ))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}
