//! Shared helpers for relaycast integration tests.
//!
//! * [`TestServer`]: a relaycast server on `127.0.0.1:0` with its data in a fresh temp dir.
//! * [`whip_publish`] / [`whep_view`]: WHIP/WHEP clients built on webrtc-rs (`webrtc` 0.14).
//! * [`encode_h264_test_pattern`] / [`H264Assembler`]-based decoding: openh264 test pictures.
//! * [`ffmpeg`] / [`ffprobe_video`]: external tool helpers (Debian `ffmpeg` package).
//!
//! Include it from a test file with `mod support;`.
#![allow(dead_code)]

pub mod analytics;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use openh264::decoder::{DecodedYUV, Decoder};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, UsageType,
};
use openh264::formats::{YUVBuffer, YUVSource};
use openh264::{OpenH264API, Timestamp};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION};
use reqwest::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{
    MediaEngine, MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MIME_TYPE_VP9,
};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::media::io::h264_reader::H264Reader;
use webrtc::media::io::h264_writer::H264Writer;
use webrtc::media::io::ivf_reader::{IVFFileHeader, IVFReader};
use webrtc::media::io::ivf_writer::IVFWriter;
use webrtc::media::io::Writer;
use webrtc::media::Sample;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp::codecs::h264::H264Packet;
use webrtc::rtp::packetizer::Depacketizer;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RTPCodecType,
};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCPFeedback, RTCRtpTransceiverInit};
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_remote::TrackRemote;

/// Overall time budget for one interop test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a peer may take to reach `connected`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time between two frames at 30 fps, rounded so that 90 kHz timestamps advance by exactly 3000.
pub const FRAME_DURATION_30FPS: Duration = Duration::from_micros(33_334);
/// Opus packet duration used by [`OPUS_SILENCE_20MS`].
pub const OPUS_FRAME_DURATION: Duration = Duration::from_millis(20);
/// A valid 20 ms Opus packet (CELT-only fullband, one frame of silence).
pub const OPUS_SILENCE_20MS: [u8; 3] = [0xf8, 0xff, 0xfe];

/// H.264 constrained baseline, level 3.1, as browsers and most WHIP encoders offer it.
pub const H264_CONSTRAINED_BASELINE_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Default Opus fmtp of browsers and webrtc-rs.
pub const OPUS_DEFAULT_FMTP: &str = "minptime=10;useinbandfec=1";

/// Env var: when set, temp dirs (server data, generated and received media) are kept.
pub const KEEP_FILES_ENV: &str = "RELAYCAST_KEEP_TEST_FILES";

// ---------------------------------------------------------------------------------------------
// Generic helpers
// ---------------------------------------------------------------------------------------------

/// Route `tracing` and `log` output (server and webrtc-rs) to the test output; filter via
/// `RUST_LOG`. Safe to call more than once.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Runs `fut`, failing with a clear message if it does not finish within `limit`.
pub async fn with_timeout<F>(limit: Duration, fut: F) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => bail!("test did not finish within its overall timeout of {limit:?}"),
    }
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Real-time media tests are CPU-hungry and timing-sensitive (CI has 2 cores): tests that
/// hold this guard run one at a time within a test binary. Take it before the timeout starts.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Locks a std mutex, ignoring poisoning (a panicking reader must not hide the real failure).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A directory under the system temp dir that is removed on drop (unless
/// [`KEEP_FILES_ENV`] is set).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating temp dir {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_FILES_ENV).is_some() {
            eprintln!("keeping test files in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A relaycast server listening on `127.0.0.1:<random port>` with its data dir in a temp dir.
pub struct TestServer {
    server: api::Server,
    base_url: String,
    dir: TempDir,
}

impl TestServer {
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], with `tweak` applied to the test config first.
    pub async fn start_with(tweak: impl FnOnce(&mut api::Config)) -> Result<Self> {
        let dir = TempDir::new("relaycast-test")?;
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).context("creating server data dir")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding HTTP listener")?;
        let mut config = api::Config::for_test(data_dir);
        tweak(&mut config);
        let server = api::start(config, listener)
            .await
            .context("starting relaycast")?;
        let base_url = format!("http://{}", server.http_addr());
        Ok(Self {
            server,
            base_url,
            dir,
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn server(&self) -> &api::Server {
        &self.server
    }

    /// A path for test media files inside this server's temp dir.
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub async fn create_stream(&self, name: &str, private: bool) -> Result<String> {
        self.server.create_stream(name, private).await
    }

    pub fn token(&self, stream: &str, role: &str, ttl: Duration) -> Result<String> {
        self.server.token(stream, role, ttl)
    }

    pub async fn shutdown(self) {
        let Self { server, dir, .. } = self;
        server.shutdown().await;
        drop(dir);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP (WHIP / WHEP signalling)
// ---------------------------------------------------------------------------------------------

pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("building HTTP client")
}

/// Reads one unlabelled gauge or counter from the server's `/metrics`.
pub async fn metric(base_url: &str, name: &str) -> Result<f64> {
    let text = http_client()?
        .get(format!("{base_url}/metrics"))
        .send()
        .await
        .context("GET /metrics")?
        .text()
        .await
        .context("reading /metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("{name} not in /metrics"))
}

/// Waits (up to 5 s) until the server reports no publishers and no viewers.
pub async fn wait_for_no_sessions(base_url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let publishers = metric(base_url, "relaycast_publishers").await?;
        let viewers = metric(base_url, "relaycast_viewers").await?;
        if publishers == 0.0 && viewers == 0.0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "sessions still held after close: {publishers} publishers, {viewers} viewers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resolves a `Location` header value against `base_url`.
pub fn resolve_location(base_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{base_url}{location}")
    } else {
        format!("{base_url}/{location}")
    }
}

/// Result of a successful WHIP/WHEP POST.
#[derive(Debug, Clone)]
pub struct SdpExchange {
    pub answer_sdp: String,
    /// Absolute session URL (the resolved `Location` header).
    pub session_url: String,
    /// The `ETag` of the session resource, if the server sent one.
    pub etag: Option<String>,
    /// The HTTP version the answer came over.
    pub version: reqwest::Version,
}

/// POSTs an SDP offer; requires `201 Created`, an `application/sdp` answer and a `Location`.
pub async fn post_offer(
    base_url: &str,
    path: &str,
    bearer: Option<&str>,
    offer_sdp: &str,
) -> Result<SdpExchange> {
    post_offer_with(&http_client()?, base_url, path, bearer, offer_sdp).await
}

/// [`post_offer`] with the given client (e.g. one that trusts a test CA).
pub async fn post_offer_with(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    bearer: Option<&str>,
    offer_sdp: &str,
) -> Result<SdpExchange> {
    let url = format!("{base_url}{path}");
    let mut request = client
        .post(&url)
        .header(CONTENT_TYPE, "application/sdp")
        .body(offer_sdp.to_owned());
    if let Some(token) = bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let version = response.version();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .text()
        .await
        .with_context(|| format!("reading body of POST {url}"))?;
    ensure!(
        status == StatusCode::CREATED,
        "POST {url} returned {status}, expected 201 Created; body: {body}"
    );
    ensure!(
        content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/sdp")),
        "POST {url}: answer Content-Type is {content_type:?}, expected application/sdp"
    );
    let location = location.with_context(|| format!("POST {url}: 201 without Location header"))?;
    ensure!(
        body.starts_with("v=0"),
        "POST {url}: body is not an SDP answer: {body}"
    );
    Ok(SdpExchange {
        answer_sdp: body,
        session_url: resolve_location(base_url, &location),
        etag,
        version,
    })
}

/// What a PATCH of a session resource returned.
#[derive(Clone, Debug)]
pub struct PatchResponse {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

/// PATCHes a WHIP/WHEP session with an `application/trickle-ice-sdpfrag` body (RFC 8840,
/// RFC 9725 §4.3), with `If-Match: {if_match}` when given. Any status is returned.
pub async fn patch_sdpfrag(
    session_url: &str,
    if_match: Option<&str>,
    fragment: &str,
) -> Result<PatchResponse> {
    let mut request = http_client()?
        .patch(session_url)
        .header(CONTENT_TYPE, "application/trickle-ice-sdpfrag")
        .body(fragment.to_owned());
    if let Some(if_match) = if_match {
        request = request.header(IF_MATCH, if_match);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("PATCH {session_url}"))?;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status();
    let etag = header(ETAG);
    let content_type = header(CONTENT_TYPE);
    let body = response
        .text()
        .await
        .with_context(|| format!("reading body of PATCH {session_url}"))?;
    Ok(PatchResponse {
        status,
        etag,
        content_type,
        body,
    })
}

/// DELETEs a WHIP/WHEP session and returns the HTTP status.
pub async fn delete_session(session_url: &str) -> Result<StatusCode> {
    let response = http_client()?
        .delete(session_url)
        .send()
        .await
        .with_context(|| format!("DELETE {session_url}"))?;
    Ok(response.status())
}

// ---------------------------------------------------------------------------------------------
// Codecs
// ---------------------------------------------------------------------------------------------

fn video_feedback() -> Vec<RTCPFeedback> {
    // nack, nack pli and transport-cc are added by `register_default_interceptors`.
    vec![RTCPFeedback {
        typ: "ccm".to_owned(),
        parameter: "fir".to_owned(),
    }]
}

pub fn h264_codec(payload_type: u8, fmtp: &str) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        capability: RTCRtpCodecCapability {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: video_feedback(),
        },
        payload_type,
        ..Default::default()
    }
}

/// Video codecs the tests carry in IVF files made by ffmpeg (and receive into IVF files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvfCodec {
    Vp8,
    Vp9,
    Av1,
}

impl IvfCodec {
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Vp8 => MIME_TYPE_VP8,
            Self::Vp9 => MIME_TYPE_VP9,
            Self::Av1 => MIME_TYPE_AV1,
        }
    }

    /// The fmtp a browser offers for this codec (VP9 profile 0, AV1 main profile).
    pub fn browser_fmtp(self) -> &'static str {
        match self {
            Self::Vp8 => "",
            Self::Vp9 => "profile-id=0",
            Self::Av1 => "level-idx=5;profile=0;tier=0",
        }
    }

    /// FourCC of the IVF container.
    pub fn four_cc(self) -> [u8; 4] {
        match self {
            Self::Vp8 => *b"VP80",
            Self::Vp9 => *b"VP90",
            Self::Av1 => *b"AV01",
        }
    }

    /// `codec_name` as reported by ffprobe.
    pub fn ffprobe_name(self) -> &'static str {
        match self {
            Self::Vp8 => "vp8",
            Self::Vp9 => "vp9",
            Self::Av1 => "av1",
        }
    }

    /// ffmpeg encoder arguments (real-time settings, keyframe every 30 frames).
    fn ffmpeg_encoder_args(self) -> &'static [&'static str] {
        match self {
            Self::Vp8 => &["-c:v", "libvpx", "-g", "30"],
            Self::Vp9 => &[
                "-c:v",
                "libvpx-vp9",
                "-g",
                "30",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ],
            Self::Av1 => &[
                "-c:v",
                "libaom-av1",
                "-g",
                "30",
                "-usage",
                "realtime",
                "-cpu-used",
                "8",
                "-lag-in-frames",
                "0",
            ],
        }
    }
}

