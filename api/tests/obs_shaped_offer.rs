//! Offers shaped like OBS's (libdatachannel): no candidates, H.264
//! advertised as 42e01f, Opus stereo, and (OBS 32.1) simulcast rids 0..3.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;

const FINGERPRINT: &str = "sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9";

fn obs_offer(simulcast: bool) -> String {
    let mut video_extra = String::new();
    if simulcast {
        video_extra.push_str("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n");
        for rid in 0..4 {
            video_extra.push_str(&format!("a=rid:{rid} send\r\n"));
        }
        video_extra.push_str("a=simulcast:send 0;1;2;3\r\n");
    }
    format!(
        "v=0\r\n\
o=rtc 2873612368 0 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=group:LS 0 1\r\n\
a=msid-semantic:WMS *\r\n\
a=ice-options:ice2,trickle\r\n\
a=fingerprint:{FINGERPRINT}\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=ssrc:1111 cname:obs\r\n\
a=msid:obs obs-audio\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1\r\n\
a=setup:actpass\r\n\
a=ice-ufrag:obsU\r\n\
a=ice-pwd:obspasswordobspassword12\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=ssrc:2222 cname:obs\r\n\
a=msid:obs obs-video\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 H264/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n\
{video_extra}\
a=setup:actpass\r\n\
a=ice-ufrag:obsU\r\n\
a=ice-pwd:obspasswordobspassword12\r\n"
    )
}

async fn publish(simulcast: bool) -> (StatusCode, String) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "obs-offer-{}-{}",
        simulcast,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = api::start(api::Config::for_test(dir), listener)
        .await
        .expect("start");
    let key = server.create_stream("obs", false).await.expect("key");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/whip/obs", server.http_addr()))
        .header(CONTENT_TYPE, "application/sdp")
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .body(obs_offer(simulcast))
        .send()
        .await
        .expect("post");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    server.shutdown().await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn obs_offer_without_candidates_gets_an_answer_with_ours() {
    let (status, answer) = publish(false).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(
        answer.contains("a=candidate:"),
        "answer carries a server candidate"
    );
    assert!(answer.contains("127.0.0.1"));
    assert!(answer.contains("a=ice-lite"));
    let opus_fmtp = answer
        .lines()
        .find(|l| l.starts_with("a=fmtp:111"))
        .expect("opus fmtp in answer");
    assert!(opus_fmtp.contains("stereo=1"), "{opus_fmtp}");
    assert!(answer.contains("H264/90000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn obs_simulcast_answer_lists_every_layer_first() {
    let (status, answer) = publish(true).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let first = answer
        .lines()
        .find(|l| l.starts_with("a=simulcast:"))
        .expect("a=simulcast in answer");
    assert_eq!(first.trim(), "a=simulcast:recv 0;1;2;3", "{answer}");
    for rid in 0..4 {
        assert!(
            answer.contains(&format!("a=rid:{rid} recv")),
            "rid {rid}: {answer}"
        );
    }
}
