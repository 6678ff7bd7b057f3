//! RTMP and SRT ingest end to end with real peers: ffmpeg publishes H.264 +
//! AAC over RTMP (`rtmp://HOST/live/KEY`) and over SRT (MPEG-TS, `streamid`
//! in both forms), a webrtc-rs WHEP viewer decodes the
//! video (openh264) and the Opus the server transcoded from the AAC
//! (libopus), the stream goes live and ends as a WHIP stream does, and
//! LL-HLS packages it. Bad input — a wrong key, garbage instead of a
//! handshake, a codec WebRTC cannot carry — is closed, logged and counted,
//! and the server stays healthy.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

async fn rtmp_server() -> Result<(TestServer, SocketAddr)> {
    let server = TestServer::start_with(|c| {
        c.rtmp_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await?;
    let addr = server
        .server()
        .rtmp_addr()
        .context("the RTMP listener is not running")?;
    Ok((server, addr))
}

/// ffmpeg publishing `seconds` of a 320x240 test pattern (H.264, 2 s GOP,
/// no B-frames) and a 440 Hz tone (AAC, 44.1 kHz, so the resampler runs)
/// to `url`.
fn ffmpeg_publish(url: &str, seconds: u32, video: &[&str]) -> Result<Child> {
    ffmpeg_publish_as(url, seconds, video, "flv")
}

/// [`ffmpeg_publish`] in another container (`mpegts` for SRT).
fn ffmpeg_publish_as(url: &str, seconds: u32, video: &[&str], format: &str) -> Result<Child> {
    let t = seconds.to_string();
    let mut args = vec![
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        &t,
    ];
    args.extend_from_slice(video);
    args.extend_from_slice(&["-c:a", "aac", "-b:a", "96k", "-f", format, url]);
    Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting ffmpeg (Debian package `ffmpeg`)")
}

const H264: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-pix_fmt",
    "yuv420p",
    "-g",
    "60",
    "-bf",
    "0",
];

async fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !ok() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Root mean square of the decoded Opus payloads (16-bit PCM scale).
fn opus_rms(payloads: &[bytes::Bytes]) -> Result<f64> {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Stereo)?;
    let mut pcm = vec![0i16; 5760 * 2];
    let (mut sum, mut n) = (0f64, 0usize);
    for p in payloads {
        let samples = decoder.decode(p, &mut pcm, false)?;
        for s in &pcm[..samples * 2] {
            sum += f64::from(*s) * f64::from(*s);
            n += 1;
        }
    }
    ensure!(n > 0, "no audio decoded");
    Ok((sum / n as f64).sqrt())
}

