//! The LL-HLS HTTP rules, driven through the router with a detached
//! packager fed frame by frame and tokio's paused clock (a request that
//! blocks past 3 × target duration gets 503 without waiting in real time).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use sfu::{Codec, Frame, MediaKind, MediaTime};
use str0m::media::Frequency;
use tower::ServiceExt;
use transcoder::hls::StreamEntry;
use transcoder::{AudioOut, DateRange, Hls, HlsConfig, HlsMetrics};

/// Capture clock of the first frames.
fn wall0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// SPS + PPS of a 320x240 constrained-baseline stream, and a slice.
const KEY_AU: &[u8] = &[
    0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0d, 0x8c, 0x8d, 0x40, 0xa0, 0xf9, 0x00, 0xf0, 0x88, 0x46, 0xa0,
    0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0xb8, 0x00, 0x04,
];
const DELTA_AU: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x04];

struct Feeder {
    hls: Hls,
    entry: Arc<StreamEntry>,
    start: Instant,
    video: u64,
    audio: u64,
}

impl Feeder {
    fn frame(&self, kind: MediaKind, i: u64, key: bool) -> Frame {
        let (codec, time, data, step) = match kind {
            MediaKind::Video => (
                Codec::H264,
                MediaTime::new(1000 + i * 3000, Frequency::NINETY_KHZ),
                if key { KEY_AU } else { DELTA_AU },
                Duration::from_micros(33_333),
            ),
            MediaKind::Audio => (
                Codec::Opus,
                MediaTime::new(500 + i * 960, Frequency::FORTY_EIGHT_KHZ),
                &[0xf8u8, 0xff, 0xfe][..],
                Duration::from_millis(20),
            ),
        };
        Frame {
            kind,
            codec,
            time,
            network_time: self.start + step * (i as u32),
            ready_at: self.start + step * (i as u32),
            keyframe: key,
            data: Arc::from(data),
            packets: None,
            index: i,
            contiguous: true,
            epoch: sfu::Epoch::of_session(1),
            layer: 0,
            top: true,
            // The capture clock advances with the media.
            wallclock: Some(wall0() + step * (i as u32)),
        }
    }

    /// Feeds `secs` seconds of 30 fps video (keyframe every second) and
    /// 20 ms audio, interleaved in time order.
    fn feed(&mut self, secs: f64) {
        let until = self.video + (secs * 30.0) as u64;
        while self.video < until {
            let v = self.frame(MediaKind::Video, self.video, self.video.is_multiple_of(30));
            self.entry.feed(&v, SystemTime::now());
            self.video += 1;
            while self.audio * 20 < self.video * 1000 / 30 {
                let a = self.frame(MediaKind::Audio, self.audio, false);
                self.entry.feed(&a, SystemTime::now());
                self.audio += 1;
            }
        }
    }
}

fn setup() -> (Router, Feeder) {
    setup_with(HlsConfig::default())
}

fn setup_with(config: HlsConfig) -> (Router, Feeder) {
    let registry = prometheus::Registry::new();
    let hls = Hls::detached(config, HlsMetrics::new(&registry).expect("metrics"));
    let entry = hls.open_stream("s", "r1");
    (
        transcoder::router(hls.clone()),
        Feeder {
            hls,
            entry,
            start: Instant::now(),
            video: 0,
            audio: 0,
        },
    )
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

const VIDEO: &str = "/hls/s/r1/video/index.m3u8";

#[tokio::test(start_paused = true)]
async fn bad_directives_get_400_and_unknown_resources_404() {
    let (app, mut f) = setup();
    f.feed(5.0);
    let a = get(&app, &format!("{VIDEO}?_HLS_part=1")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.text().contains("\"error\""), "{}", a.text());
    assert_eq!(a.header("access-control-allow-origin"), "*");
    // Last full segment is 1 (segment 2 in progress): 4 is too far ahead.
    assert_eq!(get(&app, &format!("{VIDEO}?_HLS_msn=4")).await.status, 400);
    assert_eq!(get(&app, &format!("{VIDEO}?_HLS_msn=x")).await.status, 400);
    assert_eq!(
        get(&app, &format!("{VIDEO}?_HLS_msn=1&_HLS_skip=NO"))
            .await
            .status,
        400
    );
    for uri in [
        "/hls/nope/index.m3u8",
        "/hls/s/r0/video/index.m3u8",
        "/hls/s/r1/subtitles/index.m3u8",
        "/hls/s/r1/video/seg99.m4s",
        "/hls/s/r1/video/part0.99.m4s",
        "/hls/s/r1/video/part9.0.m4s",
        "/hls/s/r1/video/other.txt",
    ] {
        let a = get(&app, uri).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(a.text().starts_with("{\"error\":"), "{uri}");
    }
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_answers_when_the_part_appears_and_503_after_three_targets() {
    let (app, mut f) = setup();
    f.feed(3.0);
    let p = get(&app, VIDEO).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.header("content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(p.header("cache-control"), "max-age=1");
    let hint = p
        .text()
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .expect("hint")
        .to_string();
    assert!(hint.contains("part1.2.m4s"), "{hint}");

    // Part 1.2 is open: the request blocks until it completes.
    let pending = tokio::spawn({
        let app = app.clone();
        async move { get(&app, &format!("{VIDEO}?_HLS_msn=1&_HLS_part=2")).await }
    });
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pending.is_finished(), "answered before the part existed");
    f.feed(0.4);
    let a = pending.await.expect("task");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("cache-control"), "max-age=1");
    assert!(a
        .text()
        .contains("#EXT-X-PART:DURATION=0.33333,URI=\"part1.2.m4s\""));

    // Nothing more comes: after 3 x 3 s the request gets 503.
    let started = tokio::time::Instant::now();
    let a = get(&app, &format!("{VIDEO}?_HLS_msn=2&_HLS_part=0")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), Duration::from_secs(9));
}

