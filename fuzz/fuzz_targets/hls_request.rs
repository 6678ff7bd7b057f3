//! LL-HLS requests through the transcoder's router: the request target
//! (path and query) is the input, against a packager holding five seconds
//! of a live H.264 + Opus stream. The query's `_HLS_msn`, `_HLS_part` and
//! `_HLS_skip` directives, the path's stream, run, rendition and file
//! names (segments, parts, init, VOD), on tokio's paused clock so a
//! blocking playlist request waits in virtual time. Playlists answered
//! are then signed with an edge query as the media-token door does.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use sfu::{Codec, Frame, MediaKind, MediaTime};
use str0m::media::Frequency;
use tower::ServiceExt;
use transcoder::{Hls, HlsConfig, HlsMetrics, UriQuery};

/// SPS + PPS of a 320x240 constrained-baseline stream, and a slice.
const KEY_AU: &[u8] = &[
    0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x0d, 0x8c, 0x8d, 0x40, 0xa0, 0xf9, 0x00, 0xf0, 0x88, 0x46, 0xa0,
    0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0xb8, 0x00, 0x04,
];
const DELTA_AU: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x02, 0x04];

struct Server {
    rt: tokio::runtime::Runtime,
    app: Router,
    _hls: Hls,
}

fn frame(start: Instant, kind: MediaKind, i: u64) -> Frame {
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let (codec, time, data, step) = match kind {
        MediaKind::Video => (
            Codec::H264,
            MediaTime::new(1000 + i * 3000, Frequency::NINETY_KHZ),
            if i.is_multiple_of(30) {
                KEY_AU
            } else {
                DELTA_AU
            },
            Duration::from_micros(33_333),
        ),
        MediaKind::Audio => (
            Codec::Opus,
            MediaTime::new(500 + i * 960, Frequency::FORTY_EIGHT_KHZ),
            &[0xf8u8, 0xff, 0xfe][..],
            Duration::from_millis(20),
        ),
    };
    let at = start + step * (i as u32);
    Frame {
        kind,
        codec,
        time,
        network_time: at,
        ready_at: at,
        keyframe: kind == MediaKind::Video && i.is_multiple_of(30),
        data: Arc::from(data),
        packets: None,
        index: i,
        contiguous: true,
        epoch: sfu::Epoch::of_session(1),
        layer: 0,
        top: true,
        wallclock: Some(wall0 + step * (i as u32)),
    }
}

fn server() -> Server {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let registry = prometheus::Registry::new();
    let hls = Hls::detached(
        HlsConfig::default(),
        HlsMetrics::new(&registry).expect("metrics"),
    );
    let entry = hls.open_stream("s", "r1");
    let start = relaycast_fuzz::epoch();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut audio = 0;
    for video in 0..150 {
        entry.feed(&frame(start, MediaKind::Video, video), wall);
        while audio * 20 < video * 1000 / 30 {
            entry.feed(&frame(start, MediaKind::Audio, audio), wall);
            audio += 1;
        }
    }
    let app = rt.block_on(async { transcoder::router(hls.clone()) });
    Server { rt, app, _hls: hls }
}

thread_local! {
    static SERVER: Server = server();
}

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(request) = Request::get(target).body(Body::empty()) else {
        return;
    };
    SERVER.with(|s| {
        let body = s.rt.block_on(async {
            let res = s.app.clone().oneshot(request).await.expect("infallible");
            let playlist = res
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/vnd.apple.mpegurl"));
            let body = res.into_body().collect().await.map(|b| b.to_bytes());
            playlist.then_some(body)
        });
        if let Some(Ok(body)) = body {
            if let Ok(text) = std::str::from_utf8(&body) {
                let _ = UriQuery::new("hls_token=1.x").sign_playlist(text);
            }
        }
    });
});