/// `codec` with the fmtp a browser offers for it.
pub fn ivf_codec(codec: IvfCodec, payload_type: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        capability: RTCRtpCodecCapability {
            mime_type: codec.mime_type().to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: codec.browser_fmtp().to_owned(),
            rtcp_feedback: video_feedback(),
        },
        payload_type,
        ..Default::default()
    }
}

pub fn opus_codec(payload_type: u8, fmtp: &str) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        capability: RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type,
        ..Default::default()
    }
}

/// Video codecs a browser-like WHEP viewer offers (subset of Chrome's list, in its order and
/// with its payload types).
pub fn browser_video_codecs() -> Vec<RTCRtpCodecParameters> {
    vec![
        ivf_codec(IvfCodec::Vp8, 96),
        ivf_codec(IvfCodec::Vp9, 98),
        ivf_codec(IvfCodec::Av1, 45),
        h264_codec(102, H264_CONSTRAINED_BASELINE_FMTP),
        h264_codec(
            104,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        ),
        h264_codec(
            106,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
        ),
        h264_codec(
            112,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f",
        ),
    ]
}

pub fn browser_audio_codecs() -> Vec<RTCRtpCodecParameters> {
    vec![opus_codec(111, OPUS_DEFAULT_FMTP)]
}

// ---------------------------------------------------------------------------------------------
// Peer connections
// ---------------------------------------------------------------------------------------------

/// A webrtc-rs peer connection restricted to loopback UDP/IPv4 host candidates.
pub struct Peer {
    pub pc: Arc<RTCPeerConnection>,
    /// Every state the peer connection went through, in order.
    pub states: Arc<Mutex<Vec<RTCPeerConnectionState>>>,
    state_rx: watch::Receiver<RTCPeerConnectionState>,
}

impl Peer {
    /// Creates a peer that supports exactly the given codecs.
    pub async fn new(
        video_codecs: &[RTCRtpCodecParameters],
        audio_codecs: &[RTCRtpCodecParameters],
    ) -> Result<Self> {
        Self::with_config(video_codecs, audio_codecs, RTCConfiguration::default()).await
    }

    /// Like [`Peer::new`] with an explicit configuration (ICE servers, transport policy).
    pub async fn with_config(
        video_codecs: &[RTCRtpCodecParameters],
        audio_codecs: &[RTCRtpCodecParameters],
        config: RTCConfiguration,
    ) -> Result<Self> {
        let mut media_engine = MediaEngine::default();
        for codec in video_codecs {
            media_engine
                .register_codec(codec.clone(), RTPCodecType::Video)
                .context("registering video codec")?;
        }
        for codec in audio_codecs {
            media_engine
                .register_codec(codec.clone(), RTPCodecType::Audio)
                .context("registering audio codec")?;
        }
        // webrtc-rs needs either a=ssrc lines in the remote SDP or the mid extension to map
        // incoming SSRCs to transceivers; offer the mid extension so the SFU can use it.
        for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
            media_engine
                .register_header_extension(
                    RTCRtpHeaderExtensionCapability {
                        uri: webrtc::sdp::extmap::SDES_MID_URI.to_owned(),
                    },
                    kind,
                    None,
                )
                .context("registering mid header extension")?;
        }
        // Codecs must be registered before this: it adds nack/pli/twcc feedback to them.
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .context("registering interceptors")?;

