//! The LL-HLS playlist rules, with samples fed by hand (no clock at all).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::*;
use crate::daterange::DateRange;
use crate::fmp4::{TrackCodec, TrackInfo};

const FRAME: u32 = 3000; // 30 fps at 90 kHz

fn video() -> Track {
    Track::new(
        TrackInfo {
            track_id: 1,
            timescale: 90_000,
            codec: TrackCodec::H264 {
                sps: vec![0x67, 0x42, 0xc0, 0x0d],
                pps: vec![0x68, 0xce],
                width: 320,
                height: 240,
                chroma: (1, 0, 0),
            },
        },
        Timing::default(),
    )
}

fn sample(i: u64, keyframe: bool) -> TrackSample {
    TrackSample {
        dts: i * u64::from(FRAME),
        duration: FRAME,
        keyframe,
        data: Bytes::from(vec![0, 0, 0, 2, 0x65, i as u8]),
        wallclock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

/// Feeds `n` frames with a keyframe every `gop` frames (0: only the first).
fn feed(t: &mut Track, from: u64, n: u64, gop: u64) {
    for i in from..from + n {
        let key = i == 0 || (gop > 0 && i.is_multiple_of(gop));
        t.push(sample(i, key));
    }
}

fn lines_with<'a>(p: &'a str, prefix: &str) -> Vec<&'a str> {
    p.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn attr(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[at..];
    let v = rest.strip_prefix('"').map_or_else(
        || rest.split(',').next().unwrap_or(""),
        |r| r.split('"').next().unwrap_or(""),
    );
    Some(v.to_string())
}

#[test]
fn nothing_before_the_first_keyframe() {
    let mut t = video();
    assert!(!t.push(sample(0, false)));
    assert!(
        t.take_keyframe_wish(),
        "a delta frame first asks for a keyframe"
    );
    assert!(!t.has_media());
    assert_eq!(t.readiness(0, Some(0)), Readiness::Wait);
}

#[test]
fn parts_and_segments_follow_the_targets() {
    let mut t = video();
    feed(&mut t, 0, 30 * 12, 30); // 12 s, keyframe every second
    let p = t.playlist(false, &[], &[]);
    let td: f64 = p
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .expect("well-formed test playlist")
        .parse()
        .expect("well-formed test playlist");
    assert_eq!(td, 3.0);
    let part_target = 0.334;
    assert!(p.contains("#EXT-X-PART-INF:PART-TARGET=0.334\n"));
    assert!(p.contains(
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=18.0,PART-HOLD-BACK=1.002\n"
    ));
    // Segments: cut at the keyframe on the 2 s mark.
    let infs = lines_with(&p, "#EXTINF:");
    assert_eq!(infs.len(), 5, "{p}");
    for l in &infs {
        assert_eq!(*l, "#EXTINF:2.00000,");
    }
    let parts = lines_with(&p, "#EXT-X-PART:");
    assert!(!parts.is_empty());
    for l in &parts {
        let d: f64 = attr(l, "DURATION")
            .expect("well-formed test playlist")
            .parse()
            .expect("well-formed test playlist");
        assert!(d <= part_target, "{l}");
        // 10 frames = 0.33333 s each.
        assert!(d >= 0.85 * part_target, "{l}");
    }
    // INDEPENDENT=YES exactly on the parts that start at a keyframe: the
    // first of each segment and the one at the 1 s keyframe.
    for seg in p.split("#EXTINF").take(5).skip(1) {
        let first = seg
            .lines()
            .find(|l| l.starts_with("#EXT-X-PART:"))
            .expect("well-formed test playlist");
        assert!(first.contains("INDEPENDENT=YES"), "{first}");
    }
    // Parts are listed only for the last three target durations.
    assert!(!p.contains("URI=\"part0.0.m4s\""), "{p}");
    assert!(p.contains("URI=\"part4.0.m4s\""));
    // The open part is hinted; it exists and is open.
    let hint = lines_with(&p, "#EXT-X-PRELOAD-HINT:")[0];
    // Segment 5 holds 2 s: five complete parts, the sixth open.
    assert_eq!(hint, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part5.5.m4s\"");
    assert!(matches!(t.part(5, 5, 0), PartLookup::Open(_)));
    assert!(matches!(t.part(5, 0, 0), PartLookup::Complete(_)));
    assert!(matches!(t.part(4, 0, 0), PartLookup::Complete(_)));
    assert_eq!(t.part(4, 99, 0), PartLookup::Missing);
    assert_eq!(t.part(9, 0, 0), PartLookup::Missing);
    assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z"));
}

#[test]
fn part_durations_stay_within_85_percent_except_independent_and_last() {
    let mut t = video();
    // 25 fps (3600 ticks) does not divide the part target: 9 frames.
    for i in 0..25 * 10 {
        t.push(TrackSample {
            dts: i * 3600,
            duration: 3600,
            keyframe: i.is_multiple_of(50),
            data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
            wallclock: SystemTime::UNIX_EPOCH,
        });
    }
    let p = t.playlist(false, &[], &[]);
    let lines: Vec<&str> = p.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with("#EXT-X-PART:") {
            continue;
        }
        let d: f64 = attr(l, "DURATION")
            .expect("well-formed test playlist")
            .parse()
            .expect("well-formed test playlist");
        assert!(d <= 0.334, "{l}");
        let last = lines.get(i + 1).is_some_and(|n| n.starts_with("#EXTINF"));
        assert!(
            d >= 0.85 * 0.334 || l.contains("INDEPENDENT=YES") || last,
            "{l}"
        );
    }
}