#[tokio::test(start_paused = true)]
async fn the_hinted_part_streams_while_written_and_equals_the_complete_part() {
    let (app, mut f) = setup();
    f.feed(2.5);
    let p = get(&app, VIDEO).await.text();
    let uri = p
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("hint")
        .to_string();
    let url = format!("/hls/s/r1/video/{uri}");
    let res = app
        .clone()
        .oneshot(Request::get(&url).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "video/mp4");
    assert_eq!(
        res.headers()["cache-control"],
        "max-age=31536000, immutable"
    );
    assert!(res.headers().get("content-length").is_none(), "streamed");
    let mut body = res.into_body();
    let mut got = Vec::new();
    let first = body.frame().await.expect("a first chunk").expect("ok");
    got.extend_from_slice(first.data_ref().expect("data"));
    assert_eq!(&got[4..8], b"moof");
    // The part completes as more frames come; the stream ends with it.
    f.feed(0.5);
    while let Some(frame) = body.frame().await {
        got.extend_from_slice(frame.expect("ok").data_ref().expect("data"));
    }
    let whole = get(&app, &url).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-length"), whole.body.len().to_string());
    assert_eq!(Bytes::from(got), whole.body);
}

#[tokio::test(start_paused = true)]
async fn delta_updates_rendition_reports_and_the_end() {
    let (app, mut f) = setup();
    f.feed(30.0);
    let full = get(&app, VIDEO).await.text();
    let delta = get(&app, &format!("{VIDEO}?_HLS_skip=YES")).await.text();
    assert!(!full.contains("#EXT-X-SKIP"));
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
    assert!(delta.len() < full.len());
    assert!(full.contains("#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN="));
    let audio = get(&app, "/hls/s/r1/audio/index.m3u8").await;
    assert_eq!(audio.status, 200);
    assert!(audio
        .text()
        .contains("#EXT-X-RENDITION-REPORT:URI=\"../video/index.m3u8\",LAST-MSN="));
    // The same server control line in every media playlist.
    let sc = |p: &str| {
        p.lines()
            .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL"))
            .map(str::to_string)
    };
    assert_eq!(sc(&full), sc(&audio.text()));
    let init = get(&app, "/hls/s/r1/audio/init.mp4").await;
    assert_eq!(init.header("content-type"), "audio/mp4");
    assert_eq!(init.header("cache-control"), "max-age=31536000, immutable");

    let mv = get(&app, "/hls/s/index.m3u8").await.text();
    // AAC-LC from the publisher's Opus by default.
    assert!(mv.contains("CODECS=\"avc1.42c00d,mp4a.40.2\""), "{mv}");
    assert!(mv.contains("RESOLUTION=320x240"), "{mv}");
    assert!(mv.contains("FRAME-RATE=30.000"), "{mv}");
    assert!(mv.contains("URI=\"r1/audio/index.m3u8\""), "{mv}");

    f.entry.finish();
    // Directives are ignored after the end: no 400, no blocking.
    let end = get(
        &app,
        &format!("{VIDEO}?_HLS_msn=500&_HLS_part=3&_HLS_skip=YES"),
    )
    .await;
    assert_eq!(end.status, 200);
    let t = end.text();
    assert!(t.ends_with("#EXT-X-ENDLIST\n"));
    assert!(!t.contains("#EXT-X-SKIP"));
    assert!(!t.contains("PRELOAD-HINT"));
}