        let mut settings = SettingEngine::default();
        // The server is ICE-lite on 127.0.0.1. webrtc-rs skips loopback interfaces unless
        // told otherwise; only gather IPv4 loopback host candidates so tests do not depend on
        // the machine's other interfaces, and keep mDNS out of the way.
        settings.set_include_loopback_candidate(true);
        settings.set_network_types(vec![NetworkType::Udp4]);
        settings.set_ip_filter(Box::new(|ip: std::net::IpAddr| ip.is_loopback()));
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);

        let api = APIBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .build();
        let pc = Arc::new(
            api.new_peer_connection(config)
                .await
                .context("creating peer connection")?,
        );

        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let states = Arc::new(Mutex::new(Vec::new()));
        let states_for_handler = Arc::clone(&states);
        pc.on_peer_connection_state_change(Box::new(move |state: RTCPeerConnectionState| {
            lock(&states_for_handler).push(state);
            state_tx.send_replace(state);
            Box::pin(async {})
        }));

        Ok(Self {
            pc,
            states,
            state_rx,
        })
    }

    /// Creates an offer, waits for ICE gathering to complete (non-trickle WHIP/WHEP) and
    /// returns the SDP to send. With `strip_candidates`, all `a=candidate` lines are removed
    /// (OBS 30.2+ does this; the server must learn the address from STUN checks).
    pub async fn create_offer(&self, strip_candidates: bool) -> Result<String> {
        let offer = self.pc.create_offer(None).await.context("create_offer")?;
        let mut gathering_complete = self.pc.gathering_complete_promise().await;
        self.pc
            .set_local_description(offer)
            .await
            .context("set_local_description")?;
        tokio::time::timeout(Duration::from_secs(10), gathering_complete.recv())
            .await
            .context("ICE gathering did not complete within 10 s")?;
        let local = self
            .pc
            .local_description()
            .await
            .context("no local description after gathering")?;
        let sdp = if strip_candidates {
            strip_candidate_lines(&local.sdp)
        } else {
            local.sdp
        };
        Ok(sdp)
    }

    /// Creates an ICE restart offer (new local ufrag/pwd), waits for ICE gathering to complete
    /// and returns the new local description.
    pub async fn create_ice_restart_offer(&self) -> Result<String> {
        let offer = self
            .pc
            .create_offer(Some(RTCOfferOptions {
                ice_restart: true,
                ..Default::default()
            }))
            .await
            .context("create_offer with ice_restart")?;
        let mut gathering_complete = self.pc.gathering_complete_promise().await;
        self.pc
            .set_local_description(offer)
            .await
            .context("set_local_description of the ICE restart offer")?;
        tokio::time::timeout(Duration::from_secs(10), gathering_complete.recv())
            .await
            .context("ICE gathering after the restart did not complete within 10 s")?;
        Ok(self
            .pc
            .local_description()
            .await
            .context("no local description after the restart")?
            .sdp)
    }

    pub async fn apply_answer(&self, answer_sdp: &str) -> Result<()> {
        let answer =
            RTCSessionDescription::answer(answer_sdp.to_owned()).context("parsing SDP answer")?;
        self.pc
            .set_remote_description(answer)
            .await
            .with_context(|| format!("set_remote_description with answer:\n{answer_sdp}"))
    }

    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state_rx.borrow()
    }

    /// Waits until the peer connection is `connected`; fails early on `failed`/`closed`.
    pub async fn wait_connected(&self, limit: Duration) -> Result<()> {
        let mut rx = self.state_rx.clone();
        let wait = async {
            loop {
                let state = *rx.borrow_and_update();
                match state {
                    RTCPeerConnectionState::Connected => return Ok(()),
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        bail!("peer connection became {state} before connecting")
                    }
                    _ => {}
                }
                rx.changed()
                    .await
                    .context("peer connection state channel closed")?;
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(result) => result,
            Err(_) => bail!(
                "peer connection not connected after {limit:?}; states so far: {:?}",
                lock(&self.states)
            ),
        }
    }

    /// States recorded so far.
    pub fn state_history(&self) -> Vec<RTCPeerConnectionState> {
        lock(&self.states).clone()
    }

    pub async fn close(&self) -> Result<()> {
        self.pc.close().await.context("closing peer connection")
    }
}

/// Removes `a=candidate` and `a=end-of-candidates` lines from an SDP.
pub fn strip_candidate_lines(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines() {
        if line.starts_with("a=candidate:") || line.starts_with("a=end-of-candidates") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Publisher (WHIP)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct PublishOptions {
    /// The only video codec the publisher advertises (and the one its track uses).
    pub video: Option<RTCRtpCodecParameters>,
    /// The only audio codec the publisher advertises (and the one its track uses).
    pub audio: Option<RTCRtpCodecParameters>,
    /// Remove all candidates from the offer, like OBS 30.2+.
    pub strip_candidates: bool,
}

impl PublishOptions {
    /// H.264 constrained baseline (42e01f) + Opus, as a browser-based WHIP publisher sends.
    pub fn h264_and_opus() -> Self {
        Self {
            video: Some(h264_codec(102, H264_CONSTRAINED_BASELINE_FMTP)),
            audio: Some(opus_codec(111, OPUS_DEFAULT_FMTP)),
            strip_candidates: false,
        }
    }

    /// `codec` video only (the browser fmtp and payload type of [`browser_video_codecs`]).
    pub fn video_only(codec: IvfCodec) -> Self {
        let payload_type = match codec {
            IvfCodec::Vp8 => 96,
            IvfCodec::Vp9 => 98,
            IvfCodec::Av1 => 45,
        };
        Self {
            video: Some(ivf_codec(codec, payload_type)),
            audio: None,
            strip_candidates: false,
        }
    }
}

/// A publisher peer: sendonly transceivers with sample tracks.
pub struct PublisherPeer {
    pub peer: Peer,
    pub video: Option<Arc<TrackLocalStaticSample>>,
    pub audio: Option<Arc<TrackLocalStaticSample>>,
    /// When each PLI/FIR from the server arrived on the video sender.
    pub keyframe_requests: Arc<Mutex<Vec<Instant>>>,
}

impl PublisherPeer {
    pub async fn new(options: &PublishOptions) -> Result<Self> {
        let video_codecs: Vec<_> = options.video.iter().cloned().collect();
        let audio_codecs: Vec<_> = options.audio.iter().cloned().collect();
        let peer = Peer::new(&video_codecs, &audio_codecs).await?;
        let keyframe_requests = Arc::new(Mutex::new(Vec::new()));
        let video = match &options.video {
            Some(codec) => Some(
                add_send_track(&peer, codec, "video", Some(Arc::clone(&keyframe_requests))).await?,
            ),
            None => None,
        };
        let audio = match &options.audio {
            Some(codec) => Some(add_send_track(&peer, codec, "audio", None).await?),
            None => None,
        };
        Ok(Self {
            peer,
            video,
            audio,
            keyframe_requests,
        })
    }

    pub fn video_track(&self) -> Result<Arc<TrackLocalStaticSample>> {
        self.video.clone().context("publisher has no video track")
    }

    pub fn audio_track(&self) -> Result<Arc<TrackLocalStaticSample>> {
        self.audio.clone().context("publisher has no audio track")
    }
}

async fn add_send_track(
    peer: &Peer,
    codec: &RTCRtpCodecParameters,
    id: &str,
    keyframe_requests: Option<Arc<Mutex<Vec<Instant>>>>,
) -> Result<Arc<TrackLocalStaticSample>> {
    let track = Arc::new(TrackLocalStaticSample::new(
        codec.capability.clone(),
        id.to_owned(),
        "relaycast-test".to_owned(),
    ));
    let transceiver = peer
        .pc
        .add_transceiver_from_track(
            Arc::clone(&track) as Arc<dyn TrackLocal + Send + Sync>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: vec![],
            }),
        )
        .await
        .with_context(|| format!("adding {id} transceiver"))?;
    // Drain RTCP (receiver reports, NACK, PLI) so the interceptors keep working,
    // noting keyframe requests.
    let sender = transceiver.sender().await;
    tokio::spawn(async move {
        while let Ok((packets, _)) = sender.read_rtcp().await {
            let Some(log) = &keyframe_requests else {
                continue;
            };
            for p in packets {
                let any = p.as_any();
                if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                    lock(log).push(Instant::now());
                }
            }
        }
    });
    Ok(track)
}

/// A connected-or-connecting WHIP publisher.
pub struct Publisher {
    pub media: PublisherPeer,
    pub offer_sdp: String,
    pub answer_sdp: String,
    pub session_url: String,
    /// `ETag` of the session resource from the POST answer.
    pub etag: Option<String>,
}

impl Publisher {
    pub fn peer(&self) -> &Peer {
        &self.media.peer
    }

    /// DELETEs the WHIP session (does not close the peer connection).
    pub async fn unpublish(&self) -> Result<StatusCode> {
        delete_session(&self.session_url).await
    }

    /// DELETEs the session (status ignored) and closes the peer connection.
    pub async fn close(self) -> Result<()> {
        let _ = delete_session(&self.session_url).await;
        self.media.peer.close().await
    }
}

/// Publishes to `POST {base_url}/whip/{stream}` with `Authorization: Bearer {key}`.
pub async fn whip_publish(
    base_url: &str,
    stream: &str,
    key: &str,
    options: &PublishOptions,
) -> Result<Publisher> {
    let media = PublisherPeer::new(options).await?;
    let offer_sdp = media.peer.create_offer(options.strip_candidates).await?;
    let exchange = post_offer(base_url, &format!("/whip/{stream}"), Some(key), &offer_sdp)
        .await
        .context("WHIP publish")?;
    media.peer.apply_answer(&exchange.answer_sdp).await?;
    Ok(Publisher {
        media,
        offer_sdp,
        answer_sdp: exchange.answer_sdp,
        session_url: exchange.session_url,
        etag: exchange.etag,
    })
}