#[test]
fn a_publisher_without_keyframes_still_gets_segments_within_the_target_duration() {
    let mut t = video();
    feed(&mut t, 0, 30 * 10, 0); // only the first frame is a keyframe
    let p = t.playlist(false, &[], &[]);
    let infs = lines_with(&p, "#EXTINF:");
    assert!(infs.len() >= 3, "{p}");
    for l in infs {
        let d: f64 = l[8..l.len() - 1]
            .parse()
            .expect("well-formed test playlist");
        assert!(d <= 3.0, "{l}");
    }
    // Near each 2 s mark the packager asks for a keyframe.
    let mut t = video();
    feed(&mut t, 0, 55, 0);
    assert!(t.take_keyframe_wish());
}

#[test]
fn blocking_reload_readiness() {
    let mut t = video();
    feed(&mut t, 0, 30 * 5, 30); // segments 0, 1 done; 2 in progress
                                 // Segment 2 so far: 1 s = 3 complete parts (10 frames each) minus the
                                 // held open one.
    assert_eq!(t.readiness(0, None), Readiness::Ready);
    assert_eq!(t.readiness(1, Some(2)), Readiness::Ready);
    assert_eq!(
        t.readiness(2, None),
        Readiness::Wait,
        "segment 2 is not done"
    );
    assert_eq!(t.readiness(2, Some(0)), Readiness::Ready);
    assert_eq!(t.readiness(2, Some(20)), Readiness::Wait);
    assert_eq!(t.readiness(3, Some(0)), Readiness::Wait);
    // Last full segment is 1: 1 + 2 = 3 is the furthest one may ask for.
    assert_eq!(t.readiness(3, None), Readiness::Wait);
    assert_eq!(t.readiness(4, None), Readiness::TooFarAhead);
    assert_eq!(t.readiness(400, Some(0)), Readiness::TooFarAhead);
    // A part index past the last part of a finished segment means part 0
    // of the next one.
    let parts_in_1 = 6;
    assert_eq!(t.readiness(1, Some(parts_in_1)), Readiness::Ready);
    feed(&mut t, 30 * 5, 41, 30); // segment 2 closes at frame 180; 3 gets a part
    assert_eq!(t.readiness(2, None), Readiness::Ready);
    assert_eq!(t.readiness(2, Some(parts_in_1)), Readiness::Ready);
}

#[test]
fn delta_updates_skip_old_segments() {
    let mut t = video();
    feed(&mut t, 0, 30 * 30, 30); // 30 s: 14 full segments
    let full = t.playlist(false, &[], &[]);
    let delta = t.playlist(true, &[], &[]);
    assert!(!full.contains("#EXT-X-SKIP"));
    let skip = lines_with(&delta, "#EXT-X-SKIP:")[0];
    let skipped: usize = skip["#EXT-X-SKIP:SKIPPED-SEGMENTS=".len()..]
        .parse()
        .expect("well-formed test playlist");
    // 30 s of media, 18 s may be skipped from the end: segments ending at or
    // before 12 s, i.e. 0..=5.
    assert_eq!(skipped, 6, "{delta}");
    assert!(!delta.contains("\nseg5.m4s\n"));
    assert!(delta.contains("\nseg6.m4s\n"));
    assert_eq!(
        lines_with(&full, "#EXTINF").len(),
        lines_with(&delta, "#EXTINF").len() + skipped
    );
    // The same media sequence number: the skipped segments still count.
    assert_eq!(
        lines_with(&full, "#EXT-X-MEDIA-SEQUENCE")[0],
        lines_with(&delta, "#EXT-X-MEDIA-SEQUENCE")[0]
    );
}