/// Opens a WHEP viewer of `stream` (decoding H.264), waits until it is
/// connected and has 60 decoded pictures and 2 s of audio, and prints the
/// join time (`label` names the ingest protocol). Returns the viewer, what
/// it has seen (at least 60 pictures) and the time from the WHEP POST to
/// its first decoded picture.
async fn watch_until_playing(
    base_url: &str,
    stream: &str,
    label: &str,
) -> Result<(Viewer, ViewerStats, Duration)> {
    let joining = Instant::now();
    let viewer = whep_view(
        base_url,
        stream,
        None,
        &ViewOptions::browser_like(VideoSink::DecodeH264),
    )
    .await?;
    viewer.peer.wait_connected(CONNECT_TIMEOUT).await?;
    viewer
        .media
        .wait_until(
            Duration::from_secs(30),
            "60 decoded pictures and 2 s of audio",
            |s| s.decoded.len() >= 60 && s.audio_payloads.len() >= 100,
        )
        .await?;
    let seen = viewer.media.snapshot();
    let first = seen.decoded.first().context("no picture")?;
    let join = first.received_at.duration_since(joining);
    // A measurement, not an assertion (the machine may be loaded).
    eprintln!(
        "{label} -> WHEP join: first decoded picture {} ms after the WHEP POST",
        join.as_millis()
    );
    Ok((viewer, seen, join))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_over_rtmp_reaches_a_whep_viewer_with_video_and_audio() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(Duration::from_secs(120), async {
        let (server, rtmp) = rtmp_server().await?;
        let key = server.create_stream("rtmpcam", false).await?;
        let mut events = server.server().sfu().events();
        let mut ffmpeg = ffmpeg_publish(&format!("rtmp://{rtmp}/live/{key}"), 22, H264)?;

        let sfu = server.server().sfu().clone();
        wait_for(
            Duration::from_secs(20),
            "the RTMP stream to go live",
            || sfu.is_live("rtmpcam"),
        )
        .await?;
        // Into the GOP: the join is served from the cache, not a keyframe.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (viewer, seen, join) =
            watch_until_playing(server.base_url(), "rtmpcam", "RTMP").await?;
        let first = &seen.decoded[0];
        ensure!(
            (first.width, first.height) == (320, 240),
            "decoded {}x{}",
            first.width,
            first.height
        );
        ensure!(seen.decode_errors == 0, "{}", seen.summary());
        ensure!(
            seen.audio_tracks
                .iter()
                .any(|t| t.mime_type.eq_ignore_ascii_case("audio/opus")),
            "no Opus track: {}",
            seen.summary()
        );
        // Skip the first packets (encoder start-up), then a 440 Hz tone at
        // ffmpeg's default amplitude (1/8 full scale: RMS ~2900) must be
        // there, not silence.
        let rms = opus_rms(&seen.audio_payloads[25..])?;
        ensure!(rms > 1000.0, "audio RMS {rms:.0}: the tone did not arrive");
        check_rtp_continuity(&seen.video_rtp)?;

        // More joins at other points of the GOP (2 s): each is served from
        // the GOP cache. Measured and printed, not asserted (a loaded
        // machine must not fail the test).
        let mut joins = vec![join];
        let mut after_connect = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let v = whep_view(
                server.base_url(),
                "rtmpcam",
                None,
                &ViewOptions::browser_like(VideoSink::DecodeH264),
            )
            .await?;
            v.peer.wait_connected(CONNECT_TIMEOUT).await?;
            let connected = Instant::now();
            v.media
                .wait_until(Duration::from_secs(20), "a decoded picture", |s| {
                    !s.decoded.is_empty()
                })
                .await?;
            let at = v.media.snapshot().decoded[0].received_at;
            joins.push(at.duration_since(start));
            after_connect.push(at.saturating_duration_since(connected));
            v.close().await?;
            tokio::time::sleep(Duration::from_millis(370)).await;
        }
        joins.sort();
        eprintln!(
            "RTMP -> WHEP joins (2 s GOP), POST to first decoded picture: median {} ms, all {:?}",
            joins[joins.len() / 2].as_millis(),
            joins.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
        );
        eprintln!(
            "  of which after the viewer's peer connection reported connected: {:?} ms",
            after_connect
                .iter()
                .map(|d| d.as_millis())
                .collect::<Vec<_>>()
        );

        // LL-HLS packages the same stream.
        let playlist = http_client()?
            .get(format!("{}/hls/rtmpcam/index.m3u8", server.base_url()))
            .timeout(Duration::from_secs(20))
            .send()
            .await?;
        ensure!(
            playlist.status() == 200,
            "multivariant playlist: {}",
            playlist.status()
        );
        let text = playlist.text().await?;
        ensure!(
            text.contains("avc1.") && text.contains("mp4a.40.2"),
            "{text}"
        );

        let status = tokio::time::timeout(Duration::from_secs(40), ffmpeg.wait())
            .await
            .context("ffmpeg did not finish")??;
        ensure!(status.success(), "ffmpeg failed: {status}");
        let mut kinds = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !kinds.contains(&sfu::StreamEventKind::Ended) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ev)) if ev.stream == "rtmpcam" => kinds.push(ev.kind),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("event stream: {e}"),
                Err(_) => bail!("no Ended event; saw {kinds:?}"),
            }
        }
        ensure!(
            kinds.first() == Some(&sfu::StreamEventKind::Live),
            "events {kinds:?}"
        );
        ensure!(!sfu.is_live("rtmpcam"));
        ensure!(
            metric(
                server.base_url(),
                "relaycast_ingest_publishers{protocol=\"rtmp\"}"
            )
            .await?
                == 0.0
        );
        // The run was recorded (VOD written when the stream ended).
        let deadline = Instant::now() + Duration::from_secs(30);
        let run = loop {
            let list: serde_json::Value = http_client()?
                .get(format!("{}/vod/rtmpcam", server.base_url()))
                .send()
                .await?
                .json()
                .await?;
            if let Some(run) = list["recordings"][0]["run"].as_str() {
                break run.to_string();
            }
            ensure!(Instant::now() < deadline, "no recording: {list}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let vod = http_client()?
            .get(format!(
                "{}/vod/rtmpcam/{run}/video/index.m3u8",
                server.base_url()
            ))
            .send()
            .await?;
        ensure!(vod.status() == 200, "VOD playlist: {}", vod.status());
        ensure!(vod.text().await?.ends_with("#EXT-X-ENDLIST\n"));
        viewer.close().await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

async fn healthy(base_url: &str) -> Result<()> {
    let r = http_client()?
        .get(format!("{base_url}/healthz"))
        .send()
        .await?;
    ensure!(r.status() == 200, "/healthz: {}", r.status());
    Ok(())
}

async fn drops(base_url: &str, reason: &str) -> f64 {
    metric(
        base_url,
        &format!("relaycast_ingest_drops_total{{protocol=\"rtmp\",reason=\"{reason}\"}}"),
    )
    .await
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_garbage_and_other_codecs_are_closed_and_counted() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(Duration::from_secs(120), async {
        let (server, rtmp) = rtmp_server().await?;
        let base = server.base_url().to_string();
        let key = server.create_stream("guarded", false).await?;

        // Garbage instead of a handshake: closed, counted, nothing else.
        let mut sock = tokio::net::TcpStream::connect(rtmp).await?;
        sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
        sock.write_all(&[0x55; 3000]).await?;
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        ensure!(closed.is_ok(), "the garbage connection was not closed");
        ensure!(drops(&base, "handshake").await >= 1.0);
        healthy(&base).await?;

        // A wrong key: ffmpeg is refused and gives up; nothing goes live.
        let mut wrong = ffmpeg_publish(&format!("rtmp://{rtmp}/live/not-a-key"), 5, H264)?;
        let status = tokio::time::timeout(Duration::from_secs(30), wrong.wait())
            .await
            .context("ffmpeg with a wrong key was not turned away")??;
        ensure!(!status.success(), "ffmpeg with a wrong key succeeded");
        ensure!(drops(&base, "auth").await >= 1.0);
        // The right stream name with a wrong key, in the `NAME?key=` form.
        let mut wrong = ffmpeg_publish(
            &format!("rtmp://{rtmp}/live/guarded?key=rsk_wrong"),
            5,
            H264,
        )?;
        let status = tokio::time::timeout(Duration::from_secs(30), wrong.wait())
            .await
            .context("ffmpeg with a wrong key was not turned away")??;
        ensure!(!status.success(), "ffmpeg with a wrong key succeeded");
        ensure!(drops(&base, "auth").await >= 2.0);
        ensure!(!server.server().sfu().is_live("guarded"));

        // A codec WebRTC viewers cannot get (Sorenson H.263, FLV codec 2):
        // accepted as a publisher, closed at its first video message.
        let mut other = ffmpeg_publish(&format!("rtmp://{rtmp}/live/{key}"), 5, &["-c:v", "flv1"])?;
        let _ = tokio::time::timeout(Duration::from_secs(30), other.wait()).await;
        let _ = other.kill().await;
        let base2 = base.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while drops(&base2, "codec").await < 1.0 {
            ensure!(
                Instant::now() < deadline,
                "the codec refusal was not counted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sfu = server.server().sfu().clone();
        wait_for(Duration::from_secs(10), "the refused stream to end", || {
            !sfu.is_live("guarded")
        })
        .await?;
        healthy(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_stalls_is_reported_then_closed_and_counted_with_webhooks() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(Duration::from_secs(90), async {
        // A webhook receiver on 127.0.0.1 (an on-premises setup).
        let (tx, mut hooks) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hook_url = format!("http://{}/hooks", listener.local_addr()?);
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |body: axum::Json<serde_json::Value>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(body.0);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

        let server = TestServer::start_with(|c| {
            c.rtmp_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            c.rtmp.stall_timeout = Duration::from_secs(3);
            c.webhooks.allow_private = true;
        })
        .await?;
        let rtmp = server.server().rtmp_addr().context("no RTMP listener")?;
        // The stream belongs to a broadcaster account, which registers the
        // webhook and makes the key the encoder uses.
        let http = http_client()?;
        let base = server.base_url().to_string();
        let owner: serde_json::Value = http
            .post(format!("{base}/api/auth/register"))
            .json(
                &serde_json::json!({"username": "caster", "password": "a good password",
                "role": "broadcaster"}),
            )
            .send()
            .await?
            .json()
            .await?;
        let owner = owner["token"]
            .as_str()
            .context("session token")?
            .to_string();
        let r = http
            .post(format!("{base}/api/streams"))
            .bearer_auth(&owner)
            .json(&serde_json::json!({"name": "frozen"}))
            .send()
            .await?;
        ensure!(r.status() == 201, "stream: {}", r.status());
        let made: serde_json::Value = http
            .post(format!("{base}/api/streams/frozen/keys"))
            .bearer_auth(&owner)
            .send()
            .await?
            .json()
            .await?;
        let key = made["secret"].as_str().context("stream key")?.to_string();
        let r = http
            .post(format!("{base}/api/webhooks"))
            .bearer_auth(&owner)
            .json(&serde_json::json!({"url": hook_url, "stream": "frozen",
                "events": ["stream.started", "stream.stalled", "stream.ended"]}))
            .send()
            .await?;
        ensure!(r.status() == 201, "webhook: {}", r.status());
        let mut events = server.server().sfu().events();
        let ffmpeg = ffmpeg_publish(&format!("rtmp://{rtmp}/live/{key}"), 60, H264)?;
        // Live (first frame), not only claimed (`is_live`), then a second of
        // media.
        let mut kinds = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !kinds.contains(&sfu::StreamEventKind::Live) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ev)) if ev.stream == "frozen" => kinds.push(ev.kind),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("event stream: {e}"),
                Err(_) => bail!("the stream did not go live; saw {kinds:?}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The encoder freezes (SIGSTOP): its TCP connection stays open but
        // nothing more arrives.
        let pid = ffmpeg.id().context("ffmpeg has no pid")?.to_string();
        let stopped = Command::new("kill").args(["-STOP", &pid]).status().await?;
        ensure!(stopped.success(), "kill -STOP failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kinds.contains(&sfu::StreamEventKind::Ended) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ev)) if ev.stream == "frozen" => kinds.push(ev.kind),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("event stream: {e}"),
                Err(_) => bail!("the stalled stream did not end; saw {kinds:?}"),
            }
        }
        ensure!(
            kinds
                == [
                    sfu::StreamEventKind::Live,
                    sfu::StreamEventKind::Stalled,
                    sfu::StreamEventKind::Ended
                ],
            "events {kinds:?}"
        );
        ensure!(drops(server.base_url(), "stalled").await >= 1.0);
        healthy(server.base_url()).await?;
        // The same lifecycle reached the broadcaster's webhook.
        let mut types = Vec::new();
        while types.last().map(String::as_str) != Some("stream.ended") {
            let hook = tokio::time::timeout(Duration::from_secs(30), hooks.recv())
                .await
                .with_context(|| format!("webhooks so far: {types:?}"))?
                .context("receiver gone")?;
            ensure!(hook["stream"] == "frozen", "{hook}");
            types.push(hook["type"].as_str().unwrap_or_default().to_string());
        }
        ensure!(
            types == ["stream.started", "stream.stalled", "stream.ended"],
            "webhooks {types:?}"
        );
        receiver.abort();
        // kill_on_drop ends the stopped ffmpeg.
        drop(ffmpeg);
        server.shutdown().await;
        Ok(())
    })
    .await
}

/// `streamid` value for an ffmpeg SRT URL (its libsrt URL-decodes it).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_over_srt_reaches_a_whep_viewer_and_wrong_keys_are_rejected() -> Result<()> {
    init_logging();
    let _serial = serial().await;
    with_timeout(Duration::from_secs(120), async {
        let server = TestServer::start_with(|c| {
            c.srt_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        })
        .await?;
        let srt = server.server().srt_addr().context("no SRT listener")?;
        let base = server.base_url().to_string();
        let key = server.create_stream("srtcam", false).await?;

        let mut events = server.server().sfu().events();
        let sid = format!("#!::r=srtcam,m=publish,s={key}");
        let url = format!("srt://{srt}?streamid={}", url_encode(&sid));
        let mut ffmpeg = ffmpeg_publish_as(&url, 12, H264, "mpegts")?;
        let sfu = server.server().sfu().clone();
        if let Err(e) = wait_for(Duration::from_secs(20), "the SRT stream to go live", || {
            sfu.is_live("srtcam")
        })
        .await
        {
            let _ = ffmpeg.kill().await;
            let out = ffmpeg.wait_with_output().await?;
            bail!("{e}; ffmpeg said: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (viewer, seen, _) = watch_until_playing(&base, "srtcam", "SRT").await?;
        let first = &seen.decoded[0];
        ensure!((first.width, first.height) == (320, 240));
        ensure!(seen.decode_errors == 0, "{}", seen.summary());
        let rms = opus_rms(&seen.audio_payloads[25..])?;
        ensure!(rms > 1000.0, "audio RMS {rms:.0}: the tone did not arrive");

        let status = tokio::time::timeout(Duration::from_secs(40), ffmpeg.wait())
            .await
            .context("ffmpeg did not finish")??;
        ensure!(status.success(), "ffmpeg failed: {status}");
        let mut kinds = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kinds.contains(&sfu::StreamEventKind::Ended) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ev)) if ev.stream == "srtcam" => kinds.push(ev.kind),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("event stream: {e}"),
                Err(_) => bail!("no Ended event; saw {kinds:?}"),
            }
        }
        ensure!(
            kinds.first() == Some(&sfu::StreamEventKind::Live),
            "events {kinds:?}"
        );
        viewer.close().await?;
        // A wrong key in the plain form: rejected at the handshake.
        let url = format!("srt://{srt}?streamid={}", url_encode("rk_wrong"));
        let mut wrong = ffmpeg_publish_as(&url, 5, H264, "mpegts")?;
        let status = tokio::time::timeout(Duration::from_secs(30), wrong.wait())
            .await
            .context("ffmpeg with a wrong key was not turned away")??;
        ensure!(!status.success(), "ffmpeg with a wrong key succeeded");
        ensure!(
            metric(
                &base,
                "relaycast_ingest_drops_total{protocol=\"srt\",reason=\"auth\"}"
            )
            .await
            .unwrap_or(0.0)
                >= 1.0
        );

        healthy(&base).await?;
        server.shutdown().await;
        Ok(())
    })
    .await
}

/// RTMPS: the RTMP listener behind a TLS handshake with the HTTPS certificate
/// (`--rtmps-addr`). ffmpeg publishes to `rtmps://HOST/live/KEY` and the
/// stream goes live; an encoder speaking plain RTMP to the RTMPS port, or
/// one with a wrong key, is refused and nothing else goes live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_over_rtmps_goes_live_with_the_https_certificate() -> Result<()> {
    let dir = TempDir::new("relaycast-rtmps")?;
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let files = turn_server::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, certified.cert.pem())?;
    std::fs::write(&files.key, certified.key_pair.serialize_pem())?;
    let server = TestServer::start_with(|c| {
        c.https = Some(api::HttpsConfig {
            files,
            watch_interval: None,
        });
        c.rtmps_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await?;
    let result = async {
        let rtmps = server
            .server()
            .rtmps_addr()
            .context("the RTMPS listener is not running")?;
        let key = server.create_stream("rtmpscam", false).await?;
        let other = server.create_stream("plaincam", false).await?;

        // Plain RTMP on the RTMPS port: the TLS handshake fails, ffmpeg gives up.
        let mut plain = ffmpeg_publish(&format!("rtmp://{rtmps}/live/{other}"), 5, H264)?;
        let status = tokio::time::timeout(Duration::from_secs(60), plain.wait())
            .await
            .context("ffmpeg speaking plain RTMP to the RTMPS port did not give up")??;
        ensure!(
            !status.success(),
            "plain RTMP to the RTMPS port was accepted"
        );
        ensure!(!server.server().sfu().is_live("plaincam"));

        // A wrong key over RTMPS: refused as over RTMP.
        let mut wrong = ffmpeg_publish(&format!("rtmps://{rtmps}/live/rk_not_a_key"), 5, H264)?;
        let status = tokio::time::timeout(Duration::from_secs(60), wrong.wait())
            .await
            .context("ffmpeg with a wrong key over RTMPS did not give up")??;
        ensure!(!status.success(), "a wrong key over RTMPS was accepted");
        ensure!(server.server().sfu().live_streams().is_empty());

        // ffmpeg does not verify the server's certificate by default (`-tls_verify 0`).
        let mut ffmpeg = ffmpeg_publish(&format!("rtmps://{rtmps}/live/{key}"), 20, H264)?;
        let live = wait_for(
            Duration::from_secs(30),
            "the stream to go live over RTMPS",
            || server.server().sfu().is_live("rtmpscam"),
        )
        .await;
        let _ = ffmpeg.kill().await;
        live
    }
    .await;
    server.shutdown().await;
    result
}