/// A WHIP publisher that is live: H.264 `frames` looped at 30 fps and Opus
/// silence, what the LL-HLS and player tests need.
pub struct LivePublisher {
    pub publisher: Publisher,
    video: MediaSender,
    audio: MediaSender,
}

impl LivePublisher {
    /// Publishes to `stream` with `key`, waits for the connection and
    /// starts sending.
    pub async fn start(
        base_url: &str,
        stream: &str,
        key: &str,
        frames: Vec<Bytes>,
    ) -> Result<Self> {
        let publisher =
            whip_publish(base_url, stream, key, &PublishOptions::h264_and_opus()).await?;
        publisher.peer().wait_connected(CONNECT_TIMEOUT).await?;
        let video = spawn_sample_sender(
            publisher.media.video_track()?,
            Arc::new(frames),
            FRAME_DURATION_30FPS,
            true,
        );
        let audio = spawn_opus_sender(publisher.media.audio_track()?);
        Ok(Self {
            publisher,
            video,
            audio,
        })
    }

    /// Stops sending, DELETEs the session and closes the connection.
    pub async fn stop(self) -> Result<()> {
        self.video.stop().await?;
        self.audio.stop().await?;
        self.publisher.close().await
    }
}

// ---------------------------------------------------------------------------------------------
// Sending media
// ---------------------------------------------------------------------------------------------

/// A background task writing samples to a track at a fixed pace.
pub struct MediaSender {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<usize>>,
}

impl MediaSender {
    /// Waits for the sender to finish on its own (non-looping senders); returns samples sent.
    pub async fn join(self) -> Result<usize> {
        self.handle.await.context("media sender task panicked")?
    }

    /// Stops the sender and returns the number of samples sent.
    pub async fn stop(self) -> Result<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.join().await
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Writes `samples` to `track`, one every `sample_duration`, once or in a loop until stopped.
pub fn spawn_sample_sender(
    track: Arc<TrackLocalStaticSample>,
    samples: Arc<Vec<Bytes>>,
    sample_duration: Duration,
    looping: bool,
) -> MediaSender {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let handle = tokio::spawn(async move {
        if samples.is_empty() {
            return Ok(0);
        }
        let mut ticker = tokio::time::interval(sample_duration);
        let mut sent = 0usize;
        'outer: loop {
            for data in samples.iter() {
                ticker.tick().await;
                if stop_flag.load(Ordering::SeqCst) {
                    break 'outer;
                }
                track
                    .write_sample(&Sample {
                        data: data.clone(),
                        duration: sample_duration,
                        ..Default::default()
                    })
                    .await
                    .context("write_sample")?;
                sent += 1;
            }
            if !looping {
                break;
            }
        }
        Ok(sent)
    });
    MediaSender { stop, handle }
}

/// Sends a 20 ms Opus silence packet every 20 ms until stopped.
pub fn spawn_opus_sender(track: Arc<TrackLocalStaticSample>) -> MediaSender {
    spawn_sample_sender(
        track,
        Arc::new(vec![Bytes::from_static(&OPUS_SILENCE_20MS)]),
        OPUS_FRAME_DURATION,
        true,
    )
}

// ---------------------------------------------------------------------------------------------
// H.264 test pattern (openh264)
// ---------------------------------------------------------------------------------------------

/// A picture whose top half has luma `top_luma` and bottom half `bottom_luma`, plus a small
/// grey block moving along the middle line (so P-frames carry real motion).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestPattern {
    pub top_luma: u8,
    pub bottom_luma: u8,
}

impl TestPattern {
    pub const BRIGHT_TOP: Self = Self {
        top_luma: 220,
        bottom_luma: 30,
    };
    pub const BRIGHT_BOTTOM: Self = Self {
        top_luma: 30,
        bottom_luma: 220,
    };

    /// I420 frame number `index` of `width`x`height` (both even, at least 32).
    pub fn frame(&self, width: usize, height: usize, index: usize) -> YUVBuffer {
        let mut data = vec![128u8; width * height * 3 / 2];
        for row in 0..height {
            let luma = if row < height / 2 {
                self.top_luma
            } else {
                self.bottom_luma
            };
            data[row * width..(row + 1) * width].fill(luma);
        }
        let block = 16;
        let x = (index * 4) % (width - block);
        let y = height / 2 - block / 2;
        for row in y..y + block {
            data[row * width + x..row * width + x + block].fill(128);
        }
        YUVBuffer::from_vec(data, width, height)
    }

    /// Whether a decoded frame shows this pattern (generous thresholds for coding loss).
    pub fn matches(&self, frame: &DecodedFrame) -> bool {
        let close = |measured: f64, expected: u8| {
            if expected >= 128 {
                measured > 150.0
            } else {
                measured < 90.0
            }
        };
        close(frame.top_luma, self.top_luma) && close(frame.bottom_luma, self.bottom_luma)
    }
}

/// Encodes `frames` frames of `pattern` with openh264 (constrained baseline, one IDR per
/// second) and returns one Annex-B access unit per frame. CPU-bound: call it from
/// `spawn_blocking`.
pub fn encode_h264_test_pattern(
    pattern: TestPattern,
    width: usize,
    height: usize,
    frames: usize,
    fps: u32,
) -> Result<Vec<Bytes>> {
    encode_h264_test_pattern_with_gop(pattern, width, height, frames, fps, fps)
}

/// `frames` of the bright-top test pattern at 320x240, 30 fps with a keyframe
/// every second, encoded off the runtime: the live stream most LL-HLS and
/// player tests publish.
pub async fn test_pattern_320x240(frames: usize) -> Result<Vec<Bytes>> {
    tokio::task::spawn_blocking(move || {
        encode_h264_test_pattern_with_gop(TestPattern::BRIGHT_TOP, 320, 240, frames, 30, 30)
    })
    .await
    .context("encoder task")?
}

/// [`encode_h264_test_pattern`] with an IDR every `gop` frames.
pub fn encode_h264_test_pattern_with_gop(
    pattern: TestPattern,
    width: usize,
    height: usize,
    frames: usize,
    fps: u32,
    gop: u32,
) -> Result<Vec<Bytes>> {
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .usage_type(UsageType::CameraVideoRealTime)
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .bitrate(BitRate::from_bps(600_000))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(gop))
        .num_threads(1);
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
        .context("creating openh264 encoder")?;
    let mut out = Vec::with_capacity(frames);
    for index in 0..frames {
        let yuv = pattern.frame(width, height, index);
        let millis = index as u64 * 1000 / u64::from(fps);
        let bitstream = encoder
            .encode_at(&yuv, Timestamp::from_millis(millis))
            .with_context(|| format!("encoding frame {index}"))?;
        let data = bitstream.to_vec();
        ensure!(
            !data.is_empty(),
            "openh264 produced no data for frame {index}"
        );
        out.push(Bytes::from(data));
    }
    ensure!(
        out.first().is_some_and(|au| annexb_contains_idr(au)),
        "first encoded frame is not an IDR"
    );
    Ok(out)
}

/// [`encode_h264_test_pattern`] of `seconds` at `fps`, run off the async runtime.
pub async fn encode_h264_pattern(
    pattern: TestPattern,
    width: usize,
    height: usize,
    seconds: usize,
    fps: u32,
) -> Result<Arc<Vec<Bytes>>> {
    let frames = seconds * fps as usize;
    let encoded = tokio::task::spawn_blocking(move || {
        encode_h264_test_pattern(pattern, width, height, frames, fps)
    })
    .await
    .context("encoder task panicked")??;
    Ok(Arc::new(encoded))
}

/// Checks that every decoded frame is `width`x`height` and shows `pattern`.
pub fn assert_frames_show(
    frames: &[DecodedFrame],
    pattern: TestPattern,
    width: usize,
    height: usize,
    label: &str,
) -> Result<()> {
    for (index, frame) in frames.iter().enumerate() {
        ensure!(
            frame.width == width && frame.height == height,
            "{label}: decoded frame {index} is {}x{}, expected {width}x{height}",
            frame.width,
            frame.height
        );
        ensure!(
            pattern.matches(frame),
            "{label}: decoded frame {index} has top luma {:.1} / bottom luma {:.1}, \
             expected ~{} / ~{}",
            frame.top_luma,
            frame.bottom_luma,
            pattern.top_luma,
            pattern.bottom_luma
        );
    }
    Ok(())
}