#[test]
fn the_window_slides_and_old_segments_disappear() {
    let mut t = video();
    feed(&mut t, 0, 30 * 60, 30); // 60 s with a 40 s window
    let p = t.playlist(false, &[], &[]);
    let first: u64 = lines_with(&p, "#EXT-X-MEDIA-SEQUENCE:")[0][22..]
        .parse()
        .expect("well-formed test playlist");
    assert_eq!(first, 9, "{p}");
    assert!(t.segment(0).is_none());
    assert!(t.segment(first).is_some());
}

#[test]
fn rendition_reports_and_the_end() {
    let mut t = video();
    feed(&mut t, 0, 30 * 3, 30);
    let p = t.playlist(false, &[("../audio/index.m3u8".into(), 1, Some(3))], &[]);
    assert!(
        p.contains("#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=1,LAST-PART=3\n")
    );
    t.end();
    let p = t.playlist(true, &[], &[]);
    assert!(p.ends_with("#EXT-X-ENDLIST\n"));
    assert!(!p.contains("PRELOAD-HINT"));
    assert!(!p.contains("EXT-X-SKIP"));
    // Directives no longer block.
    assert_eq!(t.readiness(100, Some(0)), Readiness::Ready);
    assert!(!t.push(sample(500, true)));
}

#[test]
fn segments_concatenate_their_parts() {
    let mut t = video();
    feed(&mut t, 0, 30 * 3, 30);
    let seg = t.segment(0).expect("well-formed test playlist");
    let mut parts = Vec::new();
    let mut k = 0;
    while let PartLookup::Complete(b) = t.part(0, k, 0) {
        parts.extend_from_slice(&b);
        k += 1;
    }
    assert_eq!(k, 6);
    assert_eq!(seg, Bytes::from(parts));
    // Chunks: one moof per frame, decode times continuous.
    let mut expected = 0u64;
    for (kind, payload) in crate::fmp4::boxes(&seg) {
        if &kind != b"moof" {
            continue;
        }
        let traf = crate::fmp4::boxes(payload)
            .find(|(k, _)| k == b"traf")
            .expect("well-formed test playlist")
            .1;
        let tfdt = crate::fmp4::boxes(traf)
            .find(|(k, _)| k == b"tfdt")
            .expect("well-formed test playlist")
            .1;
        let t = u64::from_be_bytes(tfdt[4..12].try_into().expect("well-formed test playlist"));
        assert_eq!(t, expected);
        expected += u64::from(FRAME);
    }
    assert_eq!(expected, 60 * u64::from(FRAME));
}

#[test]
fn program_date_time_format() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
    assert_eq!(rfc3339_millis(t), "2000-02-29T00:00:00.123Z");
    assert_eq!(
        rfc3339_millis(SystemTime::UNIX_EPOCH),
        "1970-01-01T00:00:00.000Z"
    );
}

/// Base of the wall clock of [`timed`] samples.
fn wall0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Feeds frames `from..from + n` (keyframe every second) whose capture
/// clock advances with the media, as a publisher's sender reports say.
fn feed_timed(t: &mut Track, from: u64, n: u64) {
    for i in from..from + n {
        let mut s = sample(i, i.is_multiple_of(30));
        s.wallclock = wall0() + Duration::from_micros(i * 33_333);
        t.push(s);
    }
}

fn range(id: &str, at_ms: u64, seq: u64, json: &str) -> Arc<DateRange> {
    Arc::new(DateRange::event(
        id,
        wall0() + Duration::from_millis(at_ms),
        seq,
        json,
    ))
}

/// The `seg{n}.m4s` line that follows `from` in `lines`.
fn next_segment<'a>(lines: &[&'a str], from: usize) -> Option<&'a str> {
    lines[from..].iter().find(|l| l.starts_with("seg")).copied()
}

