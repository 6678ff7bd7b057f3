//! Simulated network, simulated clock: a real viewer session (the SFU's
//! `Peer` with its str0m `Rtc`, bandwidth estimation on) sends to a real
//! str0m client through a bottleneck link whose capacity changes. No
//! sockets, no wall clock: the run is deterministic.
#![allow(clippy::disallowed_methods)] // the virtual clock starts at one real instant

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, RtcConfig};

use crate::frame::Frame;
use crate::layers::{LayerCap, LayerInfo, LayerTable};
use crate::metrics::Metrics;
use crate::peer::{Effects, Estimation, Peer};
use crate::stream::StreamHub;
use crate::SessionId;

const SERVER: &str = "10.0.0.1:5000";
const CLIENT: &str = "10.0.0.2:6000";
const FPS: u64 = 30;
/// Simulcast layers (id, bits per second), lowest first.
const LAYERS: [(u8, u64); 3] = [(2, 150_000), (1, 500_000), (0, 1_500_000)];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// A one-way link: propagation delay plus, when `capacity` is set, a
/// serialization queue at that rate with tail drop past `max_queue`.
struct Link {
    delay: Duration,
    capacity_bps: Option<u64>,
    max_queue: Duration,
    free_at: Option<Instant>,
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    dropped: usize,
}

impl Link {
    fn new(delay: Duration, capacity_bps: Option<u64>) -> Link {
        Link {
            delay,
            capacity_bps,
            max_queue: Duration::from_millis(150),
            free_at: None,
            in_flight: VecDeque::new(),
            dropped: 0,
        }
    }

    fn send(&mut self, now: Instant, bytes: Vec<u8>) {
        let depart = match self.capacity_bps {
            None => now,
            Some(bps) => {
                let start = self.free_at.map_or(now, |f| f.max(now));
                if start.saturating_duration_since(now) > self.max_queue {
                    self.dropped += 1;
                    return;
                }
                let tx = Duration::from_nanos((bytes.len() as u64 + 28) * 8 * 1_000_000_000 / bps);
                self.free_at = Some(start + tx);
                start + tx
            }
        };
        self.in_flight.push_back((depart + self.delay, bytes));
    }

    fn due(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while self.in_flight.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, b)) = self.in_flight.pop_front() {
                out.push(b);
            }
        }
        out
    }
}

fn frame_bytes(layer: u8, keyframe: bool, n: u64, size: usize) -> Arc<[u8]> {
    // Tag bytes without zeros, so no start code appears inside the NAL.
    let mut v = vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }, layer + 1];
    v.extend_from_slice(n.to_string().as_bytes());
    v.resize(size.max(v.len()), 0x5a);
    Arc::from(v)
}

/// What the client received of one frame: the layer tag the payload
/// carries, whether it was a keyframe, its RTP sequence numbers.
struct Received {
    at: Instant,
    layer: u8,
    keyframe: bool,
    /// False when packets before this frame were lost on the link.
    contiguous: bool,
    first_seq: u64,
    last_seq: u64,
}

#[test]
fn a_viewer_moves_down_a_layer_when_its_bandwidth_falls_and_back_up_when_it_recovers() {
    falls_and_recovers(false);
}

#[test]
fn a_paced_viewer_moves_down_a_layer_and_back_up_too() {
    falls_and_recovers(true);
}

