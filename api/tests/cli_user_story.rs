//! The README's story with the real binary: `relaycast serve` on a data
//! directory, `relaycast keys create` and `relaycast token` against the same
//! directory while it runs, then a WHIP publish with what they printed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

const BIN: &str = env!("CARGO_BIN_EXE_relaycast");

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Running {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--media-port",
            "0",
            "--public-ip",
            "127.0.0.1",
            "--workers",
            "2",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relaycast serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("relaycast listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server prints its address");
    Running { child, base }
}

fn run(args: &[&str], data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run relaycast");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(stdout.lines().count(), 1, "one line on stdout: {stdout:?}");
    stdout.trim().to_string()
}

fn offer() -> String {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    api.apply().expect("offer").0.to_sdp_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_tokens_minted_by_the_cli_work_against_a_running_server() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = serve(&dir);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);

    // Minted while the server holds the same database open.
    let key = run(&["keys", "create", "myshow"], &dir);
    assert!(key.starts_with("rk_") && key.len() > 40, "{key}");
    let token = run(
        &[
            "token", "--stream", "second", "--role", "publish", "--ttl", "1h",
        ],
        &dir,
    );
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let publish = |stream: &'static str, bearer: String| {
        let client = client.clone();
        let url = format!("{}/whip/{stream}", server.base);
        async move {
            client
                .post(url)
                .header("content-type", "application/sdp")
                .header("authorization", format!("Bearer {bearer}"))
                .body(offer())
                .send()
                .await
                .expect("post")
                .status()
        }
    };
    assert_eq!(publish("myshow", key.clone()).await, 201);
    assert_eq!(publish("second", token.clone()).await, 201);
    assert_eq!(
        publish("myshow", token).await,
        403,
        "a valid token for another stream is forbidden here"
    );

    // Bad CLI input is an error with a message, not a panic.
    let bad = Command::new(BIN)
        .args(["keys", "create", "no/slash"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid stream name"));
    let bad = Command::new(BIN)
        .args(["token", "--stream", "x", "--role", "root"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));

    // SIGTERM: a clean exit.
    let mut server = server;
    let pid = server.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = server.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
}

/// `relaycast migrate` prepares an empty database (the SQLite file in the
/// data directory, or PostgreSQL by `--database-url`), and `keys create`
/// works against either.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_and_keys_create_work_on_both_backends() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new(BIN)
        .arg("migrate")
        .arg("--data-dir")
        .arg(&dir)
        .status()
        .expect("run relaycast migrate");
    assert!(status.success());
    assert!(dir.join("relaycast.db").exists());
    let key = run(&["keys", "create", "lite"], &dir);
    let store = signaling::Store::open(&dir).await.expect("open");
    store
        .authorize_publish(&signaling::Tokens::new(b"x"), "lite", Some(&key))
        .await
        .expect("the key publishes");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    let Some(db) = signaling::testing::TestDb::postgres().await else {
        return;
    };
    let status = Command::new(BIN)
        .args(["migrate", "--database-url", db.url()])
        .status()
        .expect("run relaycast migrate");
    assert!(status.success());
    let key = run(
        &[
            "keys",
            "create",
            "pg",
            "--private",
            "--database-url",
            db.url(),
        ],
        &dir,
    );
    let store = signaling::Store::connect(db.url()).await.expect("connect");
    store
        .authorize_publish(&signaling::Tokens::new(b"x"), "pg", Some(&key))
        .await
        .expect("the key publishes");
    let info = store.stream("pg").await.expect("q").expect("created");
    assert_eq!(info.visibility, signaling::Visibility::Entitled);
    store.close().await;
    let bad = Command::new(BIN)
        .args(["migrate", "--database-url", "mysql://nope"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unsupported database URL"));
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_database().await;
}