#[test]
fn date_ranges_sit_at_their_segment_survive_delta_updates_and_leave_with_it() {
    use base64::Engine as _;
    let mut t = video();
    feed_timed(&mut t, 0, 30 * 30); // 30 s: segments of 2 s, 14 done + one open
    let json = "{\"team\":\"A \\\"B\\\"\",\"note\":\"line\\nbreak\"}";
    let before_start = range("first", 0, 1, "{}"); // at the very first frame
    let in_seg1 = range("ev-1", 3_500, 2, json);
    let live_edge = range("ev-2", 29_950, 3, "{\"x\":2}");
    let ranges = [before_start.clone(), in_seg1.clone(), live_edge.clone()];

    let full = t.playlist(false, &[], &ranges);
    let lines: Vec<&str> = full.lines().collect();
    let pos = |l: &str| lines.iter().position(|x| *x == l);
    for r in &ranges {
        assert_eq!(full.matches(r.line()).count(), 1, "{full}");
    }
    // After the program date-time of the segment it starts in.
    let at = pos(in_seg1.line()).expect("listed");
    assert_eq!(
        lines[at - 1],
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.999Z",
        "{full}"
    );
    assert_eq!(next_segment(&lines, at), Some("seg1.m4s"));
    let at0 = pos(before_start.line()).expect("listed");
    assert_eq!(next_segment(&lines, at0), Some("seg0.m4s"));
    // The open segment's: no segment line follows, parts do.
    let edge = pos(live_edge.line()).expect("listed");
    assert!(lines[edge - 1].starts_with("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:47.99"));
    assert_eq!(next_segment(&lines, edge), None, "{full}");
    assert!(lines[edge + 1].starts_with("#EXT-X-PART:"));

    // Quoting: the JSON travels base64, the tag has nothing to escape.
    let tag = lines[at];
    assert_eq!(attr(tag, "ID").as_deref(), Some("ev-1"));
    assert_eq!(attr(tag, "CLASS").as_deref(), Some("com.relaycast.event"));
    assert_eq!(
        attr(tag, "START-DATE").as_deref(),
        Some("2023-11-14T22:13:23.500Z")
    );
    assert_eq!(attr(tag, "X-SEQ").as_deref(), Some("2"));
    let payload = attr(tag, "X-PAYLOAD").expect("X-PAYLOAD");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .expect("base64");
    assert_eq!(decoded, json.as_bytes());
    assert_eq!(tag.matches('"').count(), 8, "{tag}");

    // A delta update skips segments 0..=5 but keeps every date range (no
    // CAN-SKIP-DATERANGES): those of skipped segments follow EXT-X-SKIP.
    assert!(!full.contains("CAN-SKIP-DATERANGES"));
    let delta = t.playlist(true, &[], &ranges);
    let dl: Vec<&str> = delta.lines().collect();
    let skip = dl
        .iter()
        .position(|l| l.starts_with("#EXT-X-SKIP:SKIPPED-SEGMENTS=6"))
        .expect("a delta update");
    assert_eq!(dl[skip + 1], before_start.line(), "{delta}");
    assert_eq!(dl[skip + 2], in_seg1.line(), "{delta}");
    assert!(!delta.contains("seg1.m4s"));
    assert_eq!(delta.matches(live_edge.line()).count(), 1);
    assert_eq!(
        lines_with(&delta, "#EXT-X-DATERANGE:").len(),
        ranges.len(),
        "{delta}"
    );

    // 60 s with a 40 s window: segments 0..=8 are gone, and with them the
    // date ranges that started there; the one at 29.95 s stays.
    feed_timed(&mut t, 30 * 30, 30 * 30);
    let later = t.playlist(false, &[], &ranges);
    assert!(later.contains("#EXT-X-MEDIA-SEQUENCE:9\n"), "{later}");
    assert!(!later.contains(before_start.line()));
    assert!(!later.contains(in_seg1.line()));
    assert_eq!(later.matches(live_edge.line()).count(), 1);
    let ll: Vec<&str> = later.lines().collect();
    let edge = ll
        .iter()
        .position(|l| *l == live_edge.line())
        .expect("listed");
    assert_eq!(next_segment(&ll, edge), Some("seg14.m4s"));
    assert_eq!(
        t.window_start(),
        Some(wall0() + Duration::from_micros(540 * 33_333))
    );
}