/// Types of the NAL units in an Annex-B buffer.
pub fn annexb_nal_types(data: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut i = 0;
    while i + 3 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            types.push(data[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    types
}

pub fn annexb_contains_idr(data: &[u8]) -> bool {
    annexb_nal_types(data).contains(&5)
}

/// Reads an Annex-B H.264 file with webrtc-rs' `H264Reader` and groups its NAL units into
/// access units (one Annex-B buffer per picture, parameter sets attached to the IDR).
/// Note: `H264Reader` drops SEI NAL units.
pub fn read_h264_access_units(path: &Path) -> Result<Vec<Bytes>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = H264Reader::new(std::io::BufReader::new(file), 1 << 20);
    let mut access_units = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut current_has_slice = false;
    loop {
        let nal = match reader.next_nal() {
            Ok(nal) => nal,
            Err(webrtc::media::Error::ErrIoEOF) => break,
            Err(err) => return Err(anyhow!(err).context(format!("parsing {}", path.display()))),
        };
        let Some(&header) = nal.data.first() else {
            continue;
        };
        let nal_type = header & 0x1f;
        let is_slice = (1..=5).contains(&nal_type);
        // first_mb_in_slice == 0 (ue(v) "1" bit) marks the first slice of a new picture.
        let first_slice = is_slice && nal.data.get(1).is_some_and(|b| b & 0x80 != 0);
        if current_has_slice && (!is_slice || first_slice) {
            access_units.push(Bytes::from(std::mem::take(&mut current)));
            current_has_slice = false;
        }
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(&nal.data);
        current_has_slice |= is_slice;
    }
    if current_has_slice {
        access_units.push(Bytes::from(current));
    }
    ensure!(
        !access_units.is_empty(),
        "no H.264 pictures in {}",
        path.display()
    );
    Ok(access_units)
}

/// Reads all frames of an IVF file.
pub fn read_ivf_frames(path: &Path) -> Result<(IVFFileHeader, Vec<Bytes>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut reader, header) = IVFReader::new(std::io::BufReader::new(file))
        .with_context(|| format!("reading IVF header of {}", path.display()))?;
    let mut frames = Vec::new();
    // The reader reports end of file as an error; stop at the first one.
    while let Ok((frame, _)) = reader.parse_next_frame() {
        frames.push(frame.freeze());
    }
    ensure!(!frames.is_empty(), "no frames in {}", path.display());
    Ok((header, frames))
}

// ---------------------------------------------------------------------------------------------
// AV1 over RTP -> IVF (webrtc-rs 0.14 has an AV1 payloader but no depacketizer)
// ---------------------------------------------------------------------------------------------

const AV1_OBU_HAS_SIZE_FIELD: u8 = 0x02;
const AV1_OBU_HAS_EXTENSION: u8 = 0x04;
const AV1_OBU_TYPE_SEQUENCE_HEADER: u8 = 1;
/// A temporal delimiter OBU with its (zero) size field; starts every IVF frame.
const AV1_TEMPORAL_DELIMITER: [u8; 2] = [0x12, 0x00];

fn read_leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (index, byte) in data.iter().take(8).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

fn write_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Writes received AV1 RTP (AV1 RTP payload format, §4) as an IVF file of temporal units in
/// the low-overhead bitstream format: OBU elements are reassembled across packets, given back
/// their size fields, and each temporal unit (ended by the marker bit) starts with a temporal
/// delimiter. Frames before the first sequence header are dropped.
pub struct Av1IvfWriter<W: std::io::Write + std::io::Seek> {
    writer: W,
    frames: u32,
    /// OBUs (with size fields) of the temporal unit being received.
    temporal_unit: Vec<u8>,
    /// An OBU element continued in the next packet (Y bit).
    fragment: Option<Vec<u8>>,
    /// The current temporal unit lost a packet; drop it.
    broken: bool,
    last_sequence_number: Option<u16>,
    seen_sequence_header: bool,
}

impl<W: std::io::Write + std::io::Seek> Av1IvfWriter<W> {
    pub fn new(mut writer: W) -> std::io::Result<Self> {
        let mut header = Vec::with_capacity(32);
        header.extend_from_slice(b"DKIF");
        header.extend_from_slice(&0u16.to_le_bytes()); // version
        header.extend_from_slice(&32u16.to_le_bytes()); // header size
        header.extend_from_slice(b"AV01");
        header.extend_from_slice(&0u16.to_le_bytes()); // width: from the sequence header
        header.extend_from_slice(&0u16.to_le_bytes()); // height
        header.extend_from_slice(&30u32.to_le_bytes()); // timebase denominator
        header.extend_from_slice(&1u32.to_le_bytes()); // timebase numerator
        header.extend_from_slice(&0u32.to_le_bytes()); // frame count, set by close()
        header.extend_from_slice(&0u32.to_le_bytes()); // unused
        writer.write_all(&header)?;
        Ok(Self {
            writer,
            frames: 0,
            temporal_unit: Vec::new(),
            fragment: None,
            broken: false,
            last_sequence_number: None,
            seen_sequence_header: false,
        })
    }

    /// Appends a complete OBU element (header without size field + payload) with a size field.
    fn push_obu(&mut self, element: &[u8]) {
        let Some(&header) = element.first() else {
            return;
        };
        let header_len = if header & AV1_OBU_HAS_EXTENSION != 0 {
            2
        } else {
            1
        };
        let Some(payload) = element.get(header_len..) else {
            self.broken = true;
            return;
        };
        if (header >> 3) & 0x0f == AV1_OBU_TYPE_SEQUENCE_HEADER {
            self.seen_sequence_header = true;
        }
        self.temporal_unit.push(header | AV1_OBU_HAS_SIZE_FIELD);
        self.temporal_unit
            .extend_from_slice(&element[1..header_len]);
        write_leb128(&mut self.temporal_unit, payload.len());
        self.temporal_unit.extend_from_slice(payload);
    }

    fn finish_temporal_unit(&mut self) -> std::io::Result<()> {
        let obus = std::mem::take(&mut self.temporal_unit);
        let broken = std::mem::replace(&mut self.broken, false);
        self.fragment = None;
        if obus.is_empty() || broken || !self.seen_sequence_header {
            return Ok(());
        }
        let size = (AV1_TEMPORAL_DELIMITER.len() + obus.len()) as u32;
        self.writer.write_all(&size.to_le_bytes())?;
        self.writer
            .write_all(&u64::from(self.frames).to_le_bytes())?; // pts
        self.writer.write_all(&AV1_TEMPORAL_DELIMITER)?;
        self.writer.write_all(&obus)?;
        self.frames += 1;
        Ok(())
    }
}

impl<W: std::io::Write + std::io::Seek> Writer for Av1IvfWriter<W> {
    fn write_rtp(
        &mut self,
        packet: &webrtc::rtp::packet::Packet,
    ) -> std::result::Result<(), webrtc::media::Error> {
        let bad = |what: &str| webrtc::media::Error::Other(format!("AV1 RTP: {what}"));
        let sequence_number = packet.header.sequence_number;
        if self
            .last_sequence_number
            .is_some_and(|last| sequence_number != last.wrapping_add(1))
        {
            // A packet went missing: its OBU fragments cannot be put back together.
            self.broken = true;
            self.fragment = None;
        }
        self.last_sequence_number = Some(sequence_number);
        let payload = &packet.payload[..];
        let Some((&aggregation, mut rest)) = payload.split_first() else {
            return Ok(()); // padding
        };
        let continues_previous = aggregation & 0x80 != 0; // Z
        let continued_in_next = aggregation & 0x40 != 0; // Y
        let element_count = usize::from((aggregation >> 4) & 0x03); // W, 0 = all sized
        let mut index = 0;
        while !rest.is_empty() {
            index += 1;
            let element = if element_count != 0 && index == element_count {
                std::mem::take(&mut rest)
            } else {
                let (len, len_size) = read_leb128(rest).ok_or_else(|| bad("bad leb128"))?;
                let element = rest
                    .get(len_size..len_size + len)
                    .ok_or_else(|| bad("OBU element longer than the packet"))?;
                rest = &rest[len_size + len..];
                element
            };
            let first = index == 1;
            let last = rest.is_empty();
            let mut obu = if first && continues_previous {
                match self.fragment.take() {
                    Some(mut fragment) => {
                        fragment.extend_from_slice(element);
                        fragment
                    }
                    None => {
                        // Lost the start of this OBU.
                        self.broken = true;
                        continue;
                    }
                }
            } else {
                element.to_vec()
            };
            if last && continued_in_next {
                self.fragment = Some(std::mem::take(&mut obu));
            } else {
                self.push_obu(&obu);
            }
        }
        if packet.header.marker {
            self.finish_temporal_unit()?;
        }
        Ok(())
    }