/// The viewer's video unpaced (the default) or held to its estimate by
/// str0m's pacer (`--pace-viewers`).
fn falls_and_recovers(paced: bool) {
    let start = Instant::now();
    let mut now = start;
    let metrics = Metrics::new(&prometheus::Registry::new()).expect("metrics");

    // The client: a plain str0m peer receiving H.264.
    let mut client = RtcConfig::new().clear_codecs().enable_h264(true).build(now);
    client.add_local_candidate(Candidate::host(addr(CLIENT), "udp").expect("candidate"));
    let mut change = client.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().expect("offer");
    let offer_sdp = offer.to_sdp_string();

    // The SFU's side, configured as `Sfu::subscribe_with` does for a
    // simulcast stream.
    let hub = Arc::new(StreamHub::new(crate::frame::StreamId(1), "sim".into(), 1));
    hub.set_layers(LayerTable {
        layers: LAYERS
            .iter()
            .map(|&(id, bps)| LayerInfo {
                id,
                rid: ["f", "h", "q"][usize::from(id)].into(),
                bitrate_bps: bps,
                fps: FPS as f32,
                keyframe_bytes: 0,
                width: 0,
                height: 0,
                active: true,
            })
            .collect(),
    });
    let cfg = crate::codecs::viewer_config(
        RtcConfig::new().set_ice_lite(true),
        &crate::h264::offered_profiles(&offer_sdp),
        None,
    )
    .enable_bwe(Some(str0m::bwe::Bitrate::bps(1_200_000)));
    let mut rtc = cfg.build(now);
    rtc.add_local_candidate(Candidate::host(addr(SERVER), "udp").expect("candidate"));
    let answer = rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer_sdp).expect("offer parses"))
        .expect("answer");
    client
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("answer accepted");
    let mut viewer = Peer::new_viewer(
        SessionId::random(),
        hub.clone(),
        rtc,
        offer_sdp,
        now,
        LayerCap::Auto,
        Estimation::new(true, paced),
    );

    let mut down = Link::new(Duration::from_millis(20), Some(5_000_000));
    let mut up = Link::new(Duration::from_millis(20), None);
    let mut received: Vec<Received> = Vec::new();
    let mut keyframe_due = [true; 3];
    let mut frame_no = 0u64;
    let mut next_frame = start;
    let epoch = crate::frame::Epoch::of_session(1);
    let mut requests = 0usize;
    let mut packetizers = crate::rtp_out::Packetizers::default();
    // Most datagrams one drain of the server's output produced.
    let mut max_pass = 0usize;

    let end = start + Duration::from_secs(60);
    while now < end {
        let t = now.duration_since(start);
        down.capacity_bps = Some(if (10..30).contains(&t.as_secs()) {
            700_000
        } else {
            5_000_000
        });

        // The publisher: three layers at 30 fps, a keyframe every 2 s or
        // when asked.
        if now >= next_frame {
            let mut fx = Effects::default();
            for &(id, bps) in &LAYERS {
                let i = usize::from(id);
                let keyframe = keyframe_due[i] || frame_no.is_multiple_of(2 * FPS);
                keyframe_due[i] = false;
                let size = (bps / 8 / FPS) as usize * if keyframe { 3 } else { 1 };
                let data = frame_bytes(id, keyframe, frame_no, size);
                // As ingest does: cut once, written with the viewer's numbering.
                let packets = packetizers.packetize(Codec::H264, id, &data);
                assert!(packets.is_some(), "H.264 takes the shared-payload path");
                let frame = Arc::new(Frame {
                    kind: MediaKind::Video,
                    codec: Codec::H264,
                    time: MediaTime::new(frame_no * 3000, Frequency::NINETY_KHZ),
                    network_time: now,
                    ready_at: now,
                    keyframe,
                    data,
                    packets,
                    index: frame_no,
                    contiguous: true,
                    epoch: epoch.of_layer(id),
                    layer: id,
                    top: id == 0,
                    wallclock: None,
                });
                let (conn, v) = viewer.viewer().expect("a viewer");
                v.write_frame(conn, &frame, now, &metrics, &mut fx);
            }
            for (_, layer) in fx.keyframe_requests.drain(..) {
                requests += 1;
                if let Some(id) = layer {
                    keyframe_due[usize::from(id)] = true;
                }
            }
            frame_no += 1;
            next_frame = start + Duration::from_micros(frame_no * 1_000_000 / FPS);
        }

        // The SFU side's output.
        let mut fx = Effects::default();
        let server_timeout;
        let mut pass = 0usize;
        let mut at = now;
        loop {
            // As the worker drains it: timeouts due now are fed at once, and
            // a frame written in part gets its next chunk once the previous
            // one went.
            match crate::engine::poll_rtc(&mut viewer.conn.rtc, &mut at, || now)
                .expect("server poll")
            {
                Output::Timeout(t) => {
                    let (conn, v) = viewer.viewer().expect("a viewer");
                    if v.write_next_chunk(conn) {
                        conn.rtc
                            .handle_input(Input::Timeout(at))
                            .expect("server timeout");
                        continue;
                    }
                    server_timeout = t;
                    break;
                }
                Output::Transmit(t) => {
                    pass += 1;
                    down.send(now, t.contents.to_vec());
                }
                Output::Event(e) => viewer.handle_event(e, now, &mut fx),
            }
        }
        max_pass = max_pass.max(pass);
        if fx.viewer_joined {
            let (conn, v) = viewer.viewer().expect("a viewer");
            v.join_layer(conn, now);
        }
        for (_, layer) in fx.keyframe_requests.drain(..) {
            requests += 1;
            if let Some(id) = layer {
                keyframe_due[usize::from(id)] = true;
            }
        }

        // The client's output.
        let client_timeout;
        loop {
            match client.poll_output().expect("client poll") {
                Output::Timeout(t) => {
                    client_timeout = t;
                    break;
                }
                Output::Transmit(t) => up.send(now, t.contents.to_vec()),
                Output::Event(Event::MediaData(data)) => {
                    let layer = data.data.get(5).map_or(u8::MAX, |t| t.wrapping_sub(1));
                    received.push(Received {
                        at: now,
                        layer,
                        keyframe: data.is_keyframe(),
                        contiguous: data.contiguous,
                        first_seq: **data.seq_range.start(),
                        last_seq: **data.seq_range.end(),
                    });
                }
                Output::Event(_) => {}
            }
        }

        // Deliver what arrived, then step time.
        for bytes in down.due(now) {
            let input = Input::Receive(
                now,
                Receive::new(Protocol::Udp, addr(SERVER), addr(CLIENT), &bytes).expect("datagram"),
            );
            client.handle_input(input).expect("client input");
        }
        for bytes in up.due(now) {
            let input = Input::Receive(
                now,
                Receive::new(Protocol::Udp, addr(CLIENT), addr(SERVER), &bytes).expect("datagram"),
            );
            viewer.conn.rtc.handle_input(input).expect("server input");
        }
        let next = [
            server_timeout,
            client_timeout,
            next_frame,
            now + Duration::from_millis(1),
        ]
        .into_iter()
        .min()
        .unwrap_or(end);
        now = next.max(now + Duration::from_micros(100));
        viewer
            .conn
            .rtc
            .handle_input(Input::Timeout(now))
            .expect("server timeout");
        client
            .handle_input(Input::Timeout(now))
            .expect("client timeout");
    }

    // Layer runs as the client saw them.
    let mut runs: Vec<(Instant, u8)> = Vec::new();
    for (i, r) in received.iter().enumerate() {
        if runs.last().is_none_or(|(_, l)| *l != r.layer) {
            // The SFU switches on the target's keyframe; the link may have
            // dropped it, which the client sees as a sequence gap.
            assert!(
                r.keyframe || !r.contiguous,
                "the first frame of layer {} at {:?} is a keyframe",
                r.layer,
                r.at - start
            );
            if let Some(prev) = i.checked_sub(1).and_then(|p| received.get(p)) {
                assert!(
                    !r.contiguous || r.first_seq == prev.last_seq + 1,
                    "sequence numbers continue across the switch to layer {}",
                    r.layer
                );
            }
            runs.push((r.at, r.layer));
        }
    }
    let secs = |at: Instant| at.duration_since(start).as_secs_f64();
    let summary: Vec<String> = runs
        .iter()
        .map(|(at, l)| format!("{:.1}s→{}", secs(*at), l))
        .collect();
    eprintln!(
        "paced {paced}: layers: {} ; frames {} ; link drops {} ; keyframe requests {requests} ; \
         most datagrams in one drain {max_pass}",
        summary.join(" "),
        received.len(),
        down.dropped
    );
    let rank = |l: u8| LAYERS.iter().position(|(id, _)| *id == l).unwrap_or(0);
    let top_before = runs
        .iter()
        .filter(|(at, _)| secs(*at) < 10.0)
        .map(|(_, l)| rank(*l))
        .max();
    assert_eq!(
        top_before,
        Some(2),
        "reaches the top layer at 5 Mbit/s: {summary:?}"
    );
    let during = runs
        .iter()
        .rev()
        .find(|(at, _)| secs(*at) < 30.0)
        .map(|(_, l)| rank(*l));
    assert!(
        during.is_some_and(|r| r < 2),
        "moved down while the link carries 700 kbit/s: {summary:?}"
    );
    let last = runs.last().map(|(_, l)| rank(*l));
    assert_eq!(
        last,
        Some(2),
        "back on the top layer after recovery: {summary:?}"
    );
    // A burst leaves in one drain of the output, not one packet per pass:
    // unpaced, a whole top-layer keyframe (~17 packets); paced, what the
    // pacer's 40 ms budget allows at the estimate (several packets).
    let burst = if paced { 4 } else { 15 };
    assert!(
        max_pass >= burst,
        "at most {max_pass} datagrams left in one drain (paced {paced})"
    );
    // Video kept flowing to the end.
    assert!(received
        .last()
        .is_some_and(|r| end.duration_since(r.at) < Duration::from_secs(1)));
}
