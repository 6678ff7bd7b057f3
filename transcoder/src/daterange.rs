//! `EXT-X-DATERANGE`: timed metadata (integrator events) on the playlists'
//! `EXT-X-PROGRAM-DATE-TIME` clock.
//!
//! A [`DateRange`] is rendered once, when it is made, into its tag line:
//!
//! ```text
//! #EXT-X-DATERANGE:ID="…",CLASS="com.relaycast.event",START-DATE="…Z",DURATION=0,X-SEQ=<n>,X-PAYLOAD="<base64>"
//! ```
//!
//! Quoted strings may not hold `"`, CR or LF (RFC 8216bis 4.2), so the
//! JSON payload travels base64-encoded (standard alphabet, padded) and an
//! id that is not quotable is replaced by `event-<seq>`. `DURATION=0`: an
//! event is a single instant.
//!
//! Placement: a date range is listed with its *home* segment, the last one
//! whose program date-time is at or before its START-DATE, so it leaves the
//! playlist when that segment leaves the live window. A START-DATE earlier
//! than every listed segment belongs to a segment already gone, unless the
//! first segment of the stream is still listed (an event from just before
//! the first frame). Delta updates keep every date range: relaycast does
//! not advertise `CAN-SKIP-DATERANGES`, so "all tags that were not skipped
//! MUST remain" (RFC 8216bis 6.2.5.1); those of skipped segments follow the
//! `EXT-X-SKIP` tag.

use std::time::SystemTime;

use base64::Engine as _;

/// `CLASS` of integrator events.
pub const EVENT_CLASS: &str = "com.relaycast.event";

/// Date ranges a live stream keeps (the newest); older ones leave its
/// playlists even if their segment is still listed.
pub const MAX_LIVE_DATE_RANGES: usize = 64;

/// Longest id or class written as such (longer ones are replaced).
const MAX_QUOTED: usize = 256;

/// One date range, with its tag line rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    id: String,
    start: SystemTime,
    seq: u64,
    line: String,
}

impl DateRange {
    /// A date range starting (and ending: `DURATION=0`) at `start`.
    /// `payload_json` is carried base64-encoded in `X-PAYLOAD`; `seq` in
    /// `X-SEQ`.
    pub fn new(id: &str, class: &str, start: SystemTime, seq: u64, payload_json: &str) -> Self {
        let id = if quotable(id) {
            id.to_string()
        } else {
            format!("event-{seq}")
        };
        let class = if quotable(class) { class } else { EVENT_CLASS };
        let payload = base64::engine::general_purpose::STANDARD.encode(payload_json);
        let line = format!(
            "#EXT-X-DATERANGE:ID=\"{id}\",CLASS=\"{class}\",START-DATE=\"{}\",DURATION=0,X-SEQ={seq},X-PAYLOAD=\"{payload}\"",
            crate::track::rfc3339_millis(start)
        );
        DateRange {
            id,
            start,
            seq,
            line,
        }
    }

    /// An integrator event (`CLASS="com.relaycast.event"`).
    pub fn event(id: &str, start: SystemTime, seq: u64, payload_json: &str) -> Self {
        DateRange::new(id, EVENT_CLASS, start, seq, payload_json)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn start(&self) -> SystemTime {
        self.start
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The `#EXT-X-DATERANGE:` line, without a line break.
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// Fits in a quoted-string and in a playlist: no `"`, no control
/// characters (CR and LF included), not empty, not huge.
fn quotable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_QUOTED && !s.chars().any(|c| c == '"' || c.is_control())
}

/// The home of a date range starting at `start` among segments listed with
/// program date-times `pdts` (in playlist order): the last one at or
/// before `start`. Earlier than all of them: the first when `first_kept`
/// (nothing has left the playlist yet), else none.
pub(crate) fn home(pdts: &[SystemTime], start: SystemTime, first_kept: bool) -> Option<usize> {
    match pdts.iter().rposition(|p| *p <= start) {
        Some(i) => Some(i),
        None if first_kept && !pdts.is_empty() => Some(0),
        None => None,
    }
}

/// The date-range lines of each listed segment (indexes into `pdts`).
pub(crate) fn by_segment<'a, D: AsRef<DateRange> + 'a>(
    pdts: &[SystemTime],
    ranges: impl IntoIterator<Item = &'a D>,
    first_kept: bool,
) -> Vec<Vec<&'a str>> {
    let mut out = vec![Vec::new(); pdts.len()];
    for r in ranges {
        let r = r.as_ref();
        if let Some(i) = home(pdts, r.start, first_kept) {
            out[i].push(r.line.as_str());
        }
    }
    out
}

impl AsRef<DateRange> for DateRange {
    fn as_ref(&self) -> &DateRange {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn the_tag_quotes_what_it_may_and_encodes_the_payload() {
        let json = "{\"say\":\"a \\\"quote\\\"\\nand a line\"}";
        let d = DateRange::event("ev1", at(250), 7, json);
        assert_eq!(
            d.line(),
            format!(
                "#EXT-X-DATERANGE:ID=\"ev1\",CLASS=\"com.relaycast.event\",START-DATE=\"2023-11-14T22:13:20.250Z\",DURATION=0,X-SEQ=7,X-PAYLOAD=\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(json)
            )
        );
        assert!(!d.line().contains('\n') && !d.line().contains('\r'));
        // Quotes delimit the four quoted values, nothing else.
        assert_eq!(d.line().matches('"').count(), 8);

        let bad = DateRange::new("a\"b", "x\ny", at(0), 3, "{}");
        assert_eq!(bad.id(), "event-3");
        assert!(bad
            .line()
            .contains("ID=\"event-3\",CLASS=\"com.relaycast.event\""));
    }

    #[test]
    fn a_date_range_lives_with_the_last_segment_starting_before_it() {
        let pdts = [at(0), at(2000), at(4000)];
        assert_eq!(home(&pdts, at(2000), false), Some(1));
        assert_eq!(home(&pdts, at(3999), false), Some(1));
        assert_eq!(home(&pdts, at(9000), false), Some(2));
        assert_eq!(home(&pdts, at(0) - Duration::from_millis(1), false), None);
        assert_eq!(home(&pdts, at(0) - Duration::from_millis(1), true), Some(0));
        assert_eq!(home(&[], at(0), true), None);
    }
}