    fn close(&mut self) -> std::result::Result<(), webrtc::media::Error> {
        self.writer.seek(std::io::SeekFrom::Start(24))?;
        self.writer.write_all(&self.frames.to_le_bytes())?;
        self.writer.flush()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Viewer (WHEP)
// ---------------------------------------------------------------------------------------------

/// What a viewer does with received video.
#[derive(Clone, Debug)]
pub enum VideoSink {
    /// Depacketize H.264 and decode it with openh264 into [`ViewerStats::decoded`].
    DecodeH264,
    /// Write VP8 or VP9 to an IVF file with webrtc-rs' `IVFWriter`, AV1 with [`Av1IvfWriter`].
    Ivf(PathBuf, IvfCodec),
    /// Write H.264 to an Annex-B file with webrtc-rs' `H264Writer`.
    AnnexB(PathBuf),
    /// Only record RTP metadata.
    None,
}

#[derive(Clone, Debug)]
pub struct ViewOptions {
    pub video_codecs: Vec<RTCRtpCodecParameters>,
    pub audio_codecs: Vec<RTCRtpCodecParameters>,
    pub sink: VideoSink,
}

impl ViewOptions {
    /// A viewer offering the codecs of [`browser_video_codecs`] / [`browser_audio_codecs`].
    pub fn browser_like(sink: VideoSink) -> Self {
        Self {
            video_codecs: browser_video_codecs(),
            audio_codecs: browser_audio_codecs(),
            sink,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct RtpMeta {
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    pub marker: bool,
    pub payload_len: usize,
    pub received_at: Instant,
}

#[derive(Clone, Debug)]
pub struct TrackInfo {
    pub mime_type: String,
    pub payload_type: u8,
    pub ssrc: u32,
    pub fmtp: String,
}

#[derive(Clone, Copy, Debug)]
pub struct DecodedFrame {
    pub width: usize,
    pub height: usize,
    /// Mean luma of the top 40 % of the picture.
    pub top_luma: f64,
    /// Mean luma of the bottom 40 % of the picture.
    pub bottom_luma: f64,
    /// When the last RTP packet of this picture arrived.
    pub received_at: Instant,
}

/// Everything a viewer observed.
#[derive(Clone, Debug, Default)]
pub struct ViewerStats {
    pub video_tracks: Vec<TrackInfo>,
    pub audio_tracks: Vec<TrackInfo>,
    /// All video RTP packets of all video tracks, in arrival order.
    pub video_rtp: Vec<RtpMeta>,
    /// All audio RTP packets of all audio tracks, in arrival order.
    pub audio_rtp: Vec<RtpMeta>,
    /// Payloads of the first [`AUDIO_PAYLOADS_KEPT`] audio packets (to decode).
    pub audio_payloads: Vec<Bytes>,
    /// H.264 access units handed to the decoder.
    pub access_units: usize,
    /// Access units dropped while waiting for the first IDR.
    pub skipped_before_idr: usize,
    pub depacketize_errors: usize,
    pub decode_errors: usize,
    pub decoded: Vec<DecodedFrame>,
    pub sink_errors: usize,
    pub decoder_failure: Option<String>,
}

impl ViewerStats {
    /// Number of video RTP packets with the marker bit (≈ pictures received).
    pub fn video_frames_marked(&self) -> usize {
        self.video_rtp.iter().filter(|p| p.marker).count()
    }

    pub fn summary(&self) -> String {
        format!(
            "video tracks {:?}, audio tracks {:?}, video rtp {} (marked {}), audio rtp {}, \
             access units {}, skipped before IDR {}, depacketize errors {}, decoded {}, \
             decode errors {}, sink errors {}, decoder failure {:?}",
            self.video_tracks
                .iter()
                .map(|t| format!("{} pt {} ssrc {}", t.mime_type, t.payload_type, t.ssrc))
                .collect::<Vec<_>>(),
            self.audio_tracks
                .iter()
                .map(|t| format!("{} pt {} ssrc {}", t.mime_type, t.payload_type, t.ssrc))
                .collect::<Vec<_>>(),
            self.video_rtp.len(),
            self.video_frames_marked(),
            self.audio_rtp.len(),
            self.access_units,
            self.skipped_before_idr,
            self.depacketize_errors,
            self.decoded.len(),
            self.decode_errors,
            self.sink_errors,
            self.decoder_failure,
        )
    }
}

/// Audio payloads a viewer keeps ([`ViewerStats::audio_payloads`]): 40 s of 20 ms packets.
pub const AUDIO_PAYLOADS_KEPT: usize = 2000;

type SharedStats = Arc<Mutex<ViewerStats>>;
type SinkSlot = Arc<Mutex<Option<Box<dyn Writer + Send>>>>;

/// The receiving side of a viewer: statistics and the optional file sink.
#[derive(Clone)]
pub struct ViewerMedia {
    pub stats: SharedStats,
    sink: SinkSlot,
}

impl ViewerMedia {
    pub fn snapshot(&self) -> ViewerStats {
        lock(&self.stats).clone()
    }

    /// Polls until `condition` holds; the error message includes what the viewer saw.
    pub async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        condition: impl Fn(&ViewerStats) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let stats = lock(&self.stats);
                if condition(&stats) {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    bail!(
                        "timed out after {limit:?} waiting for {what}; viewer saw: {}",
                        stats.summary()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Finalizes and closes the file sink (IVF frame count, flush). Later packets are ignored.
    pub fn close_sink(&self) -> Result<()> {
        let writer = lock(&self.sink).take();
        if let Some(mut writer) = writer {
            writer.close().context("closing media file writer")?;
        }
        Ok(())
    }
}

/// A viewer peer: recvonly video + audio transceivers and an `on_track` collector.
pub struct ViewerPeer {
    pub peer: Peer,
    pub media: ViewerMedia,
}

impl ViewerPeer {
    pub async fn new(options: &ViewOptions) -> Result<Self> {
        Self::with_config(options, RTCConfiguration::default()).await
    }

    /// Like [`ViewerPeer::new`] with an explicit peer connection configuration.
    pub async fn with_config(options: &ViewOptions, config: RTCConfiguration) -> Result<Self> {
        let peer = Peer::with_config(&options.video_codecs, &options.audio_codecs, config).await?;
        for kind in [RTPCodecType::Video, RTPCodecType::Audio] {
            peer.pc
                .add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        send_encodings: vec![],
                    }),
                )
                .await
                .with_context(|| format!("adding recvonly {kind} transceiver"))?;
        }

        let writer: Option<Box<dyn Writer + Send>> = match &options.sink {
            VideoSink::Ivf(path, IvfCodec::Av1) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                Some(Box::new(
                    Av1IvfWriter::new(file).context("creating AV1 IVF writer")?,
                ))
            }
            VideoSink::Ivf(path, codec) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let header = IVFFileHeader {
                    signature: *b"DKIF",
                    version: 0,
                    header_size: 32,
                    four_cc: codec.four_cc(),
                    // Left 0 on purpose: dimensions must come from the bitstream.
                    width: 0,
                    height: 0,
                    timebase_denominator: 30,
                    timebase_numerator: 1,
                    num_frames: 0,
                    unused: 0,
                };
                Some(Box::new(
                    IVFWriter::new(file, &header).context("creating IVF writer")?,
                ))
            }
            VideoSink::AnnexB(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                Some(Box::new(H264Writer::new(file)))
            }
            VideoSink::DecodeH264 | VideoSink::None => None,
        };
        let media = ViewerMedia {
            stats: Arc::new(Mutex::new(ViewerStats::default())),
            sink: Arc::new(Mutex::new(writer)),
        };

        let decode = matches!(options.sink, VideoSink::DecodeH264);
        let handler_media = media.clone();
        peer.pc
            .on_track(Box::new(move |track: Arc<TrackRemote>, _, _| {
                tokio::spawn(read_remote_track(track, handler_media.clone(), decode));
                Box::pin(async {})
            }));
        Ok(Self { peer, media })
    }
}

async fn read_remote_track(track: Arc<TrackRemote>, media: ViewerMedia, decode: bool) {
    let kind = track.kind();
    let codec = track.codec();
    let info = TrackInfo {
        mime_type: codec.capability.mime_type.clone(),
        payload_type: codec.payload_type,
        ssrc: track.ssrc(),
        fmtp: codec.capability.sdp_fmtp_line.clone(),
    };
    let is_h264 = info.mime_type.eq_ignore_ascii_case(MIME_TYPE_H264);
    {
        let mut stats = lock(&media.stats);
        match kind {
            RTPCodecType::Video => stats.video_tracks.push(info),
            _ => stats.audio_tracks.push(info),
        }
    }
    let mut assembler = (kind == RTPCodecType::Video && decode && is_h264)
        .then(|| H264Assembler::new(Arc::clone(&media.stats)));

    while let Ok((packet, _)) = track.read_rtp().await {
        let received_at = Instant::now();
        let meta = RtpMeta {
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            ssrc: packet.header.ssrc,
            payload_type: packet.header.payload_type,
            marker: packet.header.marker,
            payload_len: packet.payload.len(),
            received_at,
        };
        if kind != RTPCodecType::Video {
            let mut stats = lock(&media.stats);
            stats.audio_rtp.push(meta);
            if stats.audio_payloads.len() < AUDIO_PAYLOADS_KEPT {
                stats.audio_payloads.push(packet.payload.clone());
            }
            continue;
        }
        lock(&media.stats).video_rtp.push(meta);
        if let Some(assembler) = assembler.as_mut() {
            assembler.push(&packet, received_at);
        }
        let sink_failed = lock(&media.sink)
            .as_mut()
            .is_some_and(|writer| writer.write_rtp(&packet).is_err());
        if sink_failed {
            lock(&media.stats).sink_errors += 1;
        }
    }
}

/// Reassembles H.264 access units from RTP (marker bit / timestamp change) and feeds them,
/// starting at the first IDR, to an openh264 decoder thread.
pub struct H264Assembler {
    depacketizer: H264Packet,
    current: Vec<u8>,
    current_timestamp: Option<u32>,
    last_arrival: Option<Instant>,
    seen_idr: bool,
    stats: SharedStats,
    decoder: std::sync::mpsc::Sender<(Vec<u8>, Instant)>,
}

impl H264Assembler {
    pub fn new(stats: SharedStats) -> Self {
        let decoder = spawn_h264_decoder(Arc::clone(&stats));
        Self {
            depacketizer: H264Packet::default(),
            current: Vec::new(),
            current_timestamp: None,
            last_arrival: None,
            seen_idr: false,
            stats,
            decoder,
        }
    }

    pub fn push(&mut self, packet: &webrtc::rtp::packet::Packet, received_at: Instant) {
        if packet.payload.is_empty() {
            return; // padding
        }
        if self
            .current_timestamp
            .is_some_and(|ts| ts != packet.header.timestamp)
        {
            self.flush();
        }
        self.current_timestamp = Some(packet.header.timestamp);
        self.last_arrival = Some(received_at);
        match self.depacketizer.depacketize(&packet.payload) {
            Ok(data) => self.current.extend_from_slice(&data),
            Err(_) => lock(&self.stats).depacketize_errors += 1,
        }
        if packet.header.marker {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let access_unit = std::mem::take(&mut self.current);
        self.current_timestamp = None;
        let received_at = self.last_arrival.unwrap_or_else(Instant::now);
        if access_unit.is_empty() {
            return;
        }
        if !self.seen_idr {
            if !annexb_contains_idr(&access_unit) {
                lock(&self.stats).skipped_before_idr += 1;
                return;
            }
            self.seen_idr = true;
        }
        lock(&self.stats).access_units += 1;
        // If the decoder thread died, its failure is recorded in the stats.
        let _ = self.decoder.send((access_unit, received_at));
    }
}

fn spawn_h264_decoder(stats: SharedStats) -> std::sync::mpsc::Sender<(Vec<u8>, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel::<(Vec<u8>, Instant)>();
    std::thread::spawn(move || {
        let mut decoder = match Decoder::new() {
            Ok(decoder) => decoder,
            Err(err) => {
                lock(&stats).decoder_failure = Some(err.to_string());
                return;
            }
        };
        for (access_unit, received_at) in rx {
            match decoder.decode(&access_unit) {
                Ok(Some(yuv)) => {
                    let frame = analyse_frame(&yuv, received_at);
                    lock(&stats).decoded.push(frame);
                }
                Ok(None) => {}
                Err(_) => lock(&stats).decode_errors += 1,
            }
        }
    });
    tx
}

fn analyse_frame(yuv: &DecodedYUV<'_>, received_at: Instant) -> DecodedFrame {
    let (width, height) = yuv.dimensions();
    let stride = yuv.strides().0;
    let luma = yuv.y();
    let mean = |rows: std::ops::Range<usize>| {
        let mut sum = 0u64;
        let mut count = 0u64;
        for row in rows {
            if let Some(line) = luma.get(row * stride..row * stride + width) {
                sum += line.iter().map(|&v| u64::from(v)).sum::<u64>();
                count += line.len() as u64;
            }
        }
        if count == 0 {
            0.0
        } else {
            sum as f64 / count as f64
        }
    };
    DecodedFrame {
        width,
        height,
        top_luma: mean(0..height * 2 / 5),
        bottom_luma: mean(height * 3 / 5..height),
        received_at,
    }
}

/// A WHEP viewer.
pub struct Viewer {
    pub peer: Peer,
    pub media: ViewerMedia,
    pub offer_sdp: String,
    pub answer_sdp: String,
    pub session_url: String,
    /// `ETag` of the session resource from the POST answer.
    pub etag: Option<String>,
}

impl Viewer {
    /// Closes the file sink, DELETEs the session (status ignored) and closes the peer.
    pub async fn close(self) -> Result<()> {
        self.media.close_sink()?;
        let _ = delete_session(&self.session_url).await;
        self.peer.close().await
    }
}

/// Views `POST {base_url}/whep/{stream}` (with `Authorization: Bearer` if `token` is given).
pub async fn whep_view(
    base_url: &str,
    stream: &str,
    token: Option<&str>,
    options: &ViewOptions,
) -> Result<Viewer> {
    whep_view_with_config(
        base_url,
        stream,
        token,
        options,
        RTCConfiguration::default(),
    )
    .await
}

/// Like [`whep_view`] with an explicit peer connection configuration (e.g. TURN only).
pub async fn whep_view_with_config(
    base_url: &str,
    stream: &str,
    token: Option<&str>,
    options: &ViewOptions,
    config: RTCConfiguration,
) -> Result<Viewer> {
    let ViewerPeer { peer, media } = ViewerPeer::with_config(options, config).await?;
    let offer_sdp = peer.create_offer(false).await?;
    let exchange = post_offer(base_url, &format!("/whep/{stream}"), token, &offer_sdp)
        .await
        .context("WHEP view")?;
    peer.apply_answer(&exchange.answer_sdp).await?;
    Ok(Viewer {
        peer,
        media,
        offer_sdp,
        answer_sdp: exchange.answer_sdp,
        session_url: exchange.session_url,
        etag: exchange.etag,
    })
}

// ---------------------------------------------------------------------------------------------
// RTP sequence checks
// ---------------------------------------------------------------------------------------------

/// Checks that every packet's sequence number is its predecessor's + 1 (mod 2^16) and that
/// RTP timestamps never go backwards (mod 2^32).
pub fn check_rtp_continuity(packets: &[RtpMeta]) -> Result<()> {
    for (index, pair) in packets.windows(2).enumerate() {
        let (prev, next) = (pair[0], pair[1]);
        ensure!(
            next.sequence_number == prev.sequence_number.wrapping_add(1),
            "RTP sequence discontinuity at packet {}: {} (ssrc {}) -> {} (ssrc {})",
            index + 1,
            prev.sequence_number,
            prev.ssrc,
            next.sequence_number,
            next.ssrc
        );
        let delta = next.timestamp.wrapping_sub(prev.timestamp) as i32;
        ensure!(
            delta >= 0,
            "RTP timestamp went backwards at packet {}: {} -> {} (seq {} -> {})",
            index + 1,
            prev.timestamp,
            next.timestamp,
            prev.sequence_number,
            next.sequence_number
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SDP inspection
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct SdpCodec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: String,
}

impl SdpCodec {
    /// Value of an fmtp parameter (`key=value;...`), keys compared case-insensitively.
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
        })
    }

    /// H.264 `profile_idc` from `profile-level-id`.
    pub fn h264_profile_idc(&self) -> Option<u8> {
        let profile_level_id = self.fmtp_param("profile-level-id")?;
        u8::from_str_radix(profile_level_id.get(0..2)?, 16).ok()
    }
}

/// Codecs of the first `m=` section of `kind` ("audio"/"video") in `m=` line (preference)
/// order.
pub fn sdp_codecs(sdp: &str, kind: &str) -> Vec<SdpCodec> {
    let mut in_section = false;
    let mut order: Vec<u8> = Vec::new();
    let mut rtpmap: HashMap<u8, (String, u32, Option<u16>)> = HashMap::new();
    let mut fmtp: HashMap<u8, String> = HashMap::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            if in_section {
                break;
            }
            let mut parts = rest.split_whitespace();
            if parts.next() == Some(kind) {
                in_section = true;
                order = parts.skip(2).filter_map(|p| p.parse().ok()).collect();
            }
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            if let Some((pt, encoding)) = rest.split_once(' ') {
                if let Ok(pt) = pt.parse::<u8>() {
                    let mut fields = encoding.split('/');
                    let name = fields.next().unwrap_or_default().to_owned();
                    let clock_rate = fields.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                    let channels = fields.next().and_then(|c| c.parse().ok());
                    rtpmap.insert(pt, (name, clock_rate, channels));
                }
            }
        } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
            if let Some((pt, params)) = rest.split_once(' ') {
                if let Ok(pt) = pt.parse::<u8>() {
                    fmtp.insert(pt, params.to_owned());
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|pt| {
            let (name, clock_rate, channels) = rtpmap.get(&pt)?.clone();
            Some(SdpCodec {
                payload_type: pt,
                name,
                clock_rate,
                channels,
                fmtp: fmtp.get(&pt).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// ICE credentials of an SDP (or SDP fragment): the first `a=ice-ufrag` / `a=ice-pwd` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// The value of the first `a={name}:` line of an SDP (or SDP fragment).
pub fn sdp_attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix(prefix.as_str()))
        .map(str::trim)
}

pub fn ice_credentials(sdp: &str) -> Option<IceCredentials> {
    Some(IceCredentials {
        ufrag: sdp_attribute(sdp, "ice-ufrag")?.to_owned(),
        pwd: sdp_attribute(sdp, "ice-pwd")?.to_owned(),
    })
}

/// The `a=candidate:` lines of an SDP, without line endings.
pub fn candidate_lines(sdp: &str) -> Vec<String> {
    sdp.lines()
        .map(str::trim_end)
        .filter(|line| line.starts_with("a=candidate:"))
        .map(str::to_owned)
        .collect()
}

/// `sdp` with every `a=ice-ufrag` / `a=ice-pwd` value replaced by `credentials`.
pub fn replace_ice_credentials(sdp: &str, credentials: &IceCredentials) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{}", credentials.ufrag));
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{}", credentials.pwd));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// An `application/trickle-ice-sdpfrag` body (RFC 8840 §9, as in RFC 9725 §4.3.2): the
/// credentials, the first media section's `m=` and `a=mid` lines of `sdp`, `candidates` and
/// `a=end-of-candidates`.
pub fn ice_sdpfrag(sdp: &str, credentials: &IceCredentials, candidates: &[String]) -> String {
    let mut frag = format!(
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
        credentials.ufrag, credentials.pwd
    );
    if let Some(m_line) = sdp.lines().map(str::trim_end).find(|l| l.starts_with("m=")) {
        frag.push_str(m_line);
        frag.push_str("\r\n");
    }
    if let Some(mid) = sdp_attribute(sdp, "mid") {
        frag.push_str(&format!("a=mid:{mid}\r\n"));
    }
    for candidate in candidates {
        frag.push_str(candidate);
        frag.push_str("\r\n");
    }
    frag.push_str("a=end-of-candidates\r\n");
    frag
}

/// The first codec named `name` (case-insensitive) in the first `kind` section.
pub fn first_sdp_codec(sdp: &str, kind: &str, name: &str) -> Option<SdpCodec> {
    sdp_codecs(sdp, kind)
        .into_iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
}

// ---------------------------------------------------------------------------------------------
// ffmpeg / ffprobe
// ---------------------------------------------------------------------------------------------

async fn run_tool(tool: &str, args: &[&str]) -> Result<std::process::Output> {
    tokio::process::Command::new(tool)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                anyhow!(
                    "`{tool}` not found in PATH: these interop tests need FFmpeg \
                     (Debian/Ubuntu: apt-get install ffmpeg)"
                )
            } else {
                anyhow!(err).context(format!("running {tool}"))
            }
        })
}

/// Runs `ffmpeg -hide_banner -loglevel error -y ARGS...`.
pub async fn ffmpeg(args: &[&str]) -> Result<()> {
    let mut all = vec!["-hide_banner", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    let output = run_tool("ffmpeg", &all).await?;
    ensure!(
        output.status.success(),
        "ffmpeg {all:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Generates 3 s of 320x240@30 `codec` (`testsrc`, keyframe every 30 frames) as IVF.
pub async fn generate_ivf(codec: IvfCodec, path: &Path) -> Result<()> {
    let out = path.to_str().context("non-UTF-8 path")?;
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        "3",
    ];
    args.extend_from_slice(codec.ffmpeg_encoder_args());
    args.extend_from_slice(&["-f", "ivf", out]);
    ffmpeg(&args).await
}

/// Generates 3 s of 320x240@30 H.264 **High** profile (libx264, keyframe every 30 frames,
/// no B-frames like OBS' WHIP output) as an Annex-B file.
pub async fn generate_h264_high_annexb(path: &Path) -> Result<()> {
    let out = path.to_str().context("non-UTF-8 path")?;
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "30",
        "-bf",
        "0",
        "-bsf:v",
        "h264_mp4toannexb",
        "-f",
        "h264",
        out,
    ])
    .await
}

#[derive(Clone, Debug)]
pub struct VideoProbe {
    pub codec_name: String,
    pub profile: Option<String>,
    pub width: u64,
    pub height: u64,
    /// Frames ffprobe actually decoded (`-count_frames`).
    pub decoded_frames: u64,
}

/// Decodes the first video stream of `path` with ffprobe. `format` forces the demuxer
/// (e.g. `Some("h264")` for raw Annex-B files).
pub async fn ffprobe_video(path: &Path, format: Option<&str>) -> Result<VideoProbe> {
    let file = path.to_str().context("non-UTF-8 path")?;
    let mut args = vec!["-v", "error"];
    if let Some(format) = format {
        args.extend_from_slice(&["-f", format]);
    }
    args.extend_from_slice(&[
        "-count_frames",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=codec_name,profile,width,height,nb_read_frames",
        "-of",
        "json",
        file,
    ]);
    let output = run_tool("ffprobe", &args).await?;
    ensure!(
        output.status.success(),
        "ffprobe {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing ffprobe JSON")?;
    let stream = json
        .get("streams")
        .and_then(|s| s.get(0))
        .with_context(|| format!("ffprobe found no video stream in {file}: {json}"))?;
    let number = |key: &str| -> Option<u64> {
        let value = stream.get(key)?;
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    };
    Ok(VideoProbe {
        codec_name: stream
            .get("codec_name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        profile: stream
            .get("profile")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        width: number("width").unwrap_or(0),
        height: number("height").unwrap_or(0),
        decoded_frames: number("nb_read_frames").unwrap_or(0),
    })
}