#[tokio::test(start_paused = true)]
async fn non_h264_video_gets_a_json_404_that_says_why() {
    let (app, f) = setup();
    let mut frame = f.frame(MediaKind::Video, 0, true);
    frame.codec = Codec::Vp8;
    f.entry.feed(&frame, SystemTime::now());
    for uri in ["/hls/s/index.m3u8", VIDEO] {
        let a = get(&app, uri).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert!(a.text().contains("H.264"), "{}", a.text());
    }
}

#[tokio::test(start_paused = true)]
async fn the_multivariant_playlist_waits_for_the_first_keyframe() {
    let (app, f) = setup();
    // Delta frames only: no keyframe, so no playlist; 503 after the limit.
    for i in 0..10 {
        f.entry
            .feed(&f.frame(MediaKind::Video, i, false), SystemTime::now());
    }
    let a = get(&app, "/hls/s/index.m3u8").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn the_multivariant_playlist_waits_for_a_whole_segment() {
    let (app, mut f) = setup();
    // Parts but no whole segment yet, and nothing more comes: 503.
    f.feed(0.5);
    let a = get(&app, "/hls/s/index.m3u8").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    f.feed(2.5);
    let b = get(&app, "/hls/s/index.m3u8").await;
    assert_eq!(b.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn opus_passthrough_is_labelled_opus() {
    let (app, mut f) = setup_with(HlsConfig {
        audio: AudioOut::Opus,
        ..HlsConfig::default()
    });
    f.feed(3.0);
    let mv = get(&app, "/hls/s/index.m3u8").await.text();
    assert!(mv.contains("CODECS=\"avc1.42c00d,opus\""), "{mv}");
    let init = get(&app, "/hls/s/r1/audio/init.mp4").await;
    assert!(init.body.windows(4).any(|w| w == b"dOps"));
}

#[tokio::test(start_paused = true)]
async fn events_become_date_ranges_in_every_rendition_and_delta_updates() {
    use base64::Engine as _;
    let (app, mut f) = setup();
    f.feed(30.0);
    let json = r#"{"goal":"home","minute":17}"#;
    let start = wall0() + Duration::from_millis(5_250);
    assert!(f
        .hls
        .add_event("s", DateRange::event("ev-9", start, 9, json)));
    assert!(!f
        .hls
        .add_event("nope", DateRange::event("x", start, 1, "{}")));
    // Taken in with the next frame.
    f.feed(0.1);
    for uri in [VIDEO, "/hls/s/r1/audio/index.m3u8"] {
        for q in ["", "?_HLS_skip=YES", "?_HLS_skip=v2"] {
            let p = get(&app, &format!("{uri}{q}")).await.text();
            let lines: Vec<&str> = p.lines().collect();
            let tags: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].starts_with("#EXT-X-DATERANGE:"))
                .collect();
            assert_eq!(tags.len(), 1, "{uri}{q}: {p}");
            let tag = lines[tags[0]];
            assert!(
                tag.starts_with(
                    "#EXT-X-DATERANGE:ID=\"ev-9\",CLASS=\"com.relaycast.event\",START-DATE=\"2027-01-15T08:00:05.250Z\",DURATION=0,X-SEQ=9,X-PAYLOAD=\""
                ),
                "{tag}"
            );
            let b64 = tag.rsplit_once("X-PAYLOAD=\"").expect("payload").1;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim_end_matches('"'))
                .expect("base64");
            assert_eq!(decoded, json.as_bytes());
            if q.is_empty() {
                // With the segment that starts at or before 5.25 s.
                let pdt = lines[..tags[0]]
                    .iter()
                    .rev()
                    .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
                    .expect("a PDT before it");
                assert!(
                    pdt.as_bytes() <= b"2027-01-15T08:00:05.250Z".as_slice(),
                    "{pdt}"
                );
                assert!(
                    pdt.as_bytes() > b"2027-01-15T08:00:03.000Z".as_slice(),
                    "{pdt}"
                );
            } else {
                assert!(p.contains("#EXT-X-SKIP:"), "{p}");
                assert!(!p.contains("CAN-SKIP-DATERANGES"));
            }
        }
    }
    // It leaves with its segment: 40 s of window later it is gone.
    f.feed(40.0);
    let p = get(&app, VIDEO).await.text();
    assert!(!p.contains("#EXT-X-DATERANGE"), "{p}");
}
